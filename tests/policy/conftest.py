"""Shared, session-cached pieces for the policy tests: tiny params and SmolLM2's tokenizer."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from flowrl.params.model import Params, load_params

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def tiny_params() -> Params:
    return load_params(REPO / "params.yaml", profile="tiny")


@pytest.fixture(scope="session")
def _base_tokenizer(tiny_params):
    from flowrl.policy.loading import load_tokenizer

    return load_tokenizer(tiny_params.policy)  # SmolLM2's, read from the GGUF (~3 s): load once


@pytest.fixture
def base_tokenizer(_base_tokenizer):
    """A private copy of SmolLM2's tokenizer, safe to extend."""
    return copy.deepcopy(_base_tokenizer)
