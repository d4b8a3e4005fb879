"""Convert an API ("prompt") graph into a UI ("workflow") JSON that the ComfyUI editor opens, laid out by depth.

ComfyUI can load an API file but cannot turn it back into an editable workflow with positions; this
module does, in the inverse of `flowrl.comfy.ui.ui_to_api`: widget values go in the frontend's
positional order (the node catalog's widget order, plus the UI-only value after a seed), links are
typed, and nodes sit in columns by graph depth (sources left, outputs right) without overlapping.
"""

from __future__ import annotations

import gc
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from flowrl.comfy.catalog import Catalog, NodeSpec, load_catalog
from flowrl.comfy.graph import as_api_graph, is_link
from flowrl.comfy.ui_schema import UIConversionError

CONTROL_VALUE = "fixed"  # keeps the generated seed on queue ("randomize" would replace it)
UI_ONLY_DEFAULTS = {"upload": "image"}  # LoadImage's upload button widget
TITLE_HEIGHT = 30  # the frontend draws a node's title bar above its `pos`
SLOT_HEIGHT = 20
WIDGET_HEIGHT = 24
MULTILINE_HEIGHT = 100
NODE_WIDTH = 315
WIDE_NODE_WIDTH = 400
COLUMN_GAP = 80
ROW_GAP = 40
FORMAT_VERSION = 0.4
DICT_WIDGET_PREFIXES = ("VHS_",)
MAX_UNKNOWN_OUTPUTS = 64  # an output slot past this on a class the catalog lacks is a damaged link, not a node  # Video Helper Suite nodes serialise widgets_values as {name: value}


class UIExportError(UIConversionError):
    """An API graph cannot be exported as a UI workflow (dangling links, cycles, non-integer output slots)."""


@dataclass
class _UINode:
    id: int
    type: str
    inputs: list[dict] = field(default_factory=list)
    outputs: list[dict] = field(default_factory=list)
    widgets_values: list = field(default_factory=list)
    size: tuple[float, float] = (NODE_WIDTH, 0.0)
    depth: int = 0


def _ui_ids(graph: dict) -> dict[str, int]:
    """UI node ids: the API ids when all are distinct positive integers, else 1..n in graph order."""
    ids = list(graph)
    if all(str(i).isdigit() and int(i) > 0 for i in ids) and len({int(i) for i in ids}) == len(ids):
        return {str(i): int(i) for i in ids}
    return {str(i): n for n, i in enumerate(ids, 1)}


def _widget_names(spec: NodeSpec | None, inputs: dict) -> list[str]:
    """The widget order to write: the longest catalog variant whose widgets the API node has (links count)."""
    if spec is None:
        return [k for k, v in inputs.items() if not is_link(v)]

    def known(name: str) -> bool:
        return name in inputs or name in spec.ui_only_widgets

    fits = [v for v in spec.widget_variants if all(known(n) for n in v)]
    return max(fits, key=len) if fits else list(spec.widgets)


def _placeholder(spec: NodeSpec | None, name: str) -> Any:
    """The value kept in a widget slot whose input is a link (the frontend keeps one there too)."""
    if name in UI_ONLY_DEFAULTS:
        return UI_ONLY_DEFAULTS[name]
    ispec = spec.inputs.get(name) if spec else None
    if ispec is None:
        return None
    if ispec.default is not None:
        return ispec.default
    return {"INT": 0, "FLOAT": 0.0, "BOOLEAN": False, "STRING": ""}.get(
        ispec.type, ispec.choices[0] if ispec.choices else ""
    )


def _widget_type(spec: NodeSpec | None, name: str, value: Any) -> str:
    ispec = spec.inputs.get(name) if spec else None
    if ispec is not None:
        return ispec.type
    return {bool: "BOOLEAN", int: "INT", float: "FLOAT"}.get(type(value), "STRING")


def _is_multiline(spec: NodeSpec | None, name: str, value: Any) -> bool:
    return _widget_type(spec, name, value) == "STRING" and (
        name in ("text", "text_g", "text_l", "prompt") or len(str(value)) > 40
    )


def _build_node(nid: int, node: dict, spec: NodeSpec | None) -> _UINode:
    """Inputs (links first, then widgets converted to inputs), outputs and widget values of one node."""
    inputs = node.get("inputs", {})
    widgets = _widget_names(spec, inputs)
    out = _UINode(nid, node["class_type"])
    link_names = [k for k, v in inputs.items() if is_link(v) and k not in widgets]
    if spec is not None:  # optional/absent link inputs still show as sockets, as in the editor
        link_names += [
            n for n, i in spec.inputs.items() if i.kind == "link" and n not in link_names and n not in widgets
        ]
    for name in link_names:
        ispec = spec.inputs.get(name) if spec else None
        out.inputs.append({"name": name, "type": ispec.type if ispec else "*", "link": None})
    n_multiline = 0
    for name in widgets:
        value = inputs.get(name)
        if is_link(value):
            out.inputs.append(
                {"name": name, "type": _widget_type(spec, name, None), "link": None, "widget": {"name": name}}
            )
            value = _placeholder(spec, name)
        elif name not in inputs:
            value = _placeholder(spec, name)
        elif spec is None:  # unknown class: the converter names its values from these widget inputs
            out.inputs.append(
                {"name": name, "type": _widget_type(spec, name, value), "link": None, "widget": {"name": name}}
            )
        n_multiline += _is_multiline(spec, name, value)
        out.widgets_values.append(value)
        if spec is not None and name in spec.control_after_generate:
            out.widgets_values.append(CONTROL_VALUE)
    extras = {k: v for k, v in inputs.items() if not is_link(v) and k not in widgets}
    if extras and node["class_type"].startswith(DICT_WIDGET_PREFIXES):
        out.widgets_values = {n: inputs[n] for n in widgets if n in inputs and not is_link(inputs[n])} | extras
    else:  # widgets an extension adds to a node go after the node's own, as the frontend stores them
        out.widgets_values.extend(extras.values())
    n_outputs = len(spec.outputs) if spec else 0
    out.outputs = [
        {"name": t, "type": t, "links": [], "slot_index": i} for i, t in enumerate(spec.outputs if spec else [])
    ]
    n_slots = max(sum(1 for i in out.inputs if "widget" not in i), n_outputs)
    n_widget_rows = len(out.widgets_values) - n_multiline
    height = SLOT_HEIGHT * n_slots + WIDGET_HEIGHT * n_widget_rows + MULTILINE_HEIGHT * n_multiline + 10
    out.size = (WIDE_NODE_WIDTH if n_multiline else NODE_WIDTH, float(max(height, 46)))
    return out


def _depths(graph: dict, order: list[str]) -> dict[str, int]:
    """Column of each node: its longest path from a source; a source sits just left of its first consumer."""
    depth: dict[str, int] = {}
    preds = {nid: [str(v[0]) for v in graph[nid]["inputs"].values() if is_link(v)] for nid in order}
    consumers: dict[str, list[str]] = {nid: [] for nid in order}
    for nid in order:
        depth[nid] = 1 + max((depth[p] for p in preds[nid]), default=-1)
        for p in preds[nid]:
            consumers[p].append(nid)
    for nid in order:
        if not preds[nid] and consumers[nid]:  # e.g. EmptyLatentImage next to its sampler, not far left
            depth[nid] = min(depth[c] for c in consumers[nid]) - 1
    return depth


def _topological(graph: dict, source: str) -> list[str]:
    """Node ids in dependency order (ties: API order); raises UIExportError on dangling links or cycles."""
    from graphlib import CycleError, TopologicalSorter

    edges: dict[str, list[str]] = {}
    for nid, node in graph.items():
        edges[nid] = []
        if not node["class_type"].strip():
            raise UIExportError(f"{source}: node {nid} has an empty 'class_type'; give it the node class it should run")
        for name, value in node["inputs"].items():
            if is_link(value):
                if str(value[0]) not in graph:
                    raise UIExportError(
                        f"{source}: node {nid} input {name!r} links to missing node {value[0]!r}; "
                        "fix the link (flowrl flow validate shows every problem)"
                    )
                if value[1] < 0:
                    raise UIExportError(
                        f"{source}: node {nid} input {name!r} links to output {value[1]}; output slots start at 0"
                    )
                edges[nid].append(str(value[0]))
    sorter = TopologicalSorter(edges)
    try:
        sorter.prepare()
    except CycleError as exc:
        raise UIExportError(
            f"{source}: cycle through nodes {' -> '.join(map(str, exc.args[1]))}; "
            "ComfyUI cannot run a cyclic graph, so it is not exported"
        ) from None
    rank = {nid: i for i, nid in enumerate(graph)}
    order: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=rank.__getitem__)
        order.extend(ready)
        sorter.done(*ready)
    return order


def _layout(nodes: dict[str, _UINode], graph: dict, order: list[str]) -> dict[str, list[float]]:
    """Positions: one column per depth, left to right; within a column, nodes sorted by the mean row of their
    inputs (fewer crossings) and stacked with ROW_GAP between title bar and the node above."""
    columns: dict[int, list[str]] = {}
    for nid in order:
        columns.setdefault(nodes[nid].depth, []).append(nid)
    pos: dict[str, list[float]] = {}
    centre: dict[str, float] = {}
    rank = {nid: i for i, nid in enumerate(order)}
    x = 0.0
    for d in sorted(columns):
        col = columns[d]

        def pull(nid: str) -> float:
            ys = [centre[str(v[0])] for v in graph[nid]["inputs"].values() if is_link(v) and str(v[0]) in centre]
            return sum(ys) / len(ys) if ys else 0.0

        col.sort(key=lambda nid: (pull(nid), rank[nid]))
        y = 0.0
        for nid in col:
            w, h = nodes[nid].size
            pos[nid] = [x, y + TITLE_HEIGHT]
            centre[nid] = y + (TITLE_HEIGHT + h) / 2
            y += TITLE_HEIGHT + h + ROW_GAP
        x += max(nodes[nid].size[0] for nid in col) + COLUMN_GAP
    return pos


def api_to_ui(graph: dict, catalog: Catalog | None = None, source: str = "<graph>") -> dict:
    """Convert an API graph to a UI workflow dict (ComfyUI frontend format, version 0.4) with a layout.

    Args:
        graph: API graph {node id: {"class_type", "inputs"}} (a {"prompt": ...} wrapper is accepted).
        catalog: node catalog for widget orders and output types (default: the shipped one).
        source: name used in error messages.
    Returns:
        {"id", "revision", "last_node_id", "last_link_id", "nodes", "links", "groups", "config", "extra", "version"};
        `flowrl.comfy.ui.ui_to_api` turns it back into the same graph up to node ids.
    Raises:
        UIExportError: dangling links, a link to an output the node does not have, an empty class type, or a cycle.
    """
    with _gc_paused():
        return _api_to_ui(graph, catalog or load_catalog(), source)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside: the export builds ~20 objects per node and no cycles, and the full
    collections Python triggers as they pile up made a 40,000-node export superlinear (1.6x per node at 40k)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _api_to_ui(graph: dict, catalog: Catalog, source: str) -> dict:
    graph = {str(k): v for k, v in as_api_graph(json.loads(json.dumps(graph)), source).items()}
    order = _topological(graph, source)
    ids = _ui_ids(graph)
    nodes = {nid: _build_node(ids[nid], graph[nid], catalog.get(graph[nid]["class_type"])) for nid in graph}
    for nid, depth in _depths(graph, order).items():
        nodes[nid].depth = depth
    links: list[list] = []
    for nid in order:
        target = nodes[nid]
        for name, value in graph[nid]["inputs"].items():
            if not is_link(value):
                continue
            src = nodes[str(value[0])]
            slot = value[1]
            if slot >= len(src.outputs) and (catalog.get(src.type) is not None or slot >= MAX_UNKNOWN_OUTPUTS):
                has = (
                    f"has {len(src.outputs)} output(s)"
                    if catalog.get(src.type) is not None
                    else f"is not in the node catalog, and no node has {MAX_UNKNOWN_OUTPUTS} outputs"
                )
                raise UIExportError(
                    f"{source}: node {nid} input {name!r} links to output {slot} of node {value[0]} ({src.type}), "
                    f"which {has}; fix the link (flowrl flow validate shows every problem)"
                )
            while len(src.outputs) <= slot:  # an unknown class: outputs known only from its uses
                src.outputs.append({"name": "*", "type": "*", "links": [], "slot_index": len(src.outputs)})
            to_slot = next(i for i, inp in enumerate(target.inputs) if inp["name"] == name)
            link_type = src.outputs[slot]["type"]
            if link_type == "*":
                link_type = target.inputs[to_slot]["type"]
            link_id = len(links) + 1
            links.append([link_id, src.id, slot, target.id, to_slot, link_type])
            target.inputs[to_slot]["link"] = link_id
            src.outputs[slot]["links"].append(link_id)
    pos = _layout(nodes, graph, order)
    ui_nodes = []
    for rank, nid in enumerate(order):
        n = nodes[nid]
        ui_nodes.append(
            {
                "id": n.id,
                "type": n.type,
                "pos": pos[nid],
                "size": list(n.size),
                "flags": {},
                "order": rank,
                "mode": 0,
                "inputs": n.inputs,
                "outputs": n.outputs,
                "properties": {"Node name for S&R": n.type},
                "widgets_values": n.widgets_values,
            }
        )
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, json.dumps(graph, sort_keys=True, default=str))),
        "revision": 0,
        "last_node_id": max(n.id for n in nodes.values()),
        "last_link_id": len(links),
        "nodes": ui_nodes,
        "links": links,
        "groups": [],
        "config": {},
        "extra": {"ds": {"scale": 1.0, "offset": [0, 0]}, "flowrl": {"exported_from": "api"}},
        "version": FORMAT_VERSION,
    }


def node_boxes(ui: dict) -> dict[int, tuple[float, float, float, float]]:
    """Screen rectangles (x0, y0, x1, y1) of a UI workflow's nodes, title bars included."""
    boxes = {}
    for n in ui["nodes"]:
        size = n["size"]
        w, h = (size["0"], size["1"]) if isinstance(size, dict) else size
        pos = n["pos"]
        x, y = (pos["0"], pos["1"]) if isinstance(pos, dict) else pos
        boxes[n["id"]] = (x, y - TITLE_HEIGHT, x + w, y + h)
    return boxes
