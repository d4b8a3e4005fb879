"""The diagnostic GRPO reward `grpo.reward: scorer`: the true scorer itself instead of the surrogate ensemble.

Training on the scorer separates "RL cannot find better flows in this budget" from "the surrogate
misleads": if GRPO on the scorer gains and GRPO on the surrogate does not, the surrogate is the limit.
It has the interface of `ShapedReward` that GRPO uses (validator, flow_rewards, per_token_rewards,
`full.predict` for the uncertainty log), with zero uncertainty and the full-flow reward on every token.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from flowrl.params.model import RewardConfig


class _NoUncertainty:
    """Stands in for the ensemble: the scorer's score with std 0 (nothing is zeroed as uncertain)."""

    def __init__(self, score: Callable[[Sequence[str], Sequence[str]], list[float]]):
        self.score = score

    def predict(
        self, prompts: Sequence[str], flows: Sequence[str], progress: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mean = torch.tensor(self.score(prompts, flows), dtype=torch.float32)
        return mean, torch.zeros_like(mean)


class ScorerReward:
    """Reward = scorer(prompt, runnable graph of the flow); `invalid_reward` for flows that are not usable.

    Args:
        scorer: object with `score(prompts, graphs) -> list[float]` (flowrl.scoring protocol).
        cfg: the `reward` section (invalid_reward, tau).
        validator: flow text -> usable?
        decoder: flow text -> runnable API graph.
    """

    def __init__(self, scorer, cfg: RewardConfig, validator: Callable[[str], bool], decoder: Callable[[str], dict]):
        self.scorer, self.cfg, self.validator, self.decoder = scorer, cfg, validator, decoder
        self.full = _NoUncertainty(
            lambda prompts, flows: list(scorer.score(list(prompts), [decoder(f) for f in flows]))
        )

    def flow_rewards(
        self, prompts: Sequence[str], completions: Sequence[str], valid: Sequence[bool] | None = None
    ) -> torch.Tensor:
        """Scorer value per usable completion, `invalid_reward` for the others, shape (B,)."""
        valid = [self.validator(c) for c in completions] if valid is None else valid
        out = torch.full((len(completions),), self.cfg.invalid_reward, dtype=torch.float32)
        idx = [i for i, ok in enumerate(valid) if ok]
        if idx:
            out[idx] = self.full.predict([prompts[i] for i in idx], [completions[i] for i in idx])[0]
        return out

    def per_token_rewards(
        self, prompts: Sequence[str], completions: Sequence[str], token_offsets
    ) -> list[torch.Tensor]:
        """The flow reward on every token (no prefix models for the scorer)."""
        rewards = self.flow_rewards(prompts, completions)
        return [
            torch.full((len(torch.as_tensor(o).reshape(-1, 2)),), float(r))
            for o, r in zip(token_offsets, rewards.tolist())
        ]
