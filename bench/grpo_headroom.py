"""How much could GRPO still gain from its reward? The surrogate's own best training flow against each evaluated method.

For every prompt of a run's evaluation (`reports/evaluate/flows.jsonl` under FLOWRL_BENCH_ROOT, default this
repository; its split is whatever `evaluate.split` was), the flow the surrogate ensemble scores highest among all
valid training flows it is sure of (std <= tau) is scored by the simulator with the same seeds as each method's
rows, and compared per prompt with the method's flows: mean difference, standard error and their ratio. An
optimiser of this reward that only picks among the training flows gains at most `surrogate_argmax - sft` over SFT;
a method near zero has taken what the reward can tell apart.

Run: `python -m bench grpo_headroom` (~2 min on 2 cores for 128 prompts × ~2,400 flows).
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import numpy as np

from bench._common import REPO, bench_profile
from bench.pairing_ceiling import certain_argmax, training_pool
from flowrl.evaluation.evaluate import score_method
from flowrl.evaluation.metrics import paired_difference, per_prompt_means
from flowrl.evaluation.validity import Candidate
from flowrl.io import read_jsonl
from flowrl.params.model import load_params
from flowrl.pipeline.stages import EvaluateFiles, RewardFiles
from flowrl.reward.ensemble import Ensemble
from flowrl.scoring.simulator import PreferenceSimulator


def main() -> dict:
    root = Path(os.environ.get("FLOWRL_BENCH_ROOT", REPO))
    path = root / EvaluateFiles.flows
    if not path.exists():
        raise SystemExit(f"{path} not found: run the evaluate stage first (`dvc repro evaluate`)")
    rows: dict[str, list[dict]] = defaultdict(list)
    for row in read_jsonl(path):
        rows[row["method"]].append(row)
    params = load_params(root / "params.yaml", profile=bench_profile())
    prompts = list(dict.fromkeys(r["prompt"] for r in next(iter(rows.values()))))
    pool = training_pool(root)
    ensemble, sim = Ensemble.load(root / RewardFiles.full), PreferenceSimulator()
    mean, std = (x.numpy() for x in ensemble.score_grid(prompts, pool, progress=True))
    pick = dict(zip(prompts, (pool[j] for j in certain_argmax(mean, std, ensemble.tau)), strict=True))
    # evaluate asks every method the same prompts in the same order, so one scoring of the picks serves them all
    asked = [r["prompt"] for r in next(iter(rows.values()))]
    argmax = per_prompt_means(
        score_method([Candidate(pick[p]) for p in asked], asked, sim, params.seed)[0], len(prompts)
    )
    out: dict = {
        "prompts": len(prompts),
        "flows": len(pool),
        "split": params.evaluate.split,
        "surrogate_argmax_mean": round(float(np.mean(argmax)), 4),
    }
    for method, method_rows in rows.items():
        if [r["prompt"] for r in method_rows] != asked:
            raise SystemExit(
                f"{path}: {method}'s rows ask other prompts than the first method's; rerun the evaluate stage"
            )
        own = per_prompt_means([r["score"] for r in method_rows], len(prompts))
        out[f"surrogate_argmax_minus_{method}"] = {k: round(v, 4) for k, v in paired_difference(argmax, own).items()}
    print(out)
    return out
