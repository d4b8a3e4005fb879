"""Flows unlike the training data, for checking that the ensemble's σ rises where it should.

Three kinds, each made from a held-out flow and re-encoded with `encode_flow`:
- `numbers`: every numeric setting of one node multiplied by 8 or 0.05 (out of range);
- `unknown`: a component name (checkpoint, LoRA, sampler, upscaler, ...) replaced by a name no
  flow has;
- `mix`: each component name swapped for the same input's value in another random flow (an
  unusual combination, e.g. one family's checkpoint with another's LoRA, made of known parts).
"""

from __future__ import annotations

import copy
import random
from collections.abc import Sequence

from flowrl.encoding.codec import decode_flow, encode_flow
from flowrl.errors import FlowRLError
from flowrl.reward.features import MODEL_FILES, SKIP_INPUTS

KINDS = ("numbers", "unknown", "mix")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _names(graph: dict) -> list[tuple[str, str]]:
    """(node id, input) of every file-like component name (values ending in a model-file suffix)."""
    return [
        (nid, name)
        for nid, node in graph.items()
        for name, v in node["inputs"].items()
        if isinstance(v, str) and v.endswith(MODEL_FILES)
    ]


def perturb_numbers(graph: dict, rng: random.Random) -> dict:
    g = copy.deepcopy(graph)
    nodes = [
        nid for nid, node in g.items() if any(_is_number(v) and k not in SKIP_INPUTS for k, v in node["inputs"].items())
    ]
    if nodes:
        node, factor = g[rng.choice(nodes)], rng.choice((8.0, 0.05))
        for k, v in node["inputs"].items():
            if _is_number(v) and k not in SKIP_INPUTS:
                node["inputs"][k] = round(v * factor) if isinstance(v, int) else round(v * factor, 4)
    return g


def perturb_unknown(graph: dict, rng: random.Random) -> dict:
    g = copy.deepcopy(graph)
    slots = _names(g) or [
        (nid, k) for nid, node in g.items() for k, v in node["inputs"].items() if k in ("sampler_name", "scheduler")
    ]
    if slots:
        nid, name = rng.choice(slots)
        g[nid]["inputs"][name] = f"unseen_component_{rng.randrange(10**6)}.safetensors"
    return g


def perturb_mix(graph: dict, donors: Sequence[dict], rng: random.Random) -> dict:
    g = copy.deepcopy(graph)
    for nid, name in _names(g):
        donor = rng.choice(donors) if donors else None
        values = [
            node["inputs"][n] for d_nid, n in (_names(donor) if donor else []) for node in [donor[d_nid]] if n == name
        ]
        if values:
            g[nid]["inputs"][name] = rng.choice(values)
    return g


def perturb_flows(flows: Sequence[str], n: int, seed: int) -> list[tuple[str, str]]:
    """`n` (kind, perturbed encoded flow) pairs, kinds in turn, from randomly drawn `flows`.

    Flows that do not decode are skipped; `mix` takes its donors from the other flows.
    """
    rng = random.Random(seed)
    graphs = []
    for text in flows:
        try:
            graphs.append(decode_flow(text))
        except FlowRLError:
            continue
    if not graphs:
        return []
    out = []
    for i in range(n):
        kind, graph = KINDS[i % len(KINDS)], rng.choice(graphs)
        if kind == "numbers":
            new = perturb_numbers(graph, rng)
        elif kind == "unknown":
            new = perturb_unknown(graph, rng)
        else:
            new = perturb_mix(graph, rng.sample(graphs, min(2, len(graphs))), rng)
        out.append((kind, encode_flow(new)))
    return out
