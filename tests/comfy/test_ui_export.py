"""API -> UI export: round trip through the project's UI converter, the structure of real UI files, the layout."""

from __future__ import annotations

import itertools
import json

import pytest

from flowrl.comfy.graph import load_workflow
from flowrl.comfy.ui import ui_to_api
from flowrl.comfy.ui_export import CONTROL_VALUE, UIExportError, api_to_ui, node_boxes
from flowrl.data.augment import augment_library
from flowrl.data.base_flows import load_base_flows
from tests.comfy.isomorphism import diff, same_graph

# Values the node catalog cannot place, so `ui_to_api` drops them on re-import (as it does for real UI files):
# input name -> why. The export keeps them (after the node's own widgets); ComfyUI ignores the first.
CATALOG_GAPS = {
    "speak_and_recognation": "a widget an extension adds to every text node; not an input of the node class",
    "rem_mode": "easy imageRemBg: newer widget than the ComfyBench docs the catalog was built from",
    "torchscript_jit": "easy imageRemBg: newer widget than the ComfyBench docs the catalog was built from",
}


def round_trip(graph: dict, source: str = "<graph>") -> tuple[dict, dict]:
    ui = json.loads(json.dumps(api_to_ui(graph, source=source)))  # through JSON, as a saved file
    return ui, ui_to_api(ui, source=source)


def without_gaps(graph: dict) -> dict:
    return {
        k: {"class_type": n["class_type"], "inputs": {i: v for i, v in n["inputs"].items() if i not in CATALOG_GAPS}}
        for k, n in graph.items()
    }


def assert_no_overlap(ui: dict) -> None:
    boxes = list(node_boxes(ui).items())
    assert len(boxes) == len(ui["nodes"])
    for (a, (ax0, ay0, ax1, ay1)), (b, (bx0, by0, bx1, by1)) in itertools.combinations(boxes, 2):
        assert ax1 <= bx0 or bx1 <= ax0 or ay1 <= by0 or by1 <= ay0, f"nodes {a} and {b} overlap"


def generated_flows(n: int = 100) -> list[tuple[str, dict]]:
    """The base flows and `n` augmented variants (what the flows stage trains on)."""
    rows, _ = augment_library(load_base_flows(), 3, seed=0)
    return load_base_flows() + [(r["id"], r["graph"]) for r in rows[:n]]


def test_every_shared_api_workflow_round_trips(shared_workflows):
    files = sorted((shared_workflows / "api").glob("*.json"))
    assert len(files) >= 120
    mismatched, gaps_used = {}, set()
    for path in files:
        graph = load_workflow(path)
        ui, back = round_trip(graph, str(path))
        assert_no_overlap(ui)
        if not same_graph(graph, back):
            gaps_used |= {i for n in graph.values() for i in n["inputs"] if i in CATALOG_GAPS}
            if not same_graph(without_gaps(graph), without_gaps(back)):
                mismatched[path.name] = diff(back, graph)
    assert not mismatched, mismatched
    assert gaps_used == set(CATALOG_GAPS)  # every listed gap is still needed (drop it once the catalog knows it)


def test_generated_flows_round_trip_without_overlap():
    flows = generated_flows(100)
    assert len(flows) == 140
    for name, graph in flows:
        ui, back = round_trip(graph, name)
        assert same_graph(graph, back), (name, diff(back, graph))
        assert_no_overlap(ui)


def test_layout_goes_left_to_right_by_depth():
    _, graph = load_base_flows()[0]
    ui = api_to_ui(graph)
    x = {n["id"]: n["pos"][0] for n in ui["nodes"]}
    for _, src, _, dst, _, _ in ui["links"]:
        assert x[src] < x[dst]
    saver = next(n for n in ui["nodes"] if n["type"] == "SaveImage")
    assert x[saver["id"]] == max(x.values())
    ui["nodes"][1]["pos"] = [ui["nodes"][0]["pos"][0] + 10, ui["nodes"][0]["pos"][1] + 10]  # the check can fail
    with pytest.raises(AssertionError, match="overlap"):
        assert_no_overlap(ui)


def test_structure_matches_real_ui_files(shared_workflows):
    real = json.loads((shared_workflows / "ui" / "ex_qwen_image_qwen_image_basic_example.json").read_text())
    ui = api_to_ui(load_base_flows()[0][1])
    assert set(real) <= set(ui) and ui["version"] == real["version"]
    for key in ("last_node_id", "last_link_id", "groups", "config", "extra", "links", "nodes"):
        assert type(ui[key]) is type(real[key])
    real_node = next(n for n in real["nodes"] if n["type"] == "KSampler")
    node = next(n for n in ui["nodes"] if n["type"] == "KSampler")
    assert set(real_node) - {"title", "color", "bgcolor"} <= set(node)
    for key in ("pos", "size", "flags", "order", "mode", "inputs", "outputs", "widgets_values", "properties"):
        assert type(node[key]) is type(real_node[key]), key
    assert [i["name"] for i in node["inputs"]][:1] == ["model"] or "model" in {i["name"] for i in node["inputs"]}
    # widgets in ComfyUI's positional order, the control value after the seed
    assert (
        len(node["widgets_values"]) == len(real_node["widgets_values"]) and node["widgets_values"][1] == CONTROL_VALUE
    )
    for link in ui["links"]:
        assert [type(v) for v in link] == [type(v) for v in real["links"][0]]
    assert ui["last_link_id"] == len(ui["links"]) and ui["last_node_id"] == max(n["id"] for n in ui["nodes"])
    by_id = {n["id"]: n for n in ui["nodes"]}
    for link_id, src, slot, dst, dst_slot, typ in ui["links"]:  # both ends agree with the link
        assert link_id in by_id[src]["outputs"][slot]["links"] and by_id[dst]["inputs"][dst_slot]["link"] == link_id
        assert by_id[src]["outputs"][slot]["type"] == typ


def test_widget_fed_by_a_link_and_unknown_classes_round_trip():
    graph = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "a.safetensors"}},
        "2": {"class_type": "MyCustomSeed", "inputs": {"value": 7, "label": "x"}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "a cat"}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}},
        "5": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["1", 0],
                "positive": ["3", 0],
                "negative": ["3", 0],
                "latent_image": ["4", 0],
                "seed": ["2", 0],
                "steps": 20,
                "cfg": 7.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
            },
        },
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "x"}},
    }
    ui, back = round_trip(graph)
    assert same_graph(graph, back), diff(back, graph)
    sampler = next(n for n in ui["nodes"] if n["type"] == "KSampler")
    seed_input = next(i for i in sampler["inputs"] if i["name"] == "seed")
    assert seed_input["widget"] == {"name": "seed"} and seed_input["link"] is not None
    custom = next(n for n in ui["nodes"] if n["type"] == "MyCustomSeed")
    assert custom["outputs"][0]["type"] == "*" and custom["widgets_values"] == [7, "x"]


def test_string_ids_are_renumbered():
    graph = {f"n:{k}": v for k, v in load_base_flows()[0][1].items()}
    for node in graph.values():
        for name, value in node["inputs"].items():
            if isinstance(value, list) and len(value) == 2:
                node["inputs"][name] = [f"n:{value[0]}", value[1]]
    ui, back = round_trip(graph)
    assert sorted(n["id"] for n in ui["nodes"]) == list(range(1, len(graph) + 1))
    assert same_graph(graph, back)


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"1": {"class_type": "VAEDecode", "inputs": {"samples": ["9", 0]}}}, "missing node '9'"),
        (
            {
                "1": {"class_type": "VAEDecode", "inputs": {"samples": ["2", 0]}},
                "2": {"class_type": "VAEDecode", "inputs": {"samples": ["1", 0]}},
            },
            "cycle",
        ),
        (
            {
                "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "a.safetensors"}},
                "2": {"class_type": "VAEDecode", "inputs": {"samples": ["1", 7], "vae": ["1", 2]}},
            },
            r"node 2 input 'samples' links to output 7 of node 1 \(CheckpointLoaderSimple\), which has 3 output\(s\)",
        ),
        (
            {
                "1": {"class_type": "MyNode", "inputs": {}},
                "2": {"class_type": "VAEDecode", "inputs": {"samples": ["1", 10**9]}},
            },
            "links to output 1000000000 of node 1 \\(MyNode\\), which is not in the node catalog",
        ),
        ({"1": {"class_type": "", "inputs": {}}}, "node 1 has an empty 'class_type'"),
        ({"1": {"class_type": "  ", "inputs": {}}}, "node 1 has an empty 'class_type'"),
    ],
)
def test_bad_graphs_are_refused_with_a_reason(bad, match):
    with pytest.raises(UIExportError, match=match):
        api_to_ui(bad, source="bad.json")
