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

from flowrl.config import Params
from flowrl.errors import FlowRLError

DATA, MODELS, REPORTS = Path("data"), Path("models"), Path("reports")


def report_dir(stage: str) -> Path:
    """reports/<stage>: where a stage writes its metrics.json, plots and human-readable reports."""
    return REPORTS / stage


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


class RewardFiles:
    """models/reward: the ensemble (`full`) and prefix ensemble of surrogate reward models."""

    dir = MODELS / "reward"
    full = dir / "full"
    scatter = report_dir("reward") / "scatter.png"


class GRPOFiles:
    """models/grpo: the stage-2 LoRA (and its resumable checkpoints, outside DVC)."""

    dir = MODELS / "grpo"
    checkpoints = MODELS / "grpo_checkpoints"
    log = report_dir("grpo") / "log.jsonl"
    curves = report_dir("grpo") / "curves.png"


class EvaluateFiles:
    """reports/evaluate: every method's flows and scores, the summary and the plots."""

    dir = report_dir("evaluate")
    flows = dir / "flows.jsonl"
    summary = dir / "summary.json"
    metrics = dir / "metrics.json"
    plots = (dir / "win_rates.png", dir / "novelty_vs_gamma.png", dir / "scores.png", dir / "mean_scores.png", dir / "adaptivity.png")


@dataclass(frozen=True)
class Stage:
    """One pipeline stage.

    Attributes:
        name: the stage's name everywhere (dvc stage, flow, MLflow run, reports/<name>).
        run: "module:function" taking (params, root) and returning the stage's metrics.
        params: params.yaml keys it reads: a section (`sft`), a dotted key (`prompts.min_chars`) or `seed`.
        inputs: files or folders written by earlier stages.
        code: source files or folders whose change should rerun it.
        outs: folders or files it writes (DVC outputs); `uncached` ones stay out of the DVC cache.
        plots: images DVC shows as plots.
    """

    name: str
    run: str
    params: tuple[str, ...]
    inputs: tuple[Path, ...]
    code: tuple[str, ...]
    outs: tuple[Path, ...] = ()
    uncached: tuple[Path, ...] = ()
    persist: bool = False
    plots: tuple[Path, ...] = ()
    metrics_file: str = "metrics.json"

    @property
    def metrics(self) -> Path:
        return report_dir(self.name) / self.metrics_file

    @property
    def sections(self) -> set[str]:
        """Top-level params keys it reads."""
        return {key.split(".")[0] for key in self.params}


# The model-file catalog the simulator scores with (and augmentation and usability checks read).
COMPONENTS = ("src/flowrl/comfy/components.py", "src/flowrl/comfy/components.json")
TRAINING_GATE = report_dir("validate") / "metrics.json"  # training stages wait for the data checks to pass

# The order is the pipeline's order.
STAGES: dict[str, Stage] = {s.name: s for s in (
    Stage("prompts", "flowrl.data.prompts:run", ("seed", "prompts"), (),
          ("src/flowrl/data/prompts.py", "src/flowrl/data/prompt_generator.py", "src/flowrl/data/prompt_sources.py",
           "src/flowrl/data/prompt_cleaning.py", "src/flowrl/data/civitai_api.py", *COMPONENTS),  # LoRA tags
          outs=(PromptsFiles.dir,)),
    Stage("flows", "flowrl.data.flows:run", ("seed", "flows"), (),
          ("src/flowrl/data/flows.py", "src/flowrl/data/augment.py", "src/flowrl/data/base_flows", "src/flowrl/comfy",
           "src/flowrl/encoding/codec.py"),  # augmented variants are deduplicated on the codec's canonical form
          outs=(FlowsFiles.dir,)),
    Stage("encode", "flowrl.encoding.stage:run", ("seed", "flows.n_sft_pairs", "encode"), (FlowsFiles.dir, PromptsFiles.train),
          ("src/flowrl/encoding", "src/flowrl/comfy/node_catalog.json"),  # canonical input order comes from the catalog
          outs=(EncodeFiles.dir,)),
    Stage("triplets", "flowrl.data.triplets:run", ("seed", "scoring", "triplets"),
          (PromptsFiles.dir, FlowsFiles.augmented, EncodeFiles.flows),
          ("src/flowrl/data/triplets.py", "src/flowrl/scoring", *COMPONENTS),
          outs=(TripletsFiles.dir,)),
    Stage("validate", "flowrl.data.validate:run", ("prompts.min_chars", "prompts.max_chars"),
          (PromptsFiles.dir, FlowsFiles.dir, EncodeFiles.dir, TripletsFiles.dir),
          ("src/flowrl/data/validate.py",),
          uncached=(ValidateFiles.data_docs,)),
    # persist: finished ensemble members are reused on a rerun (they carry a fingerprint of
    # their data and settings, so a change retrains them); see docs/reward.md.
    Stage("reward", "flowrl.reward.train:run", ("seed", "device", "reward"),
          (TRAINING_GATE, TripletsFiles.dir, EncodeFiles.flows, EncodeFiles.vocab),
          ("src/flowrl/encoding/vocab.py",
           "src/flowrl/encoding/codec.py",  # head members decode flows into their features
           "src/flowrl/comfy/node_catalog.json",  # which classes are outputs (dead-node features)
           "src/flowrl/reward"),
          outs=(RewardFiles.dir,), persist=True, plots=(RewardFiles.scatter,)),
    Stage("sft", "flowrl.policy.sft:run", ("seed", "device", "policy", "sft"),
          (TRAINING_GATE, EncodeFiles.sft_pairs, EncodeFiles.vocab, EncodeFiles.schema, PromptsFiles.holdout,
           RewardFiles.dir, TripletsFiles.train, FlowsFiles.augmented, EncodeFiles.flows),  # sft.pairing: reward, policy.prompt_codes
          ("src/flowrl/encoding/vocab.py",  # how the flow tokens' rows start
           "src/flowrl/encoding/policy_view.py",  # what a sampled flow decodes to and when it is usable
           "src/flowrl/comfy/usable.py", "src/flowrl/encoding/grammar.py", "src/flowrl/policy/constrained.py",
           "src/flowrl/policy/token_grammar.py", "src/flowrl/policy/flow_parse.py", "src/flowrl/policy/flow_tokenizer.py",
           "src/flowrl/policy/loading.py", "src/flowrl/policy/sampling.py", "src/flowrl/policy/sft.py",
           "src/flowrl/policy/pairing.py", "src/flowrl/policy/prompt_codes.py", "src/flowrl/reward", "src/flowrl/data/prompts.py",
           "src/flowrl/policy/template.py"),
          outs=(SFTFiles.dir,)),
    Stage("grpo", "flowrl.policy.grpo:run", ("seed", "device", "policy", "grpo", "reward", "scoring"),
          (SFTFiles.dir, RewardFiles.dir, PromptsFiles.dir),
          ("src/flowrl/policy", "src/flowrl/data/prompts.py", "src/flowrl/reward/shaping.py", "src/flowrl/reward/ensemble.py",
           "src/flowrl/reward/scorer_reward.py",
           "src/flowrl/reward/head.py",  # head members: features and prompt cache at reward time
           "src/flowrl/reward/features.py", "src/flowrl/reward/prompt_cache.py",
           "src/flowrl/encoding/policy_view.py", "src/flowrl/encoding/grammar.py", "src/flowrl/comfy/usable.py"),
          outs=(GRPOFiles.dir,)),
    Stage("evaluate", "flowrl.evaluation.evaluate:run", ("seed", "device", "evaluate", "policy", "scoring"),
          (PromptsFiles.holdout, FlowsFiles.dir, EncodeFiles.flows, TripletsFiles.scored_flows, TripletsFiles.train,
           SFTFiles.dir, GRPOFiles.dir, RewardFiles.dir),
          ("src/flowrl/evaluation", "src/flowrl/data/prompts.py",  # holdout_split: evaluate reads the test half
           "src/flowrl/policy",  # sampling, guidance and constrained decoding
           "src/flowrl/encoding/policy_view.py", "src/flowrl/encoding/grammar.py", "src/flowrl/comfy/usable.py", "src/flowrl/scoring", *COMPONENTS),
          uncached=(EvaluateFiles.flows,), plots=EvaluateFiles.plots, metrics_file="summary.json"),
    Stage("register", "flowrl.tracking.registry:run", ("profile", "seed", "register", "policy"),
          (SFTFiles.dir, GRPOFiles.dir, EvaluateFiles.summary),
          ("src/flowrl/tracking", "src/flowrl/policy/inference.py")),
)}

# Every stage runs through these, so a change to them reruns every stage.
RUNNER_CODE = ("flows/stages.py", "tasks/stages.py")
# The `params` stage: writes each stage's resolved params (only the active profile's values count).
PARAMS_STAGE = "params"
PARAMS_CODE = ("src/flowrl/config.py", "src/flowrl/sections.py", "src/flowrl/params_file.py", "src/flowrl/stages.py",
               "src/flowrl/stage_params.py")

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

