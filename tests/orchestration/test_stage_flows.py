"""Stage flows: run a stage through Prefect and MLflow; failures name the stage."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import mlflow
import pytest
import yaml
from prefect.testing.utilities import prefect_test_harness

from flowrl.io import write_json
from flowrl.pipeline import stages

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", autouse=True)
def prefect_server():
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def fake_stage(monkeypatch, tmp_path):
    """Register a stage `toy` whose behaviour the test controls."""
    module = types.ModuleType("toy_stage")
    calls = []

    def run(params, root: Path):
        calls.append(params.profile)
        if module.fail:
            raise ValueError("bad row 7")
        write_json(root / "reports/toy/metrics.json", {"rows": 3})
        return {"rows": 3, "note": "not a number"}

    module.run, module.fail, module.calls = run, False, calls
    monkeypatch.setitem(sys.modules, "toy_stage", module)
    monkeypatch.setitem(stages.STAGES, "toy", stages.Stage("toy", "toy_stage:run", ("profile",), (), ()))
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({**raw, "profile": "cpu"}))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return module


def test_stage_flow_runs_and_records_mlflow_run(fake_stage, tmp_path):
    from flows.stages import make_stage_flow

    metrics = make_stage_flow("toy")(profile="tiny", root=str(tmp_path))
    assert metrics["rows"] == 3 and fake_stage.calls == ["tiny"]
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow/mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["flowrl-tiny"])
    assert list(runs["tags.flowrl.stage"]) == ["toy"]
    assert runs["metrics.rows"].iloc[0] == 3
    run_id = runs["run_id"].iloc[0]
    assert [a.path for a in mlflow.MlflowClient().list_artifacts(run_id)] == ["toy"]


def test_stage_flow_nests_its_run_under_the_given_parent(fake_stage, tmp_path):
    """The pipeline flow hands its MLflow run id to each stage flow as a parameter (no environment variable)."""
    from flowrl.tracking.runs import use_experiment
    from flows.stages import make_stage_flow

    use_experiment(tmp_path, "tiny")
    with mlflow.start_run(run_name="pipeline-tiny") as parent:
        parent_id = parent.info.run_id
    make_stage_flow("toy")(profile="tiny", root=str(tmp_path), parent_run_id=parent_id)
    runs = mlflow.search_runs(experiment_names=["flowrl-tiny"], filter_string="tags.`flowrl.stage` = 'toy'")
    assert list(runs["tags.mlflow.parentRunId"]) == [parent_id]


def test_failed_stage_names_stage_and_original_error(fake_stage, tmp_path):
    from flows.stages import StageFailed, make_stage_flow

    fake_stage.fail = True
    with pytest.raises(StageFailed, match=r"stage 'toy' failed: ValueError: bad row 7"):
        make_stage_flow("toy")(profile="tiny", root=str(tmp_path))
    assert len(fake_stage.calls) == 1  # a data error is not retried


def test_unknown_stage_is_a_clear_error():
    with pytest.raises(Exception, match="unknown stage 'nope'; stages are: prompts"):
        stages.stage_function("nope")


def test_library_stdout_captures_still_work_inside_a_stage_flow(fake_stage, tmp_path):
    """dill (datasets' hashing) reads globals by capturing dis output on stdout; a flow that turned
    prints into Prefect log records broke that and logged ~1,000 lines of bytecode per SFT stage."""
    from dill.detect import nestedglobals

    from flows.stages import make_stage_flow

    def uses_a_global():
        return yaml.safe_dump({})

    seen = []
    plain_run = fake_stage.run
    fake_stage.run = lambda params, root: (seen.append(set(nestedglobals(uses_a_global))), plain_run(params, root))[1]
    make_stage_flow("toy")(profile="tiny", root=str(tmp_path))
    assert seen == [{"yaml"}]


def test_extra_ranks_of_a_multi_gpu_launch_run_the_stage_outside_prefect_and_mlflow(fake_stage, tmp_path, monkeypatch):
    from flowrl.runtime.device import is_main_process
    from flows.__main__ import run_stage_directly

    monkeypatch.setenv("RANK", "1")
    assert not is_main_process()
    monkeypatch.chdir(tmp_path)
    assert run_stage_directly("toy", "tiny")["rows"] == 3 and fake_stage.calls == ["tiny"]
    assert not (tmp_path / "mlflow").exists()  # rank 0 records the stage
    monkeypatch.setenv("RANK", "0")
    assert is_main_process()
