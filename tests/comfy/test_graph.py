"""Loading API/UI workflow files and the graph helpers."""

from __future__ import annotations

import json

import pytest

from flowrl.comfy.graph import PROMPT_PLACEHOLDER, WorkflowLoadError, fill_prompt, is_link, load_workflow
from flowrl.errors import FlowRLError

GRAPH = {
    "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "a.safetensors"}},
    "2": {"class_type": "CLIPTextEncode", "inputs": {"text": f"{PROMPT_PLACEHOLDER}, masterpiece", "clip": ["1", 1]}},
}


def test_is_link():
    assert is_link(["1", 0]) and is_link([3, 2])
    assert not is_link(["1", "0"]) and not is_link([1.5, 0]) and not is_link("x") and not is_link([True, 0])
    assert not is_link(["a", 0, 1])


def test_fill_prompt_copies_and_replaces():
    out = fill_prompt(GRAPH, "a cat \u00e9\u4e2d\U0001f431\n\t")
    assert out["2"]["inputs"]["text"] == "a cat \u00e9\u4e2d\U0001f431\n\t, masterpiece"
    assert GRAPH["2"]["inputs"]["text"].startswith(PROMPT_PLACEHOLDER)
    assert out["2"]["inputs"]["clip"] == ["1", 1]


def test_load_api_and_wrapped(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(GRAPH))
    (tmp_path / "b.json").write_text(json.dumps({"prompt": GRAPH, "client_id": "x"}))
    assert load_workflow(tmp_path / "a.json") == GRAPH
    assert load_workflow(tmp_path / "b.json") == GRAPH


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ("{}", "no nodes"),
        ('{"1": {"inputs": {}}}', "class_type"),
        ('{"1": {"class_type": "X", "inputs": [1]}}', "'inputs' must be an object"),
        ('{"nodes": []}', "no executable nodes"),
        ("[" * 100000 + "]" * 100000, "nested too deeply"),
    ],
)
def test_bad_files_raise_clear_errors(tmp_path, content, needle):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(FlowRLError, match=needle) as info:
        load_workflow(path)
    assert str(path) in str(info.value)


def test_binary_missing_directory_and_huge(tmp_path):
    png = tmp_path / "x.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(WorkflowLoadError, match="not UTF-8"):
        load_workflow(png)
    with pytest.raises(WorkflowLoadError, match="cannot read"):
        load_workflow(tmp_path / "missing.json")
    with pytest.raises(WorkflowLoadError, match="directory"):
        load_workflow(tmp_path)
    big = tmp_path / "big.json"
    big.write_text('{"1": {"class_type": "Note", "inputs": {"text": "' + "x" * 10_000_000 + '"}}}')
    with pytest.raises(WorkflowLoadError, match="larger than"):
        load_workflow(big)
