"""Ablation sweep (paper Table 3): each variant in its own workspace, one MLflow child run per variant.

`python -m flows.ablations [--profile P] [--variants a b ...]`, or the Prefect flow `ablations`.

A variant changes a few params and reruns only the stages those params feed (the stage functions,
called as Prefect tasks with a validated params copy), in `ablations/<variant>/` where data/ and the
models it does not retrain are symlinks to the main workspace. Stage functions rather than
`dvc exp run -S`: an experiment reruns everything downstream in the main workspace (register
included, which could move the champion alias), its results live in git refs rather than under one
MLflow parent, and the `no_sft` variant needs a step no dvc stage has.

Needs a finished main pipeline (`reports/evaluate/flows.jsonl` with the full model's method). Every
row carries the same metrics: mean_score, validity, nld_ratio, win_rate_vs_comfygen, win_rate_vs_full.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import mlflow
from prefect import flow

from flowrl.errors import FlowRLError, exit_code
from flowrl.evaluation.evaluate import REPORT_DIR, json_safe
from flowrl.evaluation.metrics import win_rate
from flowrl.io import read_json, read_jsonl, write_json, write_text
from flowrl.params.model import Params, deep_merge, load_params
from flowrl.pipeline.stages import report_dir
from flowrl.tracking.runs import log_stage, use_experiment
from tasks.stages import run_stage

REFERENCE = "comfygen"
METRICS = ("mean_score", "validity", "nld_ratio", "win_rate_vs_comfygen", "win_rate_vs_full")
REPORTS = report_dir("ablations")


class AblationError(FlowRLError):
    """The sweep cannot run: unknown variant, or the main workspace lacks what the variants reuse."""


@dataclass(frozen=True)
class Variant:
    """One ablation: params overrides, the stages it reruns, and the evaluate method its row reports.

    `method` None means the full model's method (`ablations.full_method`). A variant with no stages
    reads its row from the main workspace's evaluation (the method already ran there).
    """

    description: str
    overrides: dict = field(default_factory=dict)
    stages: tuple[str, ...] = ()
    method: str | None = None
    untrained_sft: bool = False


VARIANTS: dict[str, Variant] = {
    "no_prefix_reward": Variant(
        "w/o prefix (component) reward", {"reward": {"component_reward": False}}, ("grpo", "evaluate")
    ),
    # the cpu profile trains GRPO without the prefix reward (docs/policy.md): its ablation adds it
    "prefix_reward": Variant(
        "with prefix (component) reward", {"reward": {"component_reward": True}}, ("grpo", "evaluate")
    ),
    # tau_quantile off too: otherwise GRPO would take the stage-resolved tau from the ensemble spec
    "no_uncertainty": Variant(
        "w/o uncertainty cutoff (tau = inf)", {"reward": {"tau": math.inf, "tau_quantile": None}}, ("grpo", "evaluate")
    ),
    **{
        f"ensemble_{n}": Variant(f"ensemble of {n}", {"reward": {"n_models": n}}, ("reward", "grpo", "evaluate"))
        for n in (1, 3, 5, 7)
    },
    "no_sft": Variant("w/o SFT (GRPO from the base model + flow tokens)", {}, ("grpo", "evaluate"), untrained_sft=True),
    "no_grpo": Variant("w/o GRPO (SFT + reward rerank)", method="sft_rerank"),
    "comfygen": Variant("ComfyGen-style retrieval on the new encoding", method=REFERENCE),
}


def variant_params(params: Params, variant: Variant, method: str) -> Params:
    """Validated copy of `params` with the variant's overrides; evaluate runs only its method and the reference."""
    overrides = deep_merge(variant.overrides, {"evaluate": {"methods": sorted({method, REFERENCE})}})
    return Params.model_validate(deep_merge(params.model_dump(), overrides))


def retrained_dirs(variant: Variant) -> tuple[str, ...]:
    """Top-level names under models/ that the variant writes itself (so they are not linked)."""
    return tuple(variant.stages) + (("sft",) if variant.untrained_sft else ())


def prepare_workspace(main: Path, work: Path, variant: Variant, link: bool) -> Path:
    """Fresh `work` folder with data/ and every models/ entry the variant does not retrain taken from `main`."""
    shutil.rmtree(work, ignore_errors=True)
    (work / "models").mkdir(parents=True)
    place = (
        (lambda src, dst: dst.symlink_to(src.resolve(), target_is_directory=src.is_dir()))
        if link
        else (lambda src, dst: shutil.copytree(src, dst) if src.is_dir() else shutil.copy2(src, dst))
    )
    place(main / "data", work / "data")
    skip = retrained_dirs(variant)
    for entry in sorted((main / "models").iterdir()) if (main / "models").exists() else []:
        if not entry.name.startswith(skip):
            place(entry, work / "models" / entry.name)
    return work


def write_untrained_sft(params: Params, root: Path) -> Path:
    """models/sft as the SFT stage would write it, but with zero training steps: the base model with the
    flow tokens added (new rows initialised as `extend_tokenizer` does) and an identity LoRA."""
    from peft import get_peft_model

    from flowrl.policy.loading import load_policy, save_policy_spec
    from flowrl.policy.sft import OUT_DIR, PROMPT_TEMPLATE, VOCAB, lora_config

    tokens = read_json(root / VOCAB)
    model, tokenizer = load_policy(params.policy, tokens, params.seed)
    out = root / OUT_DIR
    get_peft_model(model, lora_config(params.sft)).save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    save_policy_spec(
        out,
        params.policy,
        params.seed,
        len(tokenizer) - len(tokens),
        template=PROMPT_TEMPLATE,
        n_flow_tokens=len(tokens),
        sft={"max_steps": 0, "note": "untrained (ablation no_sft)"},
    )
    return out


def method_scores(root: Path, method: str) -> tuple[list[str], list[float]]:
    """(prompts, scores) of `method` in the evaluation under `root`."""
    path = root / REPORT_DIR / "flows.jsonl"
    if not path.exists():
        raise AblationError(f"{path}: not found; run the evaluate stage there first (dvc repro evaluate)")
    rows = [r for r in read_jsonl(path) if r["method"] == method]
    if not rows:
        raise AblationError(
            f"{path} has no flows of method {method!r}; run evaluate with that method (evaluate.methods) or pick another ablations.full_method"
        )
    return [r["prompt"] for r in rows], [float(r["score"]) for r in rows]


def variant_row(root: Path, method: str, full: tuple[list[str], list[float]]) -> dict[str, float]:
    """The shared metrics of `method` as evaluated under `root`, with its win rate against the full model."""
    prompts, scores = method_scores(root, method)
    per_method = read_json(root / REPORT_DIR / "metrics.json")[method]
    if prompts != full[0]:
        raise AblationError(
            f"{root / REPORT_DIR}: evaluated on other prompts than the main workspace; keep evaluate.n_prompts and the holdout the same"
        )
    nan = float("nan")
    return {
        "mean_score": per_method["mean_score"],
        "validity": per_method["validity"],
        "nld_ratio": per_method.get("nld_ratio") if per_method.get("nld_ratio") is not None else nan,
        "win_rate_vs_comfygen": 0.5 if method == REFERENCE else per_method["win_rate"][REFERENCE],
        "win_rate_vs_full": win_rate(scores, full[1]),
    }


def render_table(rows: dict[str, dict[str, float]], descriptions: dict[str, str], full_method: str) -> str:
    """Markdown ablation table, one row per variant, the full model first."""
    fmt = lambda x: "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"  # noqa: E731
    lines = [
        "# Ablations (paper Table 3)",
        "",
        f"Full model: evaluate method `{full_method}`. Win rates: share of held-out prompts where the variant's flow scores higher (ties half).",
        "",
        "| variant | what changes | " + " | ".join(METRICS) + " |",
        "|---|---|" + "---|" * len(METRICS),
    ]
    lines += [
        f"| {name} | {descriptions[name]} | " + " | ".join(fmt(row[m]) for m in METRICS) + " |"
        for name, row in rows.items()
    ]
    return "\n".join(lines) + "\n"


def plot_ablations(rows: dict[str, dict[str, float]], path: Path) -> Path:
    """Grouped bars: win rate vs comfygen and vs the full model per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = list(rows)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(names)), 4))
    for i, key in enumerate(("win_rate_vs_comfygen", "win_rate_vs_full")):
        ax.bar(x + (i - 0.5) * 0.38, [rows[n][key] for n in names], 0.38, label=key.removeprefix("win_rate_"))
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("win rate")
    ax.set_title("Ablations")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def run_variant(
    name: str, params: Params, main: Path, full: tuple[list[str], list[float]], log: Callable[[str], None] = print
) -> dict[str, float]:
    """Prepare the variant's workspace, rerun its stages, return its row of metrics."""
    variant = VARIANTS[name]
    method = variant.method or params.ablations.full_method
    if not variant.stages:
        return variant_row(main, method, full)
    work = prepare_workspace(main, main / params.ablations.workspace / name, variant, params.ablations.link_data)
    vparams = variant_params(params, variant, method)
    if variant.untrained_sft:
        write_untrained_sft(vparams, work)
    for stage in variant.stages:
        log(f"ablation {name}: {stage}")
        run_stage(stage, vparams, work)
    return variant_row(work, method, full)


@flow(name="ablations", flow_run_name="ablations-{profile}")  # no log_prints: see flows/stages.py
def ablations(
    profile: str | None = None, root: str = ".", variants: list[str] | None = None
) -> dict[str, dict[str, float]]:
    """Run the ablation `variants` (default: ablations.variants) under one MLflow parent run; write the table and plot."""
    main = Path(root).resolve()
    params = load_params(main / "params.yaml", profile)
    names = list(variants or params.ablations.variants)
    if unknown := [n for n in names if n not in VARIANTS]:
        raise AblationError(f"unknown ablation variants {unknown}; known: {', '.join(VARIANTS)}")
    full_method = params.ablations.full_method
    full = method_scores(main, full_method)
    rows = {"full": variant_row(main, full_method, full)}
    descriptions = {"full": f"full model ({full_method})", **{n: VARIANTS[n].description for n in names}}

    use_experiment(main, params.profile)
    with mlflow.start_run(
        run_name=f"ablations-{params.profile}", tags={"flowrl.stage": "ablations", "flowrl.profile": params.profile}
    ) as parent:
        mlflow.log_params({"ablations.variants": ",".join(names), "ablations.full_method": full_method})
        child = lambda n: log_stage(
            main,
            params.profile,
            f"ablation-{n}",
            {"variant": n, "description": descriptions[n], **(VARIANTS[n].overrides if n in VARIANTS else {})},  # noqa: E731
            rows[n],
            parent_run_id=parent.info.run_id,
        )
        child("full")
        for name in names:
            rows[name] = run_variant(name, params, main, full)
            child(name)
        out = main / REPORTS
        table = write_text(out / "table.md", render_table(rows, descriptions, full_method))
        write_json(out / "metrics.json", json_safe(rows))
        plot = plot_ablations(rows, out / "ablations.png")
        for path in (table, plot, out / "metrics.json"):
            mlflow.log_artifact(str(path))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.ablations", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default=None, help="override params.yaml `profile`")
    parser.add_argument("--root", default=".", help="main workspace (repository root)")
    parser.add_argument(
        "--variants", nargs="*", default=None, help=f"subset of: {', '.join(VARIANTS)} (default: ablations.variants)"
    )
    args = parser.parse_args(argv)
    return exit_code(ablations, profile=args.profile, root=args.root, variants=args.variants)


if __name__ == "__main__":
    sys.exit(main())
