"""The `evaluate` stage: flows for held-out test prompts from every method, scored; win rates, adaptivity, novelty, report, plots.

Only the test half of the holdout prompts is evaluated (`flowrl.data.prompts.holdout_split`; the dev half is for tuning).
Inputs: data/prompts/holdout.jsonl, data/flows/{base,augmented}.jsonl, data/encode/flows.jsonl,
data/triplets/{scored_flows,train}.jsonl and whatever of models/{sft,grpo,reward/full} exists.
Outputs under reports/evaluate/: metrics.json ({method: {...}}), summary.json (flat headline
numbers), report.md, flows.jsonl (every generated flow with its score), win_rates.png,
novelty_vs_gamma.png, scores.png, mean_scores.png, adaptivity.png. A method whose models are missing is skipped and listed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from tqdm import tqdm

from flowrl.data.prompts import holdout_split
from flowrl.encoding.policy_view import policy_text
from flowrl.errors import FlowRLError
from flowrl.evaluation.adaptivity import adaptivity_metrics
from flowrl.evaluation.baselines import (
    ComfyGenRetriever,
    FixedFlow,
    TrainingFlowSampler,
    best_flow_id,
    plain_family_flows,
    popular_base_ids,
)
from flowrl.evaluation.metrics import (
    paired_difference,
    per_prompt_means,
    standard_error,
    wilson_interval,
    win_rate_matrix,
)
from flowrl.evaluation.novelty import mean_pairwise_nld, novelty_metrics
from flowrl.evaluation.plots import (
    plot_adaptivity,
    plot_mean_scores,
    plot_novelty_vs_gamma,
    plot_score_distributions,
    plot_win_rates,
)
from flowrl.evaluation.report import gamma_of, json_safe, render_report, summarize
from flowrl.evaluation.validity import Candidate, check_candidate
from flowrl.io import read_jsonl, write_json, write_jsonl, write_text
from flowrl.params.model import Params
from flowrl.pipeline.stages import EncodeFiles, EvaluateFiles, FlowsFiles, PromptsFiles, TripletsFiles

log = logging.getLogger(__name__)

Method = Callable[[Sequence[str]], list[Candidate]]
REPORT_DIR = EvaluateFiles.dir


class EvaluateInputError(FlowRLError):
    """The evaluate stage was asked for something its inputs cannot give."""


def baseline_methods(root: Path, comfygen_k: int, seed: int = 0) -> dict[str, Method]:
    """fixed_popular, fixed_popular_2, fixed_<family>, fixed_best, training_flow and comfygen, built from the stage data under `root`."""
    texts = {row["id"]: row["text"] for row in read_jsonl(root / EncodeFiles.flows)}
    base_rows = read_jsonl(root / FlowsFiles.base)
    base_of = {row["id"]: row["base_id"] for row in read_jsonl(root / FlowsFiles.augmented)}
    scored = read_jsonl(root / TripletsFiles.scored_flows)

    def base_candidate(row: dict) -> Candidate:
        if row["id"] not in texts:
            raise EvaluateInputError(
                f"base flow {row['id']} has no encoded text in data/encode/flows.jsonl; rerun the encode stage"
            )
        return Candidate(texts[row["id"]], row["graph"])

    bases = {row["id"]: row for row in base_rows}
    methods: dict[str, Method] = {}
    for name, base_id in zip(
        ("fixed_popular", "fixed_popular_2"), popular_base_ids([r["id"] for r in scored], base_of)
    ):
        if base_id not in bases:
            raise EvaluateInputError(
                f"base flow {base_id} (from data/flows/augmented.jsonl) is not in data/flows/base.jsonl; rerun the flows stage"
            )
        methods[name] = FixedFlow(base_candidate(bases[base_id]))
    for family, row in sorted(plain_family_flows(base_rows).items()):
        methods[f"fixed_{family}"] = FixedFlow(base_candidate(row))
    flows = {row["id"]: Candidate(row["text"], row["graph"]) for row in scored}
    train = read_jsonl(root / TripletsFiles.train)
    if train and "flow_id" in train[0]:
        methods["fixed_best"] = FixedFlow(flows[best_flow_id(train)])  # the best single flow on the training triplets
    methods["training_flow"] = TrainingFlowSampler(
        tuple(Candidate(texts[i]) for i in sorted(base_of) if i in texts), seed
    )  # what SFT imitates
    methods["comfygen"] = ComfyGenRetriever(train, flows, comfygen_k)
    return methods


def select_methods(available: dict[str, Method], skipped: dict[str, str], wanted: Sequence[str]) -> dict[str, Method]:
    """Keep the `wanted` methods (all when empty); an unknown name is an error listing the known ones."""
    if not wanted:
        return available
    unknown = [m for m in wanted if m not in available and m not in skipped]
    if unknown:
        raise EvaluateInputError(
            f"evaluate.methods names unknown methods {unknown}; known: {sorted(available) + sorted(skipped)}"
        )
    return {name: method for name, method in available.items() if name in wanted}


def score_method(
    candidates: Sequence[Candidate], prompts: Sequence[str], scorer, seed: int = 0
) -> tuple[list[float], list[bool], list[bool], list[str | None], list[dict | None]]:
    """Scores (0 for invalid flows), validity, usability, canonical policy-view text and API graph (None if invalid) per candidate.

    Seeds of policy flows are drawn from `seed` and the candidate's index, as `flowrl generate` would.
    """
    checks = [check_candidate(c, seed + i) for i, c in enumerate(candidates)]
    keep = [i for i, c in enumerate(checks) if c.valid]
    scores = [0.0] * len(candidates)
    if keep:
        for i, s in zip(keep, scorer.score([prompts[i] for i in keep], [checks[i].graph for i in keep]), strict=True):
            scores[i] = float(s)
    texts = [policy_text(c.graph) if c.valid else None for c in checks]
    return (
        scores,
        [c.valid for c in checks],
        [c.usable for c in checks],
        texts,
        [c.graph if c.valid else None for c in checks],
    )


PAIRED = (
    ("grpo", "sft"),
    ("grpo_cfg_1.5", "grpo"),
    ("grpo_cfg_2", "grpo"),
    ("grpo_cfg_1.5", "sft"),
    ("sft", "sft_rerank"),
    ("sft", "training_flow"),
    ("grpo_cfg_1.5", "fixed_best"),
    ("grpo_cfg_1.5", "comfygen"),
)


def paired_differences(per_prompt: dict[str, list[float]], reference: str) -> dict[str, dict[str, float]]:
    """The paired gains the paper's claims rest on (GRPO over SFT, guidance over GRPO) and every policy method over `reference`."""
    pairs = [p for p in PAIRED if p[0] in per_prompt and p[1] in per_prompt]
    pairs += [(m, reference) for m in per_prompt if gamma_of(m) is not None and reference in per_prompt]
    return {f"{a}_minus_{b}": paired_difference(per_prompt[a], per_prompt[b]) for a, b in pairs}


def evaluation_prompts(root: Path, n_prompts: int | None, split: str = "test") -> list[str]:
    """The first `n_prompts` (None: all) prompts of the holdout's test half (or dev half, to tune on).

    Raises:
        EvaluateInputError: the half has none, or fewer than `n_prompts`.
    """
    path = root / PromptsFiles.holdout
    rows = read_jsonl(path)
    test = [row["prompt"] for row in holdout_split(rows)[split == "test"]]
    if not test or (n_prompts is not None and len(test) < n_prompts):
        raise EvaluateInputError(
            f"{path}: its {split} half (flowrl.data.prompts.holdout_split) has {len(test)} of {len(rows)} prompts, "
            f"evaluate.n_prompts asks for {n_prompts or 'all (at least one)'}; raise prompts.n_holdout or lower evaluate.n_prompts"
        )
    return test[:n_prompts]


def evaluate(
    params: Params, root: Path, scorer, policy: tuple[dict[str, Method], dict[str, str]] | None = None
) -> dict[str, float]:
    """Run every available method on the held-out test prompts and write reports/evaluate/.

    Args:
        scorer: object with `score(prompts, graphs) -> list[float]` (flowrl.scoring protocol).
        policy: (available, skipped) policy methods; default: `policy_methods(params, root)`.
    Returns:
        the flat summary (also written to reports/evaluate/summary.json).
    """
    cfg = params.evaluate
    root = Path(root)
    prompts = evaluation_prompts(root, cfg.n_prompts, cfg.split)
    if policy is None:
        from flowrl.evaluation.policy_methods import policy_methods

        policy = policy_methods(params, root)
    available = {**baseline_methods(root, cfg.comfygen_k, params.seed), **policy[0]}
    skipped = dict(policy[1])
    methods = select_methods(available, skipped, cfg.methods)
    skipped = {name: reason for name, reason in skipped.items() if not cfg.methods or name in cfg.methods}
    for name, reason in skipped.items():
        log.warning("evaluate: skipping %s: %s", name, reason)
    if not methods:
        raise EvaluateInputError(
            f"evaluate.methods {cfg.methods} leaves nothing that can run (skipped: {skipped}); run the missing stages or change evaluate.methods"
        )

    training = [row.get("policy_text") or policy_text(row["text"]) for row in read_jsonl(root / EncodeFiles.flows)]
    training_nld = mean_pairwise_nld(training, cfg.nld_pairs, params.seed)
    results: dict[str, dict] = {}
    scores: dict[str, list[float]] = {}
    rows: list[dict] = []
    asked = list(prompts) * cfg.samples_per_prompt  # round-major: sample r of prompt i is asked[r * n + i]
    for name, method in tqdm(methods.items(), desc="evaluating methods", unit="method"):
        candidates = method(asked)
        method_scores, valid, usable, texts, graphs = score_method(candidates, asked, scorer, params.seed)
        scores[name] = per_prompt_means(method_scores, len(prompts))
        results[name] = {
            "mean_score": sum(method_scores) / len(asked),
            "score_se": standard_error(scores[name]),
            "validity": sum(valid) / len(asked),
            "usable": sum(usable) / len(asked),
            "usable_first_draw": sum(u and c.draws == 1 for u, c in zip(usable, candidates)) / len(asked),
            "mean_draws": sum(c.draws for c in candidates) / len(asked),
            **novelty_metrics([t for t in texts if t is not None], training, training_nld),
            **adaptivity_metrics(graphs, method_scores, asked, len(prompts), scorer),
        }
        rows += [
            {
                "method": name,
                "prompt": p,
                "text": c.text,
                "canonical": t,
                "valid": ok,
                "usable": u,
                "draws": c.draws,
                "score": s,
            }
            for p, c, ok, u, t, s in zip(asked, candidates, valid, usable, texts, method_scores, strict=True)
        ]
    rates, se = win_rate_matrix(scores)
    for name in results:
        ci = {other: list(wilson_interval(rate, len(prompts))) for other, rate in rates[name].items()}
        results[name].update(win_rate=rates[name], win_rate_se=se[name], win_rate_ci95=ci)
    paired = paired_differences(scores, cfg.reference)

    out = root / REPORT_DIR
    summary = summarize(results, cfg.reference, len(prompts), len(skipped))
    summary["training_nld"] = training_nld
    summary["samples_per_prompt"] = cfg.samples_per_prompt
    for key, d in paired.items():
        summary.update({f"paired_{key}": d["mean"], f"paired_{key}_se": d["se"], f"paired_{key}_n_se": d["n_se"]})
    write_json(out / "paired.json", json_safe(paired))
    write_json(out / "metrics.json", json_safe(results))
    write_json(out / "summary.json", json_safe(summary))
    write_jsonl(out / "flows.jsonl", rows)
    write_text(
        out / "report.md",
        render_report(
            results,
            skipped,
            len(prompts),
            cfg.reference,
            params.scoring.scorer,
            paired,
            cfg.samples_per_prompt,
            cfg.split,
        ),
    )
    plot_win_rates(rates, out / "win_rates.png")
    plot_novelty_vs_gamma(
        [(g, results[n]) for n in results if (g := gamma_of(n)) is not None], out / "novelty_vs_gamma.png"
    )
    plot_score_distributions(scores, out / "scores.png")
    plot_mean_scores({n: (m["mean_score"], m["score_se"]) for n, m in results.items()}, out / "mean_scores.png")
    plot_adaptivity(
        {n: (m["adaptivity_gain"], m["adaptivity_se"], m["top_checkpoint_share"]) for n, m in results.items()},
        out / "adaptivity.png",
    )
    return summary


def run(params: Params, root: Path = Path(".")) -> dict[str, float]:
    """The evaluate stage: load the configured scorer, evaluate every method whose inputs exist."""
    from flowrl.runtime.device import configure
    from flowrl.scoring.base import load_scorer

    configure(params.device)  # where the policies and reward members run (flowrl.runtime.device)
    return evaluate(params, root, load_scorer(params.scoring.scorer, params.scoring.options))
