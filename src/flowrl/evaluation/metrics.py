"""Pairwise win rates between methods on the same prompts (paper Tables 1 and 3), with 1-sigma Wald and 95% Wilson
intervals; per-prompt means and paired differences."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy.stats import norm

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
        raise ScoreShapeError(
            f"win rate needs two equal, non-empty score lists (one per prompt); got {a_arr.shape} and {b_arr.shape}"
        )
    return float(np.mean((a_arr > b_arr) + 0.5 * (a_arr == b_arr)))


def wald_se(p: float, n: int) -> float:
    """1-sigma Wald interval half-width sqrt(p (1 - p) / n) of a rate `p` measured on `n` prompts.

    >>> wald_se(0.5, 100)
    0.05
    """
    if n <= 0:
        raise ScoreShapeError("a Wald interval needs at least one prompt")
    return math.sqrt(p * (1.0 - p) / n)


def win_rate_matrix(
    scores: Mapping[str, Sequence[float]],
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """Win rate of every method against every other, and its Wald interval.

    Args:
        scores: method -> one score per prompt, the same prompts in the same order for every method.
    Returns:
        (rates, se): rates[a][b] = win_rate(scores[a], scores[b]) for a != b, se[a][b] its half-width.
    """
    lengths = {name: len(values) for name, values in scores.items()}
    if len(set(lengths.values())) > 1:
        raise ScoreShapeError(
            f"methods were scored on different numbers of prompts: {lengths}; score them on the same prompts"
        )
    rates: dict[str, dict[str, float]] = {name: {} for name in scores}
    se: dict[str, dict[str, float]] = {name: {} for name in scores}
    for a, a_scores in scores.items():
        for b, b_scores in scores.items():
            if a != b:
                rates[a][b] = win_rate(a_scores, b_scores)
                se[a][b] = wald_se(rates[a][b], len(a_scores))
    return rates, se


def wilson_interval(p: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a rate `p` measured on `n` prompts (ties counted half make p*n fractional; that is fine).

    >>> [round(x, 4) for x in wilson_interval(0.5, 100)]
    [0.4038, 0.5962]
    """
    if n <= 0:
        raise ScoreShapeError("a Wilson interval needs at least one prompt")
    z = float(norm.ppf(0.5 + confidence / 2))
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def standard_error(values: Sequence[float]) -> float:
    """Standard error of the mean (NaN for fewer than two values).

    >>> standard_error([1.0, 3.0, 5.0])
    1.1547005383792515
    """
    n = len(values)
    if n < 2:
        return float("nan")
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n)


def per_prompt_means(scores: Sequence[float], n_prompts: int) -> list[float]:
    """Mean over the samples of each prompt; `scores` holds `k` rounds of `n_prompts` (round-major).

    >>> per_prompt_means([1.0, 2.0, 3.0, 6.0], 2)
    [2.0, 4.0]
    """
    k = len(scores) // n_prompts
    return [sum(scores[r * n_prompts + i] for r in range(k)) / k for i in range(n_prompts)]


def paired_difference(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
    """Mean of a - b over prompts, its standard error and the ratio (how many SEs the gain is).

    >>> paired_difference([1.0, 2.0, 3.0], [0.0, 1.0, 1.0])
    {'mean': 1.3333333333333333, 'se': 0.3333333333333333, 'n_se': 4.0}
    """
    d = [x - y for x, y in zip(a, b, strict=True)]
    mean = sum(d) / len(d)
    se = standard_error(d)
    return {"mean": mean, "se": se, "n_se": mean / se if se and se > 0 else float("nan")}
