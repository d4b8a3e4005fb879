"""Public config files of the paper's models (config JSON only, no weights) and `source: random` built from them.

`source: random` builds the named architecture at its real shapes with random weights and no hub access, so the
`paper` profile's code paths (and the cost estimate, on the meta device) run on offline GPU workers and in tests.
Shipped: meta-llama/Llama-3.1-8B (policy) and answerdotai/ModernBERT-base (reward). `model` may also be a path to
any transformers config.json.
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path
from typing import Literal

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    PretrainedConfig,
    PreTrainedModel,
)

from flowrl.errors import FlowRLError

HERE = Path(__file__).resolve().parent
Head = Literal["causal-lm", "regression"]


class ModelConfigError(FlowRLError):
    """A `source: random` model names no shipped config and no readable config.json."""


def shipped() -> list[str]:
    """Hub ids whose config ships with flowrl (file name: owner--name.json)."""
    return sorted(p.stem.replace("--", "/", 1) for p in HERE.glob("*.json"))


def load_model_config(model: str | dict | None, setting: str = "policy.model") -> PretrainedConfig:
    """The transformers config named by `model`: a shipped hub id, a path to a config.json, or the config itself.

    Raises:
        ModelConfigError: empty, unknown or unreadable, naming `setting` and the shipped ids.
    """
    if isinstance(model, dict):
        return AutoConfig.for_model(**model)
    fix = f"set {setting} to one of {shipped()} or to a path of a transformers config.json"
    if not model:
        raise ModelConfigError(f"source is 'random' but {setting} is empty; {fix}")
    path = HERE / f"{model.replace('/', '--', 1)}.json" if "/" in model and not Path(model).exists() else Path(model)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise ModelConfigError(f"{setting} {model!r}: no shipped config and no file {path}; {fix}")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return AutoConfig.for_model(**raw)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelConfigError(f"{path}: not a transformers config.json ({str(exc)[:200]}); {fix}") from None


def build_random_model(
    model: str | dict | None,
    head: Head,
    seed: int = 0,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    setting: str = "policy.model",
) -> PreTrainedModel:
    """The architecture of `model` with random weights (seeded); on `device` "meta" it allocates no memory.

    Args:
        model: shipped hub id, config.json path or config dict (see `load_model_config`).
        head: "causal-lm" (the policy) or "regression" (a 1-output reward surrogate).
        seed: initialisation seed: same seed, same weights.
        device: where the weights are created ("meta" for shapes only, "cuda" to skip a CPU copy); None = CPU.
    """
    config = load_model_config(model, setting)
    if head == "regression":
        config.num_labels, config.problem_type = 1, "regression"
    auto = AutoModelForCausalLM if head == "causal-lm" else AutoModelForSequenceClassification
    with torch.random.fork_rng(devices=[]), torch.device(device) if device is not None else nullcontext():
        torch.manual_seed(seed)
        return auto.from_config(config, dtype=dtype)
