"""The whole pipeline as one Prefect flow: every stage in order, nested under one MLflow run.

`dvc repro` is the usual driver (it skips what is up to date); this flow is the same stages for
Prefect-only setups, and what ablation sweeps call with overrides.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
from prefect import flow

from flowrl.params.model import load_params
from flowrl.pipeline.stages import STAGES
from flowrl.tracking.runs import use_experiment
from flows.stages import STAGE_FLOWS


@flow(name="pipeline", flow_run_name="pipeline-{profile}")
def pipeline(profile: str | None = None, root: str = ".", stages: list[str] | None = None) -> dict[str, dict]:
    """Run `stages` (default: all, in pipeline order) as subflows; return each stage's metrics."""
    root_path = Path(root).resolve()
    params = load_params(root_path / "params.yaml", profile)
    use_experiment(root_path, params.profile)
    results: dict[str, dict] = {}
    with mlflow.start_run(run_name=f"pipeline-{params.profile}", tags={"flowrl.stage": "pipeline"}) as parent:
        for name in stages or list(STAGES):
            results[name] = STAGE_FLOWS[name](
                profile=params.profile, root=str(root_path), parent_run_id=parent.info.run_id
            )
    return results
