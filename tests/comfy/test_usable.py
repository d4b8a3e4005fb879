"""Usable = valid + every node feeds an output + practical sizes + no duplicate node + the prompt wired in."""

from __future__ import annotations

import copy

import pytest

from flowrl.comfy.usable import is_usable, rendered_subgraph, usable_problems
from flowrl.data.base_flows import load_base_flows
from flowrl.encoding.policy_view import policy_graph, policy_text
from tests.scoring.graphs import simple_flow


@pytest.mark.parametrize("name_graph", load_base_flows(), ids=lambda ng: ng[0])
def test_every_shipped_base_flow_is_usable_also_through_the_policy_view(name_graph):
    _, graph = name_graph
    assert usable_problems(graph) == []
    assert is_usable(policy_graph(policy_text(graph), seed=3))


def test_a_node_that_feeds_no_output_is_named():
    g = simple_flow()
    g["9"] = {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}}
    (problem,) = usable_problems(g)
    assert problem.node_id == "9" and "feeds no output" in problem.message
    assert "9" not in rendered_subgraph(g) and set(rendered_subgraph(g)) == set(simple_flow())


@pytest.mark.parametrize(
    "change, words",
    [
        ({"width": 8192, "height": 512}, "4096 pixels"),
        ({"width": 1536, "height": 1536}, "native size"),  # SD1.5 first pass at 2.4 MP
        ({"steps": 5000}, "steps"),
    ],
)
def test_impractical_sizes_and_steps(change, words):
    problems = usable_problems(simple_flow(**change))
    assert problems and any(words in p.message for p in problems), problems


def test_distilled_models_keep_few_steps_and_low_cfg():
    lightning = "sdxl_lightning_4step.safetensors"
    assert usable_problems(simple_flow(ckpt=lightning, steps=8, cfg=1.5, width=1024, height=1024)) == []
    assert [
        p.input for p in usable_problems(simple_flow(ckpt=lightning, steps=20, cfg=8.0, width=1024, height=1024))
    ] == ["steps", "cfg"]
    assert usable_problems(simple_flow(steps=20, cfg=8.0)) == []  # an SD1.5 model takes both


def test_batch_and_exact_duplicates():
    g = simple_flow()
    g["4"]["inputs"]["batch_size"] = 64
    assert any("batch 64" in p.message for p in usable_problems(g))
    dup = simple_flow()
    dup["8"] = copy.deepcopy(dup["7"])
    assert any("duplicates node 7" in p.message for p in usable_problems(dup))


def test_the_prompt_must_be_the_positive_conditioning():
    swapped = simple_flow()
    swapped["5"]["inputs"]["positive"], swapped["5"]["inputs"]["negative"] = ["3", 0], ["2", 0]
    messages = [p.message for p in usable_problems(swapped)]
    assert any("does not encode the prompt" in m for m in messages) and any(
        "used as the negative" in m for m in messages
    )


def test_a_filled_in_workflow_is_not_checked_for_the_placeholder():
    from flowrl.comfy.graph import fill_prompt

    assert usable_problems(fill_prompt(simple_flow(), "a red fox in snow")) == []


def test_refiner_conditioning_on_the_base_model_is_named_and_scores_zero():
    from flowrl.scoring.simulator import PreferenceSimulator

    g = simple_flow("juggernautXL_v9Rundiffusionphoto2.safetensors", width=1024, height=1024)
    g["8"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd_xl_refiner_1.0.safetensors"}}
    g["9"] = {
        "class_type": "CLIPTextEncodeSDXLRefiner",
        "inputs": {"clip": ["8", 1], "ascore": 6.0, "width": 1024, "height": 1024, "text": "<prompt>"},
    }
    g["5"]["inputs"]["positive"] = [
        "9",
        0,
    ]  # 1,280-wide refiner conditioning into the base SDXL model: fails in ComfyUI
    assert any("does not fit the model" in p.message for p in usable_problems(g))
    assert PreferenceSimulator(noise=False).score_one("a portrait photo", g) == 0.0
