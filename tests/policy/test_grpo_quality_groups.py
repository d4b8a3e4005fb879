"""GRPO group statistics over valid, certain completions only (issue #23: a signal about quality)."""

from __future__ import annotations

import pytest
import torch

from flowrl.params.training import RewardConfig
from flowrl.policy.grpo_advantages import left_out_advantages
from flowrl.policy.grpo_trainer import group_token_advantages, quality_variance_share, shaped_advantages
from flowrl.reward.shaping import ShapedReward


def test_uncertain_and_invalid_rows_do_not_move_the_baseline():
    rewards = torch.tensor([[0.20], [0.30], [0.0], [-1.0]])  # two scored flows, one zeroed as uncertain, one invalid
    counted = torch.tensor([True, True, False, False])
    adv = group_token_advantages(
        rewards, torch.ones(4, 1), 4, eps=0.0, counted=counted, fallback=torch.tensor([0.0, 0.0, 0.0, -1.0])
    )
    assert adv.squeeze(1).tolist() == pytest.approx([-0.7071, 0.7071, 0.0, -1.0], abs=1e-4)
    # every row counted (the paper's): the zeroed and invalid rows set the scale, the two scored flows look alike
    plain = group_token_advantages(rewards, torch.ones(4, 1), 4, eps=0.0).squeeze(1)
    gap = float(adv[1, 0] - adv[0, 0])
    assert float(plain[1] - plain[0]) < gap / 8


def test_uncertain_flows_take_their_own_advantage_apart_from_the_group():
    rewards = torch.tensor([[0.20], [0.30], [0.25], [0.0]])  # the third is usable but uncertain, the fourth invalid
    valid, certain = torch.tensor([True, True, True, False]), torch.tensor([True, True, False, False])
    fallback = left_out_advantages(valid, uncertain_advantage=-0.5, invalid_advantage=-1.0)
    adv = group_token_advantages(rewards, torch.ones(4, 1), 4, eps=0.0, counted=valid & certain, fallback=fallback)
    assert adv.squeeze(1).tolist() == pytest.approx([-0.7071, 0.7071, -0.5, -1.0], abs=1e-4)
    # the default (0): an uncertain flow is neither pushed up nor down
    neutral = left_out_advantages(valid, uncertain_advantage=0.0, invalid_advantage=-1.0)
    assert neutral.tolist() == [0.0, 0.0, 0.0, -1.0]


def test_all_counted_is_trls_sequence_advantage():
    rewards = torch.tensor([1.0, 2.0, 4.0, 7.0])
    adv = group_token_advantages(rewards[:, None].repeat(1, 3), torch.ones(4, 3), 4, eps=0.0)
    assert adv[:, 0].tolist() == pytest.approx(((rewards - rewards.mean()) / rewards.std()).tolist())


def test_a_lone_counted_row_gets_no_advantage():
    adv = group_token_advantages(torch.tensor([[0.3], [0.0]]), torch.ones(2, 1), 2, counted=torch.tensor([True, False]))
    assert adv.squeeze(1).tolist() == [0.0, 0.0]


def test_quality_share_of_within_group_variance():
    rewards = torch.tensor([0.2, 0.3, 0.0, -1.0])
    share = quality_variance_share(rewards, torch.tensor([True, True, False, False]), 4)
    assert share == pytest.approx(0.005 / 1.0675, rel=1e-3)
    assert quality_variance_share(rewards, torch.ones(4, dtype=torch.bool), 4) == pytest.approx(1.0)


class FixedEnsemble:
    """(mean, std) per flow text, as the surrogate ensemble's `predict` returns them."""

    def __init__(self, scores: dict[str, tuple[float, float]]):
        self.scores = scores

    def predict(self, prompts, flows, progress=False):
        return torch.tensor([self.scores[f][0] for f in flows]), torch.tensor([self.scores[f][1] for f in flows])


def test_sequence_rewards_use_the_quality_groups_too():
    # cpu profile: one reward per flow (no prefix models); the quality groups must apply there as well (they did not:
    # trl's statistics let the zeroed-uncertain and invalid flows set each group's scale)
    cfg = RewardConfig(source="tiny", tau=0.08, uncertain_value=0.0, invalid_reward=-1.0)
    ensemble = FixedEnsemble({"a": (0.70, 0.01), "b": (0.80, 0.01), "c": (0.90, 0.50)})
    shaped = ShapedReward(ensemble, None, cfg, validator=lambda t: t != "bad")
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 1, 1], [1, 0, 0]])
    adv, logged = shaped_advantages(shaped, ["p"] * 4, ["a", "b", "c", "bad"], mask, 4)
    assert adv[:, 0].tolist() == pytest.approx([-0.7071, 0.7071, 0.0, -1.0], abs=1e-3)
    assert (adv[mask == 0] == 0).all() and torch.equal(adv[0], adv[0, :1].expand(3))
    assert 0.0 < logged["quality_variance_share"] < 0.01 and "token_reward_mean" not in logged
    plain, _ = shaped_advantages(shaped, ["p"] * 4, ["a", "b", "c", "bad"], mask, 4, quality_groups=False)
    assert float(plain[1, 0] - plain[0, 0]) < 0.2  # the paper's statistics: a and b look alike beside -1 and 0
