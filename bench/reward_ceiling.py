"""How much of the scorer's ranking a learner can recover from n scored triplets (reward issue: Spearman >= 0.9).

Held-out Spearman against the true score on held-out prompts x unseen flows (the test rows with
`flow_split: unseen`, what GRPO faces; all test rows when there are none), as the training rows
grow, for four learners:

* `flow_mean`: the mean training score of the same encoded flow, i.e. what memorising each flow's
  average is worth, with no prompt at all (left out when no test flow occurs in training: it would
  predict one constant, whose Spearman is undefined);
* `ridge` and `gbm` (scikit-learn HistGradientBoosting): bags of words, the prompt's 300 most
  frequent words beside the flow's tokens (node classes, field values), so `gbm` can learn
  prompt x component interactions the way the simulator's rules combine them (up to
  `SKLEARN_MAX_ROWS` rows: beyond that they take minutes);
* `head`: ONE head member of the reward stage (`flowrl.reward.head`, `reward.head` settings: the
  frozen prompt embedding from the stage's cache, the structured flow view), trained on all n rows
  for at least as many optimizer steps as `head.epochs` over `STEP_ROWS` rows (so a small n is
  not also short of training).

Beside them, the profile's surrogate ensemble as measured by the reward stage
(reports/reward/metrics.json: `ensemble_unseen_spearman`), when that file exists. The point: where
Spearman stops improving as labels grow, i.e. how many triplets the triplets stage should score.

Data: data/triplets/{train,test}.jsonl of FLOWRL_BENCH_ROOT (default: this repository); the test
rows are the reward stage's own (`reward.n_eval` drawn with the params seed).
Run: `python -m bench reward_ceiling` (~2-3 min on one core). Plot: docs/img/reward_ceiling.png.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bench._common import REPO, Row, bench_params, pyplot, save_figure, status
from flowrl.errors import FlowRLError
from flowrl.reward.train import held_out_rows, read_split, regression_metrics

TARGET = 0.9
SIZES = (1250, 2500, 5000, 10000, 20000, 40000)
STEP_ROWS = 20_000  # a head member on fewer rows gets more epochs: at least the optimizer steps of 20,000 rows
REPEATS = 1  # row draws per size
SKLEARN_MAX_ROWS = 5000


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def _flow_tokens(text: str) -> list[str]:
    return re.findall(r"[^\s=@]+", text)


def flow_mean(train: list[dict], test: list[dict]) -> np.ndarray:
    """Each test row's prediction: the mean training score of its flow (the overall mean for flows never seen)."""
    by_flow: dict[str, list[float]] = defaultdict(list)
    for row in train:
        by_flow[row["flow"]].append(row["score"])
    overall = float(np.mean([row["score"] for row in train]))
    return np.array([np.mean(by_flow[r["flow"]]) if r["flow"] in by_flow else overall for r in test])


class BagOfWords:
    """Binary features: the prompt's most frequent words and the flow's tokens (fit on all training rows)."""

    def __init__(self, rows: list[dict], n_words: int = 300):
        from sklearn.feature_extraction.text import CountVectorizer

        def vectorizer(tokenize, **kw):
            return CountVectorizer(tokenizer=tokenize, lowercase=False, binary=True, token_pattern=None, **kw)

        self.prompt = vectorizer(_words, max_features=n_words).fit([r["prompt"] for r in rows])
        self.flow = vectorizer(_flow_tokens, min_df=3).fit([r["flow"] for r in rows])

    def __call__(self, rows: list[dict]) -> np.ndarray:
        from scipy.sparse import hstack

        return hstack(
            [self.prompt.transform([r["prompt"] for r in rows]), self.flow.transform([r["flow"] for r in rows])]
        ).toarray()


def head_learner(cfg, root: Path, train: list[dict], seed: int):
    """rows -> test predictions of one head member trained as the reward stage trains its members."""
    import torch

    from flowrl.reward.features import FeatureSpace, parse_flow
    from flowrl.reward.head import Featurizer, HeadNet, member_arch, train_head
    from flowrl.reward.prompt_cache import PromptEmbedder
    from flowrl.reward.train import PROMPT_CACHE

    embedder = PromptEmbedder(cfg, cfg.head.prompt_max_length, root / "models/reward" / PROMPT_CACHE)

    def fit_predict(rows: list[dict], test: list[dict]) -> np.ndarray:
        space = FeatureSpace.fit(
            [v for v in map(parse_flow, sorted({r["flow"] for r in rows})) if v is not None],
            sorted({r["prompt"] for r in rows}),
            cfg.head.min_count,
        )
        featurizer = Featurizer(space, embedder)
        data = featurizer.transform([r["prompt"] for r in rows], [r["flow"] for r in rows])
        torch.manual_seed(seed)
        net = HeadNet(**member_arch(cfg.head, 0, space.n_tokens, data.dense.shape[1]))
        head_cfg = cfg.head.model_copy(
            update={"epochs": max(cfg.head.epochs, -(-cfg.head.epochs * STEP_ROWS // len(rows)))}
        )
        train_head(net, data, torch.tensor([float(r["score"]) for r in rows]), head_cfg, seed)
        b = featurizer.transform([r["prompt"] for r in test], [r["flow"] for r in test])
        with torch.inference_mode():
            return net(b.ids, b.weights, b.dense).numpy()

    return fit_predict


def learning_curve(
    train: list[dict],
    test: list[dict],
    sizes: tuple[int, ...] = SIZES,
    repeats: int = REPEATS,
    seed: int = 0,
    head=None,
) -> dict:
    """{learner: {n_rows: mean held-out Spearman over `repeats` draws}}, sizes above len(train) dropped, all rows added.

    Args:
        head: optional `head_learner(...)`: (rows, test) -> predictions.
    """
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.linear_model import Ridge

    features = BagOfWords(train)
    x_test, true = features(test), np.array([r["score"] for r in test])
    learners = {
        "ridge": lambda: Ridge(alpha=3.0),
        "gbm": lambda: HistGradientBoostingRegressor(max_iter=300, learning_rate=0.05, random_state=seed),
    }
    seen = {r["flow"] for r in train}
    by_flow = any(r["flow"] in seen for r in test)  # else flow_mean predicts a constant: no Spearman
    curve: dict[str, dict[str, float]] = {
        name: {} for name in (*(("flow_mean",) if by_flow else ()), *learners, *(("head",) if head else ()))
    }
    plan = [n for n in sizes if n < len(train)] + [len(train)]
    for n in tqdm(plan, desc="training rows", unit="size"):
        draws = 1 if n == len(train) else repeats
        found: dict[str, list[float]] = defaultdict(list)
        for k in range(draws):
            rows = random.Random(seed + k).sample(train, n)
            if by_flow:
                found["flow_mean"].append(regression_metrics(flow_mean(rows, test), true)["spearman"])
            if n <= SKLEARN_MAX_ROWS:
                x, y = features(rows), np.array([r["score"] for r in rows])
                for name, make in learners.items():
                    found[name].append(regression_metrics(make().fit(x, y).predict(x_test), true)["spearman"])
            if head:
                found["head"].append(regression_metrics(head(rows, test), true)["spearman"])
        for name, values in found.items():
            curve[name][str(n)] = float(np.nanmean(values))
    return curve


def rows_to_reach(curve: dict[str, float], target: float = TARGET) -> int | None:
    """Fewest measured training rows whose Spearman reaches `target` (None: none does)."""
    reached = [int(n) for n, rho in curve.items() if rho >= target]
    return min(reached) if reached else None


def _triplets(root: Path, cfg, seed: int) -> tuple[list[dict], list[dict]]:
    """(train rows, the reward stage's own held-out rows) of the run at `root`."""
    path = root / "data/triplets/train.jsonl"
    if not path.exists():
        raise SystemExit(
            f"{path} not found: build the triplets first (`dvc repro triplets`) or point FLOWRL_BENCH_ROOT at a run that has them"
        )
    try:
        return read_split(root, "train"), held_out_rows(root, cfg, seed)
    except FlowRLError as exc:
        raise SystemExit(str(exc)) from None


def main() -> dict:
    """Measure the learning curves, plot them beside the surrogate's figure, return the figures."""
    params = bench_params()
    root = Path(os.environ.get("FLOWRL_BENCH_ROOT", REPO))
    train, test = _triplets(root, params.reward, params.seed)
    unseen = [r for r in test if r.get("flow_split") == "unseen"]
    test = unseen or test
    head = head_learner(params.reward, root, train, params.seed) if params.reward.member == "head" else None
    curve = learning_curve(train, test, head=head)
    surrogate = None
    metrics_path = root / "reports/reward/metrics.json"
    if metrics_path.exists():
        m = json.loads(metrics_path.read_text())
        members = [v for k, v in m.items() if k.startswith("member_") and k.endswith("_spearman")]
        surrogate = {
            "rows_per_member": m.get("n_train_rows", params.reward.n_train),
            "epochs": params.reward.head.epochs if params.reward.member == "head" else params.reward.epochs,
            "ensemble_spearman": m.get("ensemble_unseen_spearman", m["ensemble_spearman"]),
            "member_spearman_mean": float(np.mean(members)) if members else float("nan"),
        }
    for name, points in curve.items():
        print(name, ", ".join(f"{n}: {rho:.2f}" for n, rho in points.items()))
    plot_curve(
        curve,
        surrogate,
        f"{len(test)} held-out pairs{' (unseen flows)' if unseen else ''}, {len(train)} training triplets",
    )
    return {
        "profile": params.profile,
        "n_train_available": len(train),
        "n_test": len(test),
        "test_unseen_flows": bool(unseen),
        "target": TARGET,
        "curve": curve,
        "rows_to_target": {name: rows_to_reach(points) for name, points in curve.items()},
        "surrogate": surrogate,
        "plot": "docs/img/reward_ceiling.png",
    }


def plot_curve(curve: dict, surrogate: dict | None, title: str) -> None:
    """docs/img/reward_ceiling.png: Spearman by training rows per learner, the stage's ensemble as a star."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name, points in curve.items():
        if any(np.isfinite(v) for v in points.values()):
            ax.plot([int(n) for n in points], list(points.values()), marker="o", label=name)
    if surrogate and surrogate["rows_per_member"]:
        ax.scatter(
            [surrogate["rows_per_member"]],
            [surrogate["ensemble_spearman"]],
            marker="*",
            s=140,
            color="k",
            zorder=3,
            label=f"reward-stage ensemble ({surrogate['rows_per_member']:.0f} training triplets)",
        )
    ax.axhline(TARGET, ls="--", color="grey", lw=1, label=f"target {TARGET}")
    ticks = sorted({int(n) for points in curve.values() for n in points})
    ax.set(xscale="log", xlabel="training triplets", ylabel="held-out Spearman vs scorer", ylim=(0, 1), title=title)
    ax.set_xticks(ticks, [f"{n / 1000:g}k" for n in ticks])
    ax.minorticks_off()
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7, loc="lower right")
    save_figure(fig, "reward_ceiling.png")


def rows(f: dict) -> list[Row]:
    """The report's table for this bench."""
    out: list[Row] = [
        ("held-out pairs; training triplets available", f"{f['n_test']}; {f['n_train_available']}", "", "")
    ]
    for name, points in f["curve"].items():
        curve = ", ".join(f"{n}: {rho:.2f}" for n, rho in points.items())
        need = f["rows_to_target"][name]
        out.append((f"{name}: Spearman by training rows", curve, f">= {f['target']}", status(need is not None)))
    s = f.get("surrogate")
    if s:
        out.append(
            (
                f"reward-stage ensemble, {s['rows_per_member']:.0f} training triplets x {s['epochs']} epochs",
                f"{s['ensemble_spearman']:.2f} (members {s['member_spearman_mean']:.2f})",
                f">= {f['target']}",
                status(s["ensemble_spearman"] >= f["target"]),
            )
        )
    return out


if __name__ == "__main__":
    main()
