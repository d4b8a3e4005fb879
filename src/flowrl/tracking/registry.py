"""The `register` stage: log the policy as an MLflow model, register a version, and move the
`champion` alias only when the new version beats the current champion's holdout win rate.

The comparison number (default `win_rate_grpo_cfg_1.5_vs_comfygen`) comes from the evaluate
stage's reports; it is stored on every version as tags, so the next run compares against the
champion's own recorded number. The first version becomes champion; a version that does not beat
the champion gets the `challenger` alias. The decision and its numbers are recorded on the version
(tags and description) and in reports/register/metrics.json.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from flowrl.config import Params, RegisterConfig
from flowrl.errors import FlowRLError
from flowrl.io import read_json, write_json
from flowrl.stages import GRPOFiles, SFTFiles, report_dir
from flowrl.policy.inference import ServingSettings
from flowrl.tracking.pyfunc import log_policy_model
from flowrl.tracking.runs import log_stage

SFT_DIR, GRPO_DIR = SFTFiles.dir, GRPOFiles.dir
METRICS = report_dir("register") / "metrics.json"
TAG_METRIC, TAG_VALUE, TAG_DECISION = "flowrl.metric", "flowrl.metric_value", "flowrl.decision"
TAG_PREVIOUS, TAG_PREVIOUS_VALUE = "flowrl.previous_champion", "flowrl.previous_champion_metric"


class RegistryError(FlowRLError):
    """The register stage cannot decide: the evaluate report or the promotion metric is missing."""


def lookup(report: Any, key: str) -> Any:
    """`report[key]` for a flat key, else follow a dotted path (`grpo.win_rate.comfygen`); None when absent."""
    if isinstance(report, dict) and key in report:
        return report[key]
    node = report
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def read_metric(root: Path, cfg: RegisterConfig) -> tuple[float, Path]:
    """The promotion metric from the first evaluate report that has it.

    Returns:
        (value, report path). Raises RegistryError naming the files, the key and the fix.
    """
    tried = []
    for rel in cfg.metric_files:
        path = root / rel
        if not path.exists():
            tried.append(f"{rel} (missing)")
            continue
        value = lookup(read_json(path), cfg.metric)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value), path
        tried.append(f"{rel} (no number at {cfg.metric!r}{'' if value is None else f', found {value!r}'})")
    hint = ""
    if (root / cfg.metric_files[0]).exists() and isinstance(report := read_json(root / cfg.metric_files[0]), dict):
        hint = "; keys there: " + ", ".join(sorted(k for k in report if k.startswith("win_rate"))[:12])
    raise RegistryError(f"promotion metric {cfg.metric!r} not found in {', '.join(tried)}: run the evaluate stage (dvc repro evaluate) "
                        f"or set register.metric to a key it writes{hint}")


def champion(client: MlflowClient, cfg: RegisterConfig):
    """The version holding the champion alias and its recorded metric, or (None, None)."""
    try:
        version = client.get_model_version_by_alias(cfg.model_name, cfg.champion_alias)
    except MlflowException:
        return None, None
    raw = version.tags.get(TAG_VALUE)
    same_metric = version.tags.get(TAG_METRIC) == cfg.metric
    return version, float(raw) if raw is not None and same_metric else None


def beats(new: float, old: float | None, cfg: RegisterConfig) -> bool:
    """True when `new` is better than the champion's `old` by more than `min_improvement` (no `old`: True)."""
    if old is None or math.isnan(old):
        return True
    if math.isnan(new):
        return False
    gain = new - old if cfg.higher_is_better else old - new
    return gain > cfg.min_improvement


def describe(version: int, cfg: RegisterConfig, value: float, source: Path, old_version, old_value: float | None, promoted: bool) -> str:
    """One paragraph for the model version's description: the numbers and the decision."""
    text = f"Holdout {cfg.metric} = {value:.4f} (from {source.name}). "
    if old_version is None:
        text += f"No champion yet: v{version} becomes {cfg.champion_alias}."
    elif old_value is None:
        text += f"Champion v{old_version.version} has no recorded {cfg.metric}: v{version} takes {cfg.champion_alias}."
    else:
        verdict = f"promoted to {cfg.champion_alias}" if promoted else f"kept as {cfg.challenger_alias}"
        text += f"Champion v{old_version.version} had {old_value:.4f} (min improvement {cfg.min_improvement}): v{version} {verdict}."
    return text


def run(params: Params, root: Path = Path(".")) -> dict[str, float]:
    """Log, register and (maybe) promote the trained policy; write reports/register/metrics.json.

    Returns:
        {"version", "is_champion" (1/0), "new_metric", "champion_metric" (the previous champion's; None when there was none)}.
    """
    root = Path(root)
    cfg = params.register
    sft_dir, grpo_dir = root / SFT_DIR, root / GRPO_DIR
    value, source = read_metric(root, cfg)
    run_id = log_stage(root, params.profile, "register", cfg.model_dump(mode="json"), {}, artifacts=[source])
    client = MlflowClient()
    old_version, old_value = champion(client, cfg)
    with mlflow.start_run(run_id=run_id):
        info = log_policy_model(sft_dir, grpo_dir, ServingSettings.from_params(params), registered_model_name=cfg.model_name)
        version = int(info.registered_model_version)
        promoted = old_version is None or beats(value, old_value, cfg)
        alias = cfg.champion_alias if promoted else cfg.challenger_alias
        tags = {TAG_METRIC: cfg.metric, TAG_VALUE: repr(value), TAG_DECISION: alias, "flowrl.profile": params.profile,
                "flowrl.has_grpo": str((grpo_dir / "adapter_config.json").exists()).lower(), "flowrl.run_id": run_id}
        if old_version is not None:
            tags[TAG_PREVIOUS] = str(old_version.version)
            tags[TAG_PREVIOUS_VALUE] = "none" if old_value is None else repr(old_value)
        for key, tag in tags.items():
            client.set_model_version_tag(cfg.model_name, str(version), key, tag)
        client.update_model_version(cfg.model_name, str(version), description=describe(version, cfg, value, source, old_version, old_value, promoted))
        client.set_registered_model_alias(cfg.model_name, alias, str(version))
        metrics = {"version": version, "is_champion": 1.0 if promoted else 0.0, "new_metric": value, "champion_metric": old_value}
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None})
    write_json(root / METRICS, metrics)
    return metrics
