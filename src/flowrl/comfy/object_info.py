"""What a user's ComfyUI has installed, from its `/object_info` (a server URL or a saved copy).

`/object_info` lists every node class the server can run, with its inputs; a combo input lists its
allowed values, and for loaders those are the model files on disk. From it this module:
checks a workflow for missing custom nodes and model files (with the nearest installed
alternative), validates a workflow as that server would, and restricts a flow schema (the value
vocabularies constrained decoding draws from) to what is installed.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowrl.comfy.catalog import Catalog, InputSpec, NodeSpec, load_catalog
from flowrl.comfy.graph import is_link
from flowrl.comfy.validate import MAX_REPORT_LINES, Problem, types_compatible, validate_graph
from flowrl.errors import FlowRLError

if TYPE_CHECKING:
    from flowrl.encoding.schema import Schema

MAX_BYTES = 64 * 2**20  # a real /object_info is 1-10 MB; anything far larger is not one
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
FETCH_TIMEOUT = 30.0
LISTED = 6
CLASS_CUTOFF = 85  # a node class is only "nearest" when its name is nearly the same (FreeU / FreeU_V2), not any loader  # values named in a note before "(+n more)"


class ObjectInfoError(FlowRLError):
    """An /object_info cannot be read, or nothing the model generates can run on that ComfyUI."""


@dataclass(frozen=True)
class ObjectInfo:
    """A server's node definitions: class type -> its /object_info entry."""

    nodes: dict[str, dict]
    source: str = "<object_info>"

    @classmethod
    def from_dict(cls, raw: Any, source: str = "<object_info>") -> ObjectInfo:
        """Check the shape ({class: {"input": {...}, "output": [...]}}) and keep the usable entries."""
        if not isinstance(raw, dict) or not raw:
            raise ObjectInfoError(f"{source}: expected the JSON object that ComfyUI's /object_info returns "
                                  f"(node class -> definition), got {type(raw).__name__ if raw else 'an empty object'}")
        nodes = {ct: d for ct, d in raw.items() if isinstance(d, dict) and isinstance(d.get("input", {}), dict)}
        if not nodes:
            raise ObjectInfoError(f"{source}: no node definitions (entries with an 'input' object); "
                                  "save the answer of http://<comfyui>/object_info, not another endpoint")
        return cls(nodes, source)

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
                    inputs[name] = InputSpec(name, "widget", "COMBO", required, choices=choices, default=opts.get("default"))
                elif isinstance(typ, str) and typ in WIDGET_TYPES and not opts.get("forceInput"):
                    inputs[name] = InputSpec(name, "widget", typ, required, min=opts.get("min"), max=opts.get("max"),
                                             default=opts.get("default"))
                else:
                    inputs[name] = InputSpec(name, "link", str(typ), required)
            outputs = [str(t) if not isinstance(t, list) else "COMBO" for t in entry.get("output") or []]
            specs[ct] = NodeSpec(ct, inputs, outputs, is_output_node=bool(entry.get("output_node")))
        return Catalog(specs)


def load_object_info(where: str | Path, timeout: float = FETCH_TIMEOUT) -> ObjectInfo:
    """Read /object_info from a ComfyUI URL (http://host:8188, or the full .../object_info URL) or a saved JSON file.

    Raises:
        ObjectInfoError: unreachable server, error answer, unreadable or oversized file, not an /object_info.
    """
    where = str(where)
    if where.startswith(("http://", "https://")):
        return ObjectInfo.from_dict(_fetch(where, timeout), where)
    path = Path(where)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ObjectInfoError(f"{path}: cannot read ({exc.strerror}); pass a ComfyUI URL (http://127.0.0.1:8188) "
                              "or a file saved from <ComfyUI URL>/object_info") from None
    if path.is_dir() or size > MAX_BYTES:
        raise ObjectInfoError(f"{path}: not an /object_info file ({'a directory' if path.is_dir() else f'{size / 2**20:.0f} MiB'}); "
                              "save the JSON from <ComfyUI URL>/object_info")
    try:
        raw = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ObjectInfoError(f"{path}: not JSON ({exc}); save the JSON from <ComfyUI URL>/object_info") from None
    return ObjectInfo.from_dict(raw, str(path))


def _fetch(url: str, timeout: float) -> Any:
    import httpx

    full = url if url.rstrip("/").endswith("/object_info") else url.rstrip("/") + "/object_info"
    try:
        with httpx.stream("GET", full, timeout=timeout, follow_redirects=False) as response:
            if response.status_code != 200:
                raise ObjectInfoError(f"GET {full}: answered {response.status_code}; is this a ComfyUI server?")
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_BYTES:
                    raise ObjectInfoError(f"GET {full}: answer larger than {MAX_BYTES // 2**20} MiB; not an /object_info")
    except httpx.HTTPError as exc:
        raise ObjectInfoError(f"GET {full}: {exc.__class__.__name__} ({exc}); start ComfyUI (python main.py --listen) "
                              "or pass a saved copy of its /object_info") from None
    try:
        return json.loads(bytes(body))
    except ValueError:
        raise ObjectInfoError(f"GET {full}: the answer is not JSON; is this a ComfyUI server?") from None


def object_info_from_text(text: str, source: str = "request parameter object_info") -> ObjectInfo:
    """Parse /object_info sent as JSON text (the served model's request parameter)."""
    try:
        raw = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise ObjectInfoError(f"{source}: not JSON ({exc}); send the text of <ComfyUI URL>/object_info") from None
    return ObjectInfo.from_dict(raw, source)


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
            return (f"missing custom node: node {self.node_id} {self.class_type!r} is not installed{alt}; install the node pack "
                    "that provides it (ComfyUI-Manager: Install Missing Custom Nodes)")
        kind = "model file" if self.is_file else "value"
        return f"missing {kind}: node {self.node_id} ({self.class_type}) {self.input}={self.value!r} is not installed{alt}"


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
    problems = [p for p in validate_graph(graph, info.catalog)
                if (str(p.node_id), p.input) not in covered and str(p.node_id) not in absent]
    return missing, problems


def format_installed(missing: list[Missing], problems: list[Problem], source: str, info: ObjectInfo) -> str:
    """One report: missing custom nodes and model files first (with alternatives), then other problems."""
    lines = [f"{source}: {len(missing) + len(problems)} problem(s) on the ComfyUI of {info.source}"]
    items = [*missing, *problems]
    lines += [f"  - {item}" for item in items[:MAX_REPORT_LINES]]
    if len(items) > MAX_REPORT_LINES:
        lines.append(f"  ... and {len(items) - MAX_REPORT_LINES} more")
    return "\n".join(lines)


def _listed(values: list) -> str:
    shown = ", ".join(map(str, values[:LISTED]))
    return shown + (f" (+{len(values) - LISTED} more)" if len(values) > LISTED else "")


def restrict_schema(schema: Schema, info: ObjectInfo, catalog: Catalog | None = None) -> tuple[Schema, list[str]]:
    """The flow schema cut down to what `info`'s server can run, and one note per choice that had to change.

    Classes the server lacks are dropped; every file-list field's vocabulary becomes the installed files
    (the model's own values first); a class whose required file field has no installed file, or whose
    required link type nothing left can produce, is dropped.

    Raises:
        ObjectInfoError: no checkpoint-to-output path remains (nothing generated could run there).
    """
    catalog = catalog or load_catalog()
    out = copy.deepcopy(schema)
    notes: list[str] = []
    for ct in list(out.classes):
        spec = catalog.get(ct)
        if ct not in info.nodes:
            del out.classes[ct]
            notes.append(f"{ct} is not installed on this ComfyUI (a custom node, or a newer ComfyUI): left out")
            continue
        unusable = False
        for name, stats in out.classes[ct].fields.items():
            ispec = spec.inputs.get(name) if spec else None
            allowed = info.choices(ct, name)
            if ispec is None or ispec.type != "COMBO" or allowed is None:
                continue
            missing = [v for v in stats.vocab if v not in allowed]
            if ispec.choices is not None:  # fixed choices (samplers, ...): the grammar takes them from the catalog
                if missing:
                    notes.append(f"{ct}.{name}: {_listed(missing)} not on this ComfyUI (older version?); not enforced")
                continue
            installed = [v for v in allowed if isinstance(v, str) and v.strip()]
            stats.vocab = dict(sorted(((v, stats.vocab.get(v, 0)) for v in installed), key=lambda kv: (-kv[1], kv[0])))
            stats.vocab_truncated = False
            if not installed and ispec.required:
                unusable = True
                notes.append(f"{ct} left out: no {name} installed (the model knew {_listed(missing)})")
            elif missing:
                notes.append(f"{ct}.{name}: {_listed(missing)} not installed: only {_listed(installed)} allowed")
        if unusable:
            del out.classes[ct]
    _drop_unreachable(out, catalog, notes)
    return out, notes


def _drop_unreachable(schema: Schema, catalog: Catalog, notes: list[str]) -> None:
    """Drop classes needing a link type no remaining class produces; raise when no output node stays reachable."""
    specs = {ct: catalog.get(ct) for ct in schema.classes if catalog.get(ct) is not None}
    produced: set[str] = set()
    reachable: set[str] = set()
    changed = True
    while changed:  # fixpoint: a class is reachable once every required link type is produced
        changed = False
        for ct, spec in specs.items():
            needs = [i.type for i in spec.inputs.values() if i.kind == "link" and i.required]
            if ct not in reachable and all(any(types_compatible(t, p) for p in produced) for t in needs):
                reachable.add(ct)
                produced |= set(spec.outputs)
                changed = True
    for ct in sorted(set(specs) - reachable):
        del schema.classes[ct]
        needs = sorted({i.type for i in specs[ct].inputs.values() if i.kind == "link" and i.required
                        and not any(types_compatible(i.type, p) for p in produced)})
        notes.append(f"{ct} left out: needs {', '.join(needs)}, which nothing installed produces")
    if "MODEL" not in produced or not any(specs[ct].is_output_node for ct in reachable):
        raise ObjectInfoError("nothing this model generates can run on that ComfyUI: no installed loader gives a MODEL "
                              "with an output node after it (see the notes: " + "; ".join(notes[:LISTED]) +
                              "); install a checkpoint (models/checkpoints) or pass the right --object-info")
