"""Does the surrogate know which upscaler a prompt wants? Anime upscalers on photo prompts, seen by reward and simulator.

For every flow of one evaluated method (`reports/evaluate/flows.jsonl` under FLOWRL_BENCH_ROOT, default this
repository; FLOWRL_BENCH_METHOD, default grpo_cfg_1.5) with exactly one upscale model, the flow is rewritten with
each upscale model the training flows use. The simulator (mean over 4 seeds) and the surrogate ensemble each pick
one of these variants. Counted: how often the delivered flow carries an anime upscaler (a model name with "anime")
where the simulator's pick has none, and how often the surrogate's own pick does. The anime rule is how the
simulator is written; it is used here only to count, never by the pipeline.

Run: `python -m bench upscaler_choice` (~1 min on 2 cores).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from bench._common import REPO
from bench.pairing_ceiling import SEEDS, certain_argmax
from flowrl.evaluation.evaluate import score_method
from flowrl.evaluation.validity import Candidate
from flowrl.io import read_jsonl
from flowrl.pipeline.stages import EncodeFiles, EvaluateFiles, RewardFiles
from flowrl.reward.ensemble import Ensemble
from flowrl.scoring.simulator import PreferenceSimulator

UPSCALER = re.compile(r"UpscaleModelLoader model_name=(\S+)")


def is_anime(name: str) -> bool:
    return "anime" in name.lower()


def variants(text: str, upscalers: list[str]) -> list[str]:
    """`text` with its one upscale model replaced by each of `upscalers`, in order."""
    return [UPSCALER.sub(f"UpscaleModelLoader model_name={u}", text) for u in upscalers]


def main() -> dict:
    root = Path(os.environ.get("FLOWRL_BENCH_ROOT", REPO))
    method = os.environ.get("FLOWRL_BENCH_METHOD", "grpo_cfg_1.5")
    path = root / EvaluateFiles.flows
    if not path.exists():
        raise SystemExit(f"{path} not found: run the evaluate stage first (`dvc repro evaluate`)")
    upscalers = sorted({m for r in read_jsonl(root / EncodeFiles.flows) for m in UPSCALER.findall(r["policy_text"])})
    rows = [r for r in read_jsonl(path) if r["method"] == method and len(UPSCALER.findall(r["text"])) == 1]
    ensemble, sim = Ensemble.load(root / RewardFiles.full), PreferenceSimulator()
    delivered_wrong, surrogate_wrong, non_anime_best, surrogate_regret = 0, 0, 0, []
    for row in rows:
        texts, prompts = variants(row["text"], upscalers), [row["prompt"]] * len(upscalers)
        truth = np.mean([score_method([Candidate(t) for t in texts], prompts, sim, seed)[0] for seed in SEEDS], axis=0)
        mean, std = (x.numpy() for x in ensemble.predict(prompts, texts))
        best, pick = (
            upscalers[int(truth.argmax())],
            upscalers[int(certain_argmax(mean[None], std[None], ensemble.tau)[0])],
        )
        surrogate_regret.append(float(truth.max() - truth[upscalers.index(pick)]))
        if not is_anime(best):
            non_anime_best += 1
            delivered_wrong += is_anime(UPSCALER.findall(row["text"])[0])
            surrogate_wrong += is_anime(pick)
    out = {
        "method": method,
        "flows_with_one_upscaler": len(rows),
        "upscalers": len(upscalers),
        "simulator_picks_non_anime": non_anime_best,
        "delivered_anime_there": delivered_wrong,
        "surrogate_picks_anime_there": surrogate_wrong,
        "surrogate_pick_regret": round(float(np.mean(surrogate_regret)), 5) if rows else None,
    }
    print(out)
    return out
