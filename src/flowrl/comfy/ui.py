"""Convert a ComfyUI UI ("workflow") JSON into the API ("prompt") graph, as the frontend's graphToPrompt does."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flowrl.comfy.catalog import Catalog, NodeSpec, load_catalog
from flowrl.comfy.ui_schema import UIConversionError, UINode, UIWorkflow

MODE_MUTED = 2
MODE_BYPASSED = 4
VIRTUAL_TYPES = {"Note", "MarkdownNote", "PrimitiveNode", "Reroute"}
CONTROL_VALUES = {"fixed", "increment", "decrement", "randomize"}
GROUP_PREFIXES = ("workflow/", "workflow>")


@dataclass
class _Input:
    name: str
    type: str
    source: tuple[str, int] | None  # (node id, output slot) or None
    widget: bool


@dataclass
class _Node:
    id: str
    type: str
    mode: int
    inputs: list[_Input]
    outputs: list[str]
    widgets_values: Any


def _node(raw: UINode, nid: str, links: dict[int, tuple[str, int]], mode: int | None = None) -> _Node:
    inputs = [
        _Input(i.name, str(i.type), links.get(i.link) if i.link is not None else None, i.widget is not None)
        for i in raw.inputs
    ]
    return _Node(
        nid,
        raw.type,
        raw.mode if mode is None else mode,
        inputs,
        [str(o.type) for o in raw.outputs],
        raw.widgets_values,
    )


def _check_links(doc: UIWorkflow, source: str) -> dict[int, tuple[str, int]]:
    """The link table {link id: (origin node id, output slot)}, after checking that node ids are unique and that
    every input's link exists and starts at an existing node output: a dropped link would silently change the graph.
    """
    first: dict[str, int] = {}
    for i, raw in enumerate(doc.nodes):
        nid = str(raw.id)
        if nid in first:
            raise UIConversionError(
                f"{source}: nodes[{first[nid]}] and nodes[{i}] both have id {nid} ({doc.nodes[first[nid]].type}, "
                f"{raw.type}); one would be lost. Give one a new, unused id (or copy-paste it in ComfyUI) and save again"
            )
        first[nid] = i
    links: dict[int, tuple[str, int]] = {}
    for lk in doc.links:
        if lk.id in links and links[lk.id] != (str(lk.origin_id), lk.origin_slot):
            raise UIConversionError(
                f"{source}: two entries of 'links' have id {lk.id} with different origins; "
                "the file is corrupt: reconnect those inputs in ComfyUI and save again"
            )
        links[lk.id] = (str(lk.origin_id), lk.origin_slot)
    for raw in doc.nodes:
        for inp in raw.inputs:
            if inp.link is None:
                continue
            where = f"{source}: node {raw.id} ({raw.type}) input {inp.name!r} uses link {inp.link}"
            if inp.link not in links:
                why = (
                    "but the file has no 'links' list; export the whole workflow again (Save / Export in ComfyUI)"
                    if not doc.links
                    else "which is not in the file's 'links' list; reconnect the input in ComfyUI and save again"
                )
                raise UIConversionError(f"{where}, {why}")
            origin, slot = links[inp.link]
            if origin not in first:
                raise UIConversionError(
                    f"{where} from node {origin}, which is not in the file; "
                    "reconnect the input in ComfyUI and save again"
                )
            outputs = doc.nodes[first[origin]].outputs
            if slot < 0 or (outputs and slot >= len(outputs)):
                raise UIConversionError(
                    f"{where} from output {slot} of node {origin} "
                    f"({doc.nodes[first[origin]].type}), which has {len(outputs)} output(s); "
                    "reconnect the input in ComfyUI and save again"
                )
    return links


def _ui_nodes(doc: UIWorkflow, source: str) -> list[_Node]:
    links = _check_links(doc, source)
    return [_node(raw, str(raw.id), links) for raw in doc.nodes]


def _expand_groups(nodes: list[_Node], doc: UIWorkflow, source: str) -> list[_Node]:
    """Replace legacy group nodes (workflow/<name>) by their inner nodes with ids '<group id>:<index>'.

    A group's inputs are its inner link inputs not fed from inside, in inner-node order; its outputs are the inner
    outputs not consumed inside (or listed in `external`); its widgets_values concatenate the inner nodes' values.
    """
    groups = [n for n in nodes if n.type.startswith(GROUP_PREFIXES)]
    missing = sorted({g.type for g in groups if g.type[len("workflow/") :] not in doc.group_nodes})
    if missing:
        raise UIConversionError(
            f"{source}: group node type(s) {missing} have no definition in extra.groupNodes; "
            "open the workflow in ComfyUI and convert the group nodes back to nodes"
        )
    group_ids = {g.id for g in groups}
    remap_out: dict[tuple[str, int], tuple[str, int]] = {}
    result = [n for n in nodes if n.id not in group_ids]
    for g in groups:
        d = doc.group_nodes[g.type[len("workflow/") :]]
        inner_links = {(lk[2], lk[3]): lk for lk in d.links}
        internal_src = {(lk[0], lk[1]) for lk in d.links if lk[0] is not None}
        external = {(e[0].get("index") if isinstance(e[0], dict) else e[0], e[1]) for e in d.external}
        group_inputs = iter(g.inputs)
        values = list(g.widgets_values) if isinstance(g.widgets_values, list) else []
        out_slot = 0
        for raw in d.nodes:
            idx, nid = raw.index, f"{g.id}:{raw.index}"
            inner = _node(raw, nid, {}, mode=g.mode)
            for slot, inp in enumerate(inner.inputs):
                lk = inner_links.get((idx, slot))
                if lk is not None and lk[0] is not None:
                    inp.source = (f"{g.id}:{lk[0]}", lk[1])
                elif not inp.widget:
                    outer = next(group_inputs, None)
                    inp.source = outer.source if outer is not None else None
            n_values = len(raw.widgets_values) if isinstance(raw.widgets_values, list) else 0
            if values:
                inner.widgets_values, values = values[:n_values], values[n_values:]
            for slot in range(len(inner.outputs)):
                if (idx, slot) not in internal_src or (idx, slot) in external:
                    remap_out[(g.id, out_slot)] = (nid, slot)
                    out_slot += 1
            result.append(inner)
    for n in result:
        for i in n.inputs:
            if i.source is not None and i.source[0] in group_ids:
                i.source = remap_out.get(i.source)
    return result


def _pick_variant(spec: NodeSpec, values: list) -> list[str]:
    """Widget names matching the length of `values` (version drift), longest that fits otherwise."""

    def length(variant: list[str]) -> int:
        return len(variant) + sum(1 for w in variant if w in spec.control_after_generate)

    fits = [v for v in spec.widget_variants if length(v) == len(values)]
    if fits:
        return fits[0]
    shorter = [v for v in spec.widget_variants if length(v) <= len(values)]  # trailing preview values
    return max(shorter, key=length) if shorter else max(spec.widget_variants, key=length)


def _widget_values(node: _Node, spec: NodeSpec | None, source: str) -> dict[str, Any]:
    """Named widget values of a node (control_after_generate and UI-only values skipped)."""
    wv = node.widgets_values
    if isinstance(wv, dict):
        return {k: v for k, v in wv.items() if not (spec and k in spec.ui_only_widgets)}
    values = list(wv or [])
    if spec is None:
        names = [i.name for i in node.inputs if i.widget]
        if len(names) < len(values):
            raise UIConversionError(
                f"{source}: node {node.id} has unknown class type {node.type!r}; its {len(values)} widget values "
                "cannot be named. Add it to scripts/build_catalog.py CUSTOM_NODES and rebuild the catalog"
            )
        return dict(zip(names, values))
    out: dict[str, Any] = {}
    pos = 0
    for name in _pick_variant(spec, values):
        if pos >= len(values):
            break
        out[name] = values[pos]
        pos += 1
        if (
            name in spec.control_after_generate
            and pos < len(values)
            and (values[pos] in CONTROL_VALUES or isinstance(values[pos], bool))
        ):
            pos += 1
    for name in spec.ui_only_widgets:
        out.pop(name, None)
    return out


class _Resolver:
    """Follows links through Reroute, PrimitiveNode, bypassed and muted nodes."""

    def __init__(self, nodes: dict[str, _Node], source: str = "<ui workflow>"):
        self.nodes = nodes
        self.source = source

    def resolve(self, src: tuple[str, int] | None, where: str = "an input") -> tuple[str, Any] | None:
        """Return ('link', [id, slot]) or ('value', v) or None (input dropped: unconnected or muted).

        Raises:
            UIConversionError: the link goes round a loop of Reroute or bypassed nodes (`where` names the input).
        """
        path: dict[str, None] = {}  # the Reroute/bypassed nodes passed, in order
        while src is not None:
            node = self.nodes.get(src[0])
            if node is None or node.mode == MODE_MUTED:
                return None
            if node.type == "PrimitiveNode":
                values = node.widgets_values or []
                return ("value", values[0]) if isinstance(values, list) and values else None
            if node.type != "Reroute" and node.mode != MODE_BYPASSED:
                return ("link", [node.id, src[1]])
            if node.id in path:
                order = list(path)
                loop = " -> ".join(f"{n} ({self.nodes[n].type})" for n in [*order[order.index(node.id) :], node.id])
                raise UIConversionError(
                    f"{self.source}: {where} is fed by a loop of Reroute/bypassed nodes: {loop}; "
                    "connect the loop to a real output in ComfyUI and save again"
                )
            path[node.id] = None
            src = (
                (node.inputs[0].source if node.inputs else None)
                if node.type == "Reroute"
                else self._bypass_input(node, src[1])
            )
        return None

    @staticmethod
    def _bypass_input(node: _Node, slot: int) -> tuple[str, int] | None:
        """The input a bypassed node passes through to output `slot` (same index if types match, else first match)."""
        out_type = node.outputs[slot] if slot < len(node.outputs) else "*"
        links = [i for i in node.inputs if not i.widget or i.source is not None]
        if slot < len(links) and links[slot].type == out_type and links[slot].source is not None:
            return links[slot].source
        for i in links:
            if i.type == out_type and i.source is not None:
                return i.source
        return None


def ui_to_api(ui: dict, source: str = "<ui workflow>", catalog: Catalog | None = None) -> dict:
    """Convert a UI workflow dict to the API graph {node id: {"class_type", "inputs"}}.

    Raises:
        UIConversionError: malformed nodes/links, unknown widget layouts, or undefined group nodes.
    """
    if not isinstance(ui, dict) or not isinstance(ui.get("nodes"), list):
        raise UIConversionError(f"{source}: a UI workflow needs a 'nodes' list")
    catalog = catalog or load_catalog()
    doc = UIWorkflow.parse(ui, source)
    if doc.has_subgraphs:
        raise UIConversionError(
            f"{source}: subgraphs are not supported; unpack them in ComfyUI "
            "(right-click > Unpack Subgraph) and save again"
        )
    nodes = _expand_groups(_ui_nodes(doc, source), doc, source)
    by_id = {n.id: n for n in nodes}
    resolver = _Resolver(by_id, source)
    graph: dict[str, dict] = {}
    for node in nodes:
        if node.type in VIRTUAL_TYPES or node.mode in (MODE_MUTED, MODE_BYPASSED):
            continue
        spec = catalog.get(node.type)
        inputs = _widget_values(node, spec, source)
        for inp in node.inputs:
            if inp.source is None:
                continue
            resolved = resolver.resolve(inp.source, f"node {node.id} ({node.type}) input {inp.name!r}")
            if resolved is None:
                if inp.widget:
                    continue
                inputs.pop(inp.name, None)
                continue
            inputs[inp.name] = resolved[1]
        graph[node.id] = {"class_type": node.type, "inputs": inputs}
    if not graph:
        raise UIConversionError(f"{source}: no executable nodes (all are notes, muted or bypassed)")
    return graph
