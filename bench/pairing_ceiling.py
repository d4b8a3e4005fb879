"""What can reward pairing teach? A flow drawn by the surrogate for a prompt, against comfygen's pick for it.

`sft.pairing: reward` draws each SFT prompt's flows with probability ∝ exp(z / T) over the surrogate
ensemble's standardised scores of the training flows for that prompt. A policy that imitated those
pairs perfectly would deliver such draws; this bench scores them with the simulator on dev prompts
(the half of the holdout that settings are tuned on; evaluate reports on the other), beside comfygen's pick, at several temperatures and with
all training flows or a random 128 as candidates: mean score, win rate against comfygen and the
adaptivity gain (score on the own prompt minus on another test prompt). Needs the reward, flows,
encode and triplets stages of a run (FLOWRL_BENCH_ROOT, default this repository).

Run: `python -m bench pairing_ceiling` (~1-2 min on 2 cores for 64 prompts).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np

from bench._common import REPO
from flowrl.data.prompts import holdout_split
from flowrl.evaluation.evaluate import baseline_methods, score_method
from flowrl.evaluation.validity import Candidate
from flowrl.io import read_jsonl
from flowrl.pipeline.stages import EncodeFiles, FlowsFiles, PromptsFiles, RewardFiles
from flowrl.policy.pairing import pair_probabilities, score_candidates
from flowrl.reward.ensemble import Ensemble
from flowrl.scoring.simulator import PreferenceSimulator

MAX_PROMPTS = 64
TEMPERATURES = (0.05, 0.1, 0.25, 0.5)


def main() -> dict:
    root = Path(os.environ.get("FLOWRL_BENCH_ROOT", REPO))
    prompts = [r["prompt"] for r in holdout_split(read_jsonl(root / PromptsFiles.holdout))[0]][:MAX_PROMPTS]  # dev half
    other = prompts[len(prompts) // 2 :] + prompts[: len(prompts) // 2]
    augmented = {r["id"] for r in read_jsonl(root / FlowsFiles.augmented)}
    pool = sorted({r["policy_text"] for r in read_jsonl(root / EncodeFiles.flows) if r["id"] in augmented})
    ensemble, sim = Ensemble.load(root / RewardFiles.full), PreferenceSimulator()
    comfygen_picks = baseline_methods(root, 50, 0)["comfygen"](prompts)
    comfygen = np.array(score_method(comfygen_picks, prompts, sim)[0])

    def summary(picks: list[Candidate]) -> dict[str, float]:
        own, other_scores = (np.array(score_method(picks, ps, sim)[0]) for ps in (prompts, other))
        gain = own - other_scores
        return {
            "mean": round(float(own.mean()), 4),
            "win_vs_comfygen": round(float(np.mean(own > comfygen) + 0.5 * np.mean(own == comfygen)), 4),
            "adaptivity_gain": round(float(gain.mean()), 4),
            "adaptivity_se": round(float(gain.std(ddof=1) / np.sqrt(len(gain))), 4),
        }

    out: dict = {"prompts": len(prompts), "flows": len(pool), "comfygen": summary(comfygen_picks)}
    rng, np_rng = random.Random(0), np.random.default_rng(0)
    for name, n_candidates in (("all", None), ("random_128", 128)):
        candidates, mean, std = score_candidates(prompts, pool, ensemble, n_candidates, rng)
        rows = list(zip(candidates, mean, std))
        out[f"{name}_argmax"] = summary(
            [Candidate(c[int(np.nanargmax(np.where(s <= ensemble.tau, m, -np.inf)))]) for c, m, s in rows]
        )
        for t in TEMPERATURES:
            out[f"{name}_T{t:g}"] = summary(
                [
                    Candidate(c[int(np_rng.choice(len(c), p=pair_probabilities(m, s, ensemble.tau, t)))])
                    for c, m, s in rows
                ]
            )
    print(out)
    return out
