"""The `reward` stage: train the surrogate ensemble and the prefix models, then measure them.

Members are `reward.member`: `head` (small MLPs over cached features, flowrl.reward.head) or
`finetune` (a fine-tuned encoder each, flowrl.reward.finetune_train). Each member trains on its own share of the train
triplets (`reward.split`: k-fold leaves fold i out; bootstrap resamples with replacement). A
finished member is saved at once (and a fine-tuned one checkpoints every epoch), so a killed
stage resumes where it stopped. With `reward.tau_quantile` the stage resolves tau as that
quantile of σ on the held-out pairs and writes it into models/reward/full/ensemble.json.
"""

from __future__ import annotations

import math
import random
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import stats
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from flowrl.encoding.vocab import extend_tokenizer, token_pieces
from flowrl.errors import FlowRLError
from flowrl.io import atomic_path, read_json, read_jsonl, write_json
from flowrl.params.model import Params, RewardConfig
from flowrl.pipeline.stages import STAGES, EncodeFiles, RewardFiles, TripletsFiles
from flowrl.reward.encoder import load_reward_tokenizer
from flowrl.reward.ensemble import Ensemble, set_spec_tau
from flowrl.reward.features import FeatureSpace, parse_flow
from flowrl.reward.finetune_train import train_ensemble
from flowrl.reward.head import Featurizer
from flowrl.reward.head_train import train_head_ensemble
from flowrl.reward.members import member_splits
from flowrl.reward.model import format_pair
from flowrl.reward.perturb import KINDS, perturb_flows
from flowrl.reward.prefix import prefix_rows, random_prefixes
from flowrl.reward.prompt_cache import PromptEmbedder
from flowrl.runtime.device import configure

PROMPT_CACHE = "cache/prompt_embeddings.safetensors"  # under models/reward/, shared by the full and prefix heads


class RewardDataError(FlowRLError):
    """The triplet files the reward stage reads are missing or malformed."""


def regression_metrics(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """mse, pearson and spearman of predictions against true scores (nan when a side is constant)."""
    pred, true = np.asarray(pred, dtype=np.float64), np.asarray(true, dtype=np.float64)
    constant = np.ptp(pred) == 0 or np.ptp(true) == 0
    return {
        "mse": float(np.mean((pred - true) ** 2)),
        "pearson": float("nan") if constant else float(stats.pearsonr(pred, true).statistic),
        "spearman": float("nan") if constant else float(stats.spearmanr(pred, true).statistic),
    }


def read_split(root: Path, name: str) -> list[dict]:
    """data/triplets/<name>.jsonl rows ({"prompt", "flow", "score"}); a missing file or field names the stage to rerun."""
    path = root / TripletsFiles.split(name)
    rows = read_jsonl(path)
    for n, row in enumerate(rows, 1):
        missing = {"prompt", "flow", "score"} - set(row)
        if missing:
            raise RewardDataError(
                f"{path}: row {n} lacks {sorted(missing)}; rerun the triplets stage (dvc repro triplets)"
            )
    if not rows:
        raise RewardDataError(f"{path}: no triplets; rerun the triplets stage with more triplets.n_triplets")
    return rows


def held_out_rows(root: Path, cfg: RewardConfig, seed: int) -> list[dict]:
    """The test triplets the stage measures on: `cfg.n_eval` of them drawn with `seed` (all when empty)."""
    test = read_split(root, "test")
    if cfg.n_eval is not None and len(test) > cfg.n_eval:
        test = random.Random(seed).sample(test, cfg.n_eval)
    return test


def reward_tokenizer(cfg: RewardConfig, root: Path) -> tuple[PreTrainedTokenizerBase, dict[str, list[int]]]:
    """The encoder's tokenizer and, with `cfg.add_flow_tokens`, the flow vocabulary added with each token's base pieces."""
    tokenizer = load_reward_tokenizer(cfg)
    pieces: dict[str, list[int]] = {}
    if cfg.add_flow_tokens:
        vocab = read_json(root / EncodeFiles.vocab)
        pieces = token_pieces(tokenizer, vocab)
        extend_tokenizer(tokenizer, vocab)
    return tokenizer, pieces


def unscored_flows(root: Path, scored: set[str]) -> list[str]:
    """Encoded flows (data/encode/flows.jsonl) that never appear in a scored triplet."""
    path = root / EncodeFiles.flows
    if not path.exists():
        return []
    texts = (row.get("policy_text") or row["text"] for row in read_jsonl(path))  # the view the triplets use
    return [t for t in texts if t not in scored]


def scatter_plot(path: Path, pred: np.ndarray, std: np.ndarray, true: np.ndarray, title: str) -> Path:
    """PNG of ensemble mean (error bar = std) against the true score."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.errorbar(true, pred, yerr=std, fmt="o", ms=3, alpha=0.5, elinewidth=0.5)
    lo, hi = float(min(true.min(), pred.min())), float(max(true.max(), pred.max()))
    ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    ax.set(xlabel="true score (scorer)", ylabel="ensemble mean (surrogate)", title=title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path


def _sigma_pairs(ensemble, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
    """Ensemble std on (prompt, flow) pairs (inf for a flow the parser cannot read)."""
    if not pairs:
        return np.zeros(0)
    _, sigma = ensemble.predict([p for p, _ in pairs], [f for _, f in pairs], progress=True)
    return sigma.numpy().astype(np.float64)


def _mean(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(x.mean()) if len(x) else float("nan")


def evaluate(
    full, prefix, test: Sequence[dict], unscored: Sequence[str], cfg: RewardConfig, seed: int
) -> tuple[dict[str, float], dict]:
    """Held-out metrics per member and for the ensemble (all, seen and unseen flows), σ where it should
    be low and where it should be high, the resolved tau and the share of rewards it zeroes, prefix metrics.

    Args:
        full, prefix: ensembles of either kind (`predict`/`predict_with_members`).
        test: held-out rows; `flow_split` "unseen" marks flows no training row has (missing = seen).
        unscored: encoded flows in no training row.
    Returns:
        (flat metrics, arrays for the plot: pred, std, true).
    """
    rng = random.Random(seed)
    prompts, flows = [r["prompt"] for r in test], [r["flow"] for r in test]
    true = np.array([r["score"] for r in test], dtype=np.float64)
    unseen = np.array([r.get("flow_split", "seen") == "unseen" for r in test])
    t0 = time.perf_counter()
    scores, mean_t, std_t = full.predict_with_members(prompts, flows, progress=True)
    scores = scores.numpy().astype(np.float64)
    seconds = time.perf_counter() - t0
    metrics: dict[str, float] = {
        "n_test": float(len(test)),
        "n_test_unseen": float(unseen.sum()),
        "predict_samples_per_second": scores.size / max(seconds, 1e-9),
    }
    if hasattr(full, "tokenizer"):  # fine-tuned members read text: how much of it fits
        lengths = np.array(
            [len(ids) for ids in full.tokenizer([format_pair(p, f) for p, f in zip(prompts, flows)])["input_ids"]]
        )
        metrics.update(
            mean_input_tokens=float(lengths.mean()), truncated_share=float((lengths > full.max_length).mean())
        )
    for i, row in enumerate(scores):
        metrics.update({f"member_{i}_{k}": v for k, v in regression_metrics(row, true).items()})
    mean, std = mean_t.numpy().astype(np.float64), std_t.numpy().astype(np.float64)
    for name, mask in (("ensemble", np.ones_like(unseen)), ("ensemble_seen", ~unseen), ("ensemble_unseen", unseen)):
        if mask.any():
            metrics.update({f"{name}_{k}": v for k, v in regression_metrics(mean[mask], true[mask]).items()})
    # σ where the ensemble has seen flows like these (held-out prompts x seen flows) ...
    metrics["sigma_scored"] = _mean(std[~unseen]) if (~unseen).any() else _mean(std)
    metrics["sigma_unseen"] = _mean(std[unseen]) if unseen.any() else float("nan")
    # ... and where it has not: unscored augmented flows, perturbed flows
    sigma_unscored = _sigma_pairs(
        full, [(rng.choice(prompts), rng.choice(unscored)) for _ in range(cfg.n_unscored)] if unscored else []
    )
    perturbed = perturb_flows(flows, cfg.n_perturbed, seed)
    sigma_perturbed = _sigma_pairs(full, [(rng.choice(prompts), f) for _, f in perturbed])
    metrics["sigma_unscored"] = _mean(sigma_unscored)
    metrics["sigma_perturbed"] = _mean(sigma_perturbed)
    for kind in KINDS:
        metrics[f"sigma_perturbed_{kind}"] = (
            _mean(sigma_perturbed[[k == kind for k, _ in perturbed]]) if perturbed else float("nan")
        )
    for name in ("unseen", "unscored", "perturbed"):
        metrics[f"sigma_ratio_{name}"] = metrics[f"sigma_{name}"] / max(metrics["sigma_scored"], 1e-12)
    tau = float(np.quantile(std, cfg.tau_quantile)) if cfg.tau_quantile is not None else cfg.tau
    metrics["tau"] = tau
    for name, sigma in (
        ("seen", std[~unseen]),
        ("unseen", std[unseen]),
        ("unscored", sigma_unscored),
        ("perturbed", sigma_perturbed),
    ):
        metrics[f"share_zeroed_{name}"] = float((sigma > tau).mean()) if len(sigma) else float("nan")
    if prefix is not None:
        cut = [random_prefixes(f, 1, rng)[0] for f in flows]
        p_mean, _ = prefix.predict(prompts, cut, progress=True)
        metrics.update({f"prefix_{k}": v for k, v in regression_metrics(p_mean.numpy(), true).items()})
    return metrics, {"pred": mean, "std": std, "true": true}


def train_members(
    root: Path, train: list[dict], test: list[dict], cfg: RewardConfig, seed: int
) -> tuple[list[dict], list[dict], dict[str, float]]:
    """Train (or resume) the full and prefix ensembles of `cfg.member` kind into models/reward/.

    Returns:
        (full member stats, prefix member stats, extra metrics).
    """
    out = root / RewardFiles.dir
    prefix_train = prefix_rows(train, cfg.n_prefixes, seed) if cfg.n_prefix_models else []
    if cfg.member == "finetune":
        tokenizer, pieces = reward_tokenizer(cfg, root)
        full_stats = train_ensemble(out / "full", train, cfg, cfg.n_models, tokenizer, seed, pieces=pieces)
        prefix_stats = (
            train_ensemble(
                out / "prefix", prefix_train, cfg, cfg.n_prefix_models, tokenizer, seed + 100_000, pieces=pieces
            )
            if prefix_train
            else []
        )
        return full_stats, prefix_stats, {"n_flow_tokens_added": float(len(pieces))}
    t0 = time.perf_counter()
    embedder = PromptEmbedder(cfg, cfg.head.prompt_max_length, out / PROMPT_CACHE)
    n_cached = len(embedder)
    embedder.embed(sorted({r["prompt"] for r in train + test}), progress=True)
    embedder.save()
    space = FeatureSpace.fit(
        [v for v in map(parse_flow, sorted({r["flow"] for r in train})) if v is not None],
        sorted({r["prompt"] for r in train}),
        cfg.head.min_count,
    )
    featurizer = Featurizer(space, embedder)
    extra = {
        "prompt_cache_rebuilt": float(embedder.rebuilt),
        "prompt_cache_hits": float(n_cached),
        "prompts_embedded": float(len(embedder) - n_cached),
        "embed_seconds": time.perf_counter() - t0,
        "n_feature_tokens": float(space.n_tokens),
        "n_numeric_slots": float(len(space.slots)),
    }
    cache = f"../{PROMPT_CACHE}"
    full_stats = train_head_ensemble(
        out / "full",
        train,
        cfg,
        cfg.n_models,
        featurizer,
        seed,
        member_splits(len(train), cfg.n_models, cfg.split, seed),
        cache,
    )
    prefix_stats = (
        train_head_ensemble(
            out / "prefix",
            prefix_train,
            cfg,
            cfg.n_prefix_models,
            featurizer,
            seed + 100_000,
            member_splits(len(prefix_train), cfg.n_prefix_models, cfg.split, seed + 100_000),
            cache,
        )
        if prefix_train
        else []
    )
    return full_stats, prefix_stats, extra


def run(params: Params, root: Path = Path(".")) -> dict[str, float]:
    """Write models/reward/{full,prefix}/ and reports/reward/{metrics.json, scatter.png}."""
    cfg, seed = params.reward, params.seed
    root = Path(root)
    configure(
        params.device
    )  # where the models run (flowrl.runtime.device); the pipeline prints the cost estimate first
    t_stage = time.perf_counter()
    train, test = read_split(root, "train"), held_out_rows(root, cfg, seed)
    out = root / RewardFiles.dir
    t0 = time.perf_counter()
    full_stats, prefix_stats, extra = train_members(root, train, test, cfg, seed)
    train_seconds = time.perf_counter() - t0
    if not cfg.n_prefix_models:
        shutil.rmtree(out / "prefix", ignore_errors=True)  # a stale prefix ensemble must not feed GRPO
    full = Ensemble.load(out / "full")
    prefix = Ensemble.load(out / "prefix") if cfg.n_prefix_models else None
    unscored = unscored_flows(root, {r["flow"] for r in train})
    metrics, arrays = evaluate(full, prefix, test, unscored, cfg, seed)
    set_spec_tau(out / "full", metrics["tau"])
    done = [s for s in full_stats + prefix_stats if math.isfinite(s.get("train_samples_per_second", math.nan))]
    metrics.update(extra)
    metrics.update(
        {
            "n_models": float(cfg.n_models),
            "n_prefix_models": float(cfg.n_prefix_models),
            "n_train_rows": float(len(train)),
            "train_seconds": train_seconds,
            "train_samples_per_second": float(np.mean([s["train_samples_per_second"] for s in done]))
            if done
            else float("nan"),
            "final_train_loss": float(np.mean([s["final_loss"] for s in full_stats])),
            "tau_quantile": float("nan") if cfg.tau_quantile is None else cfg.tau_quantile,
        }
    )
    scatter_plot(
        root / RewardFiles.scatter,
        arrays["pred"],
        arrays["std"],
        arrays["true"],
        f"reward ensemble ({cfg.member}, N={cfg.n_models}), test spearman {metrics['ensemble_spearman']:.2f}",
    )
    metrics["stage_seconds"] = time.perf_counter() - t_stage
    write_json(root / STAGES["reward"].metrics, metrics)
    return metrics
