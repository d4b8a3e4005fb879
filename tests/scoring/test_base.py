"""load_scorer: builds scorers by import path and fails early with clear errors."""

from __future__ import annotations

import pytest

from flowrl.errors import FlowRLError
from flowrl.scoring.base import Scorer, ScorerError, as_reward, load_scorer
from flowrl.scoring.simulator import PreferenceSimulator
from tests.scoring.graphs import simple_flow


def test_loads_simulator_with_options():
    scorer = load_scorer("flowrl.scoring.simulator:PreferenceSimulator", {"noise": False, "seed": 4})
    assert isinstance(scorer, PreferenceSimulator) and isinstance(scorer, Scorer)
    assert scorer.noise is False and scorer.seed == 4
    reward = as_reward(scorer)
    assert reward(["a cat"], [simple_flow()]) == scorer.score(["a cat"], [simple_flow()])


@pytest.mark.parametrize(
    "path, options, match",
    [
        ("flowrl.scoring.simulator.PreferenceSimulator", {}, "package.module:ClassName"),
        ("flowrl.no_such_module:Scorer", {}, "cannot import module 'flowrl.no_such_module'"),
        ("flowrl.scoring.simulator:Missing", {}, "has no 'Missing'"),
        ("flowrl.scoring.base:ScorerError", {}, "is not a scorer"),
        ("flowrl.scoring.simulator:PreferenceSimulator", {"temperature": 3}, "do not fit"),
        ("flowrl.scoring.simulator:PreferenceSimulator", {"noise_sd": -0.1}, "noise_sd"),
    ],
)
def test_errors_are_clear(path, options, match):
    with pytest.raises(ScorerError, match=match) as info:
        load_scorer(path, options)
    assert isinstance(info.value, FlowRLError)
