"""The shipped catalog of ComfyUI node definitions (node_catalog.json, built by scripts/build_catalog.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

CATALOG_PATH = Path(__file__).with_name("node_catalog.json")
ANY_TYPE = "*"


@dataclass(frozen=True)
class InputSpec:
    """One node input: a widget value or a link of a given type."""

    name: str
    kind: str  # 'widget' | 'link'
    type: str
    required: bool = True
    choices: list | None = None
    min: float | None = None
    max: float | None = None
    default: Any = None


@dataclass(frozen=True)
class NodeSpec:
    """A class type: its inputs, output types and the UI widget order."""

    class_type: str
    inputs: dict[str, InputSpec]
    outputs: list[str]
    is_output_node: bool = False
    widgets: list[str] = field(default_factory=list)
    widget_variants: list[list[str]] = field(default_factory=list)
    control_after_generate: list[str] = field(default_factory=list)
    ui_only_widgets: list[str] = field(default_factory=list)
    virtual: bool = False


class Catalog:
    """Node definitions by class type."""

    def __init__(self, specs: dict[str, NodeSpec]):
        self.specs = specs

    def get(self, class_type: str) -> NodeSpec | None:
        """The spec of `class_type`, or None when unknown (or not a string)."""
        return self.specs.get(class_type) if isinstance(class_type, str) else None

    def __contains__(self, class_type: str) -> bool:
        return class_type in self.specs

    def __len__(self) -> int:
        return len(self.specs)

    @classmethod
    def from_dict(cls, raw: dict) -> Catalog:
        specs = {}
        for ct, s in raw.items():
            inputs = {n: InputSpec(name=n, **i) for n, i in s["inputs"].items()}
            specs[ct] = NodeSpec(
                class_type=ct,
                inputs=inputs,
                outputs=s["outputs"],
                is_output_node=s["is_output_node"],
                widgets=s["widgets"],
                widget_variants=s["widget_variants"],
                control_after_generate=s["control_after_generate"],
                ui_only_widgets=s["ui_only_widgets"],
                virtual=s["virtual"],
            )
        return cls(specs)


@lru_cache(maxsize=1)
def load_catalog() -> Catalog:
    """Read the shipped node catalog once."""
    return Catalog.from_dict(json.loads(CATALOG_PATH.read_text(encoding="utf-8")))
