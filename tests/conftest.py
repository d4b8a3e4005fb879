"""Shared fixtures: the ../shared data folder (tests that need it skip with a reason when absent)."""

from __future__ import annotations

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
