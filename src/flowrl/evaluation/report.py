"""What the `evaluate` stage writes from its per-method metrics: report.md (`render_report`), the flat headline
numbers of summary.json (`summarize`), and the helpers both use (the policy methods' guidance strength, the best
policy method and its headline opponents, JSON-safe numbers)."""

from __future__ import annotations

import math

# The best policy method's headline win rates are against these (and evaluate.reference).
HEADLINE_OPPONENTS = ("comfygen", "fixed_best", "sft_rerank")


def gamma_of(name: str) -> float | None:
    """Guidance strength a policy method samples at: sft 0, grpo 1, grpo_cfg_<g> g; None for baselines."""
    if name == "sft":
        return 0.0
    if name == "grpo":
        return 1.0
    if name.startswith("grpo_cfg_"):
        return float(name.removeprefix("grpo_cfg_"))
    return None


def _fmt(x: float) -> str:
    return "–" if isinstance(x, float) and math.isnan(x) else f"{x:.3f}"


def json_safe(obj):
    """`obj` with NaN/inf floats replaced by None: strict JSON, which DVC and MLflow readers expect."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [json_safe(v) for v in obj]
    return None if isinstance(obj, float) and not math.isfinite(obj) else obj


def best_policy(metrics: dict[str, dict]) -> str | None:
    """The policy method (sft, sft_rerank, grpo, grpo_cfg_<g>) with the highest mean score; None if none ran."""
    policy = [n for n in metrics if gamma_of(n) is not None or n == "sft_rerank"]
    return max(policy, key=lambda n: metrics[n]["mean_score"]) if policy else None


def headline_opponents(metrics: dict[str, dict], best: str | None, reference: str) -> list[str]:
    """Methods the best policy method's headline win rates are against: `reference` and HEADLINE_OPPONENTS that ran."""
    return [
        o for o in dict.fromkeys((reference, *HEADLINE_OPPONENTS)) if best is not None and o in metrics and o != best
    ]


def _win(m: dict, other: str) -> str:
    lo, hi = m["win_rate_ci95"][other]
    return f"{m['win_rate'][other]:.2f} [{lo:.2f}, {hi:.2f}]"


def render_report(
    metrics: dict[str, dict],
    skipped: dict[str, str],
    n_prompts: int,
    reference: str,
    scorer_name: str,
    paired: dict[str, dict[str, float]] | None = None,
    samples_per_prompt: int = 1,
    split: str = "test",
) -> str:
    """Markdown: one row per method (score, validity, usability, novelty, win rate vs `reference`), headline win rates,
    adaptivity, paired gains, win rate matrix, skipped methods."""
    lines = [
        "# Evaluation",
        "",
        f"{n_prompts} held-out {split} prompts x {samples_per_prompt} flows per method, scored by `{scorer_name}`"
        + (" (a simulation of human preference, not HPSv2 on rendered images)." if "simulator" in scorer_name else "."),
        f"Prompts: the {split} half of data/prompts/holdout.jsonl (`flowrl.data.prompts.holdout_split`); the dev half is for tuning, the test half reports.",
        "Win rate: share of prompts where the method's mean score is higher (ties half) [95% Wilson interval].",
        "Usable: valid, every node feeds an output, practical sizes (docs/evaluation.md); policy methods redraw an unusable",
        "flow (`policy.usable_retries`), and `first draw` is the usable rate before any redraw. Novelty on canonical (seedless) flows.",
        "",
        f"| method | mean score ± SE | validity | usable | usable, first draw | unique ratio | exists in data | NLD ratio | win rate vs {reference} |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, m in metrics.items():
        win = _win(m, reference) if reference in m["win_rate"] else "–"
        lines.append(
            f"| {name} | {_fmt(m['mean_score'])} ± {_fmt(m.get('score_se', float('nan')))} | {_fmt(m['validity'])} | "
            f"{_fmt(m.get('usable', float('nan')))} | {_fmt(m.get('usable_first_draw', float('nan')))} | {_fmt(m['unique_ratio'])} | "
            f"{_fmt(m['exists_in_data'])} | {_fmt(m['nld_ratio'])} | {win} |"
        )
    best = best_policy(metrics)
    if opponents := headline_opponents(metrics, best, reference):
        lines += [
            "",
            f"## Headline: best policy method `{best}` (highest mean score)",
            "",
            "| against | win rate [95% Wilson] |",
            "|---|---|",
        ]
        lines += [f"| {o} | {_win(metrics[best], o)} |" for o in opponents]
    lines += [
        "",
        "## Adaptivity",
        "",
        "Gain: score on the flow's own prompt minus on a fixed other test prompt (i -> i + n/2 mod n), mean ± SE over prompts;",
        "0 for a flow that ignores the prompt. Checkpoint: the base CheckpointLoaderSimple model; structure: the multiset of node classes.",
        "Shares and entropies over valid flows.",
        "",
        "| method | adaptivity gain ± SE | gain / SE | top checkpoint | top checkpoint share | checkpoint entropy (bits) | structure entropy (bits) |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {name} | {m['adaptivity_gain']:+.4f} ± {_fmt(m['adaptivity_se'])} | {_fmt(m['adaptivity_n_se'])} | {m['top_checkpoint'] or '–'} | "
        f"{_fmt(m['top_checkpoint_share'])} | {_fmt(m['checkpoint_entropy_bits'])} | {_fmt(m['structure_entropy_bits'])} |"
        for name, m in metrics.items()
    ]
    if paired:
        lines += [
            "",
            "## Paired differences (per prompt)",
            "",
            "| difference | mean | SE | mean / SE |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {k.replace('_minus_', ' − ')} | {d['mean']:+.4f} | {_fmt(d['se'])} | {_fmt(d['n_se'])} |"
            for k, d in paired.items()
        ]
    names = list(metrics)
    lines += [
        "",
        "## Win rate matrix (row beats column)",
        "",
        "| | " + " | ".join(names) + " |",
        "|---" * (len(names) + 1) + "|",
    ]
    for a in names:
        cells = ["–" if a == b else f"{metrics[a]['win_rate'][b]:.2f}" for b in names]
        lines.append(f"| {a} | " + " | ".join(cells) + " |")
    if skipped:
        lines += ["", "## Skipped methods", ""] + [f"- `{name}`: {reason}" for name, reason in skipped.items()]
    lines += [
        "",
        "![win rates](win_rates.png)",
        "![adaptivity](adaptivity.png)",
        "![novelty vs gamma](novelty_vs_gamma.png)",
        "![scores](scores.png)",
        "",
    ]
    return "\n".join(lines)


def summarize(metrics: dict[str, dict], reference: str, n_prompts: int, n_skipped: int) -> dict[str, float]:
    """Flat headline numbers for DVC and MLflow: per method mean score, validity, usability, adaptivity and top-checkpoint
    share, win rate vs `reference`; the best policy method's win rates (95% Wilson bounds) vs `headline_opponents`."""
    summary: dict[str, float] = {"n_prompts": n_prompts, "n_methods": len(metrics), "n_skipped": n_skipped}
    for name, m in metrics.items():
        summary[f"mean_score_{name}"] = m["mean_score"]
        summary[f"validity_{name}"] = m["validity"]
        summary[f"usable_{name}"] = m.get("usable", float("nan"))
        summary[f"usable_first_draw_{name}"] = m.get("usable_first_draw", float("nan"))
        for key in (
            "adaptivity_gain",
            "adaptivity_se",
            "top_checkpoint_share",
            "checkpoint_entropy_bits",
            "structure_entropy_bits",
        ):
            summary[f"{key}_{name}"] = m[key]
        if reference in m["win_rate"]:
            summary[f"win_rate_{name}_vs_{reference}"] = m["win_rate"][reference]
    best = best_policy(metrics)
    for other in headline_opponents(metrics, best, reference):
        lo, hi = metrics[best]["win_rate_ci95"][other]
        summary.update(
            {
                f"best_policy_win_rate_vs_{other}": metrics[best]["win_rate"][other],
                f"best_policy_win_rate_vs_{other}_lo": lo,
                f"best_policy_win_rate_vs_{other}_hi": hi,
            }
        )
    return summary
