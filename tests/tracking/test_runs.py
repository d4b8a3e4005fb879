"""MLflow runs of stages: a stage's curves become metric histories."""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from flowrl.tracking.runs import log_stage


def test_curves_become_metric_histories(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    steps = [{"step": 1, "loss": 2.0, "note": "x"}, {"step": 2, "loss": 1.5, "grad_norm": None}]
    run_id = log_stage(tmp_path, "tiny", "sft", {}, {"train_loss": 1.7}, steps=steps)
    history = MlflowClient().get_metric_history(run_id, "step/loss")
    assert [(m.step, m.value) for m in history] == [(1, 2.0), (2, 1.5)]
    assert MlflowClient().get_run(run_id).data.metrics["train_loss"] == 1.7
