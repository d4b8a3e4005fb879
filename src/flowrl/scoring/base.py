"""The Scorer protocol and `load_scorer`, which builds any scorer named by import path."""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Protocol, runtime_checkable

from flowrl.errors import FlowRLError


class ScorerError(FlowRLError):
    """A scorer cannot be loaded or cannot score its input."""


@runtime_checkable
class Scorer(Protocol):
    """Scores (prompt, API-format flow) pairs; higher is better."""

    def score(self, prompts: list[str], flows: list[dict]) -> list[float]:
        """One score per pair (prompts[i], flows[i])."""
        ...


def as_reward(scorer: Scorer):
    """A trl-style reward function `f(prompts, completions, **kw) -> list[float]` where completions are API graphs."""

    def reward(prompts: list[str], completions: list[dict], **_: Any) -> list[float]:
        return scorer.score(list(prompts), list(completions))

    reward.__name__ = type(scorer).__name__
    return reward


def load_scorer(import_path: str, options: dict[str, Any] | None = None) -> Scorer:
    """Import `package.module:ClassName` and instantiate it with `options` as keyword arguments.

    Raises:
        ScorerError: malformed path, missing module/class, a class without `score`, or options the class rejects.
    """
    options = dict(options or {})
    module_name, sep, class_name = import_path.partition(":")
    if not sep or not module_name or not class_name:
        raise ScorerError(
            f"scoring.scorer {import_path!r}: expected 'package.module:ClassName' "
            "(e.g. 'flowrl.scoring.simulator:PreferenceSimulator'); fix params.yaml scoring.scorer"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ScorerError(
            f"scoring.scorer {import_path!r}: cannot import module {module_name!r} ({exc}); "
            "fix params.yaml scoring.scorer or install the package"
        ) from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise ScorerError(
            f"scoring.scorer {import_path!r}: module {module_name!r} has no {class_name!r}; "
            "fix params.yaml scoring.scorer"
        )
    if not callable(getattr(cls, "score", None)):
        raise ScorerError(
            f"scoring.scorer {import_path!r}: {class_name} is not a scorer "
            "(needs a method score(prompts, flows) -> list[float])"
        )
    if inspect.isclass(cls):
        try:
            inspect.signature(cls).bind(**options)
        except TypeError as exc:
            raise ScorerError(
                f"scoring.options {options!r} do not fit {import_path} ({exc}); fix params.yaml scoring.options"
            ) from None
    try:
        scorer = cls(**options) if inspect.isclass(cls) else cls
    except (TypeError, ValueError) as exc:
        raise ScorerError(
            f"scoring.options {options!r} rejected by {import_path}: {exc}; fix params.yaml scoring.options"
        ) from None
    return scorer
