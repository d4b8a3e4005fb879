"""Which flow each SFT prompt is paired with (`sft.pairing`).

`random` (the paper's setting, sec. 3.2): the encode stage's pairs, a random training flow for a random prompt,
so SFT learns that the flow does not depend on the prompt. `reward`: each prompt the surrogate was trained on
gets flows drawn from a random set of training flows, with a probability that rises with the surrogate
ensemble's score for that prompt; pairs the ensemble is unsure of (std above its tau) are left out, and a
temperature and a share of random pairs keep the pairs diverse. It uses only the labels the pipeline already
has (the surrogate fitted on the triplets): no scorer call. Besides the training flows the surrogate may pick
`sft.pairing_fresh_flows` flows nobody labelled (`fresh_flows`: the flows stage's generator with a seed of its
own), as it judges GRPO's flows: where its members disagree (std above tau) the flow is left out.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import numpy as np

from flowrl.data.augment import flow_family, make_variant
from flowrl.encoding.policy_view import policy_text
from flowrl.evaluation.validity import Candidate, check_candidate
from flowrl.params.model import SFTConfig


def fresh_flows(bases: Sequence[tuple[str, dict]], n: int, seed: int, known: set[str]) -> list[str]:
    """`n` distinct usable flows (policy view) that are not in `known`, drawn as the flows stage draws its variants.

    Args:
        bases: (base id, API graph) of the base flows (data/flows/base.jsonl).
        seed: the run's seed; the stream is its own, so these are not the flows stage's variants.
    """
    rng = random.Random(f"fresh-flows-{seed}")
    found: dict[str, None] = {}
    for _ in range(20 * n):
        if len(found) >= n or not bases:
            break
        name, graph = bases[rng.randrange(len(bases))]
        text = policy_text(make_variant(graph, flow_family(graph, name), rng))
        if text not in known and text not in found and check_candidate(Candidate(text)).usable:
            found[text] = None
    return list(found)


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


def reward_pairs(
    prompts: Sequence[str], pool: Sequence[str], ensemble, n_pairs: int, cfg: SFTConfig, seed: int
) -> tuple[list[dict], dict[str, float]]:
    """`n_pairs` (prompt, flow) pairs drawn by the surrogate ensemble's score (see the module doc).

    Args:
        prompts: distinct prompts the ensemble knows (its training prompts: their embeddings are cached).
        pool: distinct flows to choose from (policy-view text): the training flows, and any fresh ones.
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
    pairs, uncertain = [], 0
    chosen_z: list[float] = []
    for prompt, cands, mean, std in zip(prompts, candidates, mean_all, std_all):
        probs = pair_probabilities(mean, std, ensemble.tau, cfg.pairing_temperature)
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
