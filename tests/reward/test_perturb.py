"""Perturbed flows for the sigma check: each kind changes what it says, and the result still decodes."""

from __future__ import annotations

from flowrl.encoding.codec import decode_flow
from flowrl.reward.perturb import KINDS, perturb_flows
from tests.reward.conftest import synthetic_flow
from tests.reward.test_features import FLOW


def test_every_kind_is_made_and_decodes():
    flows = [FLOW, synthetic_flow("anime", "euler", 20), synthetic_flow("photo", "ddim", 30)]
    out = perturb_flows(flows, 30, seed=0)
    assert [k for k, _ in out[:3]] == list(KINDS) and len(out) == 30
    for _, text in out:
        decode_flow(text)  # raises if not


def test_kinds_change_numbers_names_or_combinations():
    out = dict(perturb_flows([FLOW], 3, seed=1))
    assert out["numbers"] != FLOW and "unseen_component_" in out["unknown"]
    base = decode_flow(FLOW)
    numbers = decode_flow(out["numbers"])
    changed = [
        (nid, k) for nid, node in numbers.items() for k, v in node["inputs"].items() if v != base[nid]["inputs"][k]
    ]
    assert changed and all(k != "seed" for _, k in changed)


def test_unreadable_flows_are_skipped():
    assert perturb_flows(["not = a flow"], 5, seed=0) == []
