"""The compact flow encoding: one line per node, in a canonical node order, and its exact decoder.

A line is `ClassType name=value name=value ...`; line k (1-based) is node k, and a link to output
j of node k is written `@k` (j = 0) or `@k.j`. Values are bare when that is unambiguous (`euler`,
`20`, `7.0`, `true`) and JSON otherwise (`"a cat, at night"`, `[1,2]`). See docs/encoding.md.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import math
import re
from typing import Any

from flowrl.comfy.graph import LONE_SURROGATE, is_link
from flowrl.errors import FlowRLError

LINK_MARK = "@"
_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?")
_LITERALS = {"true", "false", "null", "NaN", "Infinity", "-Infinity"}
_QUOTE_FIRST = set('"[{' + LINK_MARK)
_LINK = re.compile(r"@([1-9]\d*)(?:\.(0|[1-9]\d*))?")


class FlowEncodeError(FlowRLError):
    """A graph cannot be encoded (a link to a missing node, or a cycle)."""


class FlowDecodeError(FlowRLError):
    """Encoded flow text is malformed; the message names the line and the reason."""


# ---------------------------------------------------------------- canonical form


def _input_order(class_type: str, names: list[str]) -> list[str]:
    """Link inputs of the catalog spec, then its widgets in UI order, then unknown inputs; each sorted by name."""
    from flowrl.comfy.catalog import load_catalog

    spec = load_catalog().get(class_type)
    if spec is None:
        return sorted(names)
    preferred = [n for n, i in spec.inputs.items() if i.kind == "link"] + list(spec.widgets)
    known = [n for n in dict.fromkeys(preferred) if n in names]
    return known + sorted(set(names) - set(known))


def _digest(*parts: Any) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, ensure_ascii=False, default=repr).encode()).hexdigest()


def _check_links(graph: dict) -> dict[str, list[tuple[str, str, int]]]:
    """Map node id -> [(input name, source id, output index)] and reject links to missing nodes."""
    if not isinstance(graph, dict) or not graph:
        raise FlowEncodeError(
            f"expected a non-empty API graph (node id -> node), got {type(graph).__name__}; "
            "load files with flowrl.comfy.graph.load_workflow"
        )
    links: dict[str, list[tuple[str, str, int]]] = {}
    for node_id, node in graph.items():
        if not isinstance(node, dict) or not isinstance(node.get("class_type"), str):
            raise FlowEncodeError(
                f"node {node_id!r}: not an object with a string 'class_type'; pass an API-format graph"
            )
        if not isinstance(node.get("inputs", {}), dict):
            raise FlowEncodeError(
                f"node {node_id!r} ({node['class_type']}): 'inputs' must be an object of name -> value"
            )
        links[node_id] = []
        for name, value in node.get("inputs", {}).items():
            if is_link(value):
                src = str(value[0])
                if src not in graph:
                    raise FlowEncodeError(
                        f"node {node_id!r} ({node['class_type']}) input {name!r} links to missing node {src!r}; "
                        "fix or remove that link"
                    )
                links[node_id].append((name, src, value[1]))
    return links


def _signatures(graph: dict, links: dict, order: list[str]) -> dict[str, str]:
    """Id-free content signature per node: its own values plus the signatures up- and downstream."""
    up: dict[str, str] = {}
    for node_id in order:  # sources first
        node = graph[node_id]
        widgets = sorted(
            (k, json.dumps(v, sort_keys=True)) for k, v in node.get("inputs", {}).items() if not is_link(v)
        )
        ups = sorted((name, up[src], out) for name, src, out in links[node_id])
        up[node_id] = _digest(node["class_type"], widgets, ups)
    consumers: dict[str, list[tuple[str, int, str]]] = {n: [] for n in graph}
    for node_id in graph:
        for name, src, out in links[node_id]:
            consumers[src].append((name, out, node_id))
    down: dict[str, str] = {}
    for node_id in reversed(order):  # sinks first
        down[node_id] = _digest(up[node_id], sorted((name, out, down[c]) for name, out, c in consumers[node_id]))
    return {n: up[n] + down[n] for n in graph}


def _topological(graph: dict, links: dict, key: dict[str, Any]) -> list[str]:
    """Kahn's algorithm, always taking the ready node with the smallest key; raises on a cycle."""
    waiting = {n: len({src for _, src, _ in links[n]}) for n in graph}
    consumers: dict[str, set[str]] = {n: set() for n in graph}
    for node_id in graph:
        for _, src, _ in links[node_id]:
            consumers[src].add(node_id)
    ready = [(key[n], n) for n, k in waiting.items() if k == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        _, node_id = heapq.heappop(ready)
        order.append(node_id)
        for c in consumers[node_id]:
            waiting[c] -= 1
            if waiting[c] == 0:
                heapq.heappush(ready, (key[c], c))
    if len(order) < len(graph):
        stuck = sorted(set(graph) - set(order))
        raise FlowEncodeError(f"the graph has a cycle through nodes {stuck[:10]}; ComfyUI graphs must be acyclic")
    return order


def canonical_form(graph: dict) -> dict:
    """The graph with nodes renumbered "1".."n" in canonical order and inputs in canonical order.

    Order: topological (sources first), ties broken by class type then an id-free content signature, so it does not
    depend on the original node ids or on the order of nodes and inputs in the file.
    """
    links = _check_links(graph)
    first = _topological(graph, links, {n: "" for n in graph})  # any order, to compute signatures
    sig = _signatures(graph, links, first)
    order = _topological(graph, links, {n: (graph[n]["class_type"], sig[n], str(n)) for n in graph})
    new_id = {old: str(i) for i, old in enumerate(order, 1)}
    out = {}
    for old in order:
        node = graph[old]
        inputs = node.get("inputs", {})
        new_inputs = {}
        for name in _input_order(node["class_type"], list(inputs)):
            value = inputs[name]
            new_inputs[name] = [new_id[str(value[0])], value[1]] if is_link(value) else value
        out[new_id[old]] = {"class_type": node["class_type"], "inputs": new_inputs}
    return out


# ---------------------------------------------------------------- encoding


def _is_bare(text: str) -> bool:
    """True when a string can be written without quotes and still decode as that string."""
    return (
        bool(text)
        and text[0] not in _QUOTE_FIRST
        and text not in _LITERALS
        and not _NUMBER.fullmatch(text)
        and all(c.isprintable() and not c.isspace() for c in text)
    )


def _is_bare_name(name: str) -> bool:
    return _is_bare(name) and "=" not in name


def value_text(value: Any) -> str:
    if is_link(value):
        return f"{LINK_MARK}{value[0]}" if value[1] == 0 else f"{LINK_MARK}{value[0]}.{value[1]}"
    if isinstance(value, str):
        return value if _is_bare(value) else json.dumps(value, ensure_ascii=False)
    if isinstance(value, float) and not math.isfinite(value):
        return json.dumps(value)  # NaN / Infinity: Python's JSON spelling, read back by json.loads
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def encode_flow(graph: dict) -> str:
    """Encode an API graph as text: one line per node of its canonical form (no trailing newline).

    Raises:
        FlowEncodeError: not an API graph, a link to a missing node, a cycle, or values nested too deeply.
    """
    try:
        return _encode_lines(graph)
    except RecursionError:
        raise FlowEncodeError(
            "a value is nested too deeply to encode; no workflow input nests like that, "
            "load files with flowrl.comfy.graph.load_workflow"
        ) from None


def _encode_lines(graph: dict) -> str:
    lines = []
    for node in canonical_form(graph).values():
        ct = node["class_type"]
        parts = [ct if _is_bare(ct) else json.dumps(ct, ensure_ascii=False)]
        for name, value in node["inputs"].items():
            key = name if _is_bare_name(name) else json.dumps(name, ensure_ascii=False)
            parts.append(f"{key}={value_text(value)}")
        lines.append(" ".join(parts))
    return "\n".join(lines)


def split_components(text: str) -> list[str]:
    """The components of an encoded flow: its non-empty lines (one per node), without the newline."""
    return [line for line in text.split("\n") if line.strip()]


# ---------------------------------------------------------------- decoding


class _DuplicateKey(Exception):
    pass


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict:
    out = dict(pairs)
    if len(out) < len(pairs):
        keys = [k for k, _ in pairs]
        raise _DuplicateKey(next(k for k in keys if keys.count(k) > 1))
    return out


# encode_flow writes each dict once, so a repeated key can only be damage: refuse it rather than keep the last
_DECODER = json.JSONDecoder(object_pairs_hook=_unique_pairs)


def _bad_char(word: str) -> tuple[int, str] | None:
    """(index, description) of the first character a bare word may not hold (space, tab, control, BOM), else None."""
    for i, c in enumerate(word):
        if c == "\ufeff":
            return i, "a byte-order mark (U+FEFF); save the file as UTF-8 without BOM"
        if c == "\r":
            return (
                i,
                "a carriage return (U+000D) that ends no line: mixed or old-Mac line endings; save the file with LF (or CRLF) line endings",
            )
        if c.isspace() or not c.isprintable():
            return i, (
                f"the character {c!r} (U+{ord(c):04X}); separate fields with exactly one space and "
                "quote text holding spaces or control characters as JSON"
            )
    return None


class _Line:
    """A cursor over one encoded line."""

    def __init__(self, text: str, lineno: int):
        self.text, self.pos, self.lineno = text, 0, lineno

    def fail(self, reason: str) -> FlowDecodeError:
        snippet = self.text[self.pos : self.pos + 30]
        return FlowDecodeError(
            f"line {self.lineno}, column {self.pos + 1}: {reason} (at {snippet!r}); "
            "each line must be `ClassType name=value ...` as written by encode_flow"
        )

    def json_value(self, what: str) -> Any:
        try:
            value, self.pos = _DECODER.raw_decode(self.text, self.pos)
        except json.JSONDecodeError as exc:
            raise self.fail(f"{what} ({exc.msg})") from None
        except _DuplicateKey as exc:
            raise self.fail(f"key {exc.args[0]!r} appears twice in one JSON object; keep one") from None
        except RecursionError:
            raise self.fail("value nested too deeply; no workflow input nests like that") from None
        return value

    def bare(self, word: str, what: str) -> str:
        """`word` (just read) when it may stand unquoted; else the error pointing at the offending character."""
        bad = _bad_char(word)
        if bad:
            self.pos += bad[0] - len(word)
            raise self.fail(f"{what} {word[: bad[0] + 1][-30:]!r} holds {bad[1]}")
        return word

    def json_string(self) -> str:
        value = self.json_value("unterminated or invalid quoted string")
        if not isinstance(value, str):
            raise self.fail("expected a quoted string")
        return value

    def word(self, stop: str = " ") -> str:
        end = self.pos
        while end < len(self.text) and self.text[end] not in stop:
            end += 1
        word, self.pos = self.text[self.pos : end], end
        return word

    def class_type(self) -> str:
        ct = self.json_string() if self.text.startswith('"') else self.bare(self.word(), "class type")
        if not ct:
            raise self.fail("missing class type")
        return ct

    def name(self) -> str:
        name = self.json_string() if self.text[self.pos] == '"' else self.bare(self.word(" ="), "input name")
        if not name and self.text[self.pos - 1] != '"':
            raise self.fail('empty input name (one space between inputs; quote an empty name as "")')
        if self.pos >= len(self.text) or self.text[self.pos] != "=":
            raise self.fail(f"input {name!r} has no '=value'")
        self.pos += 1
        return name

    def value(self, node_no: int) -> Any:
        if self.pos >= len(self.text) or self.text[self.pos] == " ":
            raise self.fail("missing value after '='")
        first = self.text[self.pos]
        if first in '"[{':
            return self.json_value("invalid quoted value")
        start, word = self.pos, self.word()
        if first == LINK_MARK:
            m = _LINK.fullmatch(word)
            self.pos = start  # errors point at the link itself
            if not m:
                raise self.fail(f"bad link {word!r}; write @node or @node.output")
            target = int(m.group(1))
            if target >= node_no:
                raise self.fail(f"link {word!r} points to node {target}, which is not an earlier line")
            self.pos += len(word)
            return [str(target), int(m.group(2) or 0)]
        if word in _LITERALS or _NUMBER.fullmatch(word):
            return json.loads(word)
        return self.bare(word, "value")

    def separator(self) -> bool:
        """Consume the single space between fields; False at the end of the line."""
        if self.pos >= len(self.text):
            return False
        if self.text[self.pos] != " ":
            raise self.fail("expected a space before the next input")
        self.pos += 1
        if self.pos >= len(self.text):
            raise self.fail("trailing space")
        return True


def _json_kind(text: str) -> str:
    """What a JSON text is, for the wrong-file message: UI or API workflow JSON, or other JSON."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return "JSON-like text"
    if isinstance(data, dict) and isinstance(data.get("nodes"), list):
        return "UI-format workflow JSON"
    if isinstance(data, dict) and any(isinstance(v, dict) and "class_type" in v for v in data.values()):
        return "API-format workflow JSON"
    return "JSON"


def is_encoded_flow(text: str) -> bool:
    """Whether `text` decodes as an encoded flow (for a clearer message where workflow JSON was expected)."""
    try:
        decode_flow(text)
    except FlowRLError:
        return False
    return True


def decode_flow(text: str) -> dict:
    """Decode encoded flow text to an API graph (node ids "1".."n"); exact inverse of encode_flow.

    Raises:
        FlowDecodeError: naming the line and column of the first malformed piece.
    """
    if not isinstance(text, str) or not text.strip():
        raise FlowDecodeError("line 1: empty flow text; expected one `ClassType name=value ...` line per node")
    if text.lstrip()[0] in "{[":  # a bare class type never starts so: this is a JSON file
        raise FlowDecodeError(
            f"line 1: this is {_json_kind(text)}, not an encoded flow; "
            "use `flowrl flow encode` to encode it (encode_flow(load_workflow(path)) in Python)"
        )
    lines = [
        (i, line) for i, line in enumerate(text.replace("\r\n", "\n").split("\n"), 1) if line.strip()
    ]  # CRLF: an editor's
    graph: dict[str, dict] = {}
    for node_no, (lineno, raw) in enumerate(lines, 1):
        if (bad := LONE_SURROGATE.search(raw)) is not None:  # not text: it cannot be written as UTF-8 again
            raise FlowDecodeError(
                f"line {lineno}, column {bad.start() + 1}: a lone surrogate character (\\ud800-\\udfff) is not text; "
                "fix the file's encoding (save it as UTF-8)"
            )
        cur = _Line(raw, lineno)
        class_type = cur.class_type()
        inputs: dict[str, Any] = {}
        while cur.separator():
            name = cur.name()
            if name in inputs:
                raise cur.fail(f"input {name!r} appears twice")
            inputs[name] = cur.value(node_no)
        graph[str(node_no)] = {"class_type": class_type, "inputs": inputs}
    return graph
