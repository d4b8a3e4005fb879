"""Shared fixtures: the ../shared data folder (tests that need it skip with a reason when absent), and
each test's own MLflow tracking URI."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def shared_path(*parts: str) -> Path:
    """Path under ../shared, or skip the calling test saying what is missing."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent: these checks need the shared data folder beside the repository")
    return path


@pytest.fixture
def shared_workflows() -> Path:
    return shared_path("data", "comfyui_workflows")


@pytest.fixture
def shared_civitai() -> Path:
    return shared_path("data", "civitai")


@pytest.fixture(autouse=True)
def _mlflow_tracking_uri_stays_in_its_test():
    """`mlflow.set_tracking_uri` also exports MLFLOW_TRACKING_URI to os.environ, so a store one test chose
    would leak into later tests on the same worker and into the subprocesses they start (a dvc stage
    would log to another test's database). Put back the URI the test started with."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    if "mlflow" in sys.modules:
        sys.modules["mlflow"].set_tracking_uri(before)
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before
