"""One Prefect flow per DVC stage. `dvc repro` runs `python -m flows <stage>`.

The flows are made by one factory rather than written out ten times: they differ only in the
stage they run, and the stage list lives in one place (`flowrl.pipeline.stages.STAGES`).
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from flowrl.errors import FlowRLError
from flowrl.params.model import load_params
from flowrl.pipeline.stages import STAGES
from tasks.stages import run_stage, track_stage

# Stages that record their own MLflow run (register logs the model in it); no second run.
SELF_TRACKED = {"register"}


class StageFailed(FlowRLError):
    """A stage failed after its retries; the message names the stage and the original error."""


def make_stage_flow(name: str):
    @flow(name=name, flow_run_name=name)  # no log_prints: it swallows the stdout that dill (datasets) captures
    def stage_flow(profile: str | None = None, root: str = ".", parent_run_id: str | None = None) -> dict:
        root_path = Path(root).resolve()
        params = load_params(root_path / "params.yaml", profile)
        try:
            metrics = run_stage(name, params, root_path)
        except Exception as exc:
            raise StageFailed(f"stage '{name}' failed: {type(exc).__name__}: {exc}") from exc
        if name not in SELF_TRACKED:
            track_stage(name, params, root_path, metrics, parent_run_id)
        return metrics

    stage_flow.__doc__ = f"Run the `{name}` stage and record it in MLflow."
    return stage_flow


STAGE_FLOWS = {name: make_stage_flow(name) for name in STAGES}
