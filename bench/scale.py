"""How stage time grows: the data stages with the number of prompts, variants per base flow and
triplets, and the GRPO step with the group size. Exponent k of time ~ size^k, fitted by least
squares on log-log axes (numpy polyfit); k ~ 1 is linear, k < 1 means a fixed cost still dominates.

What runs: the stage functions themselves (`flowrl.pipeline.stages.stage_function(name)(params, root)`) on
the tiny profile in a temp folder, one size at a time:
  * prompts stage, n_prompts in PROMPTS (holdout 10 %);
  * flows then encode stage, flows.variants_per_base in VARIANTS (encode: SFT pairs and report
    sample fixed; a first untimed encode loads the tokenizer);
  * triplets stage, triplets.n_triplets in TRIPLETS (scored flows and probe grid fixed; one
    untimed run first);
  * GRPO step (bench/grpo_step.measure: tiny policy, tiny reward), num_generations in GROUPS with
    2 prompts per step (batch = 2 x group), mean of the steps after the first.
No target: the exponents say which knob a larger profile pays for. Plot: docs/img/scale.png.

Run: `python -m bench scale` (~1.5 min on one core).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from tqdm import tqdm

from bench._common import Row, bench_params, fit_exponent, pyplot, save_figure
from flowrl.params.model import Params
from flowrl.pipeline.stages import stage_function

PROMPTS = (1000, 2000, 4000, 8000, 16000)
VARIANTS = (10, 20, 40, 80, 160)
TRIPLETS = (2000, 4000, 8000, 16000, 32000)
GROUPS = (2, 4, 8)
GRPO_STEPS = 3


def with_sections(params: Params, **sections: dict) -> Params:
    """`params` with some fields of some sections replaced, e.g. with_sections(p, flows={"variants_per_base": 5})."""
    return params.model_copy(
        update={name: getattr(params, name).model_copy(update=fields) for name, fields in sections.items()}
    )


def timed_stage(name: str, params: Params, root: Path) -> float:
    start = time.perf_counter()
    stage_function(name)(params, root)
    return time.perf_counter() - start


def data_sweeps(base: Params, root: Path) -> dict[str, dict[int, float]]:
    """Seconds per size for each data sweep (stages run in order, each on the previous one's outputs)."""
    small = with_sections(base, prompts={"n_prompts": 1000, "n_holdout": 100})
    timed_stage("prompts", small, root)
    timed_stage("flows", small, root)
    timed_stage("encode", small, root)  # untimed: loads the tokenizer once (the prompts stage is warm after this too)
    out: dict[str, dict[int, float]] = {
        "prompts stage vs n_prompts": {},
        "flows stage vs variants per base": {},
        "encode stage vs variants per base": {},
        "triplets stage vs n_triplets": {},
    }
    for n in tqdm(PROMPTS, desc="prompts sweep", unit="size"):
        out["prompts stage vs n_prompts"][n] = timed_stage(
            "prompts", with_sections(base, prompts={"n_prompts": n, "n_holdout": n // 10}), root
        )
    timed_stage("prompts", small, root)  # the later stages read a fixed prompt set
    for n in tqdm(VARIANTS, desc="variants sweep", unit="size"):
        p = with_sections(small, flows={"variants_per_base": n})
        out["flows stage vs variants per base"][n] = timed_stage("flows", p, root)
        out["encode stage vs variants per base"][n] = timed_stage("encode", p, root)
    timed_stage("flows", small, root)
    timed_stage("encode", small, root)
    timed_stage("triplets", small, root)  # untimed: imports and scorer set-up
    for n in tqdm(TRIPLETS, desc="triplets sweep", unit="size"):
        out["triplets stage vs n_triplets"][n] = timed_stage(
            "triplets", with_sections(small, triplets={"n_triplets": n}), root
        )
    return out


def grpo_sweep(base: Params) -> dict[int, float]:
    """Seconds per GRPO step (after the first) for each group size, 2 prompts per step."""
    from bench.grpo_step import measure

    out = {}
    for g in tqdm(GROUPS, desc="grpo group sweep", unit="size"):
        steps = measure(base, steps=GRPO_STEPS, group=g, batch=2 * g, max_new_tokens=base.grpo.max_new_tokens)["steps"]
        warm = steps[1:] or steps
        out[g] = sum(s["total"] for s in warm) / len(warm)
    return out


def plot(series: dict[str, dict[int, float]], fits: dict[str, tuple[float, float]]) -> Path:
    """Log-log plot of every series with its fitted line."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, points in series.items():
        ax = axes[1] if name.startswith("GRPO") else axes[0]
        sizes = sorted(points)
        k, c = fits[name]
        line = ax.loglog(sizes, [points[s] for s in sizes], "o", label=f"{name}: k={k:.2f}")[0]
        ax.loglog(sizes, [c * s**k for s in sizes], "-", color=line.get_color(), alpha=0.6)
    axes[0].set(
        xlabel="size (prompts, variants per base, triplets)", ylabel="seconds", title="data stages (tiny profile)"
    )
    axes[1].set(
        xlabel="num_generations (group size)",
        ylabel="seconds per step",
        title="GRPO step, 2 prompts per step (tiny models)",
    )
    from matplotlib.ticker import FormatStrFormatter

    for ax in axes:
        ax.legend(fontsize=7)
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_formatter(FormatStrFormatter("%g"))
            axis.set_minor_formatter(FormatStrFormatter("%g"))
    return save_figure(fig, "scale.png")


def main() -> dict:
    """Run the sweeps, fit the exponents, plot; print and return them."""
    base = bench_params("tiny")
    with tempfile.TemporaryDirectory(prefix="flowrl-bench-scale-") as tmp:
        series = data_sweeps(base, Path(tmp))
    series["GRPO step vs group size"] = grpo_sweep(base)
    fits = {name: fit_exponent(list(points), list(points.values())) for name, points in series.items()}
    plot(series, fits)
    figures = {
        "profile": "tiny",
        "series": {name: {str(k): v for k, v in points.items()} for name, points in series.items()},
        "exponent": {name: k for name, (k, _) in fits.items()},
        "plot": "docs/img/scale.png",
    }
    for name, (k, _) in fits.items():
        points = ", ".join(f"{s}: {t:.2f}s" for s, t in series[name].items())
        print(f"{name}: k = {k:.2f}  ({points})")
    return figures


def rows(f: dict) -> list[Row]:
    """The report's table for this bench."""
    out: list[Row] = []
    for name, k in f["exponent"].items():
        points = ", ".join(f"{s}: {t:.2f} s" for s, t in f["series"][name].items())
        out.append((f"{name}: exponent k", f"{k:.2f}", "", ""))
        out.append((f"  {name}: seconds by size", points, "", ""))
    return out


if __name__ == "__main__":
    main()
