"""Graph equality up to node renumbering, by iterated canonical node signatures (Weisfeiler-Lehman style)."""

from __future__ import annotations

import json
from collections import Counter

from flowrl.comfy.graph import is_link

# API-only or UI-only inputs that older/newer exports add without changing the graph.
IGNORED_INPUTS = {"upload", "choose file to upload", "video-preview"}


def _norm(value):
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def signatures(graph: dict, rounds: int = 6) -> Counter:
    """Multiset of node signatures that encode class type, widget values and the linked neighbourhood."""
    labels = {}
    for nid, node in graph.items():
        widgets = sorted(
            (k, json.dumps(_norm(v), sort_keys=True))
            for k, v in node["inputs"].items()
            if not is_link(v) and k not in IGNORED_INPUTS
        )
        labels[nid] = json.dumps([node["class_type"], widgets])
    for _ in range(rounds):
        labels = {
            nid: json.dumps(
                [
                    labels[nid],
                    sorted((k, labels.get(str(v[0]), "?"), v[1]) for k, v in node["inputs"].items() if is_link(v)),
                ]
            )
            for nid, node in graph.items()
        }
    return Counter(labels.values())


def same_graph(a: dict, b: dict) -> bool:
    """True when a and b are equal up to node ids."""
    return len(a) == len(b) and signatures(a) == signatures(b)


def diff(a: dict, b: dict) -> str:
    """Short human description of where two graphs differ (first node-level differences)."""

    def first(g):
        return Counter(
            json.dumps(
                [
                    n["class_type"],
                    sorted(
                        (k, json.dumps(_norm(v)))
                        for k, v in n["inputs"].items()
                        if not is_link(v) and k not in IGNORED_INPUTS
                    ),
                ]
            )
            for n in g.values()
        )

    ca, cb = first(a), first(b)
    return f"only converted: {list((ca - cb).elements())[:3]}; only API: {list((cb - ca).elements())[:3]}"
