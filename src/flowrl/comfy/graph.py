"""The ComfyUI API graph model: node id -> {"class_type", "inputs"}, plus loading and prompt filling."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flowrl.errors import FlowRLError

PROMPT_PLACEHOLDER = "<prompt>"
MAX_FILE_BYTES = 5 * 1024 * 1024
# A real workflow nests ~6 levels (UI groups ~10); deeper JSON is junk and would exhaust the recursion
# limit in deepcopy, json.dumps or pydantic further on.
MAX_JSON_DEPTH = 64
LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class WorkflowLoadError(FlowRLError):
    """A workflow file cannot be read as a ComfyUI API or UI graph."""


def is_link(value: Any) -> bool:
    """True when an input value is a link [node_id, output_index]."""
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], (str, int))
        and not isinstance(value[0], bool)
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
    )


def fill_prompt(graph: dict, prompt: str) -> dict:
    """Return a copy of `graph` with every PROMPT_PLACEHOLDER in string inputs replaced by `prompt`."""
    out = copy.deepcopy(graph)
    for node in out.values():
        for name, value in node.get("inputs", {}).items():
            if isinstance(value, str) and PROMPT_PLACEHOLDER in value:
                node["inputs"][name] = value.replace(PROMPT_PLACEHOLDER, prompt)
    return out


def _where(path: tuple) -> str:
    return "".join(f"[{p!r}]" for p in path) or "the top level"


def check_json_tree(data: Any, source: str) -> None:
    """Reject what JSON or ComfyUI cannot carry: nesting deeper than MAX_JSON_DEPTH, lone surrogate
    escapes (\\ud800) and non-finite numbers (NaN, Infinity), naming where they are.

    Raises:
        WorkflowLoadError: naming `source` and the path of the first bad value.
    """
    stack: list[tuple[Any, tuple]] = [(data, ())]
    while stack:  # iterative: depth is what is being checked
        value, path = stack.pop()
        if len(path) > MAX_JSON_DEPTH:
            raise WorkflowLoadError(
                f"{source}: JSON nested deeper than {MAX_JSON_DEPTH} levels at {_where(path[:4])}...; "
                "no workflow nests that deep; is this really a ComfyUI workflow?"
            )
        if isinstance(value, str):
            if LONE_SURROGATE.search(value):
                raise WorkflowLoadError(
                    f"{source}: {_where(path)} holds a lone surrogate escape (e.g. \\ud800), "
                    "which is not text; remove or fix that escape"
                )
        elif isinstance(value, float):
            if value != value or value in (float("inf"), float("-inf")):
                raise WorkflowLoadError(
                    f"{source}: {_where(path)} is {value}, which JSON cannot carry and ComfyUI rejects; "
                    "give a finite number"
                )
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(key, str) and LONE_SURROGATE.search(key):
                    raise WorkflowLoadError(
                        f"{source}: key {key!r} at {_where(path)} holds a lone surrogate escape; fix the key"
                    )
                stack.append((item, (*path, key)))
        elif isinstance(value, list):
            stack.extend((item, (*path, i)) for i, item in enumerate(value))


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    keys = [k for k, _ in pairs]
    if len(set(keys)) < len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise WorkflowLoadError(
            f"duplicate key {dup!r} in one JSON object (the second would silently replace the first); "
            "rename or remove one of them"
        )
    return dict(pairs)


def _no_constant(name: str) -> Any:
    raise WorkflowLoadError(f"{name} is not valid JSON (and ComfyUI rejects it); give a finite number")


def parse_json_text(text: str, source: str, looks_encoded: Callable[[str], bool] | None = None) -> Any:
    """Parse workflow JSON strictly: no duplicate keys, NaN/Infinity, lone surrogates or absurd nesting.

    A leading UTF-8 byte-order mark is skipped (Windows editors write one). Text that `looks_encoded`
    (flowrl.encoding.codec.is_encoded_flow; passed in, as encoding sits above comfy) is pointed at `flowrl flow decode`.

    Raises:
        WorkflowLoadError: naming `source`, where the problem is and the fix.
    """
    text = text.removeprefix("\ufeff")
    try:
        data = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except WorkflowLoadError as exc:
        raise WorkflowLoadError(f"{source}: {exc}") from None
    except json.JSONDecodeError as exc:
        if looks_encoded is not None and looks_encoded(text):
            raise WorkflowLoadError(
                f"{source}: this is an encoded flow (text), not workflow JSON; "
                "use `flowrl flow decode` to turn it into a workflow"
            ) from None
        raise WorkflowLoadError(
            f"{source}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    except RecursionError:
        raise WorkflowLoadError(f"{source}: JSON nested too deeply to be a workflow") from None
    check_json_tree(data, source)
    return data


def workflow_json(graph: dict, source: str = "<graph>") -> str:
    """The API-format JSON text of a graph (indent 2), refusing values JSON cannot carry (see check_json_tree)."""
    check_json_tree(graph, source)
    return json.dumps(graph, indent=2, ensure_ascii=False, allow_nan=False)


UI_KEYS = {"links", "last_node_id", "last_link_id", "version", "groups", "extra"}  # beside `nodes` in a UI file


def is_ui_format(data: dict) -> bool:
    """True for the UI ("workflow") serialisation: a `nodes` list."""
    return isinstance(data.get("nodes"), list)


def as_api_graph(data: Any, source: str = "<graph>") -> dict:
    """Check the shape of an API graph (optionally wrapped as {"prompt": {...}}) and return it."""
    if isinstance(data, dict) and isinstance(data.get("prompt"), dict) and "class_type" not in data["prompt"]:
        data = data["prompt"]
    if not isinstance(data, dict):
        raise WorkflowLoadError(f"{source}: expected a JSON object of nodes, got {type(data).__name__}")
    if not data:
        raise WorkflowLoadError(f"{source}: the graph has no nodes; export it with 'Save (API format)'")
    for node_id, node in data.items():
        if not isinstance(node, dict) or not isinstance(node.get("class_type"), str):
            raise WorkflowLoadError(
                f"{source}: node {node_id!r} is not an object with a string 'class_type'; "
                'is this an API-format ("Save (API format)") or UI workflow file?'
            )
        if not isinstance(node.get("inputs", {}), dict):
            raise WorkflowLoadError(f"{source}: node {node_id!r} ({node['class_type']}): 'inputs' must be an object")
        node.setdefault("inputs", {})
    return data


def parse_workflow(data: Any, source: str = "<graph>") -> dict:
    """Return the API graph for parsed JSON in API, wrapped-API or UI form (UI is converted)."""
    if isinstance(data, dict) and is_ui_format(data):
        from flowrl.comfy.ui import ui_to_api

        return ui_to_api(data, source=source)
    if isinstance(data, dict) and "nodes" in data and UI_KEYS & set(data):  # a damaged UI file, not an API graph
        raise WorkflowLoadError(
            f"{source}: a UI workflow (it has {', '.join(sorted(UI_KEYS & set(data)))}) whose 'nodes' is "
            f"a {type(data['nodes']).__name__}, not a list of nodes; save the workflow from ComfyUI again"
        )
    return as_api_graph(data, source)


def load_workflow(path: str | Path, looks_encoded: Callable[[str], bool] | None = None) -> dict:
    """Read an API or UI workflow JSON file and return its API graph (`looks_encoded`: see parse_json_text).

    Raises:
        WorkflowLoadError: missing, too large (> 5 MB), not strict JSON (see parse_json_text), not a graph, or empty.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise WorkflowLoadError(f"{path}: cannot read ({exc.strerror})") from None
    if path.is_dir():
        raise WorkflowLoadError(f"{path}: is a directory; give a workflow .json file")
    if size > MAX_FILE_BYTES:
        raise WorkflowLoadError(
            f"{path}: {size / 1e6:.1f} MB is larger than the {MAX_FILE_BYTES // 2**20} MiB "
            "limit for a workflow; is this really a ComfyUI workflow?"
        )
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise WorkflowLoadError(f"{path}: not UTF-8 text; give the workflow .json (not the PNG)") from None
    return parse_workflow(parse_json_text(text, str(path), looks_encoded), str(path))
