"""The evaluate stage end to end on tiny synthetic stage data: baselines only, and with stand-in policy methods."""

from __future__ import annotations

import json
import re

import pytest

from flowrl.data.prompts import holdout_split
from flowrl.evaluation.evaluate import EvaluateInputError, evaluate, gamma_of, json_safe
from flowrl.evaluation.validity import Candidate, checked_graph
from flowrl.io import read_jsonl

from .conftest import DEV, HOLDOUT, ToyScorer

BASELINES = {
    "fixed_best",
    "training_flow",
    "fixed_popular",
    "fixed_popular_2",
    "fixed_sd15",
    "fixed_sdxl",
    "fixed_sdxl_turbo",
    "fixed_sdxl_lightning",
    "fixed_pony",
    "comfygen",
}


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
    for png in ("win_rates.png", "novelty_vs_gamma.png", "scores.png", "mean_scores.png", "adaptivity.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {r["prompt"] for r in read_jsonl(out / "flows.jsonl")} == set(
        HOLDOUT
    )  # the test half only, never a dev prompt
    # adaptivity: a fixed flow ignores the prompt (gain 0, one checkpoint); comfygen picks pony for anime, sdxl for photo prompts
    for name in BASELINES - {"comfygen", "training_flow"}:
        assert (
            metrics[name]["adaptivity_gain"] == pytest.approx(0.0, abs=1e-12)
            and metrics[name]["top_checkpoint_share"] == 1.0
        )
        assert metrics[name]["checkpoint_entropy_bits"] == 0.0 and metrics[name]["structure_entropy_bits"] == 0.0
    assert metrics["comfygen"]["adaptivity_gain"] == pytest.approx(0.5)  # the ToyScorer's family match, on every prompt
    assert metrics["comfygen"]["top_checkpoint_share"] == 0.5 and metrics["comfygen"][
        "checkpoint_entropy_bits"
    ] == pytest.approx(1.0)
    assert summary["adaptivity_gain_comfygen"] == metrics["comfygen"]["adaptivity_gain"]
    assert summary["adaptivity_se_comfygen"] == metrics["comfygen"]["adaptivity_se"]
    assert summary["top_checkpoint_share_fixed_best"] == 1.0
    lo, hi = metrics["fixed_popular"]["win_rate_ci95"]["comfygen"]
    assert lo == 0.0 and 0.4 < hi < 0.5  # Wilson: 0 of 4 prompts -> [0, 0.49]
    assert "## Adaptivity" in report and "[95% Wilson interval]" in report and "0.00 [0.00, 0.49]" in report
    assert not any(k.startswith("best_policy") for k in summary)  # no policy method ran


def test_only_the_test_half_is_evaluated_and_too_few_is_an_error(stage_root, eval_params):
    rows = read_jsonl(stage_root / "data/prompts/holdout.jsonl")
    dev, test = holdout_split(rows)
    assert [r["prompt"] for r in test] == HOLDOUT and [r["prompt"] for r in dev] == DEV
    too_many = eval_params.model_copy(
        update={"evaluate": eval_params.evaluate.model_copy(update={"n_prompts": len(HOLDOUT) + 1})}
    )
    with pytest.raises(EvaluateInputError, match=r"test half .* has 4 of 7 prompts, evaluate.n_prompts asks for 5"):
        evaluate(too_many, stage_root, ToyScorer())


def test_holdout_split_is_stable_and_balanced():
    rows = [{"prompt": f"prompt number {i}"} for i in range(2000)]
    dev, test = holdout_split(rows)
    assert 900 < len(dev) < 1100 and len(dev) + len(test) == len(rows)
    assert not {r["prompt"] for r in dev} & {r["prompt"] for r in test}
    dev_small, test_small = holdout_split(
        rows[::3]
    )  # a smaller holdout: every prompt stays in its half, file order kept
    assert dev_small == [r for r in dev if r in rows[::3]] and test_small == [r for r in test if r in rows[::3]]


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
    assert metrics["grpo_cfg_1.5"]["unique_ratio"] == pytest.approx(
        2 / (len(HOLDOUT) * eval_params.evaluate.samples_per_prompt)
    )  # two distinct flows
    assert metrics["grpo_cfg_1.5"]["nld_ratio"] > 0
    assert (
        "grpo" not in metrics
        and "`grpo`: models/grpo is missing" in (stage_root / "reports/evaluate/report.md").read_text()
    )


def test_redrawn_flows_count_as_usable_but_not_at_first_draw(stage_root, eval_params):
    flow = read_jsonl(stage_root / "data/encode/flows.jsonl")[0]["text"]

    def redrawn_every_other(prompts):
        return [Candidate(flow, draws=1 + i % 2) for i in range(len(prompts))]

    evaluate(eval_params, stage_root, ToyScorer(), policy=({"sft": redrawn_every_other}, {}))
    metrics = json.loads((stage_root / "reports/evaluate/metrics.json").read_text())
    assert metrics["sft"]["usable"] == 1.0
    assert metrics["sft"]["usable_first_draw"] == pytest.approx(0.5) and metrics["sft"]["mean_draws"] == pytest.approx(
        1.5
    )
    assert metrics["comfygen"]["usable_first_draw"] == metrics["comfygen"]["usable"]
    assert "usable, first draw" in (stage_root / "reports/evaluate/report.md").read_text()


def test_methods_filter_and_unknown_names(stage_root, eval_params):
    params = eval_params.model_copy(
        update={"evaluate": eval_params.evaluate.model_copy(update={"methods": ["comfygen", "fixed_sdxl"]})}
    )
    summary = evaluate(params, stage_root, ToyScorer())
    assert summary["n_methods"] == 2 and summary["n_skipped"] == 0
    bad = eval_params.model_copy(
        update={"evaluate": eval_params.evaluate.model_copy(update={"methods": ["comfygenn"]})}
    )
    with pytest.raises(EvaluateInputError, match="comfygenn"):
        evaluate(bad, stage_root, ToyScorer())
    only_missing = eval_params.model_copy(
        update={"evaluate": eval_params.evaluate.model_copy(update={"methods": ["grpo"]})}
    )
    with pytest.raises(EvaluateInputError, match="nothing that can run"):
        evaluate(only_missing, stage_root, ToyScorer())


def test_missing_inputs_name_the_file(tmp_path, eval_params):
    from flowrl.errors import FlowRLError

    with pytest.raises(FlowRLError, match="holdout.jsonl"):
        evaluate(eval_params, tmp_path, ToyScorer())


def test_validity_check_and_helpers():
    assert checked_graph(Candidate("garbage")) is None
    assert checked_graph(Candidate("", {"1": {"class_type": "NoSuchNode", "inputs": {}}})) is None
    assert [gamma_of(n) for n in ("sft", "grpo", "grpo_cfg_1.5", "grpo_cfg_2", "comfygen")] == [
        0.0,
        1.0,
        1.5,
        2.0,
        None,
    ]
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
    assert gain["mean"] > 0 and gain["mean"] == pytest.approx(
        metrics["grpo"]["mean_score"] - metrics["sft"]["mean_score"]
    )
    assert "grpo_minus_comfygen" in paired and "sft_minus_comfygen" in paired


def test_headline_win_rates_of_the_best_policy_method(stage_root, eval_params):
    texts = [r["text"] for r in read_jsonl(stage_root / "data/encode/flows.jsonl")]
    better = texts[0].replace("steps=20", "steps=47")

    def constant(text):
        return lambda prompts: [Candidate(text) for _ in prompts]

    policy = ({"sft_rerank": constant(texts[0]), "grpo_cfg_1.5": constant(better)}, {})
    summary = evaluate(eval_params, stage_root, ToyScorer(), policy=policy)
    metrics = json.loads((stage_root / "reports/evaluate/metrics.json").read_text())
    assert (
        metrics["grpo_cfg_1.5"]["mean_score"] > metrics["sft_rerank"]["mean_score"]
    )  # so grpo_cfg_1.5 is the best policy method
    for other in ("comfygen", "fixed_best", "sft_rerank"):
        rate, (lo, hi) = metrics["grpo_cfg_1.5"]["win_rate"][other], metrics["grpo_cfg_1.5"]["win_rate_ci95"][other]
        assert summary[f"best_policy_win_rate_vs_{other}"] == rate
        assert (summary[f"best_policy_win_rate_vs_{other}_lo"], summary[f"best_policy_win_rate_vs_{other}_hi"]) == (
            lo,
            hi,
        )
        assert lo <= rate <= hi
    assert summary["best_policy_win_rate_vs_sft_rerank"] == 1.0  # more steps on the same flow always score higher
    paired = json.loads((stage_root / "reports/evaluate/paired.json").read_text())
    assert "grpo_cfg_1.5_minus_fixed_best" in paired and "grpo_cfg_1.5_minus_comfygen" in paired
    assert "Headline: best policy method `grpo_cfg_1.5`" in (stage_root / "reports/evaluate/report.md").read_text()
