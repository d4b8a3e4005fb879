"""The `triplets` stage: (prompt, flow, score) for sampled pairs, split by prompt and by flow.

The paper (and ComfyGen) scores a small fixed set of flows (330), because each score is a GPU
render. With the simulator a score costs well under a millisecond, so pairs are drawn across
*all* augmented flows instead (docs/reward.md says why). `triplets.flow_test_fraction` of the
flows are held out: they appear only in test pairs (`flow_split: unseen`), beside test pairs of
seen flows (`flow_split: seen`); train, val and test prompts are disjoint.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from flowrl.errors import FlowRLError
from flowrl.io import read_json, read_jsonl, write_json, write_jsonl
from flowrl.params.model import Params
from flowrl.pipeline.stages import STAGES, EncodeFiles, FlowsFiles, PromptsFiles, TripletsFiles
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
    def fit(cls, scores: list[float]) -> ScoreNormalizer:
        if not scores:
            raise FlowRLError("no train triplets to fit the score normalisation on; raise triplets.n_triplets")
        return cls(float(min(scores)), float(max(scores)))

    def __call__(self, score: float) -> float:
        span = self.high - self.low
        return float(min(1.0, max(0.0, (score - self.low) / span))) if span > 0 else 0.5

    def save(self, path: Path) -> None:
        write_json(path, {"low": self.low, "high": self.high})

    @classmethod
    def load(cls, path: Path) -> ScoreNormalizer:
        return cls(**read_json(path))


def split_prompts(
    prompts: list[str], val_fraction: float, test_fraction: float, rng: random.Random
) -> dict[str, list[str]]:
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


def balanced_draw(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """`n` indices into `size` items, each item drawn once per pass (reshuffled every pass).

    >>> sorted(np.bincount(balanced_draw(7, 3, np.random.default_rng(0))).tolist())
    [2, 2, 3]
    """
    if size <= 0:
        raise FlowRLError("nothing to draw triplets from; check data/prompts and data/flows")
    passes = -(-n // size)
    return np.concatenate([rng.permutation(size) for _ in range(passes)])[:n] if n else np.zeros(0, dtype=int)


def split_flows(augmented: list[dict], test_fraction: float, rng: random.Random) -> dict[str, list[dict]]:
    """Augmented flows split into `seen` (train/val/test pairs) and `unseen` (test pairs only)."""
    shuffled = rng.sample(augmented, len(augmented))
    n_unseen = round(len(shuffled) * test_fraction)
    if n_unseen >= len(shuffled):
        raise FlowRLError(f"triplets.flow_test_fraction {test_fraction} leaves no flows to train on; lower it")
    return {"unseen": shuffled[:n_unseen], "seen": shuffled[n_unseen:]}


def draw_pairs(prompts: list[str], flows: list[dict], n: int, rng: np.random.Generator) -> list[tuple[str, dict]]:
    """`n` (prompt, flow) pairs spread evenly over both lists."""
    return [
        (prompts[i], flows[j]) for i, j in zip(balanced_draw(n, len(prompts), rng), balanced_draw(n, len(flows), rng))
    ]


def score_in_batches(
    scorer, prompts: list[str], graphs: list[dict], batch_size: int = 256, desc: str = "scoring"
) -> list[float]:
    out: list[float] = []
    for start in tqdm(range(0, len(prompts), batch_size), desc=desc, unit="batch"):
        out.extend(scorer.score(prompts[start : start + batch_size], graphs[start : start + batch_size]))
    return out


def run(params: Params, root: Path = Path(".")) -> dict[str, float]:
    """Sample and score (prompt, flow) pairs; write data/triplets/ and reports/triplets/metrics.json."""
    cfg = params.triplets
    scorer = load_scorer(params.scoring.scorer, params.scoring.options)  # fail before any work
    rng, np_rng = random.Random(params.seed), np.random.default_rng(params.seed)
    train_prompts = [row["prompt"] for row in read_jsonl(root / PromptsFiles.train)]
    if cfg.n_prompts is not None and len(train_prompts) > cfg.n_prompts:
        train_prompts = rng.sample(train_prompts, cfg.n_prompts)
    holdout_prompts = [row["prompt"] for row in read_jsonl(root / PromptsFiles.holdout)]
    augmented = read_jsonl(root / FlowsFiles.augmented)
    # the policy view (no seeds, negative-prompt placeholder): the text the policy writes and GRPO scores
    texts = {row["id"]: row.get("policy_text") or row["text"] for row in read_jsonl(root / EncodeFiles.flows)}
    missing = [row["id"] for row in augmented if row["id"] not in texts]
    if missing:
        raise FlowRLError(
            f"{EncodeFiles.flows} lacks flows {missing[:3]} of {FlowsFiles.augmented}; rerun the encode stage (dvc repro encode)"
        )
    for row in augmented:
        row["text"] = texts[row["id"]]

    by_flows = split_flows(augmented, cfg.flow_test_fraction, rng)
    by_split = split_prompts(train_prompts, cfg.val_fraction, cfg.test_fraction, rng)
    sizes = {"val": round(cfg.n_triplets * cfg.val_fraction), "test": round(cfg.n_triplets * cfg.test_fraction)}
    sizes["train"] = cfg.n_triplets - sizes["val"] - sizes["test"]
    n_unseen = sizes["test"] // 2 if by_flows["unseen"] else 0
    pairs = {
        "train": [(p, f, "seen") for p, f in draw_pairs(by_split["train"], by_flows["seen"], sizes["train"], np_rng)],
        "val": [(p, f, "seen") for p, f in draw_pairs(by_split["val"], by_flows["seen"], sizes["val"], np_rng)],
        # held-out prompts x seen flows, and held-out prompts x unseen flows (what GRPO faces)
        "test": [
            (p, f, "seen") for p, f in draw_pairs(by_split["test"], by_flows["seen"], sizes["test"] - n_unseen, np_rng)
        ]
        + [(p, f, "unseen") for p, f in draw_pairs(by_split["test"], by_flows["unseen"], n_unseen, np_rng)],
    }
    raw = {
        split: score_in_batches(
            scorer, [p for p, _, _ in pairs[split]], [f["graph"] for _, f, _ in pairs[split]], desc=f"scoring {split}"
        )
        for split in SPLITS
    }
    # Scores are normalised to [0, 1] with the train split's range, as the paper's surrogate is
    # trained on normalised preference scores.
    norm = ScoreNormalizer.fit(raw["train"])
    norm.save(root / TripletsFiles.normalization)
    metrics: dict[str, float] = {"n_seen_flows": len(by_flows["seen"]), "n_unseen_flows": len(by_flows["unseen"])}
    for split in SPLITS:
        rows = [
            {
                "prompt": p,
                "flow_id": f["id"],
                "flow": f["text"],
                "flow_split": fs,
                "score": norm(s),
                "raw_score": float(s),
            }
            for (p, f, fs), s in zip(pairs[split], raw[split])
        ]
        write_jsonl(root / TripletsFiles.split(split), rows)
        metrics[f"n_{split}"] = len(rows)
        metrics[f"n_prompts_{split}"] = len(by_split[split])
    metrics["n_test_unseen_flows"] = n_unseen
    used = {f["id"] for split in SPLITS for _, f, _ in pairs[split]}
    scored = [(fs, f) for fs in ("seen", "unseen") for f in by_flows[fs] if f["id"] in used]
    write_jsonl(
        root / TripletsFiles.scored_flows,
        ({"id": f["id"], "graph": f["graph"], "text": f["text"], "split": fs} for fs, f in scored),
    )
    metrics["n_scored_flows"] = len(scored)

    arr = np.asarray([s for split in SPLITS for s in raw[split]])
    metrics.update(
        score_mean=float(arr.mean()),
        score_std=float(arr.std()),
        score_min=float(arr.min()),
        score_max=float(arr.max()),
        share_zero=float(np.mean(arr == 0)),
    )
    # How prompt-dependent is the best flow? Score a sample of flows on a sample of held-out prompts.
    probe = rng.sample(holdout_prompts, min(cfg.n_probe_prompts, len(holdout_prompts)))
    probe_flows = rng.sample([f for _, f in scored], min(cfg.n_probe_flows, len(scored)))
    if probe and probe_flows:
        grid = [(p, f["graph"]) for p in probe for f in probe_flows]
        flat = score_in_batches(scorer, [p for p, _ in grid], [g for _, g in grid], desc="scoring probe grid")
        matrix = np.asarray(flat).reshape(len(probe), len(probe_flows))
        metrics["best_single_flow_share"] = best_single_flow_share(matrix)
        metrics["n_distinct_best_flows"] = int(len(set(np.argmax(matrix, axis=1).tolist())))
        metrics["probe_between_flow_std"] = float(matrix.std(axis=1).mean())
    write_json(root / STAGES["triplets"].metrics, metrics)
    return metrics
