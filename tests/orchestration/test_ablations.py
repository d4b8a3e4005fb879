"""Ablation sweep: variant plumbing (fast) and two variants end to end on the tiny profile (slow)."""

from __future__ import annotations

import math

import mlflow
import pytest
import yaml

from flowrl.errors import FlowRLError
from flowrl.io import read_json, write_json, write_jsonl
from flowrl.params.model import load_params
from flowrl.pipeline.stages import stage_function
from flows.ablations import METRICS, VARIANTS, AblationError, prepare_workspace, variant_params, variant_row
from tests.conftest import REPO


def tiny_params(tmp_path, **sections):
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["profile"] = "tiny"
    for section, values in sections.items():
        raw["profiles"]["tiny"].setdefault(section, {}).update(values)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    return load_params(tmp_path / "params.yaml")


def test_every_variant_makes_valid_params_and_reruns_only_what_it_changes(tmp_path):
    params = tiny_params(tmp_path)
    assert set(params.ablations.variants) <= set(VARIANTS)
    p = variant_params(params, VARIANTS["no_uncertainty"], "grpo_cfg_1.5")
    assert math.isinf(p.reward.tau) and p.reward.tau_quantile is None and p.reward.n_models == params.reward.n_models
    assert p.evaluate.methods == ["comfygen", "grpo_cfg_1.5"]
    assert variant_params(params, VARIANTS["ensemble_5"], "grpo_cfg_1.5").reward.n_models == 5
    assert variant_params(params, VARIANTS["ensemble_7"], "grpo_cfg_1.5").reward.n_models == 7
    assert variant_params(params, VARIANTS["no_prefix_reward"], "x").reward.component_reward is False
    assert variant_params(params, VARIANTS["prefix_reward"], "x").reward.component_reward is True
    assert params.reward.tau != p.reward.tau  # the original is untouched
    assert VARIANTS["ensemble_1"].stages == ("reward", "grpo", "evaluate")
    assert VARIANTS["no_grpo"].stages == () and VARIANTS["no_grpo"].method == "sft_rerank"


def test_workspace_links_data_and_untouched_models_only(tmp_path):
    main, work = tmp_path / "main", tmp_path / "ablations" / "ensemble_3"
    for d in ("data/prompts", "models/sft", "models/sft_checkpoints", "models/reward", "models/grpo"):
        (main / d).mkdir(parents=True)
    (main / "data/prompts/holdout.jsonl").write_text("{}\n")
    prepare_workspace(main, work, VARIANTS["ensemble_3"], link=True)
    assert (work / "data").is_symlink() and (work / "data/prompts/holdout.jsonl").exists()
    assert sorted(p.name for p in (work / "models").iterdir()) == ["sft", "sft_checkpoints"]
    prepare_workspace(main, work, VARIANTS["no_sft"], link=False)
    assert sorted(p.name for p in (work / "models").iterdir()) == ["reward"]
    assert not (work / "data").is_symlink() and (work / "data/prompts/holdout.jsonl").exists()


def test_variant_row_compares_against_full_model_per_prompt(tmp_path):
    rows = [
        {"method": m, "prompt": p, "score": s}
        for m, scores in {"grpo": [0.9, 0.1, 0.5], "comfygen": [0.2, 0.2, 0.2]}.items()
        for p, s in zip("abc", scores)
    ]
    write_jsonl(tmp_path / "reports/evaluate/flows.jsonl", rows)
    write_json(
        tmp_path / "reports/evaluate/metrics.json",
        {"grpo": {"mean_score": 0.5, "validity": 1.0, "nld_ratio": None, "win_rate": {"comfygen": 2 / 3}}},
    )
    row = variant_row(tmp_path, "grpo", (list("abc"), [0.5, 0.5, 0.5]))
    assert row["win_rate_vs_full"] == pytest.approx(0.5) and row["win_rate_vs_comfygen"] == pytest.approx(2 / 3)
    assert set(row) == set(METRICS) and math.isnan(row["nld_ratio"])
    with pytest.raises(AblationError, match="other prompts"):
        variant_row(tmp_path, "grpo", (list("abd"), [0.5, 0.5, 0.5]))
    with pytest.raises(AblationError, match="no flows of method 'sft'"):
        variant_row(tmp_path, "sft", (list("abc"), [0.5] * 3))


@pytest.mark.slow
def test_two_variants_end_to_end_under_one_parent_run(tmp_path, monkeypatch):
    from prefect.testing.utilities import prefect_test_harness

    from flows.ablations import ablations

    # tiny, trimmed further: one reward model, evaluate only what the table reads
    params = tiny_params(
        tmp_path,
        reward={"n_models": 1, "n_prefix_models": 1, "epochs": 1, "n_train": 100},
        evaluate={"methods": ["grpo_cfg_1.5", "sft_rerank", "comfygen"]},
        sft={"n_validity": 0},
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlruns.db'}")
    for name in ("prompts", "flows", "encode", "triplets", "sft", "reward", "grpo", "evaluate"):
        stage_function(name)(params, tmp_path)
    main_eval = (tmp_path / "reports/evaluate/summary.json").read_bytes()

    with prefect_test_harness(server_startup_timeout=120):
        rows = ablations(profile="tiny", root=str(tmp_path), variants=["no_prefix_reward", "no_grpo"])
        with pytest.raises(FlowRLError, match="unknown ablation variants"):
            ablations(profile="tiny", root=str(tmp_path), variants=["no_such"])

    assert list(rows) == ["full", "no_prefix_reward", "no_grpo"]
    assert rows["full"]["win_rate_vs_full"] == 0.5
    for row in rows.values():
        assert set(row) == set(METRICS) and 0 <= row["win_rate_vs_comfygen"] <= 1 and 0 <= row["validity"] <= 1
    # the variant retrained GRPO in its own workspace, the main one is untouched
    work = tmp_path / "ablations/no_prefix_reward"
    assert (work / "data").is_symlink() and not (work / "models/grpo").is_symlink()
    assert read_json(work / "reports/grpo/metrics.json")["steps"] == params.grpo.max_steps
    assert (tmp_path / "reports/evaluate/summary.json").read_bytes() == main_eval
    assert not (tmp_path / "ablations/no_grpo").exists()  # nothing to rerun

    table = (tmp_path / "reports/ablations/table.md").read_text()
    assert "| no_prefix_reward |" in table and "| no_grpo |" in table and "win_rate_vs_full" in table
    assert (tmp_path / "reports/ablations/ablations.png").stat().st_size > 0

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlruns.db'}")
    runs = mlflow.search_runs(experiment_names=["flowrl-tiny"])
    parent = runs[runs["tags.flowrl.stage"] == "ablations"]
    assert len(parent) == 1
    children = runs[runs["tags.mlflow.parentRunId"] == parent["run_id"].iloc[0]]
    assert sorted(children["tags.mlflow.runName"]) == ["ablation-full", "ablation-no_grpo", "ablation-no_prefix_reward"]
    for metric in METRICS:
        assert children[f"metrics.{metric}"].notna().sum() >= 2 or metric == "nld_ratio"
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(parent["run_id"].iloc[0])}
    assert {"table.md", "ablations.png", "metrics.json"} <= artifacts


def test_no_sft_variant_writes_an_untrained_policy_folder_grpo_can_load(tmp_path):
    from safetensors.torch import load_file

    from flowrl.policy.loading import load_sft_merged
    from flows.ablations import write_untrained_sft

    params = tiny_params(tmp_path)
    write_json(tmp_path / "data/encode/vocab.json", ["<flow_a>", "<flow_b>"])
    out = write_untrained_sft(params, tmp_path)
    weights = load_file(str(out / "adapter_model.safetensors"))
    lora_b = [w for name, w in weights.items() if "lora_B" in name]
    assert lora_b and all(float(w.abs().max()) == 0.0 for w in lora_b)  # identity adapter: zero training steps
    assert read_json(out / "policy.json")["sft"]["max_steps"] == 0
    model, tokenizer = load_sft_merged(out)
    assert tokenizer.convert_tokens_to_ids("<flow_b>") == len(tokenizer) - 1
    assert model.get_input_embeddings().weight.shape[0] == len(tokenizer)
