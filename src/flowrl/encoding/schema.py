"""Schema inference over a corpus of API graphs: class types, their fields and value vocabularies."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowrl.comfy.graph import is_link
from flowrl.errors import FlowRLError
from flowrl.io import read_json, write_json

SCHEMA_VERSION = 1
MAX_VOCAB = 200  # distinct string values kept per field; prompts and file names would grow without bound


class SchemaError(FlowRLError):
    """A schema file is missing, malformed or of another version."""


def _type_name(value: Any) -> str:
    if is_link(value):
        return "link"
    if isinstance(value, bool):
        return "bool"
    return {int: "int", float: "float", str: "str", list: "list", dict: "dict"}.get(
        type(value), "null" if value is None else type(value).__name__
    )


@dataclass
class FieldStats:
    """What one input of one class type looked like across the corpus."""

    kind: str = "widget"  # 'link' when every value seen was a link, 'widget' otherwise
    count: int = 0
    types: dict[str, int] = field(default_factory=dict)  # value type name -> count
    vocab: dict[str, int] = field(default_factory=dict)  # string value -> count (the MAX_VOCAB most common)
    vocab_truncated: bool = False  # True when more distinct strings were seen than kept
    output_indices: list[int] = field(default_factory=list)  # for links: source output indices used
    min: float | None = None  # smallest number seen (ints and floats; None when no number was seen)
    max: float | None = None  # largest number seen


@dataclass
class ClassStats:
    """One class type: how often it was seen and its fields."""

    count: int = 0
    fields: dict[str, FieldStats] = field(default_factory=dict)
    max_per_graph: int = 0  # most nodes of this class in one graph (0: unknown, no cap)


@dataclass
class Schema:
    """The inferred schema: class type -> ClassStats, plus the number of graphs seen."""

    classes: dict[str, ClassStats] = field(default_factory=dict)
    n_graphs: int = 0
    max_nodes: int = 0  # nodes in the largest graph (sizes the '@k' reference tokens)
    max_vocab: int = MAX_VOCAB
    version: int = SCHEMA_VERSION

    def vocabulary(self, field_name: str) -> list[str]:
        """Every string value seen for inputs called `field_name`, over all class types, sorted."""
        return sorted(
            {v for c in self.classes.values() for n, f in c.fields.items() if n == field_name for v in f.vocab}
        )

    def to_dict(self) -> dict:
        return {
            "version": self.version,
            "n_graphs": self.n_graphs,
            "max_nodes": self.max_nodes,
            "max_vocab": self.max_vocab,
            "classes": {
                ct: {
                    "count": c.count,
                    "max_per_graph": c.max_per_graph,
                    "fields": {n: vars(f) for n, f in c.fields.items()},
                }
                for ct, c in sorted(self.classes.items())
            },
        }

    @classmethod
    def from_dict(cls, data: dict, source: str = "<schema>") -> Schema:
        if not isinstance(data, dict) or data.get("version") != SCHEMA_VERSION:
            found = data.get("version") if isinstance(data, dict) else type(data).__name__
            raise SchemaError(
                f"{source}: schema version {found!r}, expected {SCHEMA_VERSION}; rerun the encode stage (dvc repro encode)"
            )
        try:
            classes = {
                ct: ClassStats(
                    c["count"], {n: FieldStats(**f) for n, f in c["fields"].items()}, c.get("max_per_graph", 0)
                )
                for ct, c in data["classes"].items()
            }
            return cls(classes, data["n_graphs"], data["max_nodes"], data["max_vocab"], data["version"])
        except (KeyError, TypeError, AttributeError) as exc:
            raise SchemaError(
                f"{source}: malformed schema ({exc!r}); rerun the encode stage (dvc repro encode)"
            ) from None

    def save(self, path: str | Path) -> Path:
        """Write the schema as JSON (atomically)."""
        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> Schema:
        """Read a schema written by `save`; raises SchemaError naming the file when it is not one."""
        try:
            data = read_json(path)
        except FlowRLError as exc:
            raise SchemaError(f"{exc}; run the encode stage (dvc repro encode)") from None
        return cls.from_dict(data, str(path))


def infer_schema(graphs: Iterable[dict], max_vocab: int = MAX_VOCAB) -> Schema:
    """Infer class types, fields (link or widget, value types, string vocabularies) and output indices.

    Args:
        graphs: API graphs (node id -> {"class_type", "inputs"}).
        max_vocab: most common string values kept per field (counts kept for them).
    """
    classes: dict[str, ClassStats] = {}
    vocab: dict[tuple[str, str], Counter] = {}
    outs: dict[tuple[str, str], set[int]] = {}
    n_graphs = max_nodes = 0
    for graph in graphs:
        n_graphs += 1
        max_nodes = max(max_nodes, len(graph))
        for ct, n in Counter(node["class_type"] for node in graph.values()).items():
            stats = classes.setdefault(ct, ClassStats())
            stats.max_per_graph = max(stats.max_per_graph, n)
        for node in graph.values():
            stats = classes.setdefault(node["class_type"], ClassStats())
            stats.count += 1
            for name, value in node.get("inputs", {}).items():
                f = stats.fields.setdefault(name, FieldStats(kind="link"))
                f.count += 1
                t = _type_name(value)
                f.types[t] = f.types.get(t, 0) + 1
                key = (node["class_type"], name)
                if t == "link":
                    outs.setdefault(key, set()).add(value[1])
                else:
                    f.kind = "widget"
                    if t == "str":
                        vocab.setdefault(key, Counter())[value] += 1
                    elif t in ("int", "float") and math.isfinite(value):
                        f.min = value if f.min is None else min(f.min, value)
                        f.max = value if f.max is None else max(f.max, value)
    for ct, stats in classes.items():
        for name, f in stats.fields.items():
            counter = vocab.get((ct, name), Counter())
            # most common first, ties by value: deterministic whatever the corpus order
            ranked = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
            f.vocab = dict(ranked[:max_vocab])
            f.vocab_truncated = len(ranked) > max_vocab
            f.output_indices = sorted(outs.get((ct, name), ()))
            f.types = dict(sorted(f.types.items()))
        stats.fields = dict(sorted(stats.fields.items()))
    return Schema(dict(sorted(classes.items())), n_graphs, max_nodes, max_vocab)
