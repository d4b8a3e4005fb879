"""Pairwise win rates between methods on the same prompts (paper Tables 1 and 3), with 1-sigma Wald intervals."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from flowrl.errors import FlowRLError


class ScoreShapeError(FlowRLError):
    """Methods were scored on different numbers of prompts, so they cannot be compared pairwise."""


def win_rate(a: Sequence[float], b: Sequence[float]) -> float:
    """Share of prompts where `a` scores higher than `b`; ties count half.

    >>> win_rate([1.0, 0.5, 0.2], [0.0, 0.5, 0.9])
    0.5
    """
    a_arr, b_arr = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a_arr.shape != b_arr.shape or a_arr.ndim != 1 or a_arr.size == 0:
        raise ScoreShapeError(f"win rate needs two equal, non-empty score lists (one per prompt); got {a_arr.shape} and {b_arr.shape}")
    return float(np.mean((a_arr > b_arr) + 0.5 * (a_arr == b_arr)))


def wald_se(p: float, n: int) -> float:
    """1-sigma Wald interval half-width sqrt(p (1 - p) / n) of a rate `p` measured on `n` prompts.

    >>> wald_se(0.5, 100)
    0.05
    """
    if n <= 0:
        raise ScoreShapeError("a Wald interval needs at least one prompt")
    return math.sqrt(p * (1.0 - p) / n)


def win_rate_matrix(scores: Mapping[str, Sequence[float]]) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """Win rate of every method against every other, and its Wald interval.

    Args:
        scores: method -> one score per prompt, the same prompts in the same order for every method.
    Returns:
        (rates, se): rates[a][b] = win_rate(scores[a], scores[b]) for a != b, se[a][b] its half-width.
    """
    lengths = {name: len(values) for name, values in scores.items()}
    if len(set(lengths.values())) > 1:
        raise ScoreShapeError(f"methods were scored on different numbers of prompts: {lengths}; score them on the same prompts")
    rates: dict[str, dict[str, float]] = {name: {} for name in scores}
    se: dict[str, dict[str, float]] = {name: {} for name in scores}
    for a, a_scores in scores.items():
        for b, b_scores in scores.items():
            if a != b:
                rates[a][b] = win_rate(a_scores, b_scores)
                se[a][b] = wald_se(rates[a][b], len(a_scores))
    return rates, se
