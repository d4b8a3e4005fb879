"""Every pipeline stage declared once: its function, the params it reads, its inputs, outputs, metrics, plots.

dvc.yaml (`flowrl pipeline dvc-yaml`) and the stage diagram in docs/architecture.md (`flowrl pipeline
diagram`) are generated from these declarations, and stage code names its files through the path
classes below rather than by hand-written strings. All paths are relative to the repository root.

Stage functions are imported lazily, so asking for one stage does not import torch for the others.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from flowrl.errors import FlowRLError
from flowrl.io import write_json
from flowrl.params.model import Params

DATA, MODELS, REPORTS = Path("data"), Path("models"), Path("reports")


def report_dir(stage: str) -> Path:
    """reports/<stage>: where a stage writes its metrics.json, plots and human-readable reports."""
    return REPORTS / stage


@dataclass(frozen=True)
class Curve:
    """A per-step log a stage writes as a JSON table; DVC plots (and MLflow step metrics) show each group of `y` columns against `x`."""

    path: Path
    x: str
    y: tuple[tuple[str, tuple[str, ...]], ...]  # (title, columns) per plot

    def write(self, root: Path, rows: list[dict]) -> Path:
        """`rows` with every column in every row (null where a row lacks it): DVC plots read only columns every row has."""
        columns = dict.fromkeys([self.x, *(c for _, cols in self.y for c in cols)])
        for row in rows:
            columns.update(dict.fromkeys(row))
        return write_json(root / self.path, [{c: row.get(c) for c in columns} for row in rows])


class ResolvedParams:
    """data/params/<stage>.yaml: the params a stage reads, with the active profile applied (the `params` stage)."""

    dir = DATA / "params"

    @classmethod
    def of(cls, stage: str) -> Path:
        return cls.dir / f"{stage}.yaml"


class PromptsFiles:
    """data/prompts: cleaned prompts split into train and holdout."""

    dir = DATA / "prompts"
    train = dir / "train.jsonl"
    holdout = dir / "holdout.jsonl"


class FlowsFiles:
    """data/flows: base flows and their augmented variants."""

    dir = DATA / "flows"
    base = dir / "base.jsonl"
    augmented = dir / "augmented.jsonl"
    rejected = report_dir("flows") / "rejected.json"


class EncodeFiles:
    """data/encode: schema, flow vocabulary, encoded flows and SFT pairs."""

    dir = DATA / "encode"
    schema = dir / "schema.json"
    vocab = dir / "vocab.json"
    flows = dir / "flows.jsonl"
    sft_pairs = dir / "sft_pairs.jsonl"


class TripletsFiles:
    """data/triplets: scored (prompt, flow, score) splits, the scored flows and the score normalization."""

    dir = DATA / "triplets"
    train = dir / "train.jsonl"
    val = dir / "val.jsonl"
    test = dir / "test.jsonl"
    scored_flows = dir / "scored_flows.jsonl"
    normalization = dir / "normalization.json"

    @classmethod
    def split(cls, name: str) -> Path:
        return cls.dir / f"{name}.jsonl"


class ValidateFiles:
    """reports/validate: Great Expectations results and Data Docs."""

    dir = report_dir("validate")
    data_docs = dir / "data_docs"


class SFTFiles:
    """models/sft: the stage-1 policy (and its resumable checkpoints, outside DVC)."""

    dir = MODELS / "sft"
    checkpoints = MODELS / "sft_checkpoints"
    log = Curve(report_dir("sft") / "log.json", "step", (("loss", ("loss",)),))


class RewardFiles:
    """models/reward: the ensemble (`full`) and prefix ensemble of surrogate reward models."""

    dir = MODELS / "reward"
    full = dir / "full"
    scatter = report_dir("reward") / "scatter.png"


class GRPOFiles:
    """models/grpo: the stage-2 LoRA (and its resumable checkpoints, outside DVC)."""

    dir = MODELS / "grpo"
    checkpoints = MODELS / "grpo_checkpoints"
    log = Curve(
        report_dir("grpo") / "log.json",
        "step",
        (("reward", ("reward", "true_score_probe")), ("kl", ("kl",)), ("validity", ("validity", "probe_validity"))),
    )
    curves = report_dir("grpo") / "curves.png"


class EvaluateFiles:
    """reports/evaluate: every method's flows and scores, the summary and the plots."""

    dir = report_dir("evaluate")
    flows = dir / "flows.jsonl"
    summary = dir / "summary.json"
    metrics = dir / "metrics.json"
    plots = (
        dir / "win_rates.png",
        dir / "novelty_vs_gamma.png",
        dir / "scores.png",
        dir / "mean_scores.png",
        dir / "adaptivity.png",
    )


@dataclass(frozen=True)
class Stage:
    """One pipeline stage.

    Attributes:
        name: the stage's name everywhere (dvc stage, flow, MLflow run, reports/<name>).
        run: "module:function" taking (params, root) and returning the stage's metrics.
        params: params.yaml keys it reads: a section (`sft`), a dotted key (`prompts.min_chars`) or `seed`.
        inputs: files or folders written by earlier stages.
        outs: folders or files it writes (DVC outputs); `uncached` ones stay out of the DVC cache.
        plots: images DVC shows as plots (kept out of the DVC cache, so git holds them).
        curves: per-step logs DVC plots from their data (kept out of the DVC cache, like the metrics, so git holds them).
    """

    name: str
    run: str
    params: tuple[str, ...]
    inputs: tuple[Path, ...]
    outs: tuple[Path, ...] = ()
    uncached: tuple[Path, ...] = ()
    persist: bool = False
    plots: tuple[Path, ...] = ()
    curves: tuple[Curve, ...] = ()
    metrics_file: str = "metrics.json"

    @property
    def metrics(self) -> Path:
        return report_dir(self.name) / self.metrics_file

    @property
    def module(self) -> str:
        """The module of its function (its code deps are what this module imports)."""
        return self.run.split(":")[0]

    @property
    def sections(self) -> set[str]:
        """Top-level params keys it reads."""
        return {key.split(".")[0] for key in self.params}


TRAINING_GATE = report_dir("validate") / "metrics.json"  # training stages wait for the data checks to pass

# The order is the pipeline's order. A stage's code deps are not declared: dvc.yaml lists the project
# files its `run` module imports (flowrl.pipeline.code_deps).
STAGES: dict[str, Stage] = {
    s.name: s
    for s in (
        Stage("prompts", "flowrl.data.prompts:run", ("seed", "prompts"), (), outs=(PromptsFiles.dir,)),
        Stage("flows", "flowrl.data.flows:run", ("seed", "flows"), (), outs=(FlowsFiles.dir,)),
        Stage(
            "encode",
            "flowrl.encoding.stage:run",
            ("seed", "flows.n_sft_pairs", "encode"),
            (FlowsFiles.dir, PromptsFiles.train),
            outs=(EncodeFiles.dir,),
        ),
        Stage(
            "triplets",
            "flowrl.data.triplets:run",
            ("seed", "scoring", "triplets"),
            (PromptsFiles.dir, FlowsFiles.augmented, EncodeFiles.flows),
            outs=(TripletsFiles.dir,),
        ),
        Stage(
            "validate",
            "flowrl.data.validate:run",
            ("prompts.min_chars", "prompts.max_chars"),
            (PromptsFiles.dir, FlowsFiles.dir, EncodeFiles.dir, TripletsFiles.dir),
            uncached=(ValidateFiles.data_docs,),
        ),
        # persist: finished ensemble members are reused on a rerun (they carry a fingerprint of
        # their data and settings, so a change retrains them); see docs/reward.md.
        Stage(
            "reward",
            "flowrl.reward.train:run",
            ("seed", "device", "reward"),
            (TRAINING_GATE, TripletsFiles.dir, EncodeFiles.flows, EncodeFiles.vocab),
            outs=(RewardFiles.dir,),
            persist=True,
            plots=(RewardFiles.scatter,),
        ),
        Stage(
            "sft",
            "flowrl.policy.sft:run",
            ("seed", "device", "policy", "sft"),
            (
                TRAINING_GATE,
                EncodeFiles.sft_pairs,
                EncodeFiles.vocab,
                EncodeFiles.schema,
                PromptsFiles.holdout,
                RewardFiles.dir,
                TripletsFiles.train,
                FlowsFiles.augmented,
                EncodeFiles.flows,
            ),  # sft.pairing: reward, policy.prompt_codes
            outs=(SFTFiles.dir,),
            curves=(SFTFiles.log,),
        ),
        Stage(
            "grpo",
            "flowrl.policy.grpo:run",
            ("seed", "device", "policy", "grpo", "reward", "scoring"),
            (SFTFiles.dir, RewardFiles.dir, PromptsFiles.dir),
            outs=(GRPOFiles.dir,),
            curves=(GRPOFiles.log,),
        ),
        Stage(
            "evaluate",
            "flowrl.evaluation.evaluate:run",
            ("seed", "device", "evaluate", "policy", "scoring"),
            (
                PromptsFiles.holdout,
                FlowsFiles.dir,
                EncodeFiles.flows,
                TripletsFiles.scored_flows,
                TripletsFiles.train,
                SFTFiles.dir,
                GRPOFiles.dir,
                RewardFiles.dir,
            ),
            uncached=(EvaluateFiles.flows,),
            plots=EvaluateFiles.plots,
            metrics_file="summary.json",
        ),
        Stage(
            "register",
            "flowrl.tracking.registry:run",
            ("profile", "seed", "register", "policy", "scoring"),
            (SFTFiles.dir, GRPOFiles.dir, EvaluateFiles.summary, EvaluateFiles.flows),
        ),
    )
}

# Every stage runs through this module (`python -m flows STAGE`), so what it imports reruns every stage.
RUNNER = "flows.__main__"
# The `params` stage: writes each stage's resolved params (only the active profile's values count).
PARAMS_STAGE, PARAMS_MODULE = "params", "flowrl.pipeline.stage_params"

StageFn = Callable[[Params, Path], dict]


def stage(name: str) -> Stage:
    """The declaration of stage `name`."""
    if name not in STAGES:
        raise FlowRLError(f"unknown stage {name!r}; stages are: {', '.join(STAGES)}")
    return STAGES[name]


def stage_function(name: str) -> StageFn:
    """Import and return the function of stage `name`."""
    module, func = stage(name).run.split(":")
    return getattr(importlib.import_module(module), func)
