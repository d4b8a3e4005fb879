"""Reward pairing: SFT flows drawn by the surrogate's score for the prompt."""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch

from flowrl.params.model import SFTConfig
from flowrl.policy.pairing import pair_probabilities, reward_pairs


class PromptMatch:
    """A fake ensemble: flow `f_<word>` scores high for prompts holding <word>; `f_unsure` is uncertain."""

    tau = 0.5

    def predict(self, prompts, flows, progress=False):
        mean = torch.tensor([1.0 if f[2:] in p else (0.9 if f == "f_unsure" else 0.0) for p, f in zip(prompts, flows)])
        std = torch.tensor([1.0 if f == "f_unsure" else 0.1 for f in flows])
        return mean, std


def test_probabilities_favour_high_scores_and_drop_uncertain_ones():
    probs = pair_probabilities(np.array([0.0, 1.0, 2.0, 5.0]), np.array([0.0, 0.0, 0.0, 9.0]), tau=1.0, temperature=0.5)
    assert probs[3] == 0.0 and probs[2] > probs[1] > probs[0] and abs(probs.sum() - 1.0) < 1e-9
    flat = pair_probabilities(np.array([0.0, 1.0]), np.array([0.0, 0.0]), tau=1.0, temperature=100.0)
    assert abs(flat[0] - flat[1]) < 0.02  # a high temperature is nearly uniform


def test_no_certain_candidate_falls_back_to_uniform():
    probs = pair_probabilities(np.array([np.nan, 1.0]), np.array([0.0, 9.0]), tau=1.0, temperature=0.5)
    assert probs.tolist() == [0.5, 0.5]


def test_pairs_follow_the_prompt():
    prompts = [f"a {w} picture {i}" for w in ("cat", "dog", "car") for i in range(20)]
    pool = ["f_cat", "f_dog", "f_car", "f_unsure"]
    cfg = SFTConfig(pairing="reward", pairing_candidates=4, pairing_temperature=0.2, pairing_random_share=0.0)
    pairs, stats = reward_pairs(prompts, pool, PromptMatch(), 120, cfg, seed=0)
    assert len(pairs) == 120
    matched = sum(p["completion"][2:] in p["prompt"] for p in pairs)
    assert matched / len(pairs) > 0.9
    assert not any(p["completion"] == "f_unsure" for p in pairs)
    assert stats["pairing_uncertain_share"] == 0.25 and stats["pairing_random_share"] == 0.0


def test_random_share_keeps_diversity():
    prompts = [f"a cat {i}" for i in range(200)]
    pool = ["f_cat", "f_dog", "f_car"]
    cfg = SFTConfig(pairing="reward", pairing_candidates=3, pairing_temperature=0.1, pairing_random_share=0.5)
    pairs, stats = reward_pairs(prompts, pool, PromptMatch(), 200, cfg, seed=1)
    counts = Counter(p["completion"] for p in pairs)
    assert 0.35 < stats["pairing_random_share"] < 0.65 and counts["f_dog"] > 20 and counts["f_car"] > 20


def test_more_prompts_than_pairs_scores_only_the_prompts_that_get_one():
    class Counting(PromptMatch):
        scored = 0

        def predict(self, prompts, flows, progress=False):
            Counting.scored += len(prompts)
            return super().predict(prompts, flows, progress)

    prompts = [f"a {w} picture {i}" for w in ("cat", "dog") for i in range(50)]
    cfg = SFTConfig(pairing="reward", pairing_candidates=3, pairing_temperature=0.2, pairing_random_share=0.0)
    pairs, stats = reward_pairs(prompts, ["f_cat", "f_dog", "f_car"], Counting(), 30, cfg, seed=0)
    assert len(pairs) == 30 and len({p["prompt"] for p in pairs}) == 30  # one pair each, no prompt twice
    assert stats["pairing_prompts"] == 30.0 and Counting.scored == 30 * 3


def test_specificity_prefers_the_flow_that_suits_the_prompt_over_one_good_for_all():
    class GoodForAll(PromptMatch):
        """`f_all` is a little better than the matching flow for every prompt."""

        def predict(self, prompts, flows, progress=False):
            mean, std = super().predict(prompts, flows, progress)
            return torch.where(torch.tensor([f == "f_all" for f in flows]), 1.05, mean), std

    prompts = [f"a {w} picture {i}" for w in ("cat", "dog", "car") for i in range(20)]
    pool = ["f_cat", "f_dog", "f_car", "f_all"]

    def matched(specificity: float) -> float:
        cfg = SFTConfig(
            pairing="reward",
            pairing_candidates=4,
            pairing_temperature=0.05,
            pairing_random_share=0.0,
            pairing_specificity=specificity,
        )
        pairs, _ = reward_pairs(prompts, pool, GoodForAll(), 60, cfg, seed=0)
        return sum(p["completion"][2:] in p["prompt"] for p in pairs) / len(pairs)

    assert matched(0.0) < 0.3 and matched(0.5) > 0.9
