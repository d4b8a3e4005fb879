"""Baselines: the most popular base flows, plain per-family flows, ComfyGen-style retrieval."""

from __future__ import annotations

import pytest

from flowrl.evaluation.baselines import (
    BaselineInputError,
    ComfyGenRetriever,
    FixedFlow,
    best_flow_id,
    graph_family,
    plain_family_flows,
    popular_base_ids,
)
from flowrl.evaluation.evaluate import baseline_methods
from flowrl.evaluation.validity import Candidate


def test_popular_bases_are_counted_through_base_id():
    base_of = {"f1": "A", "f2": "B", "f3": "B", "f4": "C", "f5": "C", "f6": "C", "f7": "D"}
    assert popular_base_ids(["f1", "f2", "f3", "f4", "f5", "f6"], base_of)[:2] == ["C", "B"]
    assert popular_base_ids(["f1", "f7"], base_of) == ["A", "D"]  # tie: by id
    with pytest.raises(BaselineInputError, match="augmented.jsonl"):
        popular_base_ids(["nope"], base_of)


def test_fixed_popular_flows_from_stage_data(stage_root):
    methods = baseline_methods(stage_root, comfygen_k=3)
    from flowrl.io import read_jsonl

    bases = {r["id"]: r for r in read_jsonl(stage_root / "data/flows/base.jsonl")}
    assert methods["fixed_popular"](["x"])[0].graph == bases["sd15_one_lora"]["graph"]  # 4 scored variants
    assert methods["fixed_popular_2"](["x"])[0].graph == bases["sdxl_txt2img_basic"]["graph"]  # 3
    assert {m for m in methods if m.startswith("fixed_")} == {
        "fixed_best",
        "fixed_popular",
        "fixed_popular_2",
        "fixed_sd15",
        "fixed_sdxl",
        "fixed_sdxl_turbo",
        "fixed_sdxl_lightning",
        "fixed_pony",
    }
    assert methods["fixed_sd15"](["x"])[0].graph == bases["sd15_txt2img_basic"]["graph"]  # fewer nodes than one_lora


def test_training_flow_draws_augmented_flows_reproducibly(stage_root):
    from flowrl.io import read_jsonl

    augmented = {r["id"] for r in read_jsonl(stage_root / "data/flows/augmented.jsonl")}
    texts = {r["text"] for r in read_jsonl(stage_root / "data/encode/flows.jsonl") if r["id"] in augmented}
    draw = baseline_methods(stage_root, comfygen_k=3, seed=7)["training_flow"]
    flows = [c.text for c in draw(["p"] * 40)]
    assert set(flows) <= texts and len(set(flows)) > 5  # the SFT pool, one draw per asked prompt
    assert [c.text for c in baseline_methods(stage_root, comfygen_k=3, seed=7)["training_flow"](["p"] * 40)] == flows


def test_plain_family_flow_is_the_smallest_single_checkpoint_flow():
    def graph(ckpt: str, n_extra: int) -> dict:
        nodes = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}}}
        nodes.update({str(i + 2): {"class_type": "Note", "inputs": {}} for i in range(n_extra)})
        return nodes

    rows = [
        {"id": "big", "graph": graph("dreamshaper_8.safetensors", 5)},
        {"id": "small", "graph": graph("dreamshaper_8.safetensors", 1)},
        {
            "id": "two_ckpts",
            "graph": {
                **graph("dreamshaper_8.safetensors", 0),
                "9": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "unknown.ckpt"}},
            },
        },
    ]
    assert graph_family(rows[0]["graph"]) == "sd15"
    assert graph_family(rows[2]["graph"]) is None
    assert {f: r["id"] for f, r in plain_family_flows(rows).items()} == {"sd15": "small"}


def test_comfygen_picks_best_mean_flow_among_nearest_prompts():
    flows = {f: Candidate(f"text {f}") for f in ("good", "bad", "anime_best", "lonely")}
    triplets = [
        {"prompt": "a photo of a red car", "flow_id": "good", "score": 0.8},
        {"prompt": "a photo of a red car", "flow_id": "bad", "score": 0.9},
        {"prompt": "a photo of a blue car", "flow_id": "good", "score": 0.7},
        {"prompt": "a photo of a blue car", "flow_id": "bad", "score": 0.1},  # bad: mean 0.5 < good: 0.75
        {"prompt": "anime girl with a sword", "flow_id": "anime_best", "score": 0.99},
        {"prompt": "anime girl with a bow", "flow_id": "anime_best", "score": 0.95},
        {"prompt": "zzzz qqqq", "flow_id": "lonely", "score": 1.0},
    ]
    retriever = ComfyGenRetriever(triplets, flows, k=2)
    picked = retriever(["a photo of a green car", "anime girl with a spear"])
    assert [c.text for c in picked] == ["text good", "text anime_best"]
    assert (
        ComfyGenRetriever(triplets, flows, k=100)(["a photo of a green car"])[0].text == "text lonely"
    )  # k = all: global best mean


def test_comfygen_refuses_unknown_flows_and_empty_triplets():
    with pytest.raises(BaselineInputError, match="scored_flows"):
        ComfyGenRetriever([{"prompt": "p", "flow_id": "x", "score": 1.0}], {}, k=1)
    with pytest.raises(BaselineInputError, match="empty"):
        ComfyGenRetriever([], {}, k=1)


def test_fixed_flow_repeats_its_flow():
    flow = Candidate("t", {"1": {"class_type": "X", "inputs": {}}})
    assert FixedFlow(flow)(["a", "b", "c"]) == [flow] * 3


def test_best_flow_is_the_highest_mean_training_score_with_enough_rows():
    rows = (
        [{"flow_id": "a", "score": 0.9}] * 2
        + [{"flow_id": "b", "score": 0.6}] * 5
        + [{"flow_id": "c", "score": 0.5}] * 5
    )
    assert best_flow_id(rows) == "b"  # "a" is better but seen on 2 prompts only
    assert best_flow_id(rows, min_rows=2) == "a"
    assert best_flow_id(rows, min_rows=6) == "b"  # none has 6 rows: the flows with the most (5) compete
    with pytest.raises(BaselineInputError):
        best_flow_id([])
