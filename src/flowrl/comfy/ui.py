"""Convert a ComfyUI UI ("workflow") JSON into the API ("prompt") graph, as the frontend's graphToPrompt does."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flowrl.comfy.catalog import Catalog, NodeSpec, load_catalog
from flowrl.errors import FlowRLError

MODE_MUTED = 2
MODE_BYPASSED = 4
VIRTUAL_TYPES = {"Note", "MarkdownNote", "PrimitiveNode", "Reroute"}
CONTROL_VALUES = {"fixed", "increment", "decrement", "randomize"}
GROUP_PREFIXES = ("workflow/", "workflow>")


class UIConversionError(FlowRLError):
    """A UI workflow cannot be converted to the API format."""


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
    title: str = ""
    extra_values: dict = field(default_factory=dict)


def _link_table(ui: dict, source: str) -> dict[int, tuple[str, int]]:
    table = {}
    for link in ui.get("links") or []:
        if isinstance(link, dict):
            lid, origin, slot = link.get("id"), link.get("origin_id"), link.get("origin_slot")
        elif isinstance(link, list) and len(link) >= 3:
            lid, origin, slot = link[0], link[1], link[2]
        else:
            raise UIConversionError(f"{source}: link {link!r} is not [id, from_node, from_slot, to_node, to_slot, type]")
        table[lid] = (str(origin), int(slot))
    return table


def _ui_nodes(ui: dict, source: str) -> list[_Node]:
    links = _link_table(ui, source)
    nodes = []
    for raw in ui["nodes"]:
        if not isinstance(raw, dict) or "id" not in raw or not isinstance(raw.get("type"), str):
            raise UIConversionError(f"{source}: node entry {str(raw)[:80]} has no 'id' and 'type'")
        inputs = [_Input(i.get("name", ""), str(i.get("type", "*")),
                         links.get(i.get("link")) if i.get("link") is not None else None, "widget" in i)
                  for i in raw.get("inputs") or []]
        outputs = [str(o.get("type", "*")) for o in raw.get("outputs") or []]
        nodes.append(_Node(str(raw["id"]), raw["type"], int(raw.get("mode") or 0), inputs, outputs,
                           raw.get("widgets_values"), raw.get("title", "")))
    return nodes


def _expand_groups(nodes: list[_Node], ui: dict, catalog: Catalog, source: str) -> list[_Node]:
    """Replace legacy group nodes (workflow/<name>) by their inner nodes with ids '<group id>:<index>'."""
    defs = (ui.get("extra") or {}).get("groupNodes") or {}
    groups = [n for n in nodes if n.type.startswith(GROUP_PREFIXES)]
    missing = sorted({g.type for g in groups if g.type[len("workflow/"):] not in defs})
    if missing:
        raise UIConversionError(f"{source}: group node type(s) {missing} have no definition in extra.groupNodes; "
                                "open the workflow in ComfyUI and convert the group nodes back to nodes")
    remap_out: dict[tuple[str, int], tuple[str, int]] = {}
    result = [n for n in nodes if not n.type.startswith(GROUP_PREFIXES)]
    for g in groups:
        d = defs[g.type[len("workflow/"):]]
        inner_links = {(lk[2], lk[3]): lk for lk in d.get("links", [])}
        internal_src = {(lk[0], lk[1]) for lk in d.get("links", []) if lk[0] is not None}
        external = {(e[0]["index"] if isinstance(e[0], dict) else e[0], e[1]) for e in d.get("external", [])}
        group_inputs = iter(g.inputs)
        values = list(g.widgets_values or []) if isinstance(g.widgets_values, list) else []
        out_slot = 0
        for raw in d["nodes"]:
            idx = raw["index"]
            nid = f"{g.id}:{idx}"
            inputs = []
            for slot, i in enumerate(raw.get("inputs") or []):
                lk = inner_links.get((idx, slot))
                if lk is not None and lk[0] is not None:
                    src = (f"{g.id}:{lk[0]}", lk[1])
                elif "widget" in i:
                    src = None
                else:
                    outer = next(group_inputs, None)
                    src = outer.source if outer is not None else None
                inputs.append(_Input(i.get("name", ""), str(i.get("type", "*")), src, "widget" in i))
            n_values = len(raw.get("widgets_values") or []) if isinstance(raw.get("widgets_values"), list) else 0
            wv = values[:n_values] if values else raw.get("widgets_values")
            values = values[n_values:]
            outputs = [str(o.get("type", "*")) for o in raw.get("outputs") or []]
            for slot in range(len(outputs)):
                if (idx, slot) not in internal_src or (idx, slot) in external:
                    remap_out[(g.id, out_slot)] = (nid, slot)
                    out_slot += 1
            result.append(_Node(nid, raw["type"], g.mode, inputs, outputs, wv))
    for n in result:
        for i in n.inputs:
            if i.source is not None and i.source[0] in {g.id for g in groups}:
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
                "cannot be named. Add it to scripts/build_catalog.py CUSTOM_NODES and rebuild the catalog")
        return dict(zip(names, values))
    out: dict[str, Any] = {}
    pos = 0
    for name in _pick_variant(spec, values):
        if pos >= len(values):
            break
        out[name] = values[pos]
        pos += 1
        if name in spec.control_after_generate and pos < len(values) and (
                values[pos] in CONTROL_VALUES or isinstance(values[pos], bool)):
            pos += 1
    for name in spec.ui_only_widgets:
        out.pop(name, None)
    return out


class _Resolver:
    """Follows links through Reroute, PrimitiveNode, bypassed and muted nodes."""

    def __init__(self, nodes: dict[str, _Node], catalog: Catalog):
        self.nodes, self.catalog = nodes, catalog

    def resolve(self, src: tuple[str, int] | None) -> tuple[str, Any] | None:
        """Return ('link', [id, slot]) or ('value', v) or None (input dropped)."""
        for _ in range(len(self.nodes) + 1):  # bounded: a Reroute/bypass loop ends as a dropped input
            if src is None:
                return None
            node = self.nodes.get(src[0])
            if node is None or node.mode == MODE_MUTED:
                return None
            if node.type == "PrimitiveNode":
                values = node.widgets_values or []
                return ("value", values[0]) if isinstance(values, list) and values else None
            if node.type == "Reroute":
                src = node.inputs[0].source if node.inputs else None
            elif node.mode == MODE_BYPASSED:
                src = self._bypass_input(node, src[1])
            else:
                return ("link", [node.id, src[1]])
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
    if (ui.get("definitions") or {}).get("subgraphs"):
        raise UIConversionError(f"{source}: subgraphs are not supported; unpack them in ComfyUI "
                                "(right-click > Unpack Subgraph) and save again")
    nodes = _expand_groups(_ui_nodes(ui, source), ui, catalog, source)
    by_id = {n.id: n for n in nodes}
    resolver = _Resolver(by_id, catalog)
    graph: dict[str, dict] = {}
    for node in nodes:
        if node.type in VIRTUAL_TYPES or node.mode in (MODE_MUTED, MODE_BYPASSED):
            continue
        spec = catalog.get(node.type)
        inputs = _widget_values(node, spec, source)
        for inp in node.inputs:
            if inp.source is None:
                continue
            resolved = resolver.resolve(inp.source)
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
