"""How far is the SFT policy from beating comfygen? Best-of-N over its samples, picked by the scorer and by the surrogate.

The policy issue asks for a win rate >= 0.60 against comfygen. If even the best of N SFT samples per
prompt, picked with the true scorer (an oracle reranker), rarely beats comfygen's pick, then the
flows that would are rare in the policy's distribution and RL has to move it far; if the surrogate's
pick is close to the oracle's, the reward is not what limits it. Prompts and comfygen's flows come
from the evaluate stage's `reports/evaluate/flows.jsonl`; the policy and the reward ensemble from
`models/` (FLOWRL_BENCH_ROOT, default this repository). Needs a pipeline run on the profile.

Run: `python -m bench best_of_n` (~3-5 min on 2 cores at N=16 for 64 prompts).
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import numpy as np

from bench._common import REPO, bench_params
from flowrl.encoding.policy_view import check_flow_text
from flowrl.io import read_jsonl
from flowrl.policy.decoding.constrained import constraint_processors
from flowrl.policy.decoding.sampling import SamplingConfig, sample_flows
from flowrl.policy.loading import load_sft_policy
from flowrl.reward.ensemble import Ensemble
from flowrl.scoring.simulator import PreferenceSimulator

N = 16
MAX_PROMPTS = 64


def main() -> dict:
    root = Path(os.environ.get("FLOWRL_BENCH_ROOT", REPO))
    params = bench_params()
    rows = read_jsonl(root / "reports/evaluate/flows.jsonl")
    prompts = list(dict.fromkeys(r["prompt"] for r in rows))[:MAX_PROMPTS]
    sim = PreferenceSimulator()
    picks = defaultdict(list)
    for r in rows:
        if r["method"] == "comfygen" and r["prompt"] in prompts:
            picks[r["prompt"]].append(sim.score_one(r["prompt"], check_flow_text(r["text"]).graph))
    comfygen = np.array([np.mean(picks[p]) for p in prompts])
    model, tok = load_sft_policy(root / "models/sft")
    asked = [p for p in prompts for _ in range(N)]
    cfg = SamplingConfig.from_policy(params.policy, params.seed, 64, params.policy.max_new_tokens)
    texts = [
        c.text
        for c in sample_flows(
            model, tok, asked, cfg, logits_processor=constraint_processors(params.policy, tok, cfg.max_new_tokens)
        )
    ]
    checks = [check_flow_text(t) for t in texts]
    usable = np.array([c.usable for c in checks]).reshape(len(prompts), N)
    true = np.array([sim.score_one(p, c.graph) if c.usable else 0.0 for p, c in zip(asked, checks)]).reshape(
        len(prompts), N
    )
    predicted, _ = Ensemble.load(root / "models/reward/full").predict(asked, texts)
    surrogate = np.where(usable, np.asarray(predicted).reshape(len(prompts), N), -np.inf)

    def win(values: np.ndarray) -> float:
        return round(float(np.mean(values > comfygen) + 0.5 * np.mean(values == comfygen)), 4)

    out = {
        "prompts": len(prompts),
        "n": N,
        "usable": round(float(usable.mean()), 4),
        "comfygen_mean": round(float(comfygen.mean()), 4),
        "sample_mean": round(float(true.mean()), 4),
        "sample_win": win(true[:, 0]),
    }
    for k in (2, 4, 8, N):
        oracle = true[:, :k].max(1)
        chosen = true[np.arange(len(prompts)), surrogate[:, :k].argmax(1)]
        out[f"oracle_best_of_{k}"] = {"mean": round(float(oracle.mean()), 4), "win_vs_comfygen": win(oracle)}
        out[f"surrogate_best_of_{k}"] = {"mean": round(float(chosen.mean()), 4), "win_vs_comfygen": win(chosen)}
    print(out)
    return out
