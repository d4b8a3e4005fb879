"""The trl methods FlowGRPOTrainer and FlowSFTTrainer override keep the signatures they were written against.

Private hooks (`_generate_single_turn`, `_generate`, `_generate_and_score_completions`) change between trl minor
releases, which is why pyproject.toml pins trl's minor series; this fails when a release moves one.
"""

from __future__ import annotations

import inspect
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from flowrl.policy.grpo_trainer import FlowGRPOTrainer
from flowrl.policy.sft import FlowSFTTrainer

REPO = Path(__file__).resolve().parents[2]
OVERRIDES = [
    (cls, name)
    for cls in (FlowGRPOTrainer, FlowSFTTrainer)
    for name in vars(cls)
    if callable(vars(cls)[name]) and name != "__init__" and hasattr(cls.__bases__[0], name)
]


def _params(fn) -> list[tuple[str, object, object]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


def test_the_private_hooks_are_among_the_overrides():
    assert {"_generate_single_turn", "_generate", "_generate_and_score_completions"} <= {name for _, name in OVERRIDES}


@pytest.mark.parametrize(("cls", "name"), OVERRIDES, ids=[f"{c.__name__}.{n}" for c, n in OVERRIDES])
def test_an_override_has_the_signature_of_the_trl_method(cls, name):
    ours, theirs = getattr(cls, name), getattr(cls.__bases__[0], name)
    assert _params(ours) == _params(theirs), (
        f"trl {version('trl')} changed {cls.__bases__[0].__name__}.{name}; update {cls.__name__}"
    )


def test_the_installed_trl_is_in_the_pinned_series():
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    trl = next(Requirement(d) for d in deps if Requirement(d).name == "trl")
    assert (
        trl.specifier.contains(version("trl")) and len(list(trl.specifier)) == 2
    )  # a >= and a < bounding one minor series
