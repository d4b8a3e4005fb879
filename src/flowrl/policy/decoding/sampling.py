"""The one sampling loop every path uses (SFT validity, GRPO, guided inference).

Batched, KV-cached (each step feeds only the new token), temperature and optional top-p (as transformers'
logits warpers compute them; written here so that sampling needs no transformers import, which costs ~1 s of
`flowrl generate`), a hook for extra logits processors (constrained decoding), and seeded draws: a token is
drawn by the inverse of the cumulative distribution at a uniform number fixed by the seed and the prompt's position
(one per step), so the same seed gives the same flows, whatever else shares the batch, and two policies sampled with
one seed write the same flow wherever their distributions agree (common random numbers: a paired comparison of two
methods sees only where they differ). What produces the next-token
log-probs is a `StepScorer`: one model (optionally one named adapter) or the dual-model guidance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from tqdm import tqdm

from flowrl.params.model import PolicyConfig
from flowrl.policy.template import format_prompt
from flowrl.runtime.device import autocast as device_autocast


@dataclass(frozen=True)
class SamplingConfig:
    """How to sample: temperature, nucleus mass, length cap, batch size, seed and bf16 autocast."""

    temperature: float = 0.9
    top_p: float | None = None
    max_new_tokens: int = 500
    batch_size: int = 16
    seed: int = 0
    bf16: bool = False

    @classmethod
    def from_policy(
        cls, cfg: PolicyConfig, seed: int, batch_size: int = 16, max_new_tokens: int | None = None
    ) -> SamplingConfig:
        """Sampling settings from the `policy` params section."""
        return cls(cfg.temperature, cfg.top_p, max_new_tokens or cfg.max_new_tokens, batch_size, seed, cfg.bf16)


@dataclass(frozen=True)
class Completion:
    """One sampled flow: its prompt, decoded text (no EOS), token ids (no EOS/pad), and whether EOS ended it."""

    prompt: str
    text: str
    token_ids: list[int]
    finished: bool


class StepScorer(Protocol):
    """One decoding step: next-token log-probs (B, V) float32 for the last position, and the new cache."""

    def __call__(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor, past_key_values
    ) -> tuple[torch.Tensor, object]: ...


class ModelScorer:
    """Next-token log-probs from one model; `adapter` picks a named peft adapter per call (no global state)."""

    def __init__(self, model, adapter: str | None = None):
        self.model = model
        self.adapter = adapter

    def __call__(self, input_ids, attention_mask, position_ids, past_key_values):
        extra = {"adapter_names": [self.adapter] * input_ids.shape[0]} if self.adapter else {}
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            use_cache=True,
            logits_to_keep=1,
            **extra,
        )
        return out.logits[:, -1].float().log_softmax(-1), out.past_key_values


class LogitsProcessor(Protocol):
    """A step's score filter, called as transformers calls its logits processors: `p(ids, scores) -> scores`."""

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor: ...


def top_p_filter(scores: torch.Tensor, top_p: float) -> torch.Tensor:
    """-inf outside the smallest set of tokens whose probability reaches `top_p` (transformers' TopPLogitsWarper)."""
    ascending, order = torch.sort(scores, descending=False)
    drop = ascending.softmax(dim=-1).cumsum(dim=-1) <= (1 - top_p)
    drop[..., -1:] = False  # keep at least the most likely token
    return scores.masked_fill(drop.scatter(1, order, drop), -float("inf"))


def build_processors(cfg: SamplingConfig, logits_processor: Sequence[LogitsProcessor] | None = None) -> LogitsProcessor:
    """Extra processors first (they see log-probs), then temperature and top-p."""
    extra = list(logits_processor or [])

    def process(input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        for processor in extra:
            scores = processor(input_ids, scores)
        if cfg.temperature != 1.0:
            scores = scores / cfg.temperature
        if cfg.top_p is not None and cfg.top_p < 1.0:
            scores = top_p_filter(scores, cfg.top_p)
        return scores

    return process


def inverse_cdf(probs: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """One token per row of (B, V) `probs`: the first whose cumulative probability exceeds the row's uniform.

    Never a token of probability 0 (the uniform is scaled to the row's mass, in float64).

    >>> inverse_cdf(torch.tensor([[0.5, 0.0, 0.5], [0.2, 0.3, 0.5]]), torch.tensor([0.6, 0.1])).tolist()
    [2, 0]
    """
    cdf = probs.double().cumsum(-1)
    drawn = torch.searchsorted(cdf, (uniforms.double() * cdf[:, -1])[:, None], right=True).squeeze(1)
    return drawn.clamp(max=probs.shape[-1] - 1)


def seeded_uniforms(n_rows: int, n_steps: int, seed: int) -> torch.Tensor:
    """The (n_rows, n_steps) uniforms `generate_ids` draws tokens at, from a CPU generator seeded with `seed`
    (the same numbers on every device).

    >>> bool((seeded_uniforms(2, 3, 0) == seeded_uniforms(2, 3, 0)).all()), tuple(seeded_uniforms(2, 3, 0).shape)
    (True, (2, 3))
    """
    return torch.rand((n_rows, n_steps), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def generate_ids(
    scorer: StepScorer,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    cfg: SamplingConfig,
    eos_token_id: int,
    pad_token_id: int,
    uniforms: torch.Tensor,
    logits_processor: Sequence[LogitsProcessor] | None = None,
) -> torch.Tensor:
    """Sample continuations of a left-padded batch.

    Args:
        scorer: gives next-token log-probs and the updated KV cache.
        input_ids, attention_mask: (B, P) left-padded prompt ids and mask.
        uniforms: (B, max_new_tokens) numbers in [0, 1): row b's token at step t is `inverse_cdf` at uniforms[b, t].
        logits_processor: HF-style processors called as `p(ids, scores)` with `ids` the whole
            sequence so far (B, P + t): prompt columns first, generated tokens from column P.
    Returns:
        (B, T) generated ids, T <= max_new_tokens; after EOS a row holds `pad_token_id`.
    """
    processors = build_processors(cfg, logits_processor)
    autocast = device_autocast(
        input_ids.device, cfg.bf16
    )  # CPU: as configured; a bf16 GPU: always (flowrl.runtime.device)
    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    ids, step_ids, past = input_ids, input_ids, None
    done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
    new_tokens = []
    for step in range(cfg.max_new_tokens):
        with autocast:
            log_probs, past = scorer(step_ids, attention_mask, position_ids, past)
        scores = processors(ids, log_probs)
        next_ids = inverse_cdf(scores.float().softmax(-1), uniforms[:, step])
        next_ids = torch.where(done, torch.full_like(next_ids, pad_token_id), next_ids)
        new_tokens.append(next_ids)
        done |= next_ids == eos_token_id
        if bool(done.all()):
            break
        ids = torch.cat([ids, next_ids[:, None]], dim=1)
        step_ids = next_ids[:, None]
        attention_mask = torch.cat([attention_mask, torch.ones_like(step_ids, dtype=attention_mask.dtype)], dim=1)
        position_ids = position_ids[:, -1:] + 1
    return torch.stack(new_tokens, dim=1)


def sample_completions(
    scorer: StepScorer,
    tokenizer,
    prompts: list[str],
    cfg: SamplingConfig,
    logits_processor: Sequence[LogitsProcessor] | None = None,
    device: torch.device | str = "cpu",
    desc: str = "sampling flows",
) -> list[Completion]:
    """Sample one flow per prompt (wrapped in the SFT template), `cfg.batch_size` prompts at a time.

    Prompt i's tokens are drawn at the i-th row of uniforms seeded by `cfg.seed`, so its flow depends on the seed
    and its position, not on the batch size or on how long its batch mates' flows are.
    """
    uniforms = seeded_uniforms(len(prompts), cfg.max_new_tokens, cfg.seed)
    eos, pad = (
        tokenizer.eos_token_id,
        tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
    )
    results: list[Completion] = []
    batches = range(0, len(prompts), cfg.batch_size)
    for start in tqdm(batches, desc=desc, unit="batch", disable=len(batches) < 2):
        chunk = prompts[start : start + cfg.batch_size]
        enc = tokenizer([format_prompt(p) for p in chunk], return_tensors="pt", padding=True, padding_side="left")
        out = generate_ids(
            scorer,
            enc.input_ids.to(device),
            enc.attention_mask.to(device),
            cfg,
            eos,
            pad,
            uniforms[start : start + cfg.batch_size].to(device),
            logits_processor,
        )
        for prompt, row in zip(chunk, out.tolist(), strict=True):
            finished = eos in row
            ids = row[: row.index(eos)] if finished else row
            text = tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
            results.append(Completion(prompt, text, ids, finished))
    return results


def sample_flows(
    model,
    tokenizer,
    prompts: list[str],
    cfg: SamplingConfig,
    adapter: str | None = None,
    logits_processor: Sequence[LogitsProcessor] | None = None,
) -> list[Completion]:
    """Sample one flow per prompt from a single model (or one named peft adapter of it)."""
    model.eval()
    return sample_completions(ModelScorer(model, adapter), tokenizer, prompts, cfg, logits_processor, model.device)
