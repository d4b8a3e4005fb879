"""Evaluation figures (PNG): win-rate matrix, novelty against guidance strength, score distributions, adaptivity."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on pipeline workers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from flowrl.io import atomic_path  # noqa: E402


def _save(fig, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def plot_win_rates(rates: Mapping[str, Mapping[str, float]], path: str | Path) -> Path:
    """Heat map: cell (row a, column b) is the share of prompts where a's flow beats b's (ties half)."""
    names = list(rates)
    matrix = np.array([[rates[a].get(b, np.nan) if a != b else np.nan for b in names] for a in names], dtype=float)
    size = max(4.0, 0.7 * len(names) + 2)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    image = ax.imshow(matrix, cmap="RdBu", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    for i in range(len(names)):
        for j in range(len(names)):
            if not math.isnan(matrix[i, j]):
                ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=8)
    ax.set_xlabel("against")
    ax.set_ylabel("method")
    ax.set_title("Win rate: row beats column (ties count half)")
    fig.colorbar(image, ax=ax, fraction=0.046)
    return _save(fig, path)


def plot_novelty_vs_gamma(points: Sequence[tuple[float, Mapping[str, float]]], path: str | Path) -> Path:
    """Unique ratio, exists-in-data and NLD ratio against guidance strength (0 = SFT, 1 = GRPO)."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    if points:
        points = sorted(points, key=lambda p: p[0])
        gammas = [g for g, _ in points]
        for key in ("unique_ratio", "exists_in_data", "nld_ratio"):
            ax.plot(gammas, [m.get(key, np.nan) for _, m in points], marker="o", label=key)
        ax.set_xticks(gammas)
        ax.legend()
    else:
        ax.text(
            0.5,
            0.5,
            "no policy methods evaluated\n(models/sft, models/grpo missing)",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
    ax.set_xlabel("guidance strength γ (0 = SFT, 1 = GRPO)")
    ax.set_title("Novelty of generated flows vs γ")
    return _save(fig, path)


def plot_mean_scores(means: Mapping[str, tuple[float, float]], path: str | Path) -> Path:
    """Bar chart of each method's mean score with a 1-SE error bar (SE over prompts)."""
    names = list(means)
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(names)), 4))
    ax.bar(
        range(len(names)),
        [means[n][0] for n in names],
        yerr=[0 if math.isnan(means[n][1]) else means[n][1] for n in names],
        capsize=4,
    )
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_ylabel("mean score (± 1 SE over prompts)")
    ax.set_ylim(bottom=min(means[n][0] for n in names) * 0.9)
    ax.set_title("score by method")
    fig.tight_layout()
    return _save(fig, path)


def plot_score_distributions(scores: Mapping[str, Sequence[float]], path: str | Path) -> Path:
    """Box plot of per-prompt scores per method (invalid flows score 0)."""
    names = list(scores)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.8 * len(names) + 2), 4))
    ax.boxplot([list(scores[n]) for n in names], showmeans=True)
    ax.set_xticks(range(1, len(names) + 1), names, rotation=45, ha="right")
    ax.set_ylabel("score")
    ax.set_title("Scores per method on held-out prompts")
    return _save(fig, path)


def plot_adaptivity(points: Mapping[str, tuple[float, float, float]], path: str | Path) -> Path:
    """Per method (gain, SE, top-checkpoint share): adaptivity gain ± 1 SE as bars, the top-checkpoint share beside it."""
    names = list(points)
    x = np.arange(len(names))
    fig, (left, right) = plt.subplots(1, 2, figsize=(max(8.0, 1.1 * len(names) + 3), 4))
    gain, se, share = (np.array([points[n][i] for n in names], dtype=float) for i in range(3))
    left.bar(x, np.nan_to_num(gain), yerr=np.nan_to_num(se), capsize=4)
    left.axhline(0, color="black", linewidth=0.8)
    left.set_ylabel("score(own prompt) − score(other prompt), ± 1 SE")
    left.set_title("Adaptivity gain (0 = ignores the prompt)")
    right.bar(x, np.nan_to_num(share), color="tab:orange")
    right.set_ylim(0, 1)
    right.set_ylabel("share of valid flows")
    right.set_title("Most common checkpoint's share")
    for ax in (left, right):
        ax.set_xticks(x, names, rotation=45, ha="right")
    fig.tight_layout()
    return _save(fig, path)
