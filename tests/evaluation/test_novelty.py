"""Novelty (paper Table 2) on hand-made encoded texts: copies, near copies, uniqueness, the NLD normalizer."""

from __future__ import annotations

import math

import pytest
from rapidfuzz.distance import Levenshtein

from flowrl.evaluation.novelty import NoveltyInputError, mean_pairwise_nld, nearest_nld, novelty_metrics

TRAIN = [
    "Ckpt a\nKSampler steps=20\nSave",
    "Ckpt b\nKSampler steps=30\nSave",
    "Ckpt c\nUpscale x2\nKSampler steps=25\nSave",
]


def test_exact_copy_exists_and_has_zero_distance():
    m = novelty_metrics([TRAIN[1]], TRAIN, training_nld=0.4)
    assert m["exists_in_data"] == 1.0
    assert m["nld"] == 0.0
    assert m["nld_ratio"] == 0.0
    assert m["unique_ratio"] == 1.0


def test_near_copy_distance_is_to_the_nearest_training_flow():
    text = "Ckpt a\nKSampler steps=21\nSave"
    expected = min(Levenshtein.normalized_distance(text, t) for t in TRAIN)
    assert expected == pytest.approx(1 / len(text))  # one substitution away from TRAIN[0]
    m = novelty_metrics([text], TRAIN, training_nld=0.5)
    assert m["exists_in_data"] == 0.0
    assert m["nld"] == pytest.approx(expected)
    assert m["nld_ratio"] == pytest.approx(expected / 0.5)


def test_unique_ratio_and_exists_share():
    generated = [TRAIN[0], TRAIN[0], "new flow", "new flow", "other"]
    m = novelty_metrics(generated, TRAIN, training_nld=0.5)
    assert m["unique_ratio"] == pytest.approx(3 / 5)
    assert m["exists_in_data"] == pytest.approx(2 / 5)
    assert list(nearest_nld(generated[:2], TRAIN)) == [0.0, 0.0]


def test_mean_pairwise_nld_matches_the_pair_mean():
    two = TRAIN[:2]
    assert mean_pairwise_nld(two, n_pairs=10, seed=3) == pytest.approx(Levenshtein.normalized_distance(*two))
    assert 0 < mean_pairwise_nld(TRAIN, 200, seed=0) < 1
    assert mean_pairwise_nld(TRAIN, 50, seed=1) == mean_pairwise_nld(TRAIN, 50, seed=1)


def test_no_valid_flows_gives_nan_and_bad_training_sets_raise():
    assert all(math.isnan(v) for v in novelty_metrics([], TRAIN, 0.5).values())
    with pytest.raises(NoveltyInputError):
        mean_pairwise_nld(TRAIN[:1], 10)
    with pytest.raises(NoveltyInputError):
        nearest_nld(["x"], [])
