"""The `triplets` stage: (prompt, flow, score) for sampled pairs, split by prompt.

As in the paper (and ComfyGen), only a small *scored* set of flows (ComfyGen: 330) is paired
with prompts and scored; the larger augmented set stays unscored and is used for SFT only.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from flowrl.config import Params
from flowrl.errors import FlowRLError
from flowrl.io import read_json, read_jsonl, write_json, write_jsonl
from flowrl.scoring.base import load_scorer

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ScoreNormalizer:
    """Min-max map of raw scorer values to [0, 1] (clipped), fitted on the train triplets.

    >>> ScoreNormalizer(0.2, 0.3)(0.25)
    0.5
    """

    low: float
    high: float

    @classmethod
    def fit(cls, scores: list[float]) -> "ScoreNormalizer":
        if not scores:
            raise FlowRLError("no train triplets to fit the score normalisation on; raise triplets.n_triplets")
        return cls(float(min(scores)), float(max(scores)))

    def __call__(self, score: float) -> float:
        span = self.high - self.low
        return float(min(1.0, max(0.0, (score - self.low) / span))) if span > 0 else 0.5

    def save(self, path: Path) -> None:
        write_json(path, {"low": self.low, "high": self.high})

    @classmethod
    def load(cls, path: Path) -> "ScoreNormalizer":
        return cls(**read_json(path))


def pick_scored_flows(augmented: list[dict], n_scored: int, rng: random.Random) -> list[dict]:
    """Pick `n_scored` flows spread evenly over their base flows (round-robin over bases)."""
    by_base: dict[str, list[dict]] = defaultdict(list)
    for row in augmented:
        by_base[row["base_id"]].append(row)
    pools = [rng.sample(rows, len(rows)) for _, rows in sorted(by_base.items())]
    picked: list[dict] = []
    while len(picked) < n_scored and any(pools):
        for pool in pools:
            if pool and len(picked) < n_scored:
                picked.append(pool.pop())
    return picked


def split_prompts(prompts: list[str], val_fraction: float, test_fraction: float, rng: random.Random) -> dict[str, list[str]]:
    """Disjoint train/val/test prompt lists (each split gets at least one prompt)."""
    shuffled = rng.sample(prompts, len(prompts))
    n_val = max(1, round(len(shuffled) * val_fraction))
    n_test = max(1, round(len(shuffled) * test_fraction))
    if n_val + n_test >= len(shuffled):
        raise FlowRLError(f"only {len(shuffled)} training prompts: too few to split into train/val/test; add prompts")
    return {"val": shuffled[:n_val], "test": shuffled[n_val : n_val + n_test], "train": shuffled[n_val + n_test :]}


def best_single_flow_share(scores: np.ndarray) -> float:
    """Share of prompts (rows) whose best flow (column) is the overall best flow by mean score.

    >>> best_single_flow_share(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.5]]))
    0.6666666666666666
    """
    overall_best = int(np.argmax(scores.mean(axis=0)))
    return float(np.mean(np.argmax(scores, axis=1) == overall_best))


def score_in_batches(scorer, prompts: list[str], graphs: list[dict], batch_size: int = 256, desc: str = "scoring") -> list[float]:
    out: list[float] = []
    for start in tqdm(range(0, len(prompts), batch_size), desc=desc, unit="batch"):
        out.extend(scorer.score(prompts[start : start + batch_size], graphs[start : start + batch_size]))
    return out


def run(params: Params, root: Path = Path(".")) -> dict[str, float]:
    """Sample and score (prompt, flow) pairs; write data/triplets/ and reports/triplets/metrics.json."""
    cfg = params.triplets
    scorer = load_scorer(params.scoring.scorer, params.scoring.options)  # fail before any work
    rng = random.Random(params.seed)
    train_prompts = [row["prompt"] for row in read_jsonl(root / "data/prompts/train.jsonl")]
    holdout_prompts = [row["prompt"] for row in read_jsonl(root / "data/prompts/holdout.jsonl")]
    augmented = read_jsonl(root / "data/flows/augmented.jsonl")
    texts = {row["id"]: row["text"] for row in read_jsonl(root / "data/encode/flows.jsonl")}

    scored = pick_scored_flows(augmented, cfg.n_scored_flows, rng)
    for row in scored:
        row["text"] = texts[row["id"]]
    by_split = split_prompts(train_prompts, cfg.val_fraction, cfg.test_fraction, rng)
    sizes = {"val": round(cfg.n_triplets * cfg.val_fraction), "test": round(cfg.n_triplets * cfg.test_fraction)}
    sizes["train"] = cfg.n_triplets - sizes["val"] - sizes["test"]

    metrics: dict[str, float] = {"n_scored_flows": len(scored), "n_unscored_flows": len(augmented) - len(scored)}
    pairs = {split: [(rng.choice(by_split[split]), rng.choice(scored)) for _ in range(sizes[split])] for split in SPLITS}
    raw = {split: score_in_batches(scorer, [p for p, _ in pairs[split]], [f["graph"] for _, f in pairs[split]], desc=f"scoring {split}")
           for split in SPLITS}
    # Scores are normalised to [0, 1] with the train split's range, as the paper's surrogate is
    # trained on normalised preference scores: the uncertainty cutoff tau (0.08) is in these units.
    norm = ScoreNormalizer.fit(raw["train"])
    norm.save(root / "data/triplets/normalization.json")
    for split in SPLITS:
        rows = [{"prompt": p, "flow_id": f["id"], "flow": f["text"], "score": norm(s), "raw_score": float(s)}
                for (p, f), s in zip(pairs[split], raw[split])]
        write_jsonl(root / f"data/triplets/{split}.jsonl", rows)
        metrics[f"n_{split}"] = len(rows)
        metrics[f"n_prompts_{split}"] = len(by_split[split])
    write_jsonl(root / "data/triplets/scored_flows.jsonl", ({"id": f["id"], "graph": f["graph"], "text": f["text"]} for f in scored))

    arr = np.asarray([s for split in SPLITS for s in raw[split]])
    metrics.update(score_mean=float(arr.mean()), score_std=float(arr.std()), score_min=float(arr.min()),
                   score_max=float(arr.max()), share_zero=float(np.mean(arr == 0)))
    # How prompt-dependent is the best flow? Score every scored flow on a sample of held-out prompts.
    probe = rng.sample(holdout_prompts, min(cfg.n_probe_prompts, len(holdout_prompts)))
    if probe:
        grid = [(p, f["graph"]) for p in probe for f in scored]
        flat = score_in_batches(scorer, [p for p, _ in grid], [g for _, g in grid], desc="scoring probe grid")
        matrix = np.asarray(flat).reshape(len(probe), len(scored))
        metrics["best_single_flow_share"] = best_single_flow_share(matrix)
        metrics["n_distinct_best_flows"] = int(len(set(np.argmax(matrix, axis=1).tolist())))
        metrics["probe_between_flow_std"] = float(matrix.std(axis=1).mean())
    write_json(root / "reports/triplets/metrics.json", metrics)
    return metrics
