"""Augmentation: compatible components, valid and distinct variants, determinism."""

import random

import pytest

from flowrl.comfy import components as C
from flowrl.comfy.validate import validate_graph
from flowrl.data.augment import AugmentError, augment_flow, augment_library, flow_family, flow_signature, make_variant
from flowrl.data.base_flows import load_base_flows

BASES = dict(load_base_flows())
N = 12


@pytest.fixture(scope="module")
def library_variants():
    rows, _ = augment_library([(f"lib-{k}", g) for k, g in BASES.items()], N, seed=7)
    return rows


def _checkpoints(graph):
    return [
        C.checkpoint_info(n["inputs"]["ckpt_name"])
        for n in graph.values()
        if n["class_type"] == "CheckpointLoaderSimple"
    ]


def test_every_variant_validates_and_keeps_its_family(library_variants):
    assert len(library_variants) == N * len(BASES)
    for row in library_variants:
        graph, base = row["graph"], BASES[row["base_id"].removeprefix("lib-")]
        assert validate_graph(graph) == [], row["id"]
        assert flow_family(graph) == flow_family(base)
        assert sorted(n["class_type"] for n in graph.values()) == sorted(n["class_type"] for n in base.values())


def _lora_uses(graph):
    """(LoRA catalog entry, model weight) for every LoRA a graph applies."""
    for n in graph.values():
        if n["class_type"] == "LoraLoader":
            yield C.lora_info(n["inputs"]["lora_name"]), n["inputs"]["strength_model"]
        elif n["class_type"] == "CR LoRA Stack":
            for i in (1, 2, 3):
                if n["inputs"][f"switch_{i}"] == "On":
                    yield C.lora_info(n["inputs"][f"lora_name_{i}"]), n["inputs"][f"model_weight_{i}"]


def test_no_lora_of_another_architecture(library_variants):
    n_checked = 0
    for row in library_variants:
        family = flow_family(row["graph"])
        for lora, weight in _lora_uses(row["graph"]):
            assert lora is not None and C.lora_fits(lora, family), (row["id"], lora)
            assert lora.weight_min - 1e-9 <= weight <= lora.weight_max + 1e-9
            n_checked += 1
    assert n_checked > 100


def test_refiner_flows_keep_sdxl_base_and_refiner(library_variants):
    refined = [r for r in library_variants if r["base_id"].startswith("lib-sdxl_base_refiner")]
    assert refined
    for row in refined:
        infos = _checkpoints(row["graph"])
        assert [c.name for c in infos if c.refiner] == ["sd_xl_refiner_1.0.safetensors"]
        assert all(c.family == "sdxl" for c in infos)


@pytest.mark.parametrize("family", ["sdxl_turbo", "sdxl_lightning", "sd15"])
def test_steps_and_cfg_in_family_range(library_variants, family):
    ranges = C.family_ranges(family)
    rows = [r for r in library_variants if flow_family(r["graph"]) == family]
    assert rows
    for row in rows:
        for n in row["graph"].values():
            if n["class_type"] in ("KSampler", "KSamplerAdvanced"):
                assert ranges.steps[0] // 2 <= n["inputs"]["steps"] <= ranges.steps[1]
                assert ranges.cfg[0] <= n["inputs"]["cfg"] <= ranges.cfg[1]
            if n["class_type"] == "EmptyLatentImage":
                assert (n["inputs"]["width"], n["inputs"]["height"]) in ranges.resolutions


def test_two_pass_split_stays_inside_the_steps(library_variants):
    for row in library_variants:
        adv = [n["inputs"] for n in row["graph"].values() if n["class_type"] == "KSamplerAdvanced"]
        if len(adv) == 2:
            first, second = sorted(adv, key=lambda i: i["start_at_step"])
            assert 0 < first["end_at_step"] == second["start_at_step"] <= first["steps"]


def test_no_duplicates_and_variants_differ_from_base(library_variants):
    signatures = [flow_signature(r["graph"]) for r in library_variants]
    assert len(set(signatures)) == len(signatures)
    assert not set(signatures) & {flow_signature(g) for g in BASES.values()}


def test_deterministic_for_a_seed():
    base = [("lib-sd15_kitchen_sink", BASES["sd15_kitchen_sink"])]
    assert augment_library(base, 5, seed=3) == augment_library(base, 5, seed=3)
    assert augment_library(base, 5, seed=3)[0] != augment_library(base, 5, seed=4)[0]


def test_small_design_space_drops_duplicates():
    """Only checkpoint (2 Turbo files) and resolution (4 sizes) vary: 8 flows, one of them the base."""
    tiny = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd_xl_turbo_1.0_fp16.safetensors"}},
        "2": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}},
        "3": {"class_type": "VAEDecode", "inputs": {"samples": ["2", 0], "vae": ["1", 2]}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "t"}},
    }
    variants, dropped = augment_flow(tiny, 20, random.Random(0))
    assert len(variants) == 7
    assert dropped == 20 * 3 - 7


def test_unsupported_checkpoint_is_rejected():
    graph = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v2-1_768-ema-pruned.ckpt"}}}
    with pytest.raises(AugmentError, match="v2-1_768-ema-pruned.ckpt.*not an SD1.5/SDXL"):
        make_variant(graph, flow_family(graph), random.Random(0))
    with pytest.raises(AugmentError, match="no CheckpointLoaderSimple"):
        flow_family({"1": {"class_type": "SaveImage", "inputs": {}}})
