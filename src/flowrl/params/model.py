"""One typed model of params.yaml (`Params`, made of the section models in flowrl.params.sections and
flowrl.params.training); a profile's overrides are merged over the stage sections."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from flowrl.errors import ConfigError
from flowrl.params.reader import check_tree, read_params_file
from flowrl.params.sections import (  # noqa: F401 - the section models are imported from here too
    AblationsConfig,
    Bf16,
    EncodeConfig,
    EvaluateConfig,
    FlowsConfig,
    PromptsConfig,
    RegisterConfig,
    ScoringConfig,
    Section,
    TripletsConfig,
)
from flowrl.params.training import (  # noqa: F401 - the section models are imported from here too
    GRPOStageConfig,
    HeadConfig,
    LoraSection,
    PolicyConfig,
    RewardConfig,
    ScratchModelConfig,
    SFTConfig,
    TinyEncoderConfig,
    TinyModelConfig,
)

PROFILES = ("tiny", "cpu", "paper")


# `register` (the stage's name) shadows ABCMeta.register on the class only; instances read the field
warnings.filterwarnings("ignore", message='Field name "register" in "Params" shadows', category=UserWarning)


class Params(Section):
    """The whole of params.yaml after the selected profile's overrides are applied."""

    profile: str = Field("cpu", description="The profile applied: tiny, cpu, paper, or any name under `profiles`.")
    seed: int = 1234
    device: str = Field(
        "auto",
        pattern=r"^(auto|cpu|cuda(:\d+)?)$",
        description="Where models run: auto (CUDA when present, else cpu), cpu, cuda or cuda:N (flowrl.runtime.device). bf16 weights for frozen models on GPUs that support it.",
    )
    prompts: PromptsConfig = Field(default_factory=PromptsConfig)
    flows: FlowsConfig = Field(default_factory=FlowsConfig)
    encode: EncodeConfig = Field(default_factory=EncodeConfig)
    scoring: ScoringConfig = Field(default_factory=ScoringConfig)
    triplets: TripletsConfig = Field(default_factory=TripletsConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    sft: SFTConfig = Field(default_factory=SFTConfig)
    reward: RewardConfig = Field(default_factory=RewardConfig)
    grpo: GRPOStageConfig = Field(default_factory=GRPOStageConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    register: RegisterConfig = Field(default_factory=RegisterConfig)
    ablations: AblationsConfig = Field(default_factory=AblationsConfig)


def deep_merge(base: dict, override: dict) -> dict:
    """Return `base` with `override` merged in recursively (dicts merge, everything else replaces)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def resolve(raw: dict, profile: str | None = None, source: str = "params") -> Params:
    """Apply the profile named by `profile` (or raw['profile']) and validate.

    Raises:
        ConfigError: naming the key and the fix, for a non-mapping, bad nesting, an unknown profile or a bad value.
    """
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(
            f"{source}: the top level is a {type(raw).__name__}, not a mapping of sections "
            "(prompts:, policy:, ...); fix the file"
        )
    check_tree(raw, source)
    raw = dict(raw or {})
    profiles = raw.pop("profiles", {}) or {}
    if not isinstance(profiles, dict) or not all(isinstance(p, dict) or p is None for p in profiles.values()):
        raise ConfigError(f"{source}: 'profiles' must map a profile name to its section overrides; fix the file")
    name = profile or raw.get("profile", "cpu")
    if not isinstance(name, str):
        raise ConfigError(f"{source}: 'profile' must be a name such as cpu, got {name!r}")
    if name not in profiles and name not in PROFILES:
        raise ConfigError(f"unknown profile {name!r}; choose one of {sorted(set(profiles) | set(PROFILES))}")
    overrides = profiles.get(name) or {}
    merged = deep_merge(raw, overrides)
    merged["profile"] = name
    try:
        return Params.model_validate(merged)
    except ValidationError as exc:
        lines = [f"  {_where(e['loc'], overrides, name)}: {e['msg']}" for e in exc.errors()]
        raise ConfigError(f"{source}: params are invalid (profile {name}):\n" + "\n".join(lines)) from None


def _where(loc: tuple, overrides: dict, profile: str) -> str:
    """A bad value's dotted key, as `profiles.<profile>.<key>` when the profile's overrides set it."""
    key, node = ".".join(str(p) for p in loc), overrides
    for part in loc:
        if not isinstance(node, dict) or part not in node:
            return key
        node = node[part]
    return f"profiles.{profile}.{key} (set by profile {profile})"


def missing_keys(raw: Any, model: type[BaseModel] = Params, prefix: str = "") -> list[str]:
    """Dotted keys of `model` (nested sections included) that the mapping `raw` does not name."""
    raw = raw if isinstance(raw, dict) else {}
    missing = []
    for name, field in model.model_fields.items():
        if name not in raw:
            missing.append(prefix + name)
        elif isinstance(field.annotation, type) and issubclass(field.annotation, Section):
            missing += missing_keys(raw[name], field.annotation, f"{prefix}{name}.")
    return missing


def load_params(path: str | Path = "params.yaml", profile: str | None = None) -> Params:
    """Read params.yaml; `profile` (when given) overrides its `profile` key.

    params.yaml is the one source of settings, so it must name every key (profiles override some);
    the models' defaults equal its values only so that code and tests can build a config in memory.
    DVC tracks params.yaml, so a `dvc repro` picks profiles through the file
    (`dvc exp run -S profile=tiny`); the argument is for flows run directly.

    Raises:
        ConfigError: as `read_params_file` and `resolve`, and when a key is missing (naming them).
    """
    raw = read_params_file(path)
    params = resolve(raw, profile, str(path))
    if missing := missing_keys({k: v for k, v in raw.items() if k != "profiles"}):
        more = f" and {len(missing) - 8} more" if len(missing) > 8 else ""
        raise ConfigError(
            f"{path}: lacks {', '.join(missing[:8])}{more}; params.yaml names every setting "
            "(the code has no defaults of its own): restore them from the repository's params.yaml"
        )
    return params
