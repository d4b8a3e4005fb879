"""The GRPO algorithm (paper sec. 3.3, A.6.3): trl's GRPOTrainer sampling through the project's loop (constrained
decoding as a logits processor) and, with the component reward, per-token advantages (B, T) from the surrogate
reward. The stage around it (prompts, checkpoints, probe, reports) is flowrl.policy.grpo.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from transformers import LogitsProcessor
from trl import GRPOTrainer
from trl.trainer.utils import pad

from flowrl.policy.decoding.sampling import ModelScorer, SamplingConfig, generate_ids, seeded_uniforms
from flowrl.policy.grpo_advantages import (
    group_token_advantages,
    left_out_advantages,
    masked_token_logps,
    quality_variance_share,
)
from flowrl.reward.shaping import ShapedReward, is_valid_flow


def flow_is_valid(text: str) -> bool:
    """Decode + validation + usability (`flowrl.reward.shaping.is_valid_flow`)."""
    return is_valid_flow(text)


def token_offsets(tokenizer, ids: Sequence[int]) -> list[tuple[int, int]]:
    """(start, end) character offsets of each token within `decode(ids)` (flow tokens kept).

    Special tokens that decode to nothing (EOS) get an empty span at the end of the text.
    """
    decode = functools.partial(tokenizer.decode, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    pieces = [decode([i]) for i in ids]
    if "".join(pieces) != decode(list(ids)):  # a character split over tokens: fall back to prefix lengths
        ends = [len(decode(list(ids[: k + 1]))) for k in range(len(ids))]
    else:
        ends = [sum(map(len, pieces[: k + 1])) for k in range(len(pieces))]
    starts = [0, *ends[:-1]]
    eos = tokenizer.eos_token_id
    return [(e, e) if i == eos else (s, e) for i, s, e in zip(ids, starts, ends)]


class MemoEnsemble:
    """Wraps an ensemble; a repeated `predict` on the same pairs returns the cached (mean, std)."""

    def __init__(self, ensemble):
        self.ensemble, self._key, self._value = ensemble, None, None

    def predict(self, prompts, flows, progress: bool = False):
        key = (tuple(prompts), tuple(flows))
        if key != self._key:
            self._key, self._value = key, self.ensemble.predict(prompts, flows, progress)
        return self._value


class SurrogateReward:
    """trl reward function: the uncertainty-aware surrogate reward; logs validity and the uncertain share.

    Called by trl as `reward(prompts, completions, user_prompt=[...], log_metric=fn, ...)`;
    `user_prompt` (a dataset column) is the raw prompt the surrogates were trained on.
    """

    __name__ = "surrogate"

    def __init__(self, shaped: ShapedReward):
        if not isinstance(shaped.full, MemoEnsemble):
            shaped.full = MemoEnsemble(shaped.full)  # per_token_rewards re-predicts the same pairs: cache them
        self.shaped = shaped

    def __call__(self, prompts, completions, user_prompt=None, log_metric=None, **kwargs) -> list[float]:
        users = list(user_prompt) if user_prompt is not None else list(prompts)
        valid = [self.shaped.validator(c) for c in completions]
        rewards = self.shaped.flow_rewards(users, completions, valid)
        idx = [i for i, ok in enumerate(valid) if ok]
        n_uncertain = 0
        if idx:
            _, std = self.shaped.full.predict([users[i] for i in idx], [completions[i] for i in idx])
            n_uncertain = int((std > self.shaped.cfg.tau).sum())
        if log_metric is not None:
            log_metric("validity", sum(valid) / len(valid))
            log_metric("share_uncertain", n_uncertain / len(valid))
        return rewards.tolist()


def lora_base_is_fp32(model) -> bool:
    """True when every weight a LoRA wraps is fp32, so merging the adapter in and out again gives it back (to rounding)."""
    return all(p.dtype == torch.float32 for name, p in model.named_parameters() if ".base_layer." in name)


@contextmanager
def merged_for_sampling(model) -> Iterator[bool]:
    """Sample from the LoRA merged into the base weights when they are fp32; otherwise through the adapter.

    Merging pays on a small CPU model, where the adapter branch costs as much as the layer itself at every
    decoding step (docs/policy.md). In bf16 or fp16, W + BA - BA rounds away from W: merging and unmerging
    at every step would drift the policy and the KL reference (trl issue #6688). Yields whether it merged.
    """
    merge = hasattr(model, "merge_adapter") and lora_base_is_fp32(model)
    if merge:
        model.merge_adapter()
    try:
        yield merge
    finally:
        if merge:
            model.unmerge_adapter()


class FlowGRPOTrainer(GRPOTrainer):
    """GRPOTrainer that samples with the project's loop and, optionally, uses per-token advantages (eq. 3).

    Args:
        shaped: the shaped surrogate reward.
        sampling: temperature/top-p/length/seed/bf16 of the sampling loop (seeded per step, so a
            resumed run samples what an uninterrupted one would).
        component_reward: per-token advantages from `shaped.per_token_rewards` (B, T); off = trl's (B,).
        quality_groups: only valid, certain completions enter a group's mean and std (`grpo.quality_groups`); uncertain
            ones get `uncertain_advantage` and invalid ones `invalid_advantage`. Off: every completion counts (the paper's).
        logits_processor: HF logits processors applied at every sampling step (e.g. constrained decoding).
    """

    def __init__(
        self,
        *args,
        shaped: ShapedReward,
        sampling: SamplingConfig,
        component_reward: bool = True,
        logits_processor: Sequence[LogitsProcessor] | None = None,
        quality_groups: bool = True,
        uncertain_advantage: float = 0.0,
        invalid_advantage: float = -1.0,
        renormalize: bool = True,
        **kwargs,
    ):
        self.reward_fn = SurrogateReward(shaped)
        super().__init__(*args, reward_funcs=[self.reward_fn], **kwargs)
        self.sampling, self.component_reward = sampling, component_reward
        self.quality_groups = quality_groups
        self.uncertain_advantage, self.invalid_advantage = uncertain_advantage, invalid_advantage
        self.logits_processor = list(logits_processor or [])
        self.renormalize = renormalize
        self._texts: list[str] = []
        self._allowed: torch.Tensor | None = None  # (B, T, V) of the batch whose log-probs are computed next

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        if self.args.use_vllm:  # grpo.use_vllm: trl's vLLM generation (no constrained decoding, vLLM's own seeding)
            completion_ids, logprobs = super()._generate_single_turn(
                prompt_ids, images, multimodal_fields, num_generations, has_tool_images
            )
            eos = self._tokenizer.eos_token_id
            self._texts = [
                self._tokenizer.decode(
                    [t for t in row if t != eos], skip_special_tokens=False, clean_up_tokenization_spaces=False
                )
                for row in completion_ids
            ]
            return completion_ids, logprobs
        device = self.accelerator.device
        tok = self._tokenizer
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        rows = [torch.tensor(ids) for ids in prompt_ids]
        input_ids = pad(rows, padding_value=pad_id, padding_side="left").to(device)
        attention_mask = pad([torch.ones_like(r) for r in rows], padding_value=0, padding_side="left").to(device)
        step_seed = self.sampling.seed + self.state.global_step
        uniforms = seeded_uniforms(len(rows), self.sampling.max_new_tokens, step_seed).to(device)
        model = self.accelerator.unwrap_model(self.model)
        with merged_for_sampling(model):
            out = generate_ids(
                ModelScorer(model),
                input_ids,
                attention_mask,
                self.sampling,
                tok.eos_token_id,
                pad_id,
                uniforms,
                self.logits_processor,
            )
        completion_ids, texts = [], []
        for row in out.tolist():
            end = row.index(tok.eos_token_id) if tok.eos_token_id in row else len(row)
            completion_ids.append(row[: end + 1] if end < len(row) else row)  # trl keeps the EOS token
            texts.append(tok.decode(row[:end], skip_special_tokens=False, clean_up_tokenization_spaces=False))
        self._texts = texts
        self._allowed = (
            self.allowed_tokens(tuple(out.shape), model.get_output_embeddings().weight.shape[0])
            if self.renormalize
            else None
        )
        return completion_ids, None

    def allowed_tokens(self, shape: tuple[int, int], vocab: int) -> torch.Tensor | None:
        """(B, T, V) the tokens constrained decoding allowed at each completion position; None without a constraint."""
        steps = next((p.allowed_steps for p in self.logits_processor if getattr(p, "allowed_steps", None)), None)
        if not steps:
            return None
        recorded = torch.stack(steps, 1)[:, : shape[1]].cpu()
        allowed = torch.ones((*shape, vocab), dtype=torch.bool)  # positions after a row's end are padding
        allowed[: recorded.shape[0], : recorded.shape[1]] = False
        allowed[: recorded.shape[0], : recorded.shape[1], : recorded.shape[2]] = recorded
        return allowed

    def _get_per_token_logps_and_entropies(
        self,
        model,
        input_ids,
        attention_mask,
        logits_to_keep,
        batch_size=None,
        compute_entropy=False,
        compute_aux_loss=False,
        pixel_values=None,
        image_grid_thw=None,
        num_images=None,
        pixel_attention_mask=None,
        spatial_shapes=None,
        num_tiles=None,
        image_sizes=None,
        token_type_ids=None,
        mm_token_type_ids=None,
        image_position_ids=None,
    ):
        """Log-probs (and entropies) under the distribution the completion was sampled from: the model's, renormalised over
        the tokens the constraint allowed at each step (`grpo.renormalize`), in the loss and in the KL alike."""
        allowed = self._allowed
        if allowed is None or compute_aux_loss or pixel_values is not None or allowed.shape[0] != input_ids.shape[0]:
            return super()._get_per_token_logps_and_entropies(
                model,
                input_ids,
                attention_mask,
                logits_to_keep,
                batch_size,
                compute_entropy,
                compute_aux_loss,
                pixel_values,
                image_grid_thw,
                num_images,
                pixel_attention_mask,
                spatial_shapes,
                num_tiles,
                image_sizes,
                token_type_ids,
                mm_token_type_ids,
                image_position_ids,
            )
        with self.accelerator.autocast():
            logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
        logits = (
            logits[:, -logits_to_keep - 1 : -1].float() / self.temperature
        )  # the sampling temperature, as trl's head applies it
        allowed = allowed[:, :logits_to_keep].to(logits.device)
        logps, entropy = masked_token_logps(logits, input_ids[:, -logits_to_keep:], allowed[..., : logits.shape[-1]])
        return logps, entropy if compute_entropy else None, None

    def _compute_loss(self, model, inputs):
        self._allowed = inputs.get("allowed_mask")  # this (shuffled, split) batch's own rows
        try:
            return super()._compute_loss(model, inputs)
        finally:
            self._allowed = None

    def _generate(self, prompts):
        out = list(super()._generate(prompts))
        out[3] = list(self._texts)  # trl decodes with skip_special_tokens=True, which would drop flow tokens
        return tuple(out)

    def forced_tokens(self, shape: tuple[int, int]) -> torch.Tensor:
        """(B, T) True where constrained decoding allowed one token only at that completion position."""
        forced = torch.zeros(shape, dtype=torch.bool)
        for proc in self.logits_processor:
            steps = getattr(proc, "forced", [])
            if steps:
                f = torch.stack(steps, 1)[:, : shape[1]]
                forced[: f.shape[0], : f.shape[1]] |= f.cpu()
        return forced

    def _generate_and_score_completions(self, inputs):
        out = super()._generate_and_score_completions(inputs)  # the KL reference is computed in here, on self._allowed
        if self._allowed is not None:  # travels with its rows through trl's shuffle and split into the loss
            out["allowed_mask"] = self._allowed[:, : out["completion_ids"].shape[1]].to(out["completion_ids"].device)
            self._allowed = None
        # A token the constraint forced was sampled with probability 1, whatever the unmasked model
        # says; scoring it with the unmasked log-prob pushes that log-prob down on every flow the
        # constraint had to finish, until the KL runs away (measured: KL 16-30 within 30-80 steps).
        # Forced tokens are left out of the loss and the KL (docs/policy.md, "importance ratio").
        forced = self.forced_tokens(tuple(out["completion_mask"].shape))
        share = float((forced & out["completion_mask"].cpu().bool()).sum() / out["completion_mask"].sum().clamp(min=1))
        self._metrics["train" if self.model.training else "eval"]["forced_token_share"].append(share)
        # trl's loss mask is completion_mask x tool_mask; completion_mask is also the attention mask, so the
        # forced positions go into tool_mask (attention still sees every token)
        keep = (~forced).to(out["completion_mask"].device, out["completion_mask"].dtype)
        out["tool_mask"] = keep if out.get("tool_mask") is None else out["tool_mask"] * keep
        if not (self.component_reward or self.quality_groups):
            return out  # trl's sequence advantages: every completion in its group's mean and std (the paper's)
        ids, mask = out["completion_ids"], out["completion_mask"]
        users = [x["user_prompt"] for x in inputs]
        shaped = self.reward_fn.shaped
        offsets = (
            [token_offsets(self._tokenizer, row[m.bool()].tolist()) for row, m in zip(ids.cpu(), mask.cpu())]
            if self.component_reward
            else None
        )
        advantages, logged = shaped_advantages(
            shaped,
            users,
            self._texts,
            mask.cpu(),
            self.num_generations,
            offsets=offsets,
            quality_groups=self.quality_groups,
            uncertain_advantage=self.uncertain_advantage,
            invalid_advantage=self.invalid_advantage,
        )
        out["advantages"] = advantages.to(ids.device)
        metrics = self._metrics["train" if self.model.training else "eval"]
        for key, value in logged.items():
            metrics[key].append(value)
        return out


def reward_classes(
    shaped: ShapedReward, prompts: Sequence[str], texts: Sequence[str]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(valid, certain) per completion: usable flows, and those whose ensemble std is within tau."""
    valid = torch.tensor([bool(shaped.validator(t)) for t in texts])
    certain = torch.zeros(len(texts), dtype=torch.bool)
    idx = [i for i, ok in enumerate(valid.tolist()) if ok]
    if idx:
        mean, std = shaped.full.predict([prompts[i] for i in idx], [texts[i] for i in idx])
        certain[idx] = (std <= shaped.cfg.tau) & ~torch.isnan(mean)
    return valid, certain


def shaped_advantages(
    shaped: ShapedReward,
    prompts: Sequence[str],
    texts: Sequence[str],
    mask: torch.Tensor,
    num_generations: int,
    offsets: Sequence | None = None,
    quality_groups: bool = True,
    uncertain_advantage: float = 0.0,
    invalid_advantage: float = -1.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Per-token advantages (B, T) of a generation batch, and what to log of it.

    The reward of each token is the flow's shaped reward, plus its component's prefix reward when `offsets` (each
    completion's token offsets) are given (paper eq. 3). With `quality_groups` only valid, certain flows set a group's
    mean and std; uncertain ones take `uncertain_advantage` and unusable ones `invalid_advantage` (issue #23).
    """
    valid, certain = reward_classes(shaped, prompts, texts)
    flow_rewards = shaped.flow_rewards(prompts, texts, valid.tolist())
    logged: dict[str, float] = {}
    if offsets is not None:
        rewards = torch.zeros(mask.shape, dtype=torch.float32)
        for b, r in enumerate(shaped.per_token_rewards(prompts, texts, offsets)):
            rewards[b, : len(r)] = r
        logged["token_reward_mean"] = float((rewards * mask).sum() / mask.sum().clamp(min=1))
    else:  # one reward per flow, on each of its tokens
        rewards = flow_rewards[:, None].expand(mask.shape).clone()
    counted = valid & certain if quality_groups else torch.ones_like(valid)
    fallback = left_out_advantages(valid, uncertain_advantage, invalid_advantage)
    advantages = group_token_advantages(rewards, mask, num_generations, counted=counted, fallback=fallback)
    logged["quality_variance_share"] = quality_variance_share(flow_rewards, valid & certain, num_generations)
    return advantages, logged
