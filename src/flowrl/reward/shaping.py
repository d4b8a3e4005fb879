"""The rewards GRPO optimises: uncertainty-aware ensemble reward and the per-token reward of eq. 3.

`ShapedReward.load("models/reward", cfg)` gives one object with
- `__call__(prompts, completions, **kw) -> list[float]` (trl reward-function signature), and
- `per_token_rewards(prompts, completions, token_offsets) -> list[Tensor]` for a whole group at once.
"""

from __future__ import annotations

import bisect
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from flowrl.params.model import RewardConfig
from flowrl.reward.ensemble import Ensemble
from flowrl.reward.head import HeadEnsemble
from flowrl.reward.prefix import all_prefixes, component_spans

Offsets = Sequence[Sequence[int]] | torch.Tensor


def uncertainty_reward(mean: torch.Tensor, std: torch.Tensor, tau: float, uncertain_value: float = 0.0) -> torch.Tensor:
    """Ensemble mean where std <= tau, else `uncertain_value` (paper sec. 3.3.2).

    >>> uncertainty_reward(torch.tensor([0.5, 0.9, 0.2]), torch.tensor([0.01, 0.2, 0.08]), tau=0.08)
    tensor([0.5000, 0.0000, 0.2000])
    """
    return torch.where(std > tau, torch.full_like(mean, uncertain_value), mean)


def resolved_tau(cfg: RewardConfig, full) -> float:
    """The cutoff GRPO uses: the stage-resolved quantile tau from the ensemble spec when `cfg.tau_quantile` is set, else `cfg.tau`.

    An ensemble not written by the reward stage (built in a test or a bench) has no resolved tau:
    it falls back to `cfg.tau`, with a warning naming the fix.
    """
    tau = getattr(full, "tau", None)
    if cfg.tau_quantile is None:
        return cfg.tau
    if tau is None:
        warnings.warn(
            f"reward.tau_quantile is {cfg.tau_quantile} but the ensemble carries no resolved tau (models/reward/full/ensemble.json); "
            f"using reward.tau = {cfg.tau}. Rerun the reward stage (dvc repro reward) to resolve it.",
            stacklevel=2,
        )
        return cfg.tau
    return float(tau)


def token_components(offsets: Offsets, spans: Sequence[tuple[int, int]]) -> torch.Tensor:
    """Index of the component (line) holding each token, shape (T,).

    A token belongs to the component whose span contains its first character; special tokens
    (empty offsets) and tokens past the last component belong to the last component.

    >>> token_components([(0, 2), (2, 4), (4, 7), (0, 0)], [(0, 4), (4, 8)])
    tensor([0, 0, 1, 1])
    """
    offsets = torch.as_tensor(offsets, dtype=torch.long).reshape(-1, 2)
    if not spans:
        return torch.zeros(len(offsets), dtype=torch.long)
    starts = [s for s, _ in spans]
    last = len(spans) - 1
    out = [
        last if end <= start else min(max(bisect.bisect_right(starts, start) - 1, 0), last)
        for start, end in offsets.tolist()
    ]
    return torch.tensor(out, dtype=torch.long)


def is_valid_flow(text: str) -> bool:
    """True when the encoded flow (policy view) decodes, validates and is usable: a flow a person could run.

    GRPO gives every other completion `invalid_reward`, so orphan nodes and impractical sizes are learnt away.
    """
    from flowrl.encoding.policy_view import check_flow_text

    return check_flow_text(text).usable


class ShapedReward:
    """Uncertainty-aware full-flow reward plus the component-aware per-token reward.

    Args:
        full: the surrogate ensemble R_phi (mean, std per pair).
        prefix: the prefix-model ensemble R^pre (its mean is used); None = no component reward.
        cfg: the `reward` params section (tau, uncertain_value, invalid_reward, component_reward).
        validator: flow text -> valid?; defaults to decode + catalog validation.
    """

    def __init__(
        self,
        full: Ensemble | HeadEnsemble,
        prefix: Ensemble | HeadEnsemble | None,
        cfg: RewardConfig,
        validator: Callable[[str], bool] = is_valid_flow,
    ):
        self.full, self.prefix, self.validator = full, prefix, validator
        self.cfg = cfg.model_copy(update={"tau": resolved_tau(cfg, full)})

    @classmethod
    def load(
        cls, folder: str | Path, cfg: RewardConfig, validator: Callable[[str], bool] = is_valid_flow
    ) -> ShapedReward:
        """Load `folder/full` and, when present and wanted, `folder/prefix` (as the reward stage writes them)."""
        folder = Path(folder)
        use_prefix = cfg.component_reward and (folder / "prefix" / "ensemble.json").exists()
        return cls(
            Ensemble.load(folder / "full"), Ensemble.load(folder / "prefix") if use_prefix else None, cfg, validator
        )

    def flow_rewards(
        self, prompts: Sequence[str], completions: Sequence[str], valid: Sequence[bool] | None = None
    ) -> torch.Tensor:
        """Sequence-level reward (B,): uncertainty-aware ensemble mean; invalid flows get `invalid_reward`.

        Args:
            valid: precomputed validity per completion; None = run the validator.
        """
        valid = [self.validator(c) for c in completions] if valid is None else valid
        out = torch.full((len(completions),), self.cfg.invalid_reward, dtype=torch.float32)
        idx = [i for i, ok in enumerate(valid) if ok]
        if idx:
            mean, std = self.full.predict([prompts[i] for i in idx], [completions[i] for i in idx])
            shaped = uncertainty_reward(mean, std, self.cfg.tau, self.cfg.uncertain_value).float()
            # a flow the feature parser cannot read has no score (NaN): it gets the validity penalty
            out[idx] = torch.where(torch.isnan(mean), torch.full_like(shaped, self.cfg.invalid_reward), shaped)
        return out

    def __call__(self, prompts: Sequence[str], completions: Sequence[str], **kwargs) -> list[float]:
        """trl reward-function signature: one float per completion."""
        return self.flow_rewards(prompts, completions).tolist()

    def per_token_rewards(
        self, prompts: Sequence[str], completions: Sequence[str], token_offsets: Sequence[Offsets]
    ) -> list[torch.Tensor]:
        """Per-token rewards (paper eq. 3) for a batch/group; one prefix-model pass over all prefixes.

        Args:
            prompts, completions: B prompts and their completions (encoded flow text).
            token_offsets: per completion, (T_b, 2) character offsets of its tokens within the
                completion text (the tokenizer's offset mapping).
        Returns:
            B tensors of shape (T_b,): R_full + R^pre(p, f[1:j]) for the component j holding each
            token; R_full alone when the component reward is off; `invalid_reward` for invalid flows.
        """
        if not len(prompts) == len(completions) == len(token_offsets):
            raise ValueError(
                f"{len(prompts)} prompts, {len(completions)} completions, {len(token_offsets)} offset lists; pass one of each per completion"
            )
        ok = [self.validator(c) for c in completions]
        full = self.flow_rewards(prompts, completions, ok)
        n_tokens = [len(torch.as_tensor(o).reshape(-1, 2)) for o in token_offsets]
        out = [torch.full((t,), float(r)) for t, r in zip(n_tokens, full.tolist())]
        valid = [b for b in range(len(completions)) if ok[b]]
        if not (self.cfg.component_reward and self.prefix is not None and valid):
            return out
        jobs = [(b, p) for b in valid for p in all_prefixes(completions[b])]
        prefix_mean, _ = self.prefix.predict([prompts[b] for b, _ in jobs], [p for _, p in jobs])
        prefix_mean = torch.nan_to_num(prefix_mean, nan=0.0)  # an unreadable prefix adds nothing
        cursor = 0
        for b in valid:
            spans = component_spans(completions[b])
            n_prefixes = max(len(spans), 1)
            scores = prefix_mean[cursor : cursor + n_prefixes].float()
            cursor += n_prefixes
            out[b] = out[b] + scores[token_components(token_offsets[b], spans)]
        return out
