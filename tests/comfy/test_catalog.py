"""The shipped node catalog: coverage of the shared workflows and the facts the validator relies on."""

from __future__ import annotations

import json

from flowrl.comfy.catalog import load_catalog

PAPER_NODES = [
    "CR LoRA Stack",
    "CR Apply LoRA Stack",
    "FaceDetailer",
    "UltralyticsDetectorProvider",
    "SAMLoader",
    "Automatic CFG",
    "ImageUpscaleWithModel",
    "UpscaleModelLoader",
    "FreeU",
    "FreeU_V2",
    "CLIPSetLastLayer",
    "CLIPTextEncodeSDXL",
    "CLIPTextEncodeSDXLRefiner",
    "RescaleCFG",
    "LatentUpscale",
    "LatentUpscaleBy",
    "KSamplerAdvanced",
    "LoraLoader",
    "LoraLoaderModelOnly",
    "VAELoader",
    "SaveImage",
    "PreviewImage",
]


def shared_class_types(root) -> set[str]:
    """Class types used by every API file and every executable UI node in the shared folder."""
    types = set()
    for row in (root / "manifest.jsonl").read_text().splitlines():
        if row.strip():
            types.update(json.loads(row)["class_types"])
    return types


def test_covers_shared_class_types(shared_workflows):
    catalog = load_catalog()
    types = shared_class_types(shared_workflows)
    covered = {t for t in types if catalog.get(t) is not None}
    share = len(covered) / len(types)
    print(f"catalog coverage: {len(covered)}/{len(types)} = {share:.1%}; missing {sorted(types - covered)}")
    assert share >= 0.9


def test_paper_nodes_present_with_outputs():
    catalog = load_catalog()
    missing = [n for n in PAPER_NODES if catalog.get(n) is None]
    assert not missing
    assert catalog.get("CR Apply LoRA Stack").outputs[:2] == ["MODEL", "CLIP"]
    assert catalog.get("SaveImage").is_output_node and catalog.get("PreviewImage").is_output_node
    assert not catalog.get("KSampler").is_output_node


def test_input_specs_closed_and_open_sets():
    ks = load_catalog().get("KSampler")
    assert ks.inputs["sampler_name"].type == "COMBO" and "dpmpp_2m" in ks.inputs["sampler_name"].choices
    assert "karras" in ks.inputs["scheduler"].choices
    assert ks.inputs["model"].kind == "link" and ks.inputs["model"].type == "MODEL" and ks.inputs["model"].required
    assert ks.inputs["denoise"].min == 0.0 and ks.inputs["denoise"].max == 1.0
    assert ks.control_after_generate == ["seed"]
    ckpt = load_catalog().get("CheckpointLoaderSimple").inputs["ckpt_name"]
    assert ckpt.kind == "widget" and ckpt.choices is None
    assert load_catalog().get("CheckpointLoaderSimple").outputs == ["MODEL", "CLIP", "VAE"]


def test_load_is_cached():
    assert load_catalog() is load_catalog()
