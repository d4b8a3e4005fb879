"""The ComfyUI API graph model: node id -> {"class_type", "inputs"}, plus loading and prompt filling."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from flowrl.errors import FlowRLError

PROMPT_PLACEHOLDER = "<prompt>"
MAX_FILE_BYTES = 5 * 1024 * 1024


class WorkflowLoadError(FlowRLError):
    """A workflow file cannot be read as a ComfyUI API or UI graph."""


def is_link(value: Any) -> bool:
    """True when an input value is a link [node_id, output_index]."""
    return (isinstance(value, list) and len(value) == 2 and isinstance(value[0], (str, int))
            and not isinstance(value[0], bool) and isinstance(value[1], int) and not isinstance(value[1], bool))


def fill_prompt(graph: dict, prompt: str) -> dict:
    """Return a copy of `graph` with every PROMPT_PLACEHOLDER in string inputs replaced by `prompt`."""
    out = copy.deepcopy(graph)
    for node in out.values():
        for name, value in node.get("inputs", {}).items():
            if isinstance(value, str) and PROMPT_PLACEHOLDER in value:
                node["inputs"][name] = value.replace(PROMPT_PLACEHOLDER, prompt)
    return out


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
                "is this an API-format (\"Save (API format)\") or UI workflow file?")
        if not isinstance(node.get("inputs", {}), dict):
            raise WorkflowLoadError(f"{source}: node {node_id!r} ({node['class_type']}): 'inputs' must be an object")
        node.setdefault("inputs", {})
    return data


def parse_workflow(data: Any, source: str = "<graph>") -> dict:
    """Return the API graph for parsed JSON in API, wrapped-API or UI form (UI is converted)."""
    if isinstance(data, dict) and is_ui_format(data):
        from flowrl.comfy.ui import ui_to_api

        return ui_to_api(data, source=source)
    return as_api_graph(data, source)


def load_workflow(path: str | Path) -> dict:
    """Read an API or UI workflow JSON file and return its API graph.

    Raises:
        WorkflowLoadError: missing, too large (> 5 MB), not JSON, not a graph, or empty.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise WorkflowLoadError(f"{path}: cannot read ({exc.strerror})") from None
    if path.is_dir():
        raise WorkflowLoadError(f"{path}: is a directory; give a workflow .json file")
    if size > MAX_FILE_BYTES:
        raise WorkflowLoadError(f"{path}: {size / 1e6:.1f} MB is larger than the {MAX_FILE_BYTES // 2**20} MiB "
                                "limit for a workflow; is this really a ComfyUI workflow?")
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise WorkflowLoadError(f"{path}: not UTF-8 text; give the workflow .json (not the PNG)") from None
    except json.JSONDecodeError as exc:
        raise WorkflowLoadError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except RecursionError:
        raise WorkflowLoadError(f"{path}: JSON nested too deeply to be a workflow") from None
    return parse_workflow(data, str(path))
