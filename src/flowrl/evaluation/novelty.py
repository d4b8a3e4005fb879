"""Novelty of generated flows against the training flows (paper Table 2).

All measures work on the policy view of a flow (`flowrl.encoding.policy_view.policy_text`), which is
canonical and seedless: two graphs that are the same flow, or differ only in their sampler seeds,
negative-prompt text or output prefix, have the same text, so "exists in data" is text equality.

* unique_ratio: distinct texts / generated flows.
* exists_in_data: share of generated flows whose text is one of the training texts.
* nld: mean, over generated flows, of the normalized Levenshtein distance (rapidfuzz,
  distance / length of the longer string) to the nearest training flow.
* nld_ratio: nld divided by the mean NLD between two training flows, estimated on `n_pairs`
  random pairs of distinct training flows (seeded), i.e. what fraction of the spread of the
  training data a method's flows keep away from it (0 = copies).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

from flowrl.errors import FlowRLError


class NoveltyInputError(FlowRLError):
    """Novelty needs at least one generated flow and two training flows."""


def nearest_nld(texts: Sequence[str], training: Sequence[str]) -> np.ndarray:
    """Normalized Levenshtein distance from each text to its nearest training text, shape (len(texts),).

    rapidfuzz's extractOne tightens its cutoff as it finds closer flows, ~20x faster than a full
    distance matrix; each distinct text is searched once.
    """
    if not training:
        raise NoveltyInputError("no training flows to compare with; check data/encode/flows.jsonl")
    nearest = {
        text: process.extractOne(text, training, scorer=Levenshtein.normalized_distance)[1]
        for text in dict.fromkeys(texts)
    }
    return np.array([nearest[text] for text in texts], dtype=float)


def mean_pairwise_nld(training: Sequence[str], n_pairs: int, seed: int = 0) -> float:
    """Mean normalized Levenshtein distance between `n_pairs` random pairs of distinct training flows."""
    if len(training) < 2:
        raise NoveltyInputError(f"need at least two training flows for the NLD normalizer, got {len(training)}")
    rng = random.Random(seed)
    pairs = [rng.sample(range(len(training)), 2) for _ in range(n_pairs)]
    return float(np.mean([Levenshtein.normalized_distance(training[i], training[j]) for i, j in pairs]))


def novelty_metrics(generated: Sequence[str], training: Sequence[str], training_nld: float) -> dict[str, float]:
    """unique_ratio, exists_in_data, nld and nld_ratio of `generated` (valid flows only) against `training`.

    Args:
        generated: encoded texts of a method's valid flows (one per prompt; invalid ones left out).
        training: encoded texts of the training flows.
        training_nld: mean NLD between training flows (`mean_pairwise_nld`).
    Returns:
        the four measures; NaN for all of them when `generated` is empty.
    """
    if not generated:
        return {
            "unique_ratio": float("nan"),
            "exists_in_data": float("nan"),
            "nld": float("nan"),
            "nld_ratio": float("nan"),
        }
    known = set(training)
    nld = float(nearest_nld(generated, training).mean())
    return {
        "unique_ratio": len(set(generated)) / len(generated),
        "exists_in_data": sum(text in known for text in generated) / len(generated),
        "nld": nld,
        "nld_ratio": nld / training_nld if training_nld > 0 else float("nan"),
    }
