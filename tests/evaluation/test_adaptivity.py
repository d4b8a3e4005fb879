"""Adaptivity gain, checkpoint share and entropies on hand-made flows and a scorer that rewards prompt-matched checkpoints."""

from __future__ import annotations

import math

import pytest

from flowrl.evaluation.adaptivity import (
    NO_CHECKPOINT,
    adaptivity_gain,
    adaptivity_metrics,
    base_checkpoint,
    diversity,
    entropy_bits,
    other_prompt_index,
    scores_on_other_prompts,
    structure_key,
)


def flow(ckpt: str, *extra: str, refiner: str | None = None) -> dict:
    """A minimal API graph: a checkpoint loader (+ optional refiner loader) and `extra` node classes."""
    graph = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}}}
    if refiner:
        graph["2"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": refiner}}
    for i, cls in enumerate(extra, start=3):
        graph[str(i)] = {"class_type": cls, "inputs": {}}
    return graph


class CheckpointScorer:
    """1 when the flow's checkpoint is named in the prompt, plus a prompt-only term (so a constant flow's scores vary by prompt)."""

    def __init__(self):
        self.calls = 0

    def score(self, prompts, graphs):
        self.calls += 1
        return [
            float(base_checkpoint(g).split(".")[0] in p) + len(p) / 100 for p, g in zip(prompts, graphs, strict=True)
        ]


PROMPTS = ["a pony picture", "an sdxl photo, sharp", "pony art in the rain", "sdxl landscape at dusk", "pony sketch"]


def own_scores(graphs, prompts, scorer):
    return [
        0.0 if g is None else s for g, s in zip(graphs, scorer.score(prompts, [g or {} for g in graphs]), strict=True)
    ]


def test_other_prompt_index_is_a_fixed_derangement():
    for n in (2, 3, 4, 5, 128, 250):
        other = other_prompt_index(n)
        assert sorted(other) == list(range(n)) and all(o != i for i, o in enumerate(other))
    assert other_prompt_index(4) == [2, 3, 0, 1]
    with pytest.raises(ValueError, match="at least two"):
        other_prompt_index(1)


def test_a_flow_that_ignores_the_prompt_has_gain_zero():
    scorer = CheckpointScorer()
    graphs = [flow("pony.safetensors", "KSampler")] * (2 * len(PROMPTS))  # 2 rounds
    asked = PROMPTS * 2
    own = own_scores(graphs, asked, scorer)
    m = adaptivity_metrics(graphs, own, asked, len(PROMPTS), scorer)
    assert len(set(own)) > 1  # the scores do differ by prompt ...
    assert m["adaptivity_gain"] == pytest.approx(
        0.0, abs=1e-12
    )  # ... but the other prompts are a permutation of the own ones
    assert m["adaptivity_se"] > 0
    assert m["top_checkpoint"] == "pony.safetensors" and m["top_checkpoint_share"] == 1.0
    assert m["checkpoint_entropy_bits"] == 0.0 and m["structure_entropy_bits"] == 0.0


def test_prompt_matched_flows_have_positive_gain():
    scorer = CheckpointScorer()
    graphs = [flow("pony.safetensors") if "pony" in p else flow("sdxl.safetensors", "VAEDecode") for p in PROMPTS]
    own = own_scores(graphs, PROMPTS, scorer)
    other = scores_on_other_prompts(graphs, PROMPTS, len(PROMPTS), scorer)
    # other prompts: 0->2 (pony->pony), 1->3 (sdxl->sdxl), 2->4 (pony->pony), 3->0 (sdxl->pony), 4->1 (pony->sdxl)
    expected_other = [
        1 + len(PROMPTS[2]) / 100,
        1 + len(PROMPTS[3]) / 100,
        1 + len(PROMPTS[4]) / 100,
        len(PROMPTS[0]) / 100,
        len(PROMPTS[1]) / 100,
    ]
    assert other == pytest.approx(expected_other)
    gain = adaptivity_gain(own, other, len(PROMPTS))
    assert gain["mean"] == pytest.approx(sum(o - x for o, x in zip(own, expected_other)) / 5) and gain["mean"] > 0
    m = diversity(graphs)
    assert m["top_checkpoint"] == "pony.safetensors" and m["top_checkpoint_share"] == pytest.approx(0.6)
    assert m["checkpoint_entropy_bits"] == pytest.approx(-(0.6 * math.log2(0.6) + 0.4 * math.log2(0.4)))
    assert m["structure_entropy_bits"] == m["checkpoint_entropy_bits"]  # the sdxl flows also have another structure


def test_invalid_flows_score_zero_on_both_prompts_and_are_left_out_of_the_shares():
    scorer = CheckpointScorer()
    graphs = [None, flow("sdxl.safetensors"), None, flow("sdxl.safetensors"), flow("pony.safetensors")]
    other = scores_on_other_prompts(graphs, PROMPTS, len(PROMPTS), scorer)
    assert other[0] == 0.0 and other[2] == 0.0 and other[1] > 0
    assert diversity(graphs)["top_checkpoint_share"] == pytest.approx(2 / 3)
    none = adaptivity_metrics([None] * 5, [0.0] * 5, PROMPTS, 5, scorer)
    assert (
        none["adaptivity_gain"] == 0.0 and none["top_checkpoint"] is None and math.isnan(none["top_checkpoint_share"])
    )


def test_rounds_are_averaged_per_prompt_and_paired_with_the_same_other_prompt():
    # 2 rounds of 2 prompts: flow j was asked for prompt j % 2 and is scored on the other one of the same round
    own, other = [3.0, 1.0, 5.0, 1.0], [1.0, 1.0, 1.0, 3.0]
    gain = adaptivity_gain(own, other, 2)
    assert gain["mean"] == pytest.approx(1.0)  # per prompt: (4 - 1, 1 - 2) -> (3, -1)
    assert gain["se"] == pytest.approx(2.0)
    scorer = CheckpointScorer()
    graphs = [flow("pony.safetensors")] * 4
    assert scores_on_other_prompts(graphs, ["pony", "sdxl"] * 2, 2, scorer) == pytest.approx([0.04, 1.04, 0.04, 1.04])


def test_checkpoint_structure_and_entropy_helpers():
    assert (
        base_checkpoint(flow("sd_xl_base_1.0.safetensors", refiner="sd_xl_refiner_1.0.safetensors"))
        == "sd_xl_base_1.0.safetensors"
    )
    assert base_checkpoint({"1": {"class_type": "KSampler", "inputs": {}}}) == NO_CHECKPOINT
    assert structure_key(flow("a", "VAEDecode", "KSampler")) == structure_key(flow("b", "KSampler", "VAEDecode"))
    assert structure_key(flow("a", "KSampler")) != structure_key(flow("a", "KSampler", "KSampler"))
    assert entropy_bits(["a", "b", "c", "d"]) == pytest.approx(2.0)
    assert entropy_bits(["a"] * 3) == 0.0 and math.isnan(entropy_bits([]))
