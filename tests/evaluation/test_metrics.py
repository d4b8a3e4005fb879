"""Win-rate math: ties count half, w(a,b) + w(b,a) = 1, the Wald interval, and shape errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flowrl.evaluation.metrics import ScoreShapeError, wald_se, win_rate, win_rate_matrix


def test_ties_count_half():
    assert win_rate([1, 1, 1, 1], [0, 1, 1, 2]) == pytest.approx((1 + 0.5 + 0.5 + 0) / 4)
    assert win_rate([0.3, 0.3], [0.3, 0.3]) == 0.5


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matrix_is_antisymmetric(seed):
    rng = np.random.default_rng(seed)
    scores = {name: rng.integers(0, 3, size=25).astype(float) for name in ("a", "b", "c")}  # small ints: many ties
    rates, se = win_rate_matrix(scores)
    for a in scores:
        assert a not in rates[a]
        for b in scores:
            if a != b:
                assert rates[a][b] + rates[b][a] == pytest.approx(1.0)
                assert se[a][b] == pytest.approx(math.sqrt(rates[a][b] * (1 - rates[a][b]) / 25))


def test_hand_made_matrix():
    rates, se = win_rate_matrix({"x": [3.0, 2.0, 1.0, 0.0], "y": [1.0, 2.0, 0.0, 5.0]})
    assert rates["x"]["y"] == pytest.approx((1 + 0.5 + 1 + 0) / 4)
    assert rates["y"]["x"] == pytest.approx(0.375)
    assert se["x"]["y"] == pytest.approx(math.sqrt(0.625 * 0.375 / 4))


def test_wald_interval():
    assert wald_se(0.5, 100) == pytest.approx(0.05)
    assert wald_se(0.0, 10) == 0.0
    with pytest.raises(ScoreShapeError):
        wald_se(0.5, 0)


def test_unequal_prompt_counts_are_refused():
    with pytest.raises(ScoreShapeError, match="different numbers of prompts"):
        win_rate_matrix({"a": [1.0, 2.0], "b": [1.0]})
    with pytest.raises(ScoreShapeError, match="non-empty"):
        win_rate([], [])
