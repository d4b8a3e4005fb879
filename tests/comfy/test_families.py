"""A user's own checkpoints, LoRAs and VAEs get a family from evidence they can check (their map, the catalog, a name
cue, else SD1.5 said to be assumed), and `fit_family` keeps a generated workflow in its checkpoint's family."""

from __future__ import annotations

import json

import pytest

from flowrl.comfy.families import FamilyError, FamilyMap, family_problems, fit_family, guess_family, parse_family
from flowrl.comfy.object_info import ObjectInfo, installed_workflow, load_object_info
from flowrl.comfy.usable import usable_problems
from flowrl.data.base_flows import load_base_flows
from tests.comfy.comfy_stub import FIXTURE

# the fixture's checkpoints under names without a family cue, as many merges are called
RENAMED = {
    "juggernautXL_v10.safetensors": "house_blend.safetensors",
    "realisticVisionV60B1_v60B1VAE.safetensors": "myfavourite_v3.safetensors",
}
USER_MAP = {"house_blend.safetensors": "sdxl", "myfavourite_v3.safetensors": "sd15"}


def renamed_info() -> ObjectInfo:
    text = FIXTURE.read_text()
    for old, new in RENAMED.items():
        text = text.replace(old, new)
    return ObjectInfo.from_dict(json.loads(text), "renamed")


@pytest.fixture(scope="module")
def infos() -> dict[str, tuple[ObjectInfo, FamilyMap]]:
    """The user fixture as is (name cues) and renamed without cues plus the user's map."""
    info, renamed = load_object_info(FIXTURE), renamed_info()
    return {"user": (info, FamilyMap(info)), "renamed+map": (renamed, FamilyMap(renamed, USER_MAP))}


def one_lora_flow(ckpt: str, size=(1152, 896), lora="add_detail.safetensors") -> dict:
    graph = json.loads(json.dumps(dict(load_base_flows())["sd15_one_lora"]))
    graph["1"]["inputs"]["ckpt_name"] = ckpt
    graph["2"]["inputs"]["lora_name"] = lora
    graph["5"]["inputs"].update(width=size[0], height=size[1])
    return graph


@pytest.mark.parametrize(
    ("name", "kind", "family", "evidence"),
    [
        ("dreamshaper_8.safetensors", "checkpoint", "sd15", "the training catalog"),
        ("juggernautXL_v10.safetensors", "checkpoint", "sdxl", "name cue 'XL'"),
        ("detail_tweaker_xl.safetensors", "LoRA", "sdxl", "name cue 'XL'"),
        ("ponyRealism_v22.safetensors", "checkpoint", "pony", "name cue 'pony'"),
        ("dreamshaperXL_turbo.safetensors", "checkpoint", "sdxl_turbo", "name cue 'turbo'"),
        ("juggernaut_lightning_4s.safetensors", "checkpoint", "sdxl_lightning", "name cue 'lightning'"),
        ("v1-5-pruned.ckpt", "checkpoint", "sd15", "name cue 'SD1.5'"),
        ("realisticVisionV60B1_v60B1VAE.safetensors", "checkpoint", "sd15", "named like the catalog's"),
        ("house_blend.safetensors", "checkpoint", "sd15", "no cue in the name"),
        ("maxlevel.safetensors", "checkpoint", "sd15", "no cue in the name"),  # 'xl' inside a word is no cue
        ("sdxl_vae.safetensors", "VAE", "sdxl", "the training catalog"),
    ],
)
def test_each_file_gets_a_family_and_its_evidence(name, kind, family, evidence):
    got = guess_family(name, kind)
    assert got.family == family and got.evidence.startswith(evidence)


def test_family_names_and_bad_maps_are_one_clear_error(tmp_path):
    assert [parse_family(v, "x") for v in ("SDXL", "sd1.5", "Pony", "turbo", "SDXL Lightning")] == [
        "sdxl",
        "sd15",
        "pony",
        "sdxl_turbo",
        "sdxl_lightning",
    ]
    info = renamed_info()
    with pytest.raises(
        FamilyError, match="'sd3' is not a checkpoint family; use one of sd15, sdxl, pony, turbo, lightning"
    ):
        FamilyMap.from_arguments(info, ["house_blend.safetensors=sd3"])
    with pytest.raises(FamilyError, match="write FILE=FAMILY"):
        FamilyMap.from_arguments(info, ["house_blend.safetensors"])
    with pytest.raises(
        FamilyError, match="no such checkpoint, LoRA or VAE on renamed; did you mean 'house_blend.safetensors'"
    ):
        FamilyMap.from_arguments(info, ["house_blend=sdxl"])
    (tmp_path / "bad.yaml").write_text("[house_blend.safetensors, sdxl]\n")
    with pytest.raises(FamilyError, match="expected a mapping of file name to family"):
        FamilyMap.from_arguments(info, mapping_file=tmp_path / "bad.yaml")
    (tmp_path / "bad2.yaml").write_text("house_blend.safetensors: flux\n")
    with pytest.raises(FamilyError, match="house_blend.safetensors: 'flux' is not a checkpoint family"):
        FamilyMap.from_arguments(info, mapping_file=tmp_path / "bad2.yaml")
    (tmp_path / "map.yaml").write_text("house_blend.safetensors: SDXL\n")
    fmap = FamilyMap.from_arguments(info, ["myfavourite_v3.safetensors=sd15"], tmp_path / "map.yaml")
    assert (
        fmap.family("house_blend.safetensors").family == "sdxl"
        and fmap.family("house_blend.safetensors").evidence == "your map"
    )


def test_the_issue_case_house_blend_mapped_to_sdxl_gets_the_sdxl_lora(infos):
    info, fmap = infos["renamed+map"]
    graph, changes, assumed = fit_family(one_lora_flow("house_blend.safetensors"), fmap)
    assert graph["2"]["inputs"]["lora_name"] == "detail_tweaker_xl.safetensors"
    assert (graph["5"]["inputs"]["width"], graph["5"]["inputs"]["height"]) == (1152, 896)  # an SDXL size: kept
    assert any("add_detail.safetensors is SD1.5, not SDXL like house_blend.safetensors" in c for c in changes)
    assert "detail_tweaker_xl.safetensors is SDXL (name cue 'XL')" in assumed[0]
    assert family_problems(graph, fmap) == [] and installed_workflow(graph, info)[1] is None


def test_without_a_map_a_cueless_checkpoint_is_said_to_be_assumed_sd15(infos):
    info, _ = infos["renamed+map"]
    graph, changes, assumed = fit_family(one_lora_flow("house_blend.safetensors"), FamilyMap(info))
    assert graph["2"]["inputs"]["lora_name"] == "add_detail.safetensors"
    assert graph["5"]["inputs"]["width"] * graph["5"]["inputs"]["height"] <= 0.8e6  # an SD1.5 size
    assert any("1152x896 does not suit SD1.5" in c for c in changes)
    assert any(
        "house_blend.safetensors is SD1.5 (no cue in the name); if it is not, pass --checkpoint-family "
        "house_blend.safetensors=FAMILY" in a
        for a in assumed
    )


def test_a_vae_of_the_other_architecture_is_bypassed_when_none_fits(infos):
    info, fmap = infos["user"]
    graph = dict(load_base_flows())["sdxl_loras_vae"]
    vae = next(nid for nid, n in graph.items() if n["class_type"] == "VAELoader")
    graph = json.loads(json.dumps(graph))
    graph[vae]["inputs"]["vae_name"] = "vae-ft-mse-840000-ema-pruned.safetensors"  # the user's only VAE: SD1.5
    fitted, changes, _ = fit_family(graph, fmap)
    assert vae not in fitted and any("left out" in c for c in changes)
    ckpt = next(nid for nid, n in fitted.items() if n["class_type"] == "CheckpointLoaderSimple")
    assert all(n["inputs"]["vae"] == [ckpt, 2] for n in fitted.values() if "vae" in n["inputs"])


@pytest.mark.parametrize("setup", ["user", "renamed+map"])
def test_every_runnable_base_flow_on_every_checkpoint_ends_in_one_family(infos, setup):
    """64 flows: base flows runnable on the install (files swapped for installed ones, as constrained decoding does),
    on each installed checkpoint; each is fitted, then must be installed, usable and of one family."""
    info, fmap = infos[setup]
    graphs = []
    for _, base in load_base_flows():
        if not all(n["class_type"] in info.nodes for n in base.values()) or any(
            info.choices(n["class_type"], i) == [] for n in base.values() for i in n["inputs"]
        ):
            continue  # a class or a file list (upscale models) the user lacks: constrained decoding leaves it out
        for ckpt in fmap.installed["checkpoint"]:
            graph = json.loads(json.dumps(base))
            for node in graph.values():
                for inp, kind in (("ckpt_name", "checkpoint"), ("lora_name", "LoRA"), ("vae_name", "VAE")):
                    if isinstance(node["inputs"].get(inp), str):
                        node["inputs"][inp] = ckpt if kind == "checkpoint" else fmap.installed[kind][0]
            graphs.append(graph)
    graphs = (graphs * 4)[:64]
    assert len(graphs) == 64
    bad = []
    for graph in graphs:
        fitted, _, _ = fit_family(graph, fmap)
        problems = [
            *family_problems(fitted, fmap),
            *(installed_workflow(fitted, info)[1] or "").splitlines()[1:2],
            *map(str, usable_problems(fitted)),
        ]
        bad += [problems] if problems else []
    assert len(bad) <= 3, bad[:3]  # >= 95% of 64


def test_a_mismatch_nothing_can_fix_stays_a_family_problem(infos):
    _, fmap = infos["user"]
    graph = one_lora_flow("juggernautXL_v10.safetensors")
    graph["2"]["inputs"]["clip"] = "not a link"  # the LoRA cannot be bypassed (its CLIP input is no link)
    only_sd15 = FamilyMap(fmap.info)
    only_sd15.installed["LoRA"] = ["add_detail.safetensors"]  # no SDXL LoRA to swap in
    fitted, changes, _ = fit_family(graph, only_sd15)
    assert fitted["2"]["inputs"]["lora_name"] == "add_detail.safetensors" and "left as is" in changes[0]
    assert family_problems(fitted, only_sd15)
