"""Data expectations for the shipped base-flow library."""

import json

import pytest

from flowrl.comfy.graph import PROMPT_PLACEHOLDER, is_link
from flowrl.comfy.validate import validate_graph
from flowrl.data.augment import flow_family, flow_signature
from flowrl.data.base_flows import load_base_flows
from flowrl.data.base_flows.build import build_all

FLOWS = load_base_flows()


def _structure(graph: dict) -> str:
    """Signature of a graph with every widget value blanked: its nodes and links only."""
    bare = {
        k: {
            "class_type": n["class_type"],
            "inputs": {name: (v if is_link(v) else None) for name, v in n["inputs"].items()},
        }
        for k, n in graph.items()
    }
    return flow_signature(bare)


def test_at_least_30_structurally_distinct_flows():
    assert len(FLOWS) >= 30
    structures = {_structure(g) for _, g in FLOWS}
    assert len(structures) >= 30


@pytest.mark.parametrize("name,graph", FLOWS, ids=[n for n, _ in FLOWS])
def test_flow_validates_and_has_the_prompt_placeholder(name, graph):
    assert validate_graph(graph) == [], name
    texts = [v for n in graph.values() for v in n["inputs"].values() if isinstance(v, str)]
    assert PROMPT_PLACEHOLDER in texts
    negatives = [
        n["inputs"]["text"]
        for n in graph.values()
        if n["class_type"] == "CLIPTextEncode" and n["inputs"]["text"] != PROMPT_PLACEHOLDER
    ]
    assert negatives or any(n["class_type"] == "CLIPTextEncodeSDXL" for n in graph.values())
    assert all(len(t) > 5 for t in negatives)


def test_features_all_appear():
    classes = [{n["class_type"] for n in g.values()} for _, g in FLOWS]
    wanted = [
        "LoraLoader",
        "CR LoRA Stack",
        "CR Apply LoRA Stack",
        "CLIPSetLastLayer",
        "LatentUpscale",
        "LatentUpscaleBy",
        "UpscaleModelLoader",
        "ImageUpscaleWithModel",
        "KSamplerAdvanced",
        "CLIPTextEncodeSDXL",
        "CLIPTextEncodeSDXLRefiner",
        "FreeU",
        "FreeU_V2",
        "FaceDetailer",
        "UltralyticsDetectorProvider",
        "SAMLoader",
        "RescaleCFG",
        "Automatic CFG",
        "VAELoader",
    ]
    missing = [c for c in wanted if not any(c in cs for cs in classes)]
    assert not missing
    lora_chain_lengths = {sum(n["class_type"] == "LoraLoader" for n in g.values()) for _, g in FLOWS}
    assert {1, 2, 3} <= lora_chain_lengths
    families = {flow_family(g) for _, g in FLOWS}
    assert families == {"sd15", "sdxl", "sdxl_turbo", "sdxl_lightning", "pony"}
    samplers = {n["inputs"]["sampler_name"] for _, g in FLOWS for n in g.values() if "sampler_name" in n["inputs"]}
    assert len(samplers) >= 6


def test_hires_second_pass_denoise_in_range():
    found = 0
    for _, g in FLOWS:
        for n in g.values():
            latent = n["inputs"].get("latent_image")
            if n["class_type"] == "KSampler" and g[latent[0]]["class_type"].startswith("LatentUpscale"):
                assert 0.4 <= n["inputs"]["denoise"] <= 0.6
                found += 1
    assert found >= 5


def test_shipped_json_matches_builder():
    built = build_all()
    assert {name: json.loads(json.dumps(g)) for name, g in built.items()} == dict(FLOWS)
