"""One typed model of params.yaml; a profile's overrides are merged over the stage sections."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from flowrl.errors import ConfigError

PROFILES = ("tiny", "cpu", "paper")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PromptsConfig(Section):
    source: Literal["generator", "file", "civitai"] = Field("generator", description="Where prompts come from.")
    path: Path | None = Field(None, description="Prompt file (.jsonl, .csv, .txt) for source=file.")
    n_prompts: int = Field(10000, gt=0, description="Prompts kept after cleaning (train + holdout).")
    n_holdout: int = Field(500, ge=0, description="Prompts held out for evaluation.")
    strict: bool = Field(False, description="Fail on a malformed input line instead of skipping it.")
    min_chars: int = Field(10, ge=1, description="Shorter prompts are dropped.")
    max_chars: int = Field(1500, ge=1, description="Longer prompts are dropped.")

    @model_validator(mode="after")
    def _check(self) -> "PromptsConfig":
        if self.n_holdout >= self.n_prompts:
            raise ValueError("prompts.n_holdout must be smaller than prompts.n_prompts; lower n_holdout")
        if self.source == "file" and self.path is None:
            raise ValueError("prompts.source is 'file' but prompts.path is empty; set prompts.path")
        return self


class FlowsConfig(Section):
    variants_per_base: int = Field(60, ge=0, description="Augmented variants per base flow (paper: 2,000).")
    extra_base_dirs: list[Path] = Field(default_factory=list, description="Folders of real workflow files to import as base flows.")
    n_sft_pairs: int = Field(6000, gt=0, description="Random (prompt, encoded flow) SFT pairs (paper: 500K).")


class EncodeConfig(Section):
    pass


class ScoringConfig(Section):
    scorer: str = Field("flowrl.scoring.simulator:PreferenceSimulator", description="'package.module:ClassName' of the scorer.")
    options: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments passed to the scorer.")


class TripletsConfig(Section):
    n_scored_flows: int = Field(330, gt=0, description="Flows in the scored set (ComfyGen: 330).")
    n_triplets: int = Field(6000, gt=0, description="(prompt, flow, score) triplets (paper: 100K).")
    val_fraction: float = Field(0.1, ge=0, lt=1)
    test_fraction: float = Field(0.1, ge=0, lt=1)


class Params(Section):
    """The whole of params.yaml after the selected profile's overrides are applied."""

    profile: Literal["tiny", "cpu", "paper"] = "cpu"
    seed: int = 1234
    prompts: PromptsConfig = Field(default_factory=PromptsConfig)
    flows: FlowsConfig = Field(default_factory=FlowsConfig)
    encode: EncodeConfig = Field(default_factory=EncodeConfig)
    scoring: ScoringConfig = Field(default_factory=ScoringConfig)
    triplets: TripletsConfig = Field(default_factory=TripletsConfig)


def deep_merge(base: dict, override: dict) -> dict:
    """Return `base` with `override` merged in recursively (dicts merge, everything else replaces)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def resolve(raw: dict, profile: str | None = None) -> Params:
    """Apply the profile named by `profile` (or raw['profile']) and validate."""
    raw = dict(raw or {})
    profiles = raw.pop("profiles", {}) or {}
    name = profile or raw.get("profile", "cpu")
    if name not in profiles and name not in PROFILES:
        raise ConfigError(f"unknown profile {name!r}; choose one of {sorted(set(profiles) | set(PROFILES))}")
    merged = deep_merge(raw, profiles.get(name) or {})
    merged["profile"] = name
    try:
        return Params.model_validate(merged)
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise ConfigError("params are invalid:\n" + "\n".join(lines)) from None


def load_params(path: str | Path = "params.yaml", profile: str | None = None) -> Params:
    """Read params.yaml; the environment variable FLOWRL_PROFILE overrides its `profile` key."""
    import os

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: not found; run from the repository root or pass --params PATH")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc}); fix the file") from None
    return resolve(raw, profile or os.environ.get("FLOWRL_PROFILE"))
