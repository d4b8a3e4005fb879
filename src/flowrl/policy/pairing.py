"""Which flow each SFT prompt is paired with (`sft.pairing`).

`random` (the paper's setting, sec. 3.2): the encode stage's pairs, a random training flow for a random prompt,
so SFT learns that the flow does not depend on the prompt. `reward`: each prompt the surrogate was trained on
gets flows drawn from a random set of training flows, with a probability that rises with the surrogate
ensemble's score for that prompt; pairs the ensemble is unsure of (std above its tau) are left out, and a
temperature and a share of random pairs keep the pairs diverse; `sft.pairing_specificity` takes a share of each
flow's mean score over all the prompts off before the draw, so that SFT learns the part of the score that depends on
the prompt (the interaction) and leaves the part every prompt shares to GRPO. It uses only the labels the pipeline already
has (the surrogate fitted on the triplets): no scorer call.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import numpy as np

from flowrl.params.model import SFTConfig


def pair_probabilities(mean: np.ndarray, std: np.ndarray, tau: float | None, temperature: float) -> np.ndarray:
    """Draw probabilities over one prompt's candidates: softmax of the standardised ensemble mean / temperature.

    Candidates with std above `tau` or no score (NaN) get 0; when none is left every candidate is equally likely.

    >>> pair_probabilities(np.array([0.1, 0.2, 0.3]), np.array([0.0, 0.0, 1.0]), tau=0.5, temperature=1.0).round(3).tolist()
    [0.119, 0.881, 0.0]
    """
    ok = np.isfinite(mean) & (std <= (math.inf if tau is None else tau))
    if not ok.any():
        return np.full(len(mean), 1.0 / len(mean))
    spread = float(mean[ok].std()) or 1.0
    z = np.where(ok, (np.nan_to_num(mean) - mean[ok].mean()) / spread, -np.inf)
    weights = np.exp((z - z[ok].max()) / temperature)
    return weights / weights.sum()


def score_candidates(
    prompts: Sequence[str], pool: Sequence[str], ensemble, n_candidates: int | None, rng: random.Random
) -> tuple[list[Sequence[str]], np.ndarray, np.ndarray]:
    """Per prompt, its candidate flows and the ensemble's (mean, std) for each, as (P, K) arrays.

    `n_candidates` None: every flow of the pool for every prompt, through the ensemble's factorised `score_grid`
    when it has one (head members); otherwise a random `n_candidates` of the pool per prompt, through `predict`.
    """
    if n_candidates is None or n_candidates >= len(pool):
        if hasattr(ensemble, "score_grid"):
            mean, std = ensemble.score_grid(list(prompts), list(pool), progress=True)
            return [pool] * len(prompts), mean.numpy(), std.numpy()
        n_candidates = len(pool)
    pool = list(pool)
    candidates = [rng.sample(pool, n_candidates) for _ in prompts]
    flat = [p for p, cands in zip(prompts, candidates) for _ in cands]
    mean, std = ensemble.predict(flat, [f for cands in candidates for f in cands], progress=True)
    return candidates, mean.numpy().reshape(len(prompts), -1), std.numpy().reshape(len(prompts), -1)


def flow_main_effect(candidates: Sequence[Sequence[str]], mean: np.ndarray, pool: Sequence[str]) -> np.ndarray:
    """Each (prompt, candidate) cell's flow's mean ensemble score over every prompt it was scored for, as (P, K).

    What a flow is worth to any prompt: taking a share of it off the score leaves more of what suits this prompt.

    >>> flow_main_effect([["a", "b"], ["b", "a"]], np.array([[1.0, 0.0], [2.0, 3.0]]), ["a", "b"]).tolist()
    [[2.0, 1.0], [1.0, 2.0]]
    """
    column = {text: j for j, text in enumerate(pool)}
    index = np.array([[column[text] for text in cands] for cands in candidates])
    finite = np.isfinite(mean)
    totals = np.bincount(index[finite], weights=mean[finite], minlength=len(pool))
    counts = np.bincount(index[finite], minlength=len(pool))
    return (totals / np.maximum(counts, 1))[index]


def reward_pairs(
    prompts: Sequence[str], pool: Sequence[str], ensemble, n_pairs: int, cfg: SFTConfig, seed: int
) -> tuple[list[dict], dict[str, float]]:
    """`n_pairs` (prompt, flow) pairs drawn by the surrogate ensemble's score (see the module doc).

    Args:
        prompts: distinct prompts the ensemble knows (its training prompts: their embeddings are cached).
        pool: distinct training flows (policy-view text).
        ensemble: `predict(prompts, flows) -> (mean, std)` and `tau` (the reward stage's resolved cutoff).
    Returns:
        (pairs as {"prompt", "completion"}, stats: share of candidates left out as uncertain, random share, ...).
    """
    rng = random.Random(seed)
    np_rng = np.random.default_rng(seed)
    if len(prompts) > n_pairs:  # one pair per prompt: score only the prompts that get one
        prompts = rng.sample(list(prompts), n_pairs)
    per_prompt = max(1, math.ceil(n_pairs / len(prompts)))
    candidates, mean_all, std_all = score_candidates(prompts, pool, ensemble, cfg.pairing_candidates, rng)
    drawn_by = mean_all
    if cfg.pairing_specificity:
        drawn_by = mean_all - cfg.pairing_specificity * flow_main_effect(candidates, mean_all, pool)
    pairs, uncertain = [], 0
    chosen_z: list[float] = []
    for prompt, cands, mean, std, by in zip(prompts, candidates, mean_all, std_all, drawn_by):
        probs = pair_probabilities(by, std, ensemble.tau, cfg.pairing_temperature)
        ok = np.isfinite(mean)
        uncertain += int((~ok | (std > (math.inf if ensemble.tau is None else ensemble.tau))).sum())
        for _ in range(per_prompt):
            if rng.random() < cfg.pairing_random_share:
                pairs.append({"prompt": prompt, "completion": rng.choice(pool), "source": "random"})
                continue
            k = int(np_rng.choice(len(cands), p=probs))
            pairs.append({"prompt": prompt, "completion": cands[k], "source": "reward"})
            if ok.any():
                chosen_z.append(float((mean[k] - mean[ok].mean()) / (mean[ok].std() or 1.0)))
    rng.shuffle(pairs)
    pairs = pairs[:n_pairs]
    stats = {
        "pairing_prompts": float(len(prompts)),
        "pairing_uncertain_share": uncertain / max(mean_all.size, 1),
        "pairing_random_share": sum(p["source"] == "random" for p in pairs) / max(len(pairs), 1),
        "pairing_distinct_flows": float(len({p["completion"] for p in pairs})),
        "pairing_mean_z": float(np.mean(chosen_z)) if chosen_z else float("nan"),
    }
    return pairs, stats
