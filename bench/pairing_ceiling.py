"""What can reward pairing teach? A flow drawn by the surrogate for a prompt, against comfygen's pick for it.

`sft.pairing: reward` draws each SFT prompt's flows with probability ∝ exp(z / T) over the surrogate
ensemble's standardised scores of the training flows for that prompt. A policy that imitated those
pairs perfectly would deliver such draws; this bench scores them with the simulator on dev prompts
(the half of the holdout that settings are tuned on; evaluate reports on the other), beside comfygen's pick
and the simulator's own best training flow (`scorer_argmax`, by its mean over 4 seeds: the ceiling of any pairing
over these flows), at
several temperatures and with all training flows or a random 128 as candidates: mean score, win rate against
comfygen and the adaptivity gain (score on the own prompt minus on another test prompt), each also paired against
comfygen's per prompt (difference and its standard error). `votes_k<k>_n<n0>`: the surrogate's pick after shrinking
its score towards the triplets of the k training prompts most like the prompt (comfygen's evidence; weight
count / (count + n0)): can the labels teach more adaptivity than either teacher alone? `specificity_<s>`: the
surrogate's pick after taking s times each flow's mean score over 512 training prompts off its score
(`sft.pairing_specificity`): the part of the score every prompt shares traded for the part that depends on the
prompt. How well the surrogate
ranks the flows within a prompt: mean Spearman per prompt, the correlation of the prompt × flow interaction
(both grids with their prompt and flow means taken out) and the overlap of the two top 5%. Needs the reward,
flows, encode and triplets stages of a run (FLOWRL_BENCH_ROOT, default this repository).

Run: `python -m bench pairing_ceiling` (~3 min on 2 cores for 128 prompts; FLOWRL_BENCH_PROMPTS sets how many).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from bench._common import REPO
from flowrl.data.prompts import holdout_split
from flowrl.evaluation.baselines import _similarity
from flowrl.evaluation.evaluate import baseline_methods, score_method
from flowrl.evaluation.metrics import paired_difference
from flowrl.evaluation.validity import Candidate, check_candidate
from flowrl.io import read_jsonl
from flowrl.pipeline.stages import EncodeFiles, FlowsFiles, PromptsFiles, RewardFiles, TripletsFiles
from flowrl.policy.pairing import flow_main_effect, pair_probabilities, score_candidates
from flowrl.reward.ensemble import Ensemble
from flowrl.scoring.simulator import PreferenceSimulator

MAX_PROMPTS = 128  # the dev half of the holdout
VOTES = ((50, 3), (200, 3))  # (k nearest training prompts, n0) of the surrogate + votes teacher
TEMPERATURES = (0.05, 0.1, 0.25, 0.5)
SPECIFICITIES = (0.25, 0.5, 0.75)
SEEDS = (0, 1, 2, 3)  # the scorer's grid is averaged over the seeds a flow is rendered with (its score depends on them)


def interaction(grid: np.ndarray) -> np.ndarray:
    """A (prompts x flows) grid less its prompt means and flow means: the part no fixed flow can win."""
    return grid - grid.mean(0, keepdims=True) - grid.mean(1, keepdims=True) + grid.mean()


def ranking(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """How well `predicted` ranks the flows of each prompt (rows) as `truth` does."""
    top = max(1, truth.shape[1] // 20)
    overlap = [len(set(np.argsort(-t)[:top]) & set(np.argsort(-p)[:top])) / top for t, p in zip(truth, predicted)]
    within = truth - truth.mean(1, keepdims=True)
    return {
        "within_prompt_spearman": round(float(np.mean([spearmanr(t, p)[0] for t, p in zip(truth, predicted)])), 4),
        "interaction_pearson": round(
            float(np.corrcoef(interaction(truth).ravel(), interaction(predicted).ravel())[0, 1]), 4
        ),
        "interaction_share": round(float(interaction(truth).var() / within.var()), 4),
        "top5pct_overlap": round(float(np.mean(overlap)), 4),
    }


def certain_argmax(mean: np.ndarray, std: np.ndarray, tau: float) -> np.ndarray:
    """Per row, the column with the best mean among those the ensemble is sure of (std <= tau)."""
    return np.where(std <= tau, mean, -np.inf).argmax(1)


def training_pool(root: Path) -> list[str]:
    """The valid training flows of a run (policy view, sorted): what reward pairing and GRPO can pick from."""
    augmented = {r["id"] for r in read_jsonl(root / FlowsFiles.augmented)}
    pool = sorted({r["policy_text"] for r in read_jsonl(root / EncodeFiles.flows) if r["id"] in augmented})
    return [text for text in pool if check_candidate(Candidate(text)).valid]


def neighbour_votes(
    similarity: np.ndarray, voters: list[list[tuple[int, float]]], n_flows: int, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Mean label and label count per (prompt, flow) over the triplets of each prompt's k most similar training prompts.

    Args:
        similarity: (prompts, training prompts); voters: per training prompt, its (flow column, score) triplets.
    """
    total, count = np.zeros((len(similarity), n_flows)), np.zeros((len(similarity), n_flows))
    for a, row in enumerate(similarity):
        for i in np.argsort(-row, kind="stable")[:k]:
            for j, y in voters[i]:
                total[a, j] += y
                count[a, j] += 1
    return np.where(count > 0, total / np.maximum(count, 1), 0.0), count


def shrink_to_votes(mean: np.ndarray, votes: np.ndarray, count: np.ndarray, n0: float) -> np.ndarray:
    """The surrogate's mean moved towards the neighbours' mean label by count / (count + n0)."""
    return mean + count / (count + n0) * (votes - mean)


def main() -> dict:
    root = Path(os.environ.get("FLOWRL_BENCH_ROOT", REPO))
    n_prompts = int(os.environ.get("FLOWRL_BENCH_PROMPTS", MAX_PROMPTS))
    prompts = [r["prompt"] for r in holdout_split(read_jsonl(root / PromptsFiles.holdout))[0]][:n_prompts]  # dev half
    other = prompts[len(prompts) // 2 :] + prompts[: len(prompts) // 2]
    pool = training_pool(root)
    ensemble, sim = Ensemble.load(root / RewardFiles.full), PreferenceSimulator()
    truth = np.zeros((len(prompts), len(pool)))  # (prompts, flows): the scorer's mean over SEEDS
    for seed in SEEDS:
        graphs = [check_candidate(Candidate(text), seed).graph for text in pool]
        truth += np.array([sim.score([p] * len(graphs), graphs) for p in prompts], dtype=float) / len(SEEDS)
    comfygen_picks = baseline_methods(root, 50, 0)["comfygen"](prompts)
    comfygen, comfygen_other = (np.array(score_method(comfygen_picks, ps, sim)[0]) for ps in (prompts, other))

    def summary(picks: list[Candidate]) -> dict[str, float]:
        own, other_scores = (np.array(score_method(picks, ps, sim)[0]) for ps in (prompts, other))
        gain = own - other_scores
        d_mean = paired_difference(own.tolist(), comfygen.tolist())
        d_gain = paired_difference(gain.tolist(), (comfygen - comfygen_other).tolist())
        return {
            "mean": round(float(own.mean()), 4),
            "win_vs_comfygen": round(float(np.mean(own > comfygen) + 0.5 * np.mean(own == comfygen)), 4),
            "adaptivity_gain": round(float(gain.mean()), 4),
            "adaptivity_se": round(float(gain.std(ddof=1) / np.sqrt(len(gain))), 4),
            "minus_comfygen": round(d_mean["mean"], 4),
            "minus_comfygen_se": round(d_mean["se"], 4),
            "adaptivity_minus_comfygen": round(d_gain["mean"], 4),
            "adaptivity_minus_comfygen_se": round(d_gain["se"], 4),
        }

    out: dict = {"prompts": len(prompts), "flows": len(pool), "comfygen": summary(comfygen_picks)}
    out["scorer_argmax"] = summary([Candidate(pool[i]) for i in truth.argmax(1)])
    rng, np_rng = random.Random(0), np.random.default_rng(0)
    for name, n_candidates in (("all", None), ("random_128", 128)):
        candidates, mean, std = score_candidates(prompts, pool, ensemble, n_candidates, rng)
        if n_candidates is None:
            out["surrogate_ranking"] = ranking(truth, mean)
            out.update(votes_teachers(root, prompts, pool, mean, std, ensemble.tau, summary))
            out.update(specificity_teachers(root, pool, ensemble, mean, std, summary))
        rows = list(zip(candidates, mean, std))
        out[f"{name}_argmax"] = summary(
            [Candidate(c[int(certain_argmax(m[None], s[None], ensemble.tau)[0])]) for c, m, s in rows]
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


def specificity_teachers(root: Path, pool: list[str], ensemble, mean, std, summary) -> dict:
    """`specificity_<s>`: the certain pick of the surrogate's score less s times the flow's mean over training prompts."""
    train_prompts = random.Random(0).sample([r["prompt"] for r in read_jsonl(root / PromptsFiles.train)], 512)
    grid = ensemble.score_grid(train_prompts, pool, progress=False)[0].numpy()
    main_effect = flow_main_effect([pool] * len(train_prompts), grid, pool)[:1]  # the same row for every prompt
    return {
        f"specificity_{s:g}": summary(
            [Candidate(pool[j]) for j in certain_argmax(mean - s * main_effect, std, ensemble.tau)]
        )
        for s in SPECIFICITIES
    }


def votes_teachers(root: Path, prompts: list[str], pool: list[str], mean, std, tau: float, summary) -> dict:
    """`votes_k<k>_n<n0>`: the pick of the surrogate shrunk towards the neighbours' labels (VOTES), summarised."""
    column = {text: j for j, text in enumerate(pool)}
    text_of = {r["id"]: r["policy_text"] for r in read_jsonl(root / EncodeFiles.flows)}
    by_prompt: dict[str, list[tuple[int, float]]] = {}
    for row in read_jsonl(root / TripletsFiles.train):
        j = column.get(text_of.get(row["flow_id"], ""))
        if j is not None:
            by_prompt.setdefault(row["prompt"], []).append((j, float(row["score"])))
    training = sorted(by_prompt)
    similarity = _similarity(prompts, training)
    out = {}
    for k, n0 in VOTES:
        votes, count = neighbour_votes(similarity, [by_prompt[p] for p in training], len(pool), k)
        picks = certain_argmax(shrink_to_votes(mean, votes, count, n0), std, tau)
        out[f"votes_k{k}_n{n0:g}"] = summary([Candidate(pool[j]) for j in picks])
    return out
