"""Preference simulator on holdout-like prompts: how prompt-dependent the best flow is, and the score spread.

Flows: augmented variants of the project's base flows (flowrl.data.augment); prompts: the prompt
generator plus real CivitAI prompts from ../shared (when present). Run: `python -m bench simulator_report`.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from flowrl.data.augment import augment_library
from flowrl.data.base_flows import load_base_flows
from flowrl.data.prompt_generator import generate_prompts
from flowrl.scoring.simulator import PreferenceSimulator

REPO = Path(__file__).resolve().parents[1]
CIVITAI = REPO.parent / "shared" / "data" / "civitai" / "prompts.jsonl"


def scored_flows(n_per_base: int = 4, seed: int = 7) -> list[dict]:
    """A scored set like the triplets stage's: base flows plus augmented variants."""
    rows, _ = augment_library(load_base_flows(), n_per_base, seed)
    return [{"id": b, "graph": g} for b, g in load_base_flows()] + rows


def civitai_prompts(n: int) -> list[str]:
    """The first `n` real CivitAI prompts (empty if ../shared is absent)."""
    if not CIVITAI.exists():
        return []
    out = []
    with CIVITAI.open() as fh:
        for line in fh:
            prompt = json.loads(line).get("prompt") or ""
            if 20 <= len(prompt) <= 600:
                out.append(prompt)
            if len(out) >= n:
                break
    return out


def report(prompts: list[str], flows: list[dict], seed: int = 0) -> dict[str, float]:
    """Best-single-flow share, score spread, between-flow sd vs noise sd for `prompts` x `flows`."""
    noisy, clean = PreferenceSimulator(seed=seed), PreferenceSimulator(noise=False)
    graphs = [f["graph"] for f in flows]
    best, all_scores, between, noise = Counter(), [], [], []
    for prompt in tqdm(prompts, desc="scoring prompts x flows", unit="prompt"):
        s = noisy.score([prompt] * len(graphs), graphs)
        c = clean.score([prompt] * len(graphs), graphs)
        valid = [i for i, v in enumerate(c) if v > 0]
        best[max(valid, key=lambda i: s[i])] += 1
        all_scores += [s[i] for i in valid]
        between.append(statistics.pstdev([c[i] for i in valid]))
        noise += [s[i] - c[i] for i in valid]
    top_id, top_n = best.most_common(1)[0]
    noise_sd, between_sd = statistics.pstdev(noise), statistics.mean(between)
    return {
        "n_prompts": len(prompts),
        "n_flows": len(flows),
        "best_single_flow_share": top_n / len(prompts),
        "best_single_flow": flows[top_id]["id"],
        "distinct_best_flows": len(best),
        "score_min": min(all_scores),
        "score_median": statistics.median(all_scores),
        "score_max": max(all_scores),
        "between_flow_sd": between_sd,
        "noise_sd": noise_sd,
        "noise_to_between_ratio": noise_sd / between_sd,
        "invalid_share": 1 - len(all_scores) / (len(prompts) * len(flows)),
    }


def main() -> dict:
    """Report on generated holdout-like prompts and on real CivitAI prompts."""
    flows = scored_flows()
    out = {"generated": report([r["prompt"] for r in generate_prompts(200, 12345)], flows)}
    real = civitai_prompts(200)
    if real:
        out["civitai"] = report(real, flows)
    for name, figures in out.items():
        print(name, json.dumps(figures, indent=1))
    return out


if __name__ == "__main__":
    main()
