"""The flow feature parser: what it reads, what it never reads, and how unknowns are bucketed."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

import flowrl.reward.features as features
from flowrl.reward.features import UNK_CLASS, UNK_RANGE, UNK_VALUE, FeatureSpace, parse_flow

FLOW = (
    "CheckpointLoaderSimple ckpt_name=sdxl.safetensors\n"
    "EmptyLatentImage width=1024 height=1024 batch_size=1\n"
    "LoraLoader clip=@1.1 model=@1 lora_name=style.safetensors strength_model=0.8 strength_clip=0.6\n"
    "CLIPTextEncode clip=@3.1 text=<prompt>\n"
    'CLIPTextEncode clip=@3.1 text="blurry, low quality"\n'
    "KSampler latent_image=@2 model=@3 negative=@5 positive=@4 seed=123 steps=25 cfg=7.0 sampler_name=euler scheduler=karras denoise=1.0\n"
    "VAEDecode samples=@6 vae=@1.2\n"
    "SaveImage images=@7 filename_prefix=flowrl/x"
)


def test_doctests():
    result = doctest.testmod(features)
    assert result.attempted > 0 and result.failed == 0


def test_view_reads_components_numbers_and_strengths():
    view = parse_flow(FLOW)
    assert view.tokens["class=CLIPTextEncode"] == 2 and view.tokens["class=KSampler"] == 1
    assert (
        view.tokens["KSampler.sampler_name=euler"] == 1
        and view.tokens["CheckpointLoaderSimple.ckpt_name=sdxl.safetensors"] == 1
    )
    assert view.tokens["LoraLoader.lora_name=style.safetensors*strength_model"] == pytest.approx(0.8)
    assert view.tokens["CLIPTextEncode.text=<prompt>"] == 1 and view.tokens["CLIPTextEncode.text~blurry"] == 1
    assert view.numbers["KSampler.steps"] == [25.0] and view.numbers["EmptyLatentImage.width"] == [1024.0]


def test_seeds_links_and_node_ids_are_never_read():
    view = parse_flow(FLOW)
    text = " ".join(view.tokens) + " ".join(view.numbers)
    assert "seed" not in text and "@" not in text and "filename_prefix" not in text
    # the same flow with another seed, or with the seed absent, has the same view
    assert parse_flow(FLOW.replace("seed=123", "seed=999")) == view
    assert parse_flow(FLOW.replace(" seed=123", "")) == view


def test_a_node_that_feeds_no_output_counts_as_dead():
    view = parse_flow(FLOW + "\nUpscaleModelLoader model_name=4x.pth")
    assert view.tokens["dead=UpscaleModelLoader"] == 1 and "UpscaleModelLoader.model_name=4x.pth" not in view.tokens


@pytest.mark.parametrize("text", ["", "not a flow = at all", "KSampler steps=", "A x=@5"])
def test_unreadable_flow_gives_none_not_an_exception(text):
    assert parse_flow(text) is None


def test_unknown_class_value_and_out_of_range_number_go_to_unknown_buckets():
    space = FeatureSpace.fit(
        [parse_flow(FLOW), parse_flow(FLOW.replace("steps=25", "steps=30"))], ["a cat", "a cat photo"]
    )
    ids, _, numbers = space.flow_row(parse_flow(FLOW))
    unk = {space.index[t] for t in (UNK_CLASS, UNK_VALUE, UNK_RANGE)}
    assert not unk & set(ids)  # a training flow has no unknowns
    odd = (
        FLOW.replace("sampler_name=euler", "sampler_name=brand_new").replace("steps=25", "steps=900")
        + "\nMysteryNode images=@7"
    )
    ids, weights, numbers = space.flow_row(parse_flow(odd))
    assert {space.index[UNK_VALUE], space.index[UNK_RANGE], space.index[UNK_CLASS]} <= set(ids)
    steps = numbers[space.slot_index["KSampler.steps"]]
    assert steps == pytest.approx(features.CLIP) and np.isfinite(numbers).all()


def test_garbage_numbers_are_out_of_range_not_errors():
    space = FeatureSpace.fit([parse_flow(FLOW)] * 2, ["a cat"] * 2)
    ids, _, numbers = space.flow_row(parse_flow(FLOW.replace("cfg=7.0", "cfg=NaN")))
    assert space.index[UNK_RANGE] in ids and np.isfinite(numbers).all()


def test_prompt_words_known_in_training_only():
    space = FeatureSpace.fit([parse_flow(FLOW)] * 2, ["a red cat", "a red dog"], min_count=2)
    assert [space.tokens[i] for i in space.prompt_row("a red zebra")] in (["p:a", "p:red"], ["p:red", "p:a"])


def test_space_round_trips_through_a_dict():
    space = FeatureSpace.fit([parse_flow(FLOW)] * 2, ["a cat"] * 2)
    again = FeatureSpace.from_dict(space.to_dict())
    assert again.flow_row(parse_flow(FLOW))[0] == space.flow_row(parse_flow(FLOW))[0]
    with pytest.raises(features.FeatureSpaceError, match="dvc repro reward"):
        FeatureSpace.from_dict({"tokens": []}, "x/features.json")


def test_a_new_combination_of_known_model_files_is_flagged():
    other = FLOW.replace("sdxl.safetensors", "pony.safetensors").replace("style.safetensors", "anime.safetensors")
    space = FeatureSpace.fit([parse_flow(FLOW), parse_flow(other)], ["a cat"])
    assert space.index[features.UNK_PAIR] not in space.flow_row(parse_flow(other))[0]
    mixed = FLOW.replace("style.safetensors", "anime.safetensors")  # sdxl + anime: both known, never together
    ids, weights, _ = space.flow_row(parse_flow(mixed))
    assert weights[ids.index(space.index[features.UNK_PAIR])] == 1.0
