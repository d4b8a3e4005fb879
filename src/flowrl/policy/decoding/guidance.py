"""Dual-model guidance (paper sec. 3.4): log p = log p_SFT + gamma (log p_GRPO - log p_SFT), every step.

Both models live on ONE base as peft adapters and are evaluated in ONE forward per step: the
batch is duplicated, the first half routed to the SFT adapter and the second to the GRPO adapter
through peft's mixed-adapter batches (`adapter_names=[...]`). In the pipeline the SFT adapter is
merged into the base (see docs/policy.md), so the SFT half uses peft's "__base__" name.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from flowrl.policy.decoding.sampling import Completion, LogitsProcessor, SamplingConfig, sample_completions

BASE = "__base__"  # peft's name for "no adapter" inside a mixed-adapter batch


def guided_log_probs(sft: torch.Tensor, grpo: torch.Tensor, gamma: float) -> torch.Tensor:
    """Combine two models' next-token log-probs; gamma=0 gives `sft` and gamma=1 `grpo` bit for bit.

    Written as (1 - gamma) sft + gamma grpo, the same line as the paper's formula, so the two
    end points are exact in floating point.

    >>> guided_log_probs(torch.tensor([-1.0, -2.0]), torch.tensor([-2.0, -1.0]), 1.5).tolist()
    [-2.5, -0.5]
    """
    return (1.0 - gamma) * sft + gamma * grpo


class GuidedScorer:
    """Next-token guided log-probs from one batched forward over [SFT half; GRPO half]."""

    def __init__(self, model, gamma: float, sft_adapter: str = BASE, grpo_adapter: str = "grpo"):
        if gamma < 0:
            raise ValueError(f"guidance gamma must be >= 0, got {gamma}; set policy.gamma")
        self.model, self.gamma = model, gamma
        self.sft_adapter, self.grpo_adapter = sft_adapter, grpo_adapter

    def __call__(self, input_ids, attention_mask, position_ids, past_key_values):
        batch = input_ids.shape[0]
        twice = lambda t: torch.cat([t, t], dim=0)  # noqa: E731
        out = self.model(
            input_ids=twice(input_ids),
            attention_mask=twice(attention_mask),
            position_ids=twice(position_ids),
            past_key_values=past_key_values,
            use_cache=True,
            logits_to_keep=1,
            adapter_names=[self.sft_adapter] * batch + [self.grpo_adapter] * batch,
        )
        log_probs = out.logits[:, -1].float().log_softmax(-1)
        return guided_log_probs(log_probs[:batch], log_probs[batch:], self.gamma), out.past_key_values


class PairGuidedScorer:
    """Guided next-token log-probs from two separate models (the plain-torch SFT and SFT + GRPO of
    flowrl.policy.plain_llama): one forward of each per step, the same combination as `GuidedScorer`."""

    def __init__(self, sft, grpo, gamma: float):
        if gamma < 0:
            raise ValueError(f"guidance gamma must be >= 0, got {gamma}; set policy.gamma")
        self.sft, self.grpo, self.gamma = sft, grpo, gamma

    def __call__(self, input_ids, attention_mask, position_ids, past_key_values):
        sft_past, grpo_past = past_key_values or (None, None)
        a = self.sft(input_ids, attention_mask, position_ids, sft_past, logits_to_keep=1)
        b = self.grpo(input_ids, attention_mask, position_ids, grpo_past, logits_to_keep=1)
        log_probs = [out.logits[:, -1].float().log_softmax(-1) for out in (a, b)]
        return guided_log_probs(*log_probs, self.gamma), (a.past_key_values, b.past_key_values)


def sample_guided(
    model,
    tokenizer,
    prompts: list[str],
    cfg: SamplingConfig,
    gamma: float,
    sft_adapter: str = BASE,
    grpo_adapter: str = "grpo",
    logits_processor: Sequence[LogitsProcessor] | None = None,
) -> list[Completion]:
    """Sample one flow per prompt with dual-model guidance of strength `gamma` (paper default 1.5)."""
    model.eval()  # peft refuses adapter_names in training mode
    scorer = GuidedScorer(model, gamma, sft_adapter, grpo_adapter)
    return sample_completions(scorer, tokenizer, prompts, cfg, logits_processor, model.device, desc="guided sampling")


def load_guided_policy(sft_dir: str | Path, grpo_dir: str | Path, grpo_adapter: str = "grpo", where=None):
    """SFT policy (adapter merged into the base) with the GRPO LoRA adapter loaded as `grpo_adapter`, on `where`
    (a flowrl.runtime.device Placement or setting; None: the `device` setting in force).

    Use with `sample_guided(..., sft_adapter="__base__", grpo_adapter=grpo_adapter)`.
    Returns:
        (PeftModel in eval mode, extended tokenizer).
    """
    from flowrl.policy.loading import PolicyLoadError, check_adapter_folder, load_adapter, load_sft_merged

    if not (Path(grpo_dir) / "adapter_config.json").exists():
        raise PolicyLoadError(f"{grpo_dir}: no adapter_config.json, so no GRPO adapter there; run the grpo stage first")
    check_adapter_folder(grpo_dir)  # before the (slow) SFT merge: a damaged folder fails at once
    base, tokenizer = load_sft_merged(sft_dir, where)
    return load_adapter(base, grpo_dir, grpo_adapter).eval(), tokenizer
