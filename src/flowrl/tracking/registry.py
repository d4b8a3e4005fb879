"""The `register` stage: log the policy as an MLflow model, register a version, and move the
`champion` alias only on a real gain over the champion, measured like with like.

Every version carries how it was evaluated (tags: profile, scorer, a hash of the evaluation prompts,
the served method) and its per-prompt mean scores (artifact evaluation.json, from the evaluate
stage's flows.jsonl). A new version is compared only with a champion evaluated the same way; if
the profile, scorer or prompts differ, promotion is refused and the description says why. When
they match, the paired gain in mean score over the same prompts must exceed `register.min_se`
standard errors. The first version becomes champion; one that is not promoted gets `challenger`.
The headline metric (default `win_rate_grpo_cfg_1.5_vs_comfygen`) is recorded beside. The
decision and its statistic are on the version (tags, description), in its run and in
reports/register/metrics.json.
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from flowrl.errors import FlowRLError
from flowrl.evaluation.evaluate import paired_difference
from flowrl.evaluation.policy_methods import gamma_method_name
from flowrl.io import read_json, read_jsonl, write_json
from flowrl.params.model import Params, RegisterConfig, ScoringConfig
from flowrl.pipeline.stages import EvaluateFiles, GRPOFiles, SFTFiles, report_dir
from flowrl.policy.inference import ServingSettings
from flowrl.tracking.pyfunc import log_policy_model
from flowrl.tracking.runs import log_stage

SFT_DIR, GRPO_DIR = SFTFiles.dir, GRPOFiles.dir
METRICS = report_dir("register") / "metrics.json"
TAG_METRIC, TAG_VALUE, TAG_DECISION = "flowrl.metric", "flowrl.metric_value", "flowrl.decision"
TAG_PREVIOUS, TAG_PREVIOUS_VALUE = "flowrl.previous_champion", "flowrl.previous_champion_metric"
TAG_REASON = "flowrl.decision_reason"
EVALUATION = "evaluation.json"  # artifact of the version's run: its Evaluation


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
    raise RegistryError(
        f"promotion metric {cfg.metric!r} not found in {', '.join(tried)}: run the evaluate stage (dvc repro evaluate) "
        f"or set register.metric to a key it writes{hint}"
    )


@dataclass(frozen=True)
class Evaluation:
    """How a version was evaluated, and its per-prompt mean scores in the evaluation prompts' order."""

    profile: str
    scorer: str
    prompts_sha256: str
    method: str
    scores: tuple[float, ...]

    def tags(self) -> dict[str, str]:
        return {
            "flowrl.profile": self.profile,
            "flowrl.scorer": self.scorer,
            "flowrl.eval_prompts_sha256": self.prompts_sha256,
            "flowrl.eval_method": self.method,
        }

    def differences(self, champion: Evaluation) -> list[str]:
        """Why `champion`'s scores cannot be paired with these: each of profile, scorer, evaluation prompts that differs."""
        fields = (("profile", "profile"), ("scorer", "scorer"), ("evaluation prompts (sha256)", "prompts_sha256"))
        return [
            f"{label} {getattr(champion, f)!r} vs {getattr(self, f)!r}"
            for label, f in fields
            if getattr(champion, f) != getattr(self, f)
        ]


def scorer_id(scoring: ScoringConfig) -> str:
    """The scorer as configured: import path, and its options when it has any."""
    return scoring.scorer + (f" {json.dumps(scoring.options, sort_keys=True)}" if scoring.options else "")


def served_method(params: Params, root: Path) -> str:
    """The evaluate method that samples as the served model does: sft without a GRPO adapter, else grpo at policy.gamma."""
    if not (root / GRPO_DIR / "adapter_config.json").exists():
        return "sft"
    return "grpo" if params.policy.gamma == 1 else gamma_method_name(params.policy.gamma)


def read_evaluation(params: Params, root: Path) -> Evaluation:
    """This run's Evaluation, from the evaluate stage's flows (reports/evaluate/flows.jsonl)."""
    method, path = served_method(params, root), root / EvaluateFiles.flows
    if not path.exists():
        raise RegistryError(f"{path} not found: run the evaluate stage (dvc repro evaluate)")
    per_prompt: dict[str, list[float]] = {}
    for row in read_jsonl(path):
        if row["method"] == method:
            per_prompt.setdefault(row["prompt"], []).append(float(row["score"]))
    if not per_prompt:
        raise RegistryError(
            f"{path} has no flows of {method!r}, the method the served policy samples with "
            f"(policy.gamma {params.policy.gamma}): put it among evaluate.gammas and rerun evaluate"
        )
    prompts_sha256 = hashlib.sha256(json.dumps(list(per_prompt)).encode()).hexdigest()
    return Evaluation(
        params.profile,
        scorer_id(params.scoring),
        prompts_sha256,
        method,
        tuple(sum(v) / len(v) for v in per_prompt.values()),
    )


def champion(client: MlflowClient, cfg: RegisterConfig):
    """(version holding the champion alias or None, its recorded metric or None, its Evaluation or None)."""
    try:
        version = client.get_model_version_by_alias(cfg.model_name, cfg.champion_alias)
    except MlflowException:
        return None, None, None
    raw = version.tags.get(TAG_VALUE)
    value = float(raw) if raw is not None and version.tags.get(TAG_METRIC) == cfg.metric else None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            recorded = read_json(
                mlflow.artifacts.download_artifacts(run_id=version.run_id, artifact_path=EVALUATION, dst_path=tmp)
            )
        evaluation = Evaluation(**{**recorded, "scores": tuple(recorded["scores"])})
    except (MlflowException, OSError, FlowRLError, TypeError):
        evaluation = None  # registered before versions carried their evaluation
    return version, value, evaluation


@dataclass(frozen=True)
class Decision:
    """Whether the new version takes the champion alias, why, and the paired statistic (NaN when not compared)."""

    promote: bool
    reason: str
    gain: float = float("nan")
    se: float = float("nan")
    n_se: float = float("nan")


def decide(new: Evaluation, old_version, old: Evaluation | None, min_se: float) -> Decision:
    """Promote on no champion, or on a paired gain in mean score above `min_se` standard errors over a champion evaluated the same way."""
    if old_version is None:
        return Decision(True, "no champion yet")
    if old is None:
        return Decision(
            False,
            f"champion v{old_version.version} has no recorded evaluation to compare with; "
            "move the alias by hand (MlflowClient().set_registered_model_alias) if this version should be served",
        )
    if differs := new.differences(old):
        return Decision(
            False,
            f"champion v{old_version.version} was evaluated differently ({'; '.join(differs)}); "
            "its scores cannot be paired with these: not promoted (move the alias by hand if this version should be served)",
        )
    d = paired_difference(new.scores, old.scores)
    promote = d["n_se"] > min_se  # NaN (one prompt, or no spread) never promotes
    verdict = "above" if promote else "not above"
    return Decision(
        promote,
        f"paired gain over champion v{old_version.version} {d['mean']:+.4f} ± {d['se']:.4f} "
        f"({d['n_se']:.2f} SE, {verdict} register.min_se {min_se:g}) on {len(new.scores)} prompts",
        d["mean"],
        d["se"],
        d["n_se"],
    )


def describe(version: int, cfg: RegisterConfig, value: float, source: Path, decision: Decision) -> str:
    """One paragraph for the model version's description: the numbers and the decision."""
    alias = cfg.champion_alias if decision.promote else cfg.challenger_alias
    return f"Holdout {cfg.metric} = {value:.4f} (from {source.name}). v{version} is {alias}: {decision.reason}."


def run(params: Params, root: Path = Path(".")) -> dict[str, float]:
    """Log, register and (maybe) promote the trained policy; write reports/register/metrics.json.

    Returns:
        {"version", "is_champion" (1/0), "new_metric", "champion_metric" (the previous champion's; None when there was none),
        "paired_gain", "paired_gain_se", "paired_gain_n_se" (mean score over the champion's on the same prompts; None when not compared)}.
    """
    root = Path(root)
    cfg = params.register
    sft_dir, grpo_dir = root / SFT_DIR, root / GRPO_DIR
    value, source = read_metric(root, cfg)
    evaluation = read_evaluation(params, root)
    run_id = log_stage(root, params.profile, "register", cfg.model_dump(mode="json"), {}, artifacts=[source])
    client = MlflowClient()
    old_version, old_value, old_evaluation = champion(client, cfg)
    decision = decide(evaluation, old_version, old_evaluation, cfg.min_se)
    with mlflow.start_run(run_id=run_id):
        mlflow.log_dict(asdict(evaluation), EVALUATION)
        info = log_policy_model(
            sft_dir, grpo_dir, ServingSettings.from_params(params), registered_model_name=cfg.model_name
        )
        version = int(info.registered_model_version)
        promoted = decision.promote
        alias = cfg.champion_alias if promoted else cfg.challenger_alias
        tags = {
            TAG_METRIC: cfg.metric,
            TAG_VALUE: repr(value),
            TAG_DECISION: alias,
            TAG_REASON: decision.reason[:5000],
            **evaluation.tags(),
            "flowrl.has_grpo": str((grpo_dir / "adapter_config.json").exists()).lower(),
            "flowrl.run_id": run_id,
        }
        if old_version is not None:
            tags[TAG_PREVIOUS] = str(old_version.version)
            tags[TAG_PREVIOUS_VALUE] = "none" if old_value is None else repr(old_value)
        for key, tag in tags.items():
            client.set_model_version_tag(cfg.model_name, str(version), key, tag)
        client.update_model_version(
            cfg.model_name, str(version), description=describe(version, cfg, value, source, decision)
        )
        client.set_registered_model_alias(cfg.model_name, alias, str(version))
        statistic = {"paired_gain": decision.gain, "paired_gain_se": decision.se, "paired_gain_n_se": decision.n_se}
        metrics = {
            "version": version,
            "is_champion": 1.0 if promoted else 0.0,
            "new_metric": value,
            "champion_metric": old_value,
            **{k: None if math.isnan(v) else v for k, v in statistic.items()},
        }
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None})
    write_json(root / METRICS, metrics)
    return metrics
