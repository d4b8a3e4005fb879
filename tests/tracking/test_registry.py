"""The register stage against a temporary SQLite MLflow store: the first version is champion; a later one
takes the alias only on a paired gain in mean score above register.min_se standard errors over a champion
evaluated the same way (profile, scorer, prompts), and the decision and its statistic are recorded."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
from mlflow import MlflowClient

from flowrl.io import write_json, write_jsonl
from flowrl.params.model import load_params
from flowrl.pipeline.stages import EvaluateFiles
from flowrl.tracking import registry
from flowrl.tracking.registry import Evaluation, RegistryError, decide, lookup, read_evaluation, read_metric
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


PROMPTS = [f"prompt {i}" for i in range(20)]
BASE = [0.1 * (i % 5) for i in range(20)]


def evaluated(
    root: Path,
    win_rate: float | None,
    scores: list[float] = BASE,
    prompts: list[str] = PROMPTS,
    method: str = "grpo_cfg_1.5",
) -> None:
    """The evaluate stage's outputs the register stage reads: summary.json and the served method's scored flows (two samples a prompt)."""
    summary = {"n_prompts": len(prompts), "win_rate_sft_vs_comfygen": 0.4}
    if win_rate is not None:
        summary[METRIC] = win_rate
    write_json(root / "reports/evaluate/summary.json", summary)
    rows = [
        {"method": m, "prompt": p, "score": s + d}
        for d in (-0.01, 0.01)
        for m in (method, "comfygen")
        for p, s in zip(prompts, scores)
    ]
    write_jsonl(root / EvaluateFiles.flows, rows)


def shifted(scores: list[float], mean: float, spread: float) -> list[float]:
    return [s + mean + (spread if i % 2 else -spread) for i, s in enumerate(scores)]


def test_promotion_needs_a_paired_gain_above_min_se_on_the_same_evaluation(root, params):
    client = lambda: MlflowClient()  # noqa: E731  (the stage sets the tracking URI)
    name = params.register.model_name
    assert params.register.min_se == 2.0

    evaluated(root, 0.60)
    first = registry.run(params, root)
    assert (
        first["version"] == 1
        and first["is_champion"] == 1.0
        and first["champion_metric"] is None
        and first["paired_gain"] is None
    )
    assert str(client().get_model_version_by_alias(name, "champion").version) == "1"
    v1 = client().get_model_version(name, "1")
    assert v1.tags["flowrl.profile"] == "tiny" and v1.tags["flowrl.eval_method"] == "grpo_cfg_1.5"
    assert v1.tags["flowrl.scorer"] == params.scoring.scorer + (
        f" {json.dumps(params.scoring.options, sort_keys=True)}" if params.scoring.options else ""
    )
    assert len(v1.tags["flowrl.eval_prompts_sha256"]) == 64

    evaluated(root, 0.72, shifted(BASE, 0.05, 0.01))  # +0.05 ± 0.002: about 20 SE
    second = registry.run(params, root)
    assert second["version"] == 2 and second["is_champion"] == 1.0 and second["champion_metric"] == pytest.approx(0.60)
    assert second["paired_gain"] == pytest.approx(0.05) and second["paired_gain_n_se"] > 2
    assert str(client().get_model_version_by_alias(name, "champion").version) == "2"

    evaluated(
        root, 0.80, shifted(shifted(BASE, 0.05, 0.01), 0.001, 0.02)
    )  # a higher win rate, but +0.001 ± 0.005 in mean score
    third = registry.run(params, root)
    assert (
        third["is_champion"] == 0.0
        and third["paired_gain"] == pytest.approx(0.001)
        and 0 < third["paired_gain_n_se"] < 2
    )
    assert str(client().get_model_version_by_alias(name, "champion").version) == "2"
    assert str(client().get_model_version_by_alias(name, "challenger").version) == "3"
    v3 = client().get_model_version(name, "3")
    assert v3.tags[registry.TAG_DECISION] == "challenger" and float(v3.tags[registry.TAG_VALUE]) == pytest.approx(0.80)
    assert v3.tags[registry.TAG_PREVIOUS] == "2" and float(v3.tags[registry.TAG_PREVIOUS_VALUE]) == pytest.approx(0.72)
    assert "not above register.min_se 2" in v3.tags[registry.TAG_REASON] and "challenger" in v3.description
    run = client().get_run(v3.run_id)  # the statistic is logged with the run
    assert (
        run.data.metrics["paired_gain_n_se"] == pytest.approx(third["paired_gain_n_se"])
        and run.data.tags["flowrl.stage"] == "register"
    )
    assert json.loads((root / registry.METRICS).read_text())["paired_gain_n_se"] == pytest.approx(
        third["paired_gain_n_se"]
    )

    other_prompts = [f"other {i}" for i in range(20)]
    evaluated(root, 0.9, shifted(BASE, 0.5, 0.01), prompts=other_prompts)  # a big gain, on other prompts
    fourth = registry.run(params, root)
    assert fourth["is_champion"] == 0.0 and fourth["paired_gain"] is None
    assert "evaluation prompts" in client().get_model_version(name, "4").tags[registry.TAG_REASON]

    rescored = params.model_copy(update={"scoring": params.scoring.model_copy(update={"options": {"noise": 0.5}})})
    evaluated(root, 0.9, shifted(BASE, 0.5, 0.01))
    assert registry.run(rescored, root)["is_champion"] == 0.0
    reason = client().get_model_version(name, "5").tags[registry.TAG_REASON]
    assert "scorer" in reason and "noise" in reason and "profile" not in reason
    assert str(client().get_model_version_by_alias(name, "champion").version) == "2"


def _evaluation(**changes) -> Evaluation:
    return replace(Evaluation("cpu", "sim", "abc", "grpo_cfg_1.5", tuple(BASE)), **changes)


@pytest.mark.parametrize(("min_se", "promoted"), [(0.0, True), (2.0, False)])
def test_min_se_sets_how_many_standard_errors_a_gain_needs(min_se, promoted):
    old = _evaluation()
    new = _evaluation(scores=tuple(shifted(BASE, 0.004, 0.02)))  # +0.004 ± 0.0046: 0.9 SE
    decision = decide(new, SimpleNamespace(version="1"), old, min_se)
    assert decision.promote == promoted and decision.n_se == pytest.approx(0.004 / (0.02 * (20 / 19) ** 0.5 / 20**0.5))


def test_an_unlike_champion_is_not_compared():
    champion = SimpleNamespace(version="7")
    for change, named in (
        ({"profile": "paper"}, "profile"),
        ({"scorer": "hps"}, "scorer"),
        ({"prompts_sha256": "def"}, "evaluation prompts"),
    ):
        decision = decide(_evaluation(scores=tuple(shifted(BASE, 1.0, 0.0)), **change), champion, _evaluation(), 2.0)
        assert (
            not decision.promote and named in decision.reason and "v7" in decision.reason and math.isnan(decision.n_se)
        )
    unrecorded = decide(_evaluation(), champion, None, 2.0)
    assert not unrecorded.promote and "no recorded evaluation" in unrecorded.reason
    assert decide(_evaluation(), None, None, 2.0).promote  # the first version


def test_the_served_method_must_have_been_evaluated(tmp_path, params):
    tiny.build_tiny_policy(tmp_path / "models", grpo=False)
    with pytest.raises(RegistryError, match="run the evaluate stage"):
        read_evaluation(params, tmp_path)
    evaluated(tmp_path, 0.5)  # grpo_cfg_1.5 rows, but without an adapter the served policy is sft
    with pytest.raises(RegistryError, match="no flows of 'sft'"):
        read_evaluation(params, tmp_path)
    evaluated(tmp_path, 0.5, method="sft")
    assert read_evaluation(params, tmp_path).scores == pytest.approx(BASE)


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
