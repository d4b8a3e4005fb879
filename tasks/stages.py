"""Prefect tasks: thin wrappers over flowrl stage functions, adding retries and logging."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.logging import get_run_logger

from flowrl.cli.cost import stage_start
from flowrl.io import read_json
from flowrl.params.model import Params
from flowrl.pipeline.stage_params import declared_view
from flowrl.pipeline.stages import report_dir, stage, stage_function
from flowrl.tracking.runs import log_stage

TRANSIENT = (ConnectionError, TimeoutError)
TRAINING_STAGES = ("sft", "reward", "grpo")  # flowrl.cli.cost estimates their memory


def _is_transient(task, task_run, state) -> bool:
    """Retry only what a retry can fix: network and timeouts, not bad data or bugs."""
    try:
        state.result()
    except TRANSIENT:
        return True
    except Exception:  # noqa: BLE001 - anything else fails at once
        return False
    return False


@task(retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=_is_transient, task_run_name="{name}")
def run_stage(name: str, params: Params, root: Path) -> dict:
    """Run one pipeline stage on the params it declares and return its metrics (training stages print their cost estimate first)."""
    if name in TRAINING_STAGES:
        stage_start(params, name, root)
    metrics = stage_function(name)(declared_view(params, stage(name)), root)
    get_run_logger().info("stage %s finished: %s", name, metrics)
    return metrics


@task(retries=3, retry_delay_seconds=[2, 10, 30], retry_condition_fn=_is_transient, task_run_name="mlflow-{name}")
def track_stage(name: str, params: Params, root: Path, metrics: dict, parent_run_id: str | None = None) -> str:
    """Record the stage as an MLflow run with its params, metrics and reports (nested under `parent_run_id` when given)."""
    # The stage's own params section, if it has one (`validate` reads others').
    section_dict = params.model_dump(mode="json").get(name, {}) if name in type(params).model_fields else {}
    reports = root / report_dir(name)
    steps = [
        row for curve in stage(name).curves if (root / curve.path).exists() for row in read_json(root / curve.path)
    ]
    return log_stage(
        root, params.profile, name, section_dict, metrics, [reports] if reports.exists() else [], parent_run_id, steps
    )
