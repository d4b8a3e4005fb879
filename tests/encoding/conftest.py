"""Shared fixtures for the encoding tests: the shared API/UI workflows, loaded once per session."""

from __future__ import annotations

import json

import pytest

from flowrl.comfy.graph import load_workflow
from tests.conftest import shared_path


def _manifest() -> list[dict]:
    path = shared_path("data", "comfyui_workflows", "manifest.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="session")
def api_graphs() -> dict[str, dict]:
    """Every shared API workflow, by file name."""
    folder = shared_path("data", "comfyui_workflows", "api")
    return {p.name: load_workflow(p) for p in sorted(folder.glob("*.json"))}


@pytest.fixture(scope="session")
def t2i_api_graphs() -> dict[str, dict]:
    """The shared API workflows whose manifest task is text-to-image."""
    root = shared_path("data", "comfyui_workflows")
    return {
        m["file"]: load_workflow(root / m["file"])
        for m in _manifest()
        if m["format"] == "api" and m["task"] == "text-to-image"
    }


@pytest.fixture(scope="session")
def ui_files() -> list:
    return sorted(shared_path("data", "comfyui_workflows", "ui").glob("*.json"))
