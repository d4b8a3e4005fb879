"""What a user's ComfyUI has installed, from its `/object_info` (a server URL or a saved copy).

`/object_info` lists every node class the server can run, with its inputs; a combo input lists its
allowed values, and for loaders those are the model files on disk. From it this module:
checks a workflow for missing custom nodes and model files (with the nearest installed
alternative) and validates a workflow as that server would. Restricting a flow schema (the value
vocabularies constrained decoding draws from) to what is installed is `flowrl.encoding.installed`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path
from typing import Any

from flowrl.comfy.catalog import Catalog, InputSpec, NodeSpec, load_catalog
from flowrl.comfy.graph import is_link
from flowrl.comfy.validate import MAX_REPORT_LINES, Problem, validate_graph
from flowrl.errors import FlowRLError

PACKS_PATH = Path(__file__).with_name("custom_node_packs.json")  # written by scripts/build_object_info_fixture.py
MAX_BYTES = 64 * 2**20  # a real /object_info is 1-10 MB; anything far larger is not one
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
FETCH_TIMEOUT = 30.0  # seconds for the whole /object_info fetch
READ_TIMEOUT = 10.0  # seconds one connect or read may wait
CLASS_CUTOFF = 85  # a node class is only "nearest" when its name is nearly the same (FreeU / FreeU_V2), not any loader


class ObjectInfoError(FlowRLError):
    """An /object_info cannot be read, or nothing the model generates can run on that ComfyUI."""


def _json_kind(value: Any) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")


def _check_entry(ct: str, entry: Any, source: str, fix: str) -> None:
    """Raise naming the field when one /object_info entry is not {"input": {...}, "output": [...], ...}."""
    where = f"{source}: [{ct!r}]"
    if not isinstance(entry, dict):
        raise ObjectInfoError(f"{where} is a {_json_kind(entry)}, not a node definition object; {fix}")
    inputs = entry.get("input")
    if not isinstance(inputs, dict):
        raise ObjectInfoError(
            f"{where}['input'] is {'missing' if 'input' not in entry else 'a ' + _json_kind(inputs)}, "
            f"not an object of required/optional inputs; {fix}"
        )
    for group in ("required", "optional"):
        specs = inputs.get(group, {})
        if not isinstance(specs, dict):
            raise ObjectInfoError(
                f"{where}['input'][{group!r}] is a {_json_kind(specs)}, not an object (input name -> spec); {fix}"
            )
        for name, spec in specs.items():
            if not (isinstance(spec, list) and spec and isinstance(spec[0], (str, list))):
                raise ObjectInfoError(
                    f"{where}['input'][{group!r}][{name!r}] is {json.dumps(spec)[:60]}, not [type or choices, "
                    f"options]; {fix}"
                )
    output = entry.get("output", [])
    if not isinstance(output, list) or not all(isinstance(t, (str, list)) for t in output):
        raise ObjectInfoError(f"{where}['output'] is {json.dumps(output)[:60]}, not a list of output types; {fix}")


@dataclass(frozen=True)
class ObjectInfo:
    """A server's node definitions: class type -> its /object_info entry."""

    nodes: dict[str, dict]
    source: str = "<object_info>"

    @classmethod
    def from_dict(cls, raw: Any, source: str = "<object_info>") -> ObjectInfo:
        """Check the shape ({class: {"input": {"required": {...}}, "output": [...]}}) of every entry.

        Raises:
            ObjectInfoError: naming the first entry and field that is not what ComfyUI's /object_info sends.
        """
        fix = "save the answer of http://<comfyui>/object_info again (or pass the URL)"
        if isinstance(raw, dict) and {"system", "devices"} <= set(raw):
            raise ObjectInfoError(f"{source}: this is ComfyUI's /system_stats answer, not /object_info; {fix}")
        if not isinstance(raw, dict) or not raw:
            got = f"a JSON {_json_kind(raw)}" if raw else "an empty object"
            raise ObjectInfoError(
                f"{source}: expected the JSON object that ComfyUI's /object_info returns "
                f"(node class -> definition), got {got}; {fix}"
            )
        for ct, entry in raw.items():
            _check_entry(ct, entry, source, fix)
        return cls(raw, source)

    @property
    def classes(self) -> set[str]:
        return set(self.nodes)

    def _inputs(self, class_type: str) -> dict[str, tuple[Any, dict, bool]]:
        """Input name -> (type or list of values, options, required) for one class."""
        entry = self.nodes.get(class_type, {}).get("input") or {}
        out = {}
        for group, required in (("required", True), ("optional", False)):
            for name, spec in (entry.get(group) or {}).items():
                if isinstance(spec, (list, tuple)) and spec:
                    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
                    out[name] = (spec[0], opts, required)
        return out

    def choices(self, class_type: str, name: str) -> list | None:
        """The allowed values of a combo input (model file lists included), or None when it is not a combo."""
        typ, opts, _ = self._inputs(class_type).get(name, (None, {}, False))
        if isinstance(typ, list):
            return typ
        if typ == "COMBO":  # newer servers: ["COMBO", {"options": [...]}]
            return list(opts.get("options") or [])
        return None

    @cached_property
    def catalog(self) -> Catalog:
        """The definitions as a node catalog, so `validate_graph` checks a graph as this server would."""
        specs = {}
        for ct, entry in self.nodes.items():
            inputs = {}
            for name, (typ, opts, required) in self._inputs(ct).items():
                choices = self.choices(ct, name)
                if choices is not None:
                    inputs[name] = InputSpec(
                        name, "widget", "COMBO", required, choices=choices, default=opts.get("default")
                    )
                elif isinstance(typ, str) and typ in WIDGET_TYPES and not opts.get("forceInput"):
                    inputs[name] = InputSpec(
                        name,
                        "widget",
                        typ,
                        required,
                        min=opts.get("min"),
                        max=opts.get("max"),
                        default=opts.get("default"),
                    )
                else:
                    inputs[name] = InputSpec(name, "link", str(typ), required)
            outputs = [str(t) if not isinstance(t, list) else "COMBO" for t in entry.get("output") or []]
            specs[ct] = NodeSpec(ct, inputs, outputs, is_output_node=bool(entry.get("output_node")))
        return Catalog(specs)


def load_object_info(where: str | Path, timeout: float = FETCH_TIMEOUT) -> ObjectInfo:
    """Read /object_info from a ComfyUI URL (http://host:8188, or the full .../object_info URL) or a saved JSON file.

    Raises:
        ObjectInfoError: empty argument, a mistyped URL, unreachable server, error answer, unreadable or oversized
            file, not an /object_info (named field).
    """
    where = str(where)
    fix = "pass a ComfyUI URL (http://127.0.0.1:8188) or a file saved from <ComfyUI URL>/object_info"
    if not where.strip():
        raise ObjectInfoError(f"--object-info is empty; {fix}")
    path = Path(where)
    if where.lower().startswith(("http:", "https:", "htp", "htps")) or ("://" in where and not path.exists()):
        from flowrl.comfy.client import check_server_url

        try:
            url = check_server_url(where, "--object-info")
        except FlowRLError as exc:
            raise ObjectInfoError(str(exc)) from None
        return ObjectInfo.from_dict(_fetch(url, timeout), url)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ObjectInfoError(f"{path}: cannot read ({exc.strerror}); {fix}") from None
    if path.is_dir() or size > MAX_BYTES:
        raise ObjectInfoError(
            f"{path}: not an /object_info file ({'a directory' if path.is_dir() else f'{size / 2**20:.0f} MiB'}); "
            "save the JSON from <ComfyUI URL>/object_info"
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ObjectInfoError(f"{path}: cannot read ({exc.strerror}); {fix}") from None
    return ObjectInfo.from_dict(_parse(data, str(path)), str(path))


def _parse(data: bytes, source: str) -> Any:
    """The JSON of an /object_info answer or file (a UTF-8 BOM is skipped); an HTML page or non-JSON is named."""
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise ObjectInfoError(
            f"{source}: not UTF-8 text (byte {data[exc.start]:#04x} at offset {exc.start}); "
            "save the JSON from <ComfyUI URL>/object_info"
        ) from None
    if text.lstrip()[:1] == "<":
        raise ObjectInfoError(
            f"{source}: an HTML (or XML) page, not JSON: that is not ComfyUI's /object_info "
            "(a login page, a proxy, or the web UI?); save the JSON from <ComfyUI URL>/object_info"
        )
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ObjectInfoError(f"{source}: not JSON ({exc}); save the JSON from <ComfyUI URL>/object_info") from None


def _fetch(url: str, timeout: float) -> Any:
    """GET <url>/object_info within `timeout` seconds in all (not per read: a server that trickles bytes is cut off)."""
    import httpx

    full = url if url.rstrip("/").endswith("/object_info") else url.rstrip("/") + "/object_info"
    deadline = time.monotonic() + timeout
    late = ObjectInfoError(
        f"GET {full}: no complete answer within {timeout:g} s; is ComfyUI busy or is this another server?"
    )
    try:
        # one connect or read waits at most READ_TIMEOUT and the deadline is checked after every chunk: the whole
        # fetch ends within timeout + READ_TIMEOUT however slowly the server sends
        with httpx.stream("GET", full, timeout=min(timeout, READ_TIMEOUT), follow_redirects=False) as response:
            if response.is_redirect:
                raise ObjectInfoError(
                    f"GET {full}: answered {response.status_code}, a redirect to "
                    f"{response.headers.get('location')!r}; ComfyUI does not redirect: pass the server's own URL"
                )
            if response.status_code != 200:
                raise ObjectInfoError(f"GET {full}: answered {response.status_code}; is this a ComfyUI server?")
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_BYTES:
                    raise ObjectInfoError(
                        f"GET {full}: answer larger than {MAX_BYTES // 2**20} MiB; not an /object_info"
                    )
                if time.monotonic() > deadline:
                    raise late
    except httpx.TimeoutException:
        raise late from None
    except httpx.HTTPError as exc:
        raise ObjectInfoError(
            f"GET {full}: {exc.__class__.__name__} ({exc}); start ComfyUI (python main.py --listen) "
            "or pass a saved copy of its /object_info"
        ) from None
    return _parse(bytes(body), f"GET {full}")


def object_info_from_text(text: str, source: str = "request parameter object_info") -> ObjectInfo:
    """Parse /object_info sent as JSON text (the served model's request parameter)."""
    if not isinstance(text, str):
        raise ObjectInfoError(
            f"{source}: a {type(text).__name__}, not JSON text; send the text of <ComfyUI URL>/object_info"
        )
    return ObjectInfo.from_dict(_parse(text.encode("utf-8", "surrogatepass"), source), source)


def installed_workflow(graph: dict, info: ObjectInfo) -> tuple[dict | None, str | None]:
    """(graph, None) when it would run on `info`'s server, else (None, one report of what is missing or wrong)."""
    missing, problems = check_installed(graph, info)
    if not missing and not problems:
        return graph, None
    return None, format_installed(missing, problems, "generated workflow", info)


def nearest(value: str, choices: list, cutoff: float = 0) -> str | None:
    """The installed value most like `value` (rapidfuzz WRatio, 0-100, at least `cutoff`), or None when there is none.

    >>> nearest("sd_xl_base_1.0.safetensors", ["sdxl/sd_xl_base_1.0_0.9vae.safetensors", "v1-5-pruned.ckpt"])
    'sdxl/sd_xl_base_1.0_0.9vae.safetensors'
    """
    from rapidfuzz import fuzz, process

    names = [c for c in choices if isinstance(c, str)]
    hit = process.extractOne(value, names, scorer=fuzz.WRatio, score_cutoff=cutoff) if names else None
    return hit[0] if hit else None


@dataclass(frozen=True)
class Missing:
    """A node class or combo value (e.g. a model file) the server does not have."""

    node_id: str
    class_type: str
    input: str | None  # None: the class itself is missing
    value: Any
    alternative: str | None
    is_file: bool = True

    def __str__(self) -> str:
        alt = f"; nearest installed: {self.alternative!r}" if self.alternative else ""
        if self.input is None:
            pack = custom_node_packs().get(self.class_type)
            if pack:
                return (
                    f"missing custom node: node {self.node_id} {self.class_type!r} is not installed{alt}; install the node pack "
                    f"{pack} (ComfyUI-Manager: Install Missing Custom Nodes)"
                )
            if self.class_type in load_catalog():
                return (
                    f"missing core node: node {self.node_id} {self.class_type!r} is not on this ComfyUI{alt}; it is part of "
                    "a newer ComfyUI: update ComfyUI (git pull, or the Manager's Update ComfyUI)"
                )
            return (
                f"unknown node class: node {self.node_id} {self.class_type!r} is not installed{alt}; install the custom node "
                "pack that provides it (ComfyUI-Manager: Install Missing Custom Nodes) or update ComfyUI"
            )
        kind = "model file" if self.is_file else "value"
        return (
            f"missing {kind}: node {self.node_id} ({self.class_type}) {self.input}={self.value!r} is not installed{alt}"
        )


@cache
def custom_node_packs() -> dict[str, str]:
    """Catalog class -> the custom node pack providing it (custom_node_packs.json); every other catalog class is core."""
    return json.loads(PACKS_PATH.read_text(encoding="utf-8"))


def find_missing(graph: dict, info: ObjectInfo, catalog: Catalog | None = None) -> list[Missing]:
    """Every node class and combo value of an API graph that `info`'s server lacks, with the nearest installed one.

    A combo whose node-catalog entry has no fixed choices is a file list (checkpoints, LoRAs, upscalers, ...).
    """
    catalog = catalog or load_catalog()
    out = []
    for nid, node in graph.items():
        ct = node["class_type"]
        if ct not in info.nodes:
            out.append(Missing(str(nid), ct, None, None, nearest(ct, sorted(info.classes), CLASS_CUTOFF)))
            continue
        for name, value in node.get("inputs", {}).items():
            allowed = info.choices(ct, name)
            if allowed is None or is_link(value) or value in allowed:
                continue
            spec = catalog.get(ct)
            fixed = spec is not None and name in spec.inputs and spec.inputs[name].choices is not None
            out.append(Missing(str(nid), ct, name, value, nearest(str(value), allowed), is_file=not fixed))
    return out


def check_installed(graph: dict, info: ObjectInfo) -> tuple[list[Missing], list[Problem]]:
    """What is missing on `info`'s server, and every other problem that server's validation would report."""
    missing = find_missing(graph, info)
    covered = {(m.node_id, m.input) for m in missing}
    absent = {m.node_id for m in missing if m.input is None}
    problems = [
        p
        for p in validate_graph(graph, info.catalog)
        if (str(p.node_id), p.input) not in covered and str(p.node_id) not in absent
    ]
    return missing, problems


def format_installed(missing: list[Missing], problems: list[Problem], source: str, info: ObjectInfo) -> str:
    """One report: missing custom nodes and model files first (with alternatives), then other problems."""
    lines = [f"{source}: {len(missing) + len(problems)} problem(s) on the ComfyUI of {info.source}"]
    items = [*missing, *problems]
    lines += [f"  - {item}" for item in items[:MAX_REPORT_LINES]]
    if len(items) > MAX_REPORT_LINES:
        lines.append(f"  ... and {len(items) - MAX_REPORT_LINES} more")
    return "\n".join(lines)
