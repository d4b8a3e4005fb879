"""The evaluate stage end to end on tiny synthetic stage data: baselines only, and with stand-in policy methods."""

from __future__ import annotations

import json
import math
import re

import pytest

from flowrl.evaluation.evaluate import EvaluateInputError, evaluate, gamma_of, json_safe
from flowrl.evaluation.validity import Candidate, checked_graph
from flowrl.io import read_jsonl

from .conftest import HOLDOUT, ToyScorer

BASELINES = {"fixed_best", "training_flow", "fixed_popular", "fixed_popular_2", "fixed_sd15", "fixed_sdxl", "fixed_sdxl_turbo", "fixed_sdxl_lightning",
             "fixed_pony", "comfygen"}


def test_baselines_only_run_writes_every_report(stage_root, eval_params):
    summary = evaluate(eval_params, stage_root, ToyScorer())
    out = stage_root / "reports/evaluate"
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == BASELINES
    for name, m in metrics.items():
        assert m["validity"] == 1.0  # library flows all validate
        assert set(m["win_rate"]) == BASELINES - {name}
        assert m["exists_in_data"] == 1.0 and m["nld_ratio"] == 0.0  # baselines only return training flows
    # comfygen retrieves per prompt: anime prompts get a pony flow, photo prompts an sdxl flow (ToyScorer's best)
    assert metrics["comfygen"]["mean_score"] > max(m["mean_score"] for n, m in metrics.items() if n != "comfygen")
    k = eval_params.evaluate.samples_per_prompt
    assert metrics["fixed_popular"]["unique_ratio"] == pytest.approx(1 / (len(HOLDOUT) * k))
    assert all(m["usable"] == 1.0 for m in metrics.values())
    assert summary["win_rate_fixed_popular_vs_comfygen"] == metrics["fixed_popular"]["win_rate"]["comfygen"]
    assert summary["n_skipped"] == 5  # sft, sft_rerank, grpo, grpo_cfg_1.5, grpo_cfg_2: no models
    report = (out / "report.md").read_text()
    assert "grpo_cfg_1.5" in report and "models/sft is missing" in report
    assert len(read_jsonl(out / "flows.jsonl")) == len(BASELINES) * len(HOLDOUT) * k
    for png in ("win_rates.png", "novelty_vs_gamma.png", "scores.png", "mean_scores.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_policy_methods_are_scored_invalid_flows_get_zero(stage_root, eval_params):
    texts = [r["text"] for r in read_jsonl(stage_root / "data/encode/flows.jsonl")]
    copy_flow = texts[0]
    novel = copy_flow.replace("steps=20", "steps=47")
    assert novel != copy_flow and novel not in texts

    def broken(prompts):
        return [Candidate("NotANode x=1\n@@@")] * len(prompts)

    def half_novel(prompts):
        return [Candidate(novel if i % 2 else copy_flow) for i in range(len(prompts))]

    policy = ({"sft": broken, "grpo_cfg_1.5": half_novel}, {"grpo": "models/grpo is missing"})
    evaluate(eval_params, stage_root, ToyScorer(), policy=policy)
    metrics = json.loads((stage_root / "reports/evaluate/metrics.json").read_text())
    assert metrics["sft"]["validity"] == 0.0 and metrics["sft"]["mean_score"] == 0.0
    assert metrics["sft"]["unique_ratio"] is None  # NaN (no valid flow) is written as null
    assert metrics["sft"]["win_rate"]["comfygen"] == 0.0
    assert metrics["grpo_cfg_1.5"]["validity"] == 1.0
    assert metrics["grpo_cfg_1.5"]["exists_in_data"] == pytest.approx(0.5)
    assert metrics["grpo_cfg_1.5"]["unique_ratio"] == pytest.approx(2 / (len(HOLDOUT) * eval_params.evaluate.samples_per_prompt))  # two distinct flows
    assert metrics["grpo_cfg_1.5"]["nld_ratio"] > 0
    assert "grpo" not in metrics and "`grpo`: models/grpo is missing" in (stage_root / "reports/evaluate/report.md").read_text()


def test_redrawn_flows_count_as_usable_but_not_at_first_draw(stage_root, eval_params):
    flow = read_jsonl(stage_root / "data/encode/flows.jsonl")[0]["text"]

    def redrawn_every_other(prompts):
        return [Candidate(flow, draws=1 + i % 2) for i in range(len(prompts))]

    evaluate(eval_params, stage_root, ToyScorer(), policy=({"sft": redrawn_every_other}, {}))
    metrics = json.loads((stage_root / "reports/evaluate/metrics.json").read_text())
    assert metrics["sft"]["usable"] == 1.0
    assert metrics["sft"]["usable_first_draw"] == pytest.approx(0.5) and metrics["sft"]["mean_draws"] == pytest.approx(1.5)
    assert metrics["comfygen"]["usable_first_draw"] == metrics["comfygen"]["usable"]
    assert "usable, first draw" in (stage_root / "reports/evaluate/report.md").read_text()


def test_methods_filter_and_unknown_names(stage_root, eval_params):
    params = eval_params.model_copy(update={"evaluate": eval_params.evaluate.model_copy(update={"methods": ["comfygen", "fixed_sdxl"]})})
    summary = evaluate(params, stage_root, ToyScorer())
    assert summary["n_methods"] == 2 and summary["n_skipped"] == 0
    bad = eval_params.model_copy(update={"evaluate": eval_params.evaluate.model_copy(update={"methods": ["comfygenn"]})})
    with pytest.raises(EvaluateInputError, match="comfygenn"):
        evaluate(bad, stage_root, ToyScorer())
    only_missing = eval_params.model_copy(update={"evaluate": eval_params.evaluate.model_copy(update={"methods": ["grpo"]})})
    with pytest.raises(EvaluateInputError, match="nothing that can run"):
        evaluate(only_missing, stage_root, ToyScorer())


def test_missing_inputs_name_the_file(tmp_path, eval_params):
    from flowrl.errors import FlowRLError

    with pytest.raises(FlowRLError, match="holdout.jsonl"):
        evaluate(eval_params, tmp_path, ToyScorer())


def test_validity_check_and_helpers():
    assert checked_graph(Candidate("garbage")) is None
    assert checked_graph(Candidate("", {"1": {"class_type": "NoSuchNode", "inputs": {}}})) is None
    assert [gamma_of(n) for n in ("sft", "grpo", "grpo_cfg_1.5", "grpo_cfg_2", "comfygen")] == [0.0, 1.0, 1.5, 2.0, None]
    assert json_safe({"a": [float("nan"), 1.0], "b": float("inf")}) == {"a": [None, 1.0], "b": None}


def test_paired_differences_and_canonical_novelty(stage_root, eval_params):
    texts = [r["text"] for r in read_jsonl(stage_root / "data/encode/flows.jsonl")]
    copy_flow = texts[0]
    assert "seed=" in copy_flow
    reseeded = re.sub(r"seed=\d+", "seed=987654321", copy_flow)  # the same flow with another sampler seed
    better = copy_flow.replace("steps=20", "steps=47")

    def sft(prompts):
        return [Candidate(reseeded) for _ in prompts]

    def grpo(prompts):
        return [Candidate(better) for _ in prompts]

    evaluate(eval_params, stage_root, ToyScorer(), policy=({"sft": sft, "grpo": grpo}, {}))
    metrics = json.loads((stage_root / "reports/evaluate/metrics.json").read_text())
    assert metrics["sft"]["exists_in_data"] == 1.0 and metrics["sft"]["nld_ratio"] == 0.0  # a new seed is no new flow
    assert metrics["grpo"]["exists_in_data"] == 0.0
    paired = json.loads((stage_root / "reports/evaluate/paired.json").read_text())
    gain = paired["grpo_minus_sft"]
    assert gain["mean"] > 0 and gain["mean"] == pytest.approx(metrics["grpo"]["mean_score"] - metrics["sft"]["mean_score"])
    assert "grpo_minus_comfygen" in paired and "sft_minus_comfygen" in paired
