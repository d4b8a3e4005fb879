"""Prefixes are cut at component (line) boundaries and keep the full flow's score."""

from __future__ import annotations

import random

from flowrl.reward.prefix import all_prefixes, component_spans, prefix_rows, random_prefixes
from tests.reward.conftest import synthetic_flow

FLOW = synthetic_flow("anime", "euler", 20)


def test_spans_cover_each_line():
    spans = component_spans(FLOW)
    assert [FLOW[s:e] for s, e in spans] == FLOW.splitlines(keepends=True)


def test_all_prefixes_end_at_component_boundaries():
    prefixes = all_prefixes(FLOW)  # an encoded flow has no trailing line break
    n = len(FLOW.splitlines())
    assert len(prefixes) == n == 4 and prefixes[-1] == FLOW
    assert all(p.endswith("\n") and FLOW.startswith(p) for p in prefixes[:-1])
    assert [p.count("\n") for p in prefixes] == [1, 2, 3, 3]


def test_random_prefixes_are_real_prefixes():
    got = random_prefixes(FLOW, 20, random.Random(0))
    assert len(got) == 20 and set(got) <= set(all_prefixes(FLOW)) and len(set(got)) > 1


def test_prefix_rows_keep_full_score():
    rows = [{"prompt": "p", "flow": FLOW, "score": 0.7}, {"prompt": "q", "flow": FLOW, "score": 0.1}]
    out = prefix_rows(rows, k=4, seed=0)
    assert len(out) == 8
    assert [r["score"] for r in out] == [0.7] * 4 + [0.1] * 4
    assert all(FLOW.startswith(r["flow"]) for r in out)
