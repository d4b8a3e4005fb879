"""Methods that sample from trained policies: sft, sft_rerank, grpo and grpo_cfg_<gamma> (paper Tables 2-3).

Models load lazily, once per evaluation: `models/sft` (SFT adapter), `models/sft` + `models/grpo`
(merged SFT base with the GRPO LoRA adapter, the layout dual-model guidance needs) and
`models/reward/full` (the reward ensemble that reranks SFT samples).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path

from flowrl.evaluation.validity import Candidate, check_candidate
from flowrl.params.model import Params
from flowrl.pipeline.stages import GRPOFiles, RewardFiles, SFTFiles
from flowrl.policy.decoding.sampling import SamplingConfig

SFT_DIR, GRPO_DIR, REWARD_DIR = SFTFiles.dir, GRPOFiles.dir, RewardFiles.full


def gamma_method_name(gamma: float) -> str:
    """`grpo_cfg_1.5` for 1.5, `grpo_cfg_2` for 2.0."""
    return f"grpo_cfg_{gamma:g}"


def best_by_reward(texts: Sequence[str], rewards: Sequence[float], valid: Sequence[bool]) -> int:
    """Index of the valid (usable) text with the highest reward; 0 when none is."""
    ranked = [i for i in range(len(texts)) if valid[i]]
    return max(ranked, key=lambda i: rewards[i]) if ranked else 0


class PolicyModels:
    """The trained models under `root`, loaded on first use."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def missing(self, needs: Sequence[Path]) -> str | None:
        """Why a method cannot run ('models/grpo is missing ...'), or None when every folder it needs exists."""
        markers = {SFT_DIR: "policy.json", GRPO_DIR: "adapter_config.json", REWARD_DIR: "ensemble.json"}
        for folder in needs:
            if not (self.root / folder / markers[folder]).exists():
                return f"{folder} is missing (no {markers[folder]}); run its stage first"
        return None

    @cached_property
    def sft(self):
        from flowrl.policy.loading import load_sft_policy

        return load_sft_policy(self.root / SFT_DIR)

    @cached_property
    def codes(self):
        """The SFT policy's prompt codes (None when it reads the prompt text alone)."""
        from flowrl.policy.prompt_codes import PromptCodes

        return PromptCodes.load(self.root / SFT_DIR)

    def coded(self, prompts: Sequence[str]) -> list[str]:
        """What the policy reads for `prompts` (flowrl.policy.prompt_codes)."""
        from flowrl.policy.prompt_codes import coded_prompts

        return coded_prompts(self.codes, prompts)

    @cached_property
    def guided(self):
        from flowrl.policy.decoding.guidance import load_guided_policy

        return load_guided_policy(self.root / SFT_DIR, self.root / GRPO_DIR)

    @cached_property
    def ensemble(self):
        from flowrl.reward.ensemble import Ensemble

        return Ensemble.load(self.root / REWARD_DIR)


def policy_methods(
    params: Params, root: Path
) -> tuple[dict[str, Callable[[Sequence[str]], list[Candidate]]], dict[str, str]]:
    """The policy methods that can run under `root`, and the reason each other one is skipped.

    Returns:
        (name -> method mapping prompts to one Candidate each, name -> skip reason).
    """
    from flowrl.policy.decoding.constrained import constraint_processors
    from flowrl.policy.decoding.guidance import sample_guided
    from flowrl.policy.decoding.redraw import draw_usable
    from flowrl.policy.decoding.sampling import sample_flows

    cfg = params.evaluate
    models = PolicyModels(root)
    sampling = SamplingConfig.from_policy(params.policy, params.seed, cfg.batch_size, cfg.max_new_tokens)
    constrain = lambda tok: constraint_processors(params.policy, tok, sampling.max_new_tokens)  # noqa: E731 (policy.constrained)

    def usable_candidates(sample: Callable, prompts: Sequence[str]) -> list[Candidate]:
        """`sample(prompts, sampling config)` with unusable flows redrawn (`policy.usable_retries`), as Candidates."""
        drawn = draw_usable(sample, prompts, sampling, params.policy.usable_retries)
        return [Candidate(d.completion.text, draws=d.draws) for d in drawn]

    def sft(prompts: Sequence[str]) -> list[Candidate]:
        model, tokenizer = models.sft
        return usable_candidates(
            lambda ps, s: sample_flows(model, tokenizer, models.coded(ps), s, logits_processor=constrain(tokenizer)),
            prompts,
        )

    def sft_rerank(prompts: Sequence[str]) -> list[Candidate]:
        model, tokenizer = models.sft
        n = cfg.rerank_n
        repeated = [p for p in prompts for _ in range(n)]
        texts = [
            c.text
            for c in sample_flows(
                model, tokenizer, models.coded(repeated), sampling, logits_processor=constrain(tokenizer)
            )
        ]
        valid = [check_candidate(Candidate(t)).usable for t in texts]  # rank only flows a person could run
        keep = [i for i, ok in enumerate(valid) if ok]
        rewards = [float("-inf")] * len(texts)
        if keep:
            mean, _ = models.ensemble.predict([repeated[i] for i in keep], [texts[i] for i in keep])
            for i, r in zip(keep, mean.tolist(), strict=True):
                rewards[i] = r
        picks = []
        for start in range(0, len(texts), n):
            best = best_by_reward(texts[start : start + n], rewards[start : start + n], valid[start : start + n])
            picks.append(Candidate(texts[start + best]))
        return picks

    def grpo(prompts: Sequence[str]) -> list[Candidate]:
        model, tokenizer = models.guided
        return usable_candidates(
            lambda ps, s: sample_flows(
                model, tokenizer, models.coded(ps), s, adapter="grpo", logits_processor=constrain(tokenizer)
            ),
            prompts,
        )

    def guided(gamma: float) -> Callable[[Sequence[str]], list[Candidate]]:
        def method(prompts: Sequence[str]) -> list[Candidate]:
            model, tokenizer = models.guided
            return usable_candidates(
                lambda ps, s: sample_guided(
                    model, tokenizer, models.coded(ps), s, gamma, logits_processor=constrain(tokenizer)
                ),
                prompts,
            )

        return method

    wanted: dict[str, tuple[Callable, list[Path]]] = {
        "sft": (sft, [SFT_DIR]),
        "sft_rerank": (sft_rerank, [SFT_DIR, REWARD_DIR]),
        "grpo": (grpo, [SFT_DIR, GRPO_DIR]),
        **{gamma_method_name(g): (guided(g), [SFT_DIR, GRPO_DIR]) for g in cfg.gammas},
    }
    available, skipped = {}, {}
    for name, (method, needs) in wanted.items():
        reason = models.missing(needs)
        if reason:
            skipped[name] = reason
        else:
            available[name] = method
    return available, skipped
