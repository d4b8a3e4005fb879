"""Validate an API graph against the node catalog: one report listing every problem."""

from __future__ import annotations

import math
from dataclasses import dataclass
from graphlib import CycleError, TopologicalSorter

from flowrl.comfy.catalog import ANY_TYPE, Catalog, InputSpec, load_catalog
from flowrl.comfy.graph import is_link
from flowrl.errors import FlowRLError

MAX_REPORT_LINES = 30
UNKNOWN_CLASS = "unknown class type"


class GraphValidationError(FlowRLError):
    """The graph has problems; the message lists them."""

    def __init__(self, message: str, problems: list[Problem]):
        super().__init__(message)
        self.problems = problems


@dataclass(frozen=True)
class Problem:
    """One defect: where (node id, class type, input) and what."""

    node_id: str | None
    class_type: str | None
    input: str | None
    message: str

    def __str__(self) -> str:
        where = "graph" if self.node_id is None else f"node {self.node_id} ({self.class_type})"
        return f"{where}{'' if self.input is None else f' input {self.input!r}'}: {self.message}"


def types_compatible(expected: str, actual: str) -> bool:
    if ANY_TYPE in (expected, actual):
        return True
    return bool(set(expected.split(",")) & set(actual.split(",")))


def check_value(spec: InputSpec, value: object) -> str | None:
    """Why a widget value is not allowed, or None."""
    t = spec.type
    if t == "INT" and (isinstance(value, bool) or not isinstance(value, int)):
        if not (isinstance(value, float) and value.is_integer()):
            return f"expected an integer, got {value!r:.60}"
    if t == "FLOAT" and (isinstance(value, bool) or not isinstance(value, (int, float))):
        return f"expected a number, got {value!r:.60}"
    if t == "FLOAT" and isinstance(value, float) and not math.isfinite(value):
        return f"expected a finite number, got {value!r}"
    if t == "BOOLEAN" and not isinstance(value, bool):
        return f"expected true/false, got {value!r:.60}"
    if t in ("STRING", "COMBO") and not isinstance(value, str):
        return f"expected a string, got {value!r:.60}"
    if t == "COMBO" and spec.choices is not None and value not in spec.choices:
        return f"{value!r:.60} is not one of {', '.join(map(str, spec.choices[:12]))}" + (
            ", ..." if len(spec.choices) > 12 else ""
        )
    if t in ("INT", "FLOAT") and isinstance(value, (int, float)) and not isinstance(value, bool):
        if spec.min is not None and value < spec.min:
            return f"{value} is below the minimum {spec.min}"
        if spec.max is not None and value > spec.max:
            return f"{value} is above the maximum {spec.max}"
    return None


def validate_graph(graph: dict, catalog: Catalog | None = None) -> list[Problem]:
    """Return every problem in an API graph (empty list = valid)."""
    catalog = catalog or load_catalog()
    problems: list[Problem] = []
    if not isinstance(graph, dict) or not graph:
        return [Problem(None, None, None, "the graph has no nodes")]
    edges: dict[str, set[str]] = {}
    has_output = False
    for node_id, node in graph.items():
        ct = node.get("class_type") if isinstance(node, dict) else None
        if not isinstance(ct, str):
            problems.append(Problem(str(node_id), None, None, "node has no string 'class_type'"))
            continue
        inputs = node.get("inputs", {})
        if not isinstance(inputs, dict):
            problems.append(Problem(str(node_id), ct, None, "'inputs' must be an object"))
            continue
        edges[str(node_id)] = set()
        spec = catalog.get(ct)
        for name, value in inputs.items():
            if not is_link(value):
                continue
            src_id, slot = str(value[0]), value[1]
            src = graph.get(src_id)
            if not isinstance(src, dict):
                problems.append(Problem(node_id, ct, name, f"links to missing node {src_id!r}"))
                continue
            edges[str(node_id)].add(src_id)
            src_spec = catalog.get(src.get("class_type"))
            if slot < 0 or (src_spec is not None and slot >= len(src_spec.outputs)):
                problems.append(
                    Problem(
                        node_id,
                        ct,
                        name,
                        f"links to output {slot} of node {src_id} "
                        f"({src.get('class_type')}), which has {len(src_spec.outputs) if src_spec else '?'} outputs",
                    )
                )
                continue
            want = spec.inputs.get(name) if spec else None
            if src_spec is not None and want is not None and want.kind == "link":
                got = src_spec.outputs[slot]
                if not types_compatible(want.type, got):
                    problems.append(
                        Problem(
                            node_id,
                            ct,
                            name,
                            f"expects {want.type} but node {src_id} ({src['class_type']}) output {slot} gives {got}",
                        )
                    )
        if spec is None:
            problems.append(Problem(node_id, ct, None, f"{UNKNOWN_CLASS} {ct!r} (not in the node catalog)"))
            continue
        has_output = has_output or spec.is_output_node
        for name, ispec in spec.inputs.items():
            if name not in inputs:
                if ispec.required:
                    problems.append(Problem(node_id, ct, name, f"missing required {ispec.kind} input ({ispec.type})"))
                continue
            value = inputs[name]
            if is_link(value):
                continue
            if ispec.kind == "link":
                problems.append(
                    Problem(
                        node_id, ct, name, f"expects a link from a {ispec.type} output, got the value {value!r:.60}"
                    )
                )
                continue
            why = check_value(ispec, value)
            if why:
                problems.append(Problem(node_id, ct, name, why))
    try:
        TopologicalSorter(edges).prepare()
    except CycleError as exc:
        cycle = exc.args[1]
        problems.append(Problem(None, None, None, f"cycle through nodes {' -> '.join(map(str, cycle))}"))
    if not has_output and not any(p.message.startswith(UNKNOWN_CLASS) for p in problems):
        problems.append(Problem(None, None, None, "no output node (SaveImage, PreviewImage, ...): nothing would run"))
    return problems


def format_problems(problems: list[Problem], source: str = "<graph>") -> str:
    """One-screen report: at most MAX_REPORT_LINES problems, then a count of the rest."""
    lines = [f"{source}: {len(problems)} problem(s)"] + [f"  - {p}" for p in problems[:MAX_REPORT_LINES]]
    if len(problems) > MAX_REPORT_LINES:
        lines.append(f"  ... and {len(problems) - MAX_REPORT_LINES} more")
    return "\n".join(lines)


def ensure_valid(graph: dict, source: str = "<graph>") -> None:
    """Raise GraphValidationError listing every problem, if any."""
    problems = validate_graph(graph)
    if problems:
        raise GraphValidationError(format_problems(problems, source), problems)
