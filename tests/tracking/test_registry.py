"""The register stage against a temporary SQLite MLflow store: first version -> champion, a better one
takes the alias, a worse one becomes challenger, and the decision is recorded on each version."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from flowrl.config import load_params
from flowrl.io import write_json
from flowrl.tracking import registry
from flowrl.tracking.registry import RegistryError, lookup, read_metric
from tests.tracking import test_pyfunc as tiny

REPO = Path(__file__).resolve().parents[2]
METRIC = "win_rate_grpo_cfg_1.5_vs_comfygen"


@pytest.fixture(scope="module")
def params():
    return load_params(REPO / "params.yaml", profile="tiny")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("repo")
    tiny.build_tiny_policy(root / "models")
    return root


@pytest.fixture(autouse=True)
def local_store(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # runs.tracking_uri -> <root>/mlflow/mlflow.db
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.delenv("FLOWRL_ARTIFACT_URI", raising=False)
    monkeypatch.delenv("FLOWRL_PARENT_RUN_ID", raising=False)


def evaluated(root: Path, win_rate: float | None) -> None:
    summary = {"n_prompts": 6, "win_rate_sft_vs_comfygen": 0.4}
    if win_rate is not None:
        summary[METRIC] = win_rate
    write_json(root / "reports/evaluate/summary.json", summary)


def test_aliases_move_only_on_a_better_win_rate(root, params):
    client = lambda: MlflowClient()  # noqa: E731  (the stage sets the tracking URI)
    name = params.register.model_name

    evaluated(root, 0.60)
    first = registry.run(params, root)
    assert first == {"version": 1, "is_champion": 1.0, "new_metric": 0.60, "champion_metric": None}
    assert str(client().get_model_version_by_alias(name, "champion").version) == "1"
    assert json.loads((root / registry.METRICS).read_text())["version"] == 1

    evaluated(root, 0.72)
    second = registry.run(params, root)
    assert second["version"] == 2 and second["is_champion"] == 1.0 and second["champion_metric"] == pytest.approx(0.60)
    assert str(client().get_model_version_by_alias(name, "champion").version) == "2"

    evaluated(root, 0.65)
    third = registry.run(params, root)
    assert third["version"] == 3 and third["is_champion"] == 0.0 and third["champion_metric"] == pytest.approx(0.72)
    assert str(client().get_model_version_by_alias(name, "champion").version) == "2"
    assert str(client().get_model_version_by_alias(name, "challenger").version) == "3"

    v3 = client().get_model_version(name, "3")
    assert v3.tags[registry.TAG_DECISION] == "challenger" and float(v3.tags[registry.TAG_VALUE]) == pytest.approx(0.65)
    assert v3.tags[registry.TAG_PREVIOUS] == "2" and float(v3.tags[registry.TAG_PREVIOUS_VALUE]) == pytest.approx(0.72)
    assert v3.tags["flowrl.has_grpo"] == "true"
    assert "0.6500" in v3.description and "0.7200" in v3.description and "challenger" in v3.description
    v2 = client().get_model_version(name, "2")
    assert v2.tags[registry.TAG_DECISION] == "champion" and "promoted" in v2.description

    run = client().get_run(v3.run_id)
    assert run.data.metrics["new_metric"] == pytest.approx(0.65) and run.data.tags["flowrl.stage"] == "register"
    assert (root / "mlflow" / "mlflow.db").exists()


def test_min_improvement_keeps_a_marginal_version_out(tmp_path, params):
    tiny.build_tiny_policy(tmp_path / "models", grpo=False)
    strict = params.model_copy(update={"register": params.register.model_copy(update={"min_improvement": 0.05, "model_name": "strict"})})
    evaluated(tmp_path, 0.50)
    assert registry.run(strict, tmp_path)["is_champion"] == 1.0
    evaluated(tmp_path, 0.53)
    out = registry.run(strict, tmp_path)
    assert out["is_champion"] == 0.0
    assert MlflowClient().get_model_version("strict", "2").tags["flowrl.has_grpo"] == "false"


def test_missing_metric_names_the_file_and_the_fix(tmp_path, params):
    with pytest.raises(RegistryError, match="run the evaluate stage"):
        read_metric(tmp_path, params.register)
    evaluated(tmp_path, None)
    with pytest.raises(RegistryError, match="win_rate_sft_vs_comfygen"):
        read_metric(tmp_path, params.register)


def test_metric_lookup_flat_then_dotted():
    report = {"grpo": {"win_rate": {"comfygen": 0.7}}, "a.b": 1}
    assert lookup(report, "a.b") == 1
    assert lookup(report, "grpo.win_rate.comfygen") == 0.7
    assert lookup(report, "grpo.win_rate.sft") is None
