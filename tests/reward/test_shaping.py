"""Uncertainty cutoff, and per-token rewards mapped to the right components (hand-made offsets)."""

from __future__ import annotations

import doctest

import pytest
import torch

import flowrl.reward.model
import flowrl.reward.prefix
import flowrl.reward.shaping
from flowrl.params.model import RewardConfig
from flowrl.reward.shaping import ShapedReward, token_components, uncertainty_reward

FLOW = "n1 Ckpt a\nn2 KSampler b\nn3 Save\n"  # components at chars [0,10) [10,24) [24,32)
# tokens: "n1", " Ckpt a\n", "n2 KSampler", " b\n", "n3", " Save\n", then an EOS with empty offsets
OFFSETS = [(0, 2), (2, 10), (10, 21), (21, 24), (24, 26), (26, 32), (0, 0)]


class FakeEnsemble:
    """Scores a flow by its number of lines (prefix model) or a fixed (mean, std) per call (full model)."""

    def __init__(self, mean=None, std=None):
        self.mean, self.std, self.calls = mean, std, []

    def predict(self, prompts, flows, progress=False):
        self.calls.append(list(flows))
        if self.mean is not None:
            return torch.tensor(self.mean[: len(flows)]), torch.tensor(self.std[: len(flows)])
        return torch.tensor([10.0 * f.count("\n") for f in flows]), torch.zeros(len(flows))


def shaped(component_reward=True, mean=(0.5, 0.5), std=(0.01, 0.01), valid=lambda f: "bad" not in f):
    cfg = RewardConfig(
        source="tiny", component_reward=component_reward, tau=0.08, uncertain_value=0.0, invalid_reward=-1.0
    )
    return ShapedReward(FakeEnsemble(list(mean), list(std)), FakeEnsemble(), cfg, validator=valid)


@pytest.mark.parametrize("module", [flowrl.reward.shaping, flowrl.reward.prefix, flowrl.reward.model])
def test_doctests(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


def test_tau_cutoff_is_vectorised_and_strict():
    mean = torch.tensor([0.3, 0.4, 0.5, 0.6])
    std = torch.tensor([0.0, 0.08, 0.0801, 1.0])
    assert uncertainty_reward(mean, std, tau=0.08, uncertain_value=-2.0).tolist() == pytest.approx(
        [0.3, 0.4, -2.0, -2.0]
    )


def test_tokens_map_to_the_line_that_holds_them():
    from flowrl.reward.prefix import component_spans

    assert token_components(OFFSETS, component_spans(FLOW)).tolist() == [0, 0, 1, 1, 2, 2, 2]


def test_per_token_reward_adds_prefix_score_of_the_token_component():
    reward = shaped()
    (tokens,) = reward.per_token_rewards(["p"], [FLOW], [OFFSETS])
    # R_full 0.5 + prefix score 10 * (lines in the prefix ending at the token's component)
    assert tokens.tolist() == pytest.approx([10.5, 10.5, 20.5, 20.5, 30.5, 30.5, 30.5])


def test_group_uses_one_prefix_pass_over_all_prefixes():
    reward = shaped()
    short = "n1 Ckpt a\nn2 Save\n"
    out = reward.per_token_rewards(["p", "q"], [FLOW, short], [OFFSETS, [(0, 9), (10, 17)]])
    assert len(reward.prefix.calls) == 1 and len(reward.prefix.calls[0]) == 3 + 2
    assert out[1].tolist() == pytest.approx([10.5, 20.5])


def test_component_reward_off_gives_every_token_the_full_reward():
    reward = shaped(component_reward=False)
    (tokens,) = reward.per_token_rewards(["p"], [FLOW], [torch.tensor(OFFSETS)])
    assert tokens.tolist() == pytest.approx([0.5] * 7) and reward.prefix.calls == []


def test_uncertain_flow_gets_uncertain_value_plus_prefix():
    reward = shaped(std=(0.5,))
    (tokens,) = reward.per_token_rewards(["p"], [FLOW], [OFFSETS[:2]])
    assert tokens.tolist() == pytest.approx([10.0, 10.0])


def test_invalid_flow_gets_lowest_reward_on_every_token():
    reward = shaped(mean=(0.5,), std=(0.0,))
    out = reward.per_token_rewards(["p", "q"], ["bad flow", FLOW], [[(0, 3), (3, 8)], OFFSETS[:1]])
    assert out[0].tolist() == [-1.0, -1.0]
    assert out[1].tolist() == pytest.approx([10.5])
    assert reward(["p", "q"], ["bad flow", FLOW]) == pytest.approx([-1.0, 0.5])
    assert reward.full.calls[-1] == [FLOW]  # invalid flows never reach the surrogate
