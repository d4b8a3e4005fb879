"""MLflow runs for pipeline stages: one place that knows where runs go and what they carry."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from flowrl.tracking.store import DEFAULT_STORE, tracking_uri  # noqa: F401 (tracking_uri: re-exported)


def artifact_location(root: Path) -> str:
    """FLOWRL_ARTIFACT_URI (e.g. s3://bucket/prefix) if set, else mlflow/artifacts beside the store."""
    return os.environ.get("FLOWRL_ARTIFACT_URI") or (root / DEFAULT_STORE / "artifacts").resolve().as_uri()


def use_experiment(root: Path, profile: str) -> str:
    """Point MLflow at the configured store and select (creating if needed) the profile's experiment."""
    (root / DEFAULT_STORE).mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(tracking_uri(root))
    name = f"flowrl-{profile}"
    if mlflow.get_experiment_by_name(name) is None:
        mlflow.create_experiment(name, artifact_location=f"{artifact_location(root)}/{name}")
    mlflow.set_experiment(name)
    return name


def flatten(prefix: str, value: Any) -> dict[str, Any]:
    """Flatten nested config into MLflow param keys like `sft.lora.r`."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, sub in value.items():
            out.update(flatten(f"{prefix}.{key}" if prefix else str(key), sub))
        return out
    return {prefix: value}


def git_commit(root: Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def log_stage(
    root: Path,
    profile: str,
    stage: str,
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
    artifacts: list[Path] = (),
    parent_run_id: str | None = None,
    steps: Sequence[Mapping[str, Any]] = (),
) -> str:
    """Record one finished stage as an MLflow run; return its run id.

    Args:
        params: the stage's config section (nested dicts are flattened).
        metrics: numeric figures; non-numeric values are skipped.
        artifacts: files or folders to attach (reports, plots).
        parent_run_id: nest under this run (the pipeline's or an ablation sweep's parent run).
        steps: per-step rows with a `step` key (a stage's curves); each numeric column becomes a metric history `step/<column>`.
    """
    use_experiment(root, profile)
    tags = {"flowrl.stage": stage, "flowrl.profile": profile}
    if commit := git_commit(root):
        tags["mlflow.source.git.commit"] = commit
    if parent_run_id:
        tags["mlflow.parentRunId"] = parent_run_id
    # nested: inside the pipeline's (or the ablation sweep's) parent run, which is still active here
    with mlflow.start_run(run_name=stage, tags=tags, nested=mlflow.active_run() is not None) as run:
        flat = {k: str(v)[:500] for k, v in flatten(stage, dict(params)).items()}
        if flat:
            mlflow.log_params(flat)
        numeric = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if numeric:
            mlflow.log_metrics(numeric)
        now = int(time.time() * 1000)
        history = [
            Metric(f"step/{k}", float(v), now, int(row["step"]))
            for row in steps
            for k, v in row.items()
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)
        ]
        for i in range(0, len(history), 1000):  # MLflow's batch limit
            MlflowClient().log_batch(run.info.run_id, metrics=history[i : i + 1000])
        for path in artifacts:
            path = Path(path)
            if path.is_dir():
                mlflow.log_artifacts(str(path), artifact_path=path.name)
            elif path.exists():
                mlflow.log_artifact(str(path))
        return run.info.run_id
