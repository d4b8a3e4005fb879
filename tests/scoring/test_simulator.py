"""Preference simulator: determinism, invalid graphs, directional rules, noise band, prompt-dependence."""

from __future__ import annotations

import copy
import dataclasses
import statistics

import pytest

from flowrl.scoring.flow_features import flow_features
from flowrl.scoring.prompt_features import prompt_features
from flowrl.scoring.simulator import DEFAULT_NOISE_SD, LOW, SPAN, PreferenceSimulator, utility
from tests.scoring.graphs import simple_flow

PORTRAIT = "RAW photo, portrait of a woman, detailed skin texture, 85mm, bokeh, soft window light"
ANIME = "masterpiece, best quality, 1girl, solo, long silver hair, school uniform, looking at viewer, anime key visual"
LANDSCAPE = (
    "landscape photography, mountain lake at sunrise, snow-capped peaks, reflections on the water, wide-angle, HDR"
)

clean = PreferenceSimulator(noise=False)


def test_deterministic_and_seed_dependent():
    g = simple_flow()
    assert PreferenceSimulator().score([PORTRAIT], [g]) == PreferenceSimulator().score([PORTRAIT], [g])
    assert PreferenceSimulator(seed=1).score([PORTRAIT], [g]) != PreferenceSimulator(seed=2).score([PORTRAIT], [g])
    assert clean.score([PORTRAIT, PORTRAIT], [g, copy.deepcopy(g)]) == [clean.score_one(PORTRAIT, g)] * 2


def test_invalid_graphs_score_zero():
    no_sampler = simple_flow()
    del no_sampler["5"], no_sampler["6"], no_sampler["7"]
    no_output = simple_flow()
    del no_output["7"]
    dangling = simple_flow()
    dangling["6"]["inputs"]["samples"] = ["99", 0]
    bad_value = simple_flow(sampler="not_a_sampler")
    scores = PreferenceSimulator().score([PORTRAIT] * 4, [no_sampler, no_output, dangling, bad_value])
    assert scores == [0.0, 0.0, 0.0, 0.0]
    assert PreferenceSimulator().score([PORTRAIT], [simple_flow()])[0] > 0


def test_checkpoint_style_follows_prompt():
    photo = simple_flow("realisticVisionV51_v51VAE.safetensors")
    anime = simple_flow("counterfeitV30_v30.safetensors")
    assert clean.score_one(PORTRAIT, photo) > clean.score_one(PORTRAIT, anime)
    assert clean.score_one(ANIME, anime) > clean.score_one(ANIME, photo)


def test_turbo_wants_few_steps_and_low_cfg():
    ckpt = "sd_xl_turbo_1.0_fp16.safetensors"
    fast = simple_flow(ckpt, steps=4, cfg=1.5, sampler="euler_ancestral", scheduler="normal", width=1024, height=1024)
    slow = simple_flow(ckpt, steps=40, cfg=8.0, sampler="euler_ancestral", scheduler="normal", width=1024, height=1024)
    assert clean.score_one(PORTRAIT, fast) > clean.score_one(PORTRAIT, slow) + 0.02


def test_sd15_lora_on_sdxl_is_punished():
    ckpt = "juggernautXL_v9Rundiffusionphoto2.safetensors"
    fits = simple_flow(ckpt, width=832, height=1216, lora=("add-detail-xl.safetensors", 0.8))
    wrong = simple_flow(ckpt, width=832, height=1216, lora=("add_detail.safetensors", 0.8))
    assert clean.score_one(PORTRAIT, fits) > clean.score_one(PORTRAIT, wrong) + 0.02


def test_lora_too_strong_burns():
    ok = simple_flow("realisticVisionV51_v51VAE.safetensors", lora=("add_detail.safetensors", 0.6))
    burnt = simple_flow("realisticVisionV51_v51VAE.safetensors", lora=("add_detail.safetensors", 2.5))
    assert clean.score_one(PORTRAIT, ok) > clean.score_one(PORTRAIT, burnt)


def test_native_resolution_per_family():
    sd15 = "realisticVisionV51_v51VAE.safetensors"
    xl = "juggernautXL_v9Rundiffusionphoto2.safetensors"
    assert clean.score_one(PORTRAIT, simple_flow(sd15, width=512, height=768)) > clean.score_one(
        PORTRAIT, simple_flow(sd15, width=1024, height=1024)
    )
    assert clean.score_one(PORTRAIT, simple_flow(xl, width=1024, height=1024)) > clean.score_one(
        PORTRAIT, simple_flow(xl, width=512, height=512)
    )


def test_face_detailer_helps_portraits_more_than_landscapes():
    f = flow_features(simple_flow("realisticVisionV51_v51VAE.safetensors"))
    with_fd = dataclasses.replace(f, face_detailer=True)
    gain = {p: utility(prompt_features(p), with_fd) - utility(prompt_features(p), f) for p in (PORTRAIT, LANDSCAPE)}
    assert gain[PORTRAIT] > 0.2
    assert gain[LANDSCAPE] < 0  # on a faceless prompt it "finds" faces in textures


def test_refiner_on_sd15_is_punished():
    f = flow_features(simple_flow("realisticVisionV51_v51VAE.safetensors"))
    assert (
        utility(prompt_features(PORTRAIT), dataclasses.replace(f, refiner=True))
        < utility(prompt_features(PORTRAIT), f) - 1
    )


def test_scores_on_documented_scale():
    scores = clean.score([PORTRAIT, ANIME, LANDSCAPE], [simple_flow()] * 3)
    assert all(LOW < s < LOW + SPAN for s in scores)


def test_noise_sd_within_band():
    noisy = PreferenceSimulator(seed=3)
    prompts = [f"{PORTRAIT}, variation {i}" for i in range(300)]
    g = simple_flow()
    residuals = [n - c for n, c in zip(noisy.score(prompts, [g] * 300), clean.score(prompts, [g] * 300))]
    assert 0.8 * DEFAULT_NOISE_SD < statistics.pstdev(residuals) < 1.2 * DEFAULT_NOISE_SD


def test_bad_options_and_mismatched_lengths():
    from flowrl.scoring.base import ScorerError

    with pytest.raises(ScorerError, match="noise_sd"):
        PreferenceSimulator(noise_sd=-1)
    with pytest.raises(ScorerError, match="2 prompts but 1 flows"):
        clean.score([PORTRAIT, ANIME], [simple_flow()])


def test_best_single_flow_share_on_small_seeded_set():
    from bench.simulator_report import report
    from flowrl.data.augment import augment_library
    from flowrl.data.base_flows import load_base_flows
    from flowrl.data.prompt_generator import generate_prompts

    rows, _ = augment_library(
        load_base_flows(), 4, 11
    )  # the library of bench simulator_report: 4 variants per base flow
    flows = [{"id": b, "graph": g} for b, g in load_base_flows()] + rows
    figures = report([r["prompt"] for r in generate_prompts(40, 5)], flows)
    assert figures["best_single_flow_share"] <= 0.25
    assert figures["distinct_best_flows"] >= 5
    assert 0.05 <= figures["noise_to_between_ratio"] <= 0.25


def test_nodes_that_feed_no_output_add_nothing():
    g = simple_flow("realisticVisionV51_v51VAE.safetensors")
    with_orphans = copy.deepcopy(g)
    with_orphans["9"] = {
        "class_type": "FreeU",
        "inputs": {"model": ["1", 0], "b1": 1.1, "b2": 1.2, "s1": 0.9, "s2": 0.2},
    }
    with_orphans["10"] = {
        "class_type": "EmptyLatentImage",
        "inputs": {"width": 10000, "height": 10000, "batch_size": 64},
    }
    assert clean.score_one(PORTRAIT, with_orphans) == clean.score_one(PORTRAIT, g)


def test_a_sampler_that_feeds_no_output_renders_nothing():
    g = simple_flow()
    g["6"]["inputs"]["samples"] = ["4", 0]  # VAEDecode of the empty latent; the KSampler feeds nothing
    assert clean.score_one(PORTRAIT, g) == 0.0


@pytest.mark.parametrize("change", [{"width": 4096, "height": 4096}, {"steps": 5000}])
def test_unrenderable_flows_score_zero(change):
    g = simple_flow(**{k: v for k, v in change.items() if k != "steps"}, steps=change.get("steps", 25))
    assert clean.score_one(PORTRAIT, g) == 0.0


def test_a_repeated_lora_earns_its_bonus_once():
    once = simple_flow("realisticVisionV51_v51VAE.safetensors", lora=("add_detail.safetensors", 0.6))
    twice = copy.deepcopy(once)
    twice["9"] = {
        "class_type": "LoraLoader",
        "inputs": {
            "model": ["8", 0],
            "clip": ["8", 1],
            "lora_name": "add_detail.safetensors",
            "strength_model": 0.6,
            "strength_clip": 0.6,
        },
    }
    twice["5"]["inputs"]["model"] = ["9", 0]
    assert clean.score_one(PORTRAIT, twice) < clean.score_one(PORTRAIT, once)


def test_stacking_every_addon_saturates():
    f = flow_features(simple_flow("juggernautXL_v9Rundiffusionphoto2.safetensors", width=1024, height=1024))
    stacked = dataclasses.replace(
        f, hires_denoise=(0.5,), upscale_models=("4x-UltraSharp.pth",), face_detailer=True, freeu=True, cfg_fix=True
    )
    for prompt in (PORTRAIT, LANDSCAPE, ANIME):
        p = prompt_features(prompt)
        one_each = [
            utility(p, dataclasses.replace(f, **kw)) - utility(p, f)
            for kw in (
                {"hires_denoise": (0.5,)},
                {"upscale_models": ("4x-UltraSharp.pth",)},
                {"face_detailer": True},
                {"freeu": True},
            )
        ]
        assert utility(p, stacked) - utility(p, f) < sum(g for g in one_each if g > 0)
    # a landscape does not want a face detailer: the stack without it scores higher
    p = prompt_features(LANDSCAPE)
    assert utility(p, dataclasses.replace(stacked, face_detailer=False)) > utility(p, stacked)


def test_a_flow_that_ignores_the_prompt_scores_near_the_floor():
    g = simple_flow("realisticVisionV51_v51VAE.safetensors")
    swapped = copy.deepcopy(g)
    swapped["5"]["inputs"]["positive"], swapped["5"]["inputs"]["negative"] = ["3", 0], ["2", 0]
    assert clean.score_one(PORTRAIT, swapped) < LOW + 0.1 * SPAN < clean.score_one(PORTRAIT, g)


def _two_pass_flows() -> list[tuple[str, dict]]:
    from flowrl.data.base_flows import load_base_flows

    return [(n, g) for n, g in load_base_flows() if any(v["class_type"] == "KSamplerAdvanced" for v in g.values())]


@pytest.mark.parametrize("name_graph", _two_pass_flows(), ids=lambda ng: ng[0])
def test_a_two_pass_flow_that_does_not_hand_over_is_scored_as_the_noisy_image_it_renders(name_graph):
    """The issue's flow: the first pass stops at step 22 of 39 with its leftover noise, the second starts at 27 of 31."""
    from flowrl.scoring.simulator import NOISY

    _, graph = name_graph
    first, second = sorted(
        (k for k, v in graph.items() if v["class_type"] == "KSamplerAdvanced"),
        key=lambda k: graph[k]["inputs"]["add_noise"] == "disable",
    )
    broken = copy.deepcopy(graph)
    broken[first]["inputs"].update(steps=39, end_at_step=22)
    broken[second]["inputs"].update(steps=31, start_at_step=27)
    decoded_early = copy.deepcopy(graph)  # the leftover noise of the first pass decoded as the image
    for node in decoded_early.values():
        if node["class_type"] == "VAEDecode":
            node["inputs"]["samples"] = [first, 0]
    for prompt in (PORTRAIT, ANIME, LANDSCAPE):
        ok = clean.score_one(prompt, graph)
        assert clean.score_one(prompt, broken) < ok - 0.04, prompt
        assert 0 < clean.score_one(prompt, decoded_early) < ok - 0.04, prompt
    assert NOISY < -3


def test_a_partial_denoise_of_an_empty_latent_is_scored_as_the_washed_out_image_it_renders():
    washed = simple_flow()
    sampler = next(n for n in washed.values() if n["class_type"] == "KSampler")
    sampler["inputs"]["denoise"] = 0.5
    for prompt in (PORTRAIT, ANIME, LANDSCAPE):
        assert 0 < clean.score_one(prompt, washed) < clean.score_one(prompt, simple_flow()) - 0.04


def test_a_pixel_art_lora_helps_only_prompts_that_ask_for_pixel_art():
    xl = dict(ckpt="sd_xl_base_1.0.safetensors", width=1024, height=1024)
    bare, pixel = simple_flow(**xl), simple_flow(**xl, lora=("pixel-art-xl.safetensors", 0.8))
    for prompt in (
        "a castle at dawn, dramatic clouds, concept art",
        "portrait photo of an old fisherman",
        "fantasy art, a dragon",
    ):
        assert utility(prompt_features(prompt), flow_features(pixel)) < utility(
            prompt_features(prompt), flow_features(bare)
        ), prompt
    asks = "pixel art spaceship, 16-bit sprite"
    assert utility(prompt_features(asks), flow_features(pixel)) > utility(prompt_features(asks), flow_features(bare))
