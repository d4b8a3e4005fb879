"""Constrained decoding limited to a user's ComfyUI: a random tiny policy only writes installed classes and files."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from flowrl.comfy import components
from flowrl.comfy.object_info import ObjectInfoError, check_installed, load_object_info
from flowrl.comfy.ui import ui_to_api
from flowrl.comfy.ui_export import api_to_ui
from flowrl.data.base_flows import load_base_flows
from flowrl.encoding.policy_view import check_flow_text, strip_graph
from flowrl.encoding.schema import infer_schema
from flowrl.encoding.vocab import extend_tokenizer, flow_tokens
from flowrl.policy.decoding.constrained import SCHEMA_FILE, constraint_processors
from flowrl.policy.decoding.sampling import SamplingConfig, sample_flows
from flowrl.policy.installed import installed_schema
from flowrl.policy.loading import build_tiny_model
from tests.comfy.comfy_stub import FIXTURE, comfy_stub
from tests.comfy.isomorphism import same_graph

MAX_NEW = 200  # the cheapest flow on this install is ~145 tokens (checkpoint names are several plain tokens)


@pytest.fixture(scope="module")
def policy(_base_tokenizer, tiny_params, tmp_path_factory):
    """A random tiny model and its tokenizer saved with the flow schema, as the sft stage leaves them."""
    from transformers import AutoTokenizer

    tok = copy.deepcopy(_base_tokenizer)
    schema = infer_schema(
        strip_graph(g) for _, g in load_base_flows()
    )  # the policy view, as the encode stage infers it
    extend_tokenizer(tok, flow_tokens(schema))
    folder = tmp_path_factory.mktemp("sft")
    tok.save_pretrained(str(folder))
    schema.save(folder / SCHEMA_FILE)
    tok = AutoTokenizer.from_pretrained(str(folder))
    return build_tiny_model(tiny_params.policy, len(tok), seed=5).eval(), tok


def sample_restricted(policy, tiny_params, n: int, seed: int):
    model, tok = policy
    info = load_object_info(FIXTURE)
    schema, notes = installed_schema(tok, info)
    on = tiny_params.policy.model_copy(update={"constrained": True})
    torch.set_flush_denormal(True)  # random fp32 weights: denormals slow CPU sampling 10-100x
    prompts = [f"a {w} at dawn" for w in ("fox", "castle", "robot", "cat")] * (n // 4)
    cfg = SamplingConfig(max_new_tokens=MAX_NEW, batch_size=16, seed=seed)
    return (
        info,
        notes,
        sample_flows(model, tok, prompts, cfg, logits_processor=constraint_processors(on, tok, MAX_NEW, schema=schema)),
    )


def check_all_installed(info, completions) -> list[dict]:
    installed = set(info.choices("CheckpointLoaderSimple", "ckpt_name"))
    graphs = []
    for c in completions:
        assert c.finished, c.text
        check = check_flow_text(c.text)  # the project's decode-then-check step (seeds and output prefix filled)
        assert check.valid, (c.text, check.problems)
        graph = check.graph
        assert check_installed(graph, info) == ([], []), c.text
        ckpts = {n["inputs"]["ckpt_name"] for n in graph.values() if n["class_type"] == "CheckpointLoaderSimple"}
        assert ckpts and ckpts <= installed
        graphs.append(graph)
    return graphs


def test_restricted_flows_name_only_installed_files_and_validate_there(policy, tiny_params):
    info, notes, completions = sample_restricted(policy, tiny_params, 16, seed=2)
    assert any("ckpt_name" in n and "not installed" in n for n in notes)
    graphs = check_all_installed(info, completions)
    with comfy_stub() as (url, server):  # the stub's /prompt validation accepts every one
        from flowrl.comfy.client import ComfyUIClient

        client = ComfyUIClient(url, timeout=5, retries=0)
        for graph in graphs:
            client.submit(graph)
        client.close()
        assert len(server.prompts) == len(graphs)
    for graph in graphs:  # and the generated flows open in the editor and come back unchanged
        assert same_graph(graph, ui_to_api(json.loads(json.dumps(api_to_ui(graph)))))


def test_unrestricted_policy_would_name_the_catalogs_checkpoints(policy, tiny_params):
    """The control: without the restriction the same model writes checkpoints the user does not have."""
    model, tok = policy
    on = tiny_params.policy.model_copy(update={"constrained": True})
    torch.set_flush_denormal(True)
    cfg = SamplingConfig(max_new_tokens=130, batch_size=16, seed=2)
    completions = sample_flows(
        model, tok, ["a fox at dawn"] * 16, cfg, logits_processor=constraint_processors(on, tok, 130)
    )
    catalog = {c.name for c in components.CHECKPOINTS}
    named = {
        n["inputs"]["ckpt_name"]
        for c in completions
        for n in check_flow_text(c.text).graph.values()
        if n["class_type"] == "CheckpointLoaderSimple"
    }
    assert named and named <= catalog


@pytest.mark.slow
def test_one_hundred_restricted_flows_all_installed(policy, tiny_params):
    info, _, completions = sample_restricted(policy, tiny_params, 100, seed=7)
    assert len(completions) == 100
    for graph in check_all_installed(info, completions):  # and all 100 open in the editor and come back unchanged
        assert same_graph(graph, ui_to_api(json.loads(json.dumps(api_to_ui(graph)))))


def test_a_policy_without_a_saved_schema_is_refused(_base_tokenizer):
    with pytest.raises(ObjectInfoError, match="no flow_schema.json"):
        installed_schema(_base_tokenizer, load_object_info(FIXTURE))
