"""Graph validation: the shared API files pass, each defect kind is reported, bad input stays fast and clear."""

from __future__ import annotations

import copy

import pytest

from flowrl.comfy.graph import PROMPT_PLACEHOLDER, fill_prompt, load_workflow
from flowrl.comfy.validate import MAX_REPORT_LINES, GraphValidationError, ensure_valid, validate_graph

# Shared files whose only problems may be unknown custom class types (none today: the catalog covers all).
SKIPPED_API_FILES: dict[str, str] = {}

T2I = {
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
    "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 1024, "height": 1024, "batch_size": 1}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": PROMPT_PLACEHOLDER, "clip": ["4", 1]}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
    "3": {
        "class_type": "KSampler",
        "inputs": {
            "seed": 1,
            "steps": 25,
            "cfg": 7.0,
            "sampler_name": "dpmpp_2m",
            "scheduler": "karras",
            "denoise": 1.0,
            "model": ["4", 0],
            "positive": ["6", 0],
            "negative": ["7", 0],
            "latent_image": ["5", 0],
        },
    },
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "out", "images": ["8", 0]}},
}


def broken(**changes):
    graph = copy.deepcopy(T2I)
    for path, value in changes.items():
        node_id, _, name = path.partition("__")
        if name:
            if value is None:
                del graph[node_id]["inputs"][name]
            else:
                graph[node_id]["inputs"][name] = value
        elif value is None:
            del graph[node_id]
        else:
            graph[node_id] = value
    return graph


@pytest.mark.parametrize("folder", ["api", "ui"])
def test_every_shared_file_validates(shared_workflows, folder):
    """API files as they are, UI files after conversion."""
    failing = {}
    for path in sorted((shared_workflows / folder).glob("*.json")):
        if path.name in SKIPPED_API_FILES:
            continue
        problems = validate_graph(load_workflow(path))
        if problems:
            failing[path.name] = [str(p) for p in problems]
    assert not failing


def test_good_graph_is_valid_with_any_prompt():
    assert validate_graph(T2I) == []
    ensure_valid(fill_prompt(T2I, 'caf\u00e9 \u732b \U0001f431 \x00\x1b[31m "quotes" \\ \n' * 50))


@pytest.mark.parametrize(
    ("graph", "where", "needle"),
    [
        (
            broken(**{"3": {"class_type": "FancySampler", "inputs": {}}}),
            ("3", None),
            "unknown class type 'FancySampler'",
        ),
        (broken(**{"3__model": None}), ("3", "model"), "missing required link input (MODEL)"),
        (broken(**{"3__steps": None}), ("3", "steps"), "missing required widget input (INT)"),
        (broken(**{"3__model": ["42", 0]}), ("3", "model"), "missing node '42'"),
        (broken(**{"3__model": ["4", 7]}), ("3", "model"), "output 7 of node 4"),
        (
            broken(**{"3__model": ["4", 1]}),
            ("3", "model"),
            "expects MODEL but node 4 (CheckpointLoaderSimple) output 1 gives CLIP",
        ),
        (broken(**{"3__sampler_name": "warp_drive"}), ("3", "sampler_name"), "'warp_drive' is not one of"),
        (broken(**{"3__denoise": 1.5}), ("3", "denoise"), "above the maximum 1.0"),
        (broken(**{"3__steps": 0}), ("3", "steps"), "below the minimum 1"),
        (broken(**{"3__steps": "twenty"}), ("3", "steps"), "expected an integer"),
        (broken(**{"3__cfg": float("nan")}), ("3", "cfg"), "finite number"),
        (broken(**{"3__seed": 10**40}), ("3", "seed"), "above the maximum"),
        (broken(**{"6__text": 5}), ("6", "text"), "expected a string"),
        (broken(**{"3__model": "model.safetensors"}), ("3", "model"), "expects a link"),
        (broken(**{"9": None}), (None, None), "no output node"),
        (broken(**{"3__latent_image": ["8", 0]}), (None, None), "cycle"),
    ],
)
def test_each_defect_is_reported(graph, where, needle):
    problems = validate_graph(graph)
    match = [p for p in problems if needle in str(p)]
    assert match, [str(p) for p in problems]
    assert (match[0].node_id, match[0].input) == where
    if where[0] is not None:
        assert match[0].class_type == graph[where[0]]["class_type"]


def test_ensure_valid_lists_every_problem_and_truncates():
    graph = copy.deepcopy(T2I)
    for i in range(100):
        graph[f"x{i}"] = {"class_type": "KSampler", "inputs": {"steps": -1}}
    with pytest.raises(GraphValidationError) as info:
        ensure_valid(graph, source="big.json")
    message = str(info.value)
    assert message.startswith(f"big.json: {len(info.value.problems)} problem(s)")
    assert len(message.splitlines()) == MAX_REPORT_LINES + 2 and "more" in message.splitlines()[-1]


def test_5000_node_chain_validates():
    """A 5,000-deep chain validates without recursion limits (its speed is a benchmark's business, not a unit test's)."""
    graph = copy.deepcopy(T2I)
    prev = "4"
    for i in range(5000):
        graph[f"f{i}"] = {
            "class_type": "FreeU_V2",
            "inputs": {"b1": 1.3, "b2": 1.4, "s1": 0.9, "s2": 0.2, "model": [prev, 0]},
        }
        prev = f"f{i}"
    graph["3"]["inputs"]["model"] = [prev, 0]
    assert validate_graph(graph) == []
