"""Randomly corrupted workflows give a FlowRLError or a result, never another exception."""

from __future__ import annotations

import copy
import json
import random

from flowrl.comfy.graph import parse_workflow
from flowrl.comfy.validate import validate_graph
from flowrl.errors import FlowRLError

JUNK = [
    None,
    1,
    -1,
    1.5,
    "x",
    [],
    {},
    [1],
    ["1", 0],
    ["1", -3],
    [None, None],
    {"a": 1},
    True,
    10**30,
    float("inf"),
    "\u732b\x00",
]


def _mutate(obj, rng: random.Random, depth: int = 0) -> None:
    """Replace one value somewhere inside `obj` by junk."""
    if isinstance(obj, dict) and obj:
        key = rng.choice(list(obj))
        if rng.random() < 0.3 or depth > 4:
            obj[key] = rng.choice(JUNK)
        else:
            _mutate(obj[key], rng, depth + 1)
    elif isinstance(obj, list) and obj:
        i = rng.randrange(len(obj))
        if rng.random() < 0.3 or depth > 4:
            obj[i] = rng.choice(JUNK)
        else:
            _mutate(obj[i], rng, depth + 1)


def test_corrupted_files_never_crash(shared_workflows):
    rng = random.Random(0)
    files = (
        sorted((shared_workflows / "ui").glob("*.json"))[::4] + sorted((shared_workflows / "api").glob("*.json"))[::4]
    )
    docs = [json.loads(f.read_text()) for f in files]
    outcomes = {"error": 0, "graph": 0}
    for _ in range(600):
        doc = copy.deepcopy(rng.choice(docs))
        for _ in range(rng.randint(1, 3)):
            _mutate(doc, rng)
        try:
            graph = parse_workflow(doc, "fuzz.json")
        except FlowRLError as exc:
            assert "fuzz.json" in str(exc)
            outcomes["error"] += 1
            continue
        validate_graph(graph)
        outcomes["graph"] += 1
    assert outcomes["error"] > 0 and outcomes["graph"] > 0


def test_validate_tolerates_odd_graphs_passed_directly():
    odd = {
        "1": {"class_type": "VAEDecode", "inputs": {"samples": ["2", 0], "vae": ["3", 0]}},
        "2": {"class_type": ["not", "a", "string"], "inputs": {}},
        "3": "junk",
    }
    messages = [str(p) for p in validate_graph(odd)]
    assert any("node 2" in m and "class_type" in m for m in messages)
    assert any("missing node '3'" in m for m in messages)
