"""Train one surrogate member per setting and print its held-out metrics (a JSON line each).

Is the cpu surrogate's low Spearman a tuning problem? This trains single members as the reward
stage does (`flowrl.reward.model.train_surrogate`, flow tokens added and initialised from their
pieces when `reward.add_flow_tokens`) on `--rows` training triplets, for each learning rate, and
scores the reward stage's own held-out rows. `--layers` keeps only the first k encoder layers
(a cheaper encoder that affords more rows in the same time). Results: docs/reward.md.

Usage: .venv/bin/python scripts/reward_member_sweep.py --root RUN --rows 400 --lr 8e-5 --lr 3e-4 [--layers 3]
(RUN: a folder where `dvc repro triplets encode` ran; ~4 min per member at 400 rows x 2 epochs on 2 cores.)
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import numpy as np

from flowrl.encoding.vocab import init_from_pieces
from flowrl.params.model import load_params
from flowrl.reward.encoder import build_surrogate
from flowrl.reward.model import PairDataset, format_pair, predict_texts, train_surrogate
from flowrl.reward.train import held_out_rows, read_split, regression_metrics, reward_tokenizer


def keep_layers(model, k: int | None) -> None:
    """Drop every BERT encoder layer after the first `k` (None keeps all)."""
    if k is not None:
        model.bert.encoder.layer = model.bert.encoder.layer[:k]
        model.config.num_hidden_layers = k


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path("."), help="run folder with data/triplets and data/encode")
    ap.add_argument("--rows", type=int, default=400, help="training triplets for the member")
    ap.add_argument("--epochs", type=int, default=None, help="default: reward.epochs")
    ap.add_argument("--lr", type=float, action="append", help="learning rate(s); default: reward.learning_rate")
    ap.add_argument("--layers", type=int, default=None, help="keep only the first k encoder layers")
    args = ap.parse_args()
    params = load_params(args.root / "params.yaml")
    cfg0, seed = params.reward, params.seed
    train, test = (
        read_split(args.root, "train"),
        held_out_rows(args.root, cfg0, seed),
    )  # the reward stage's held-out rows
    rows = random.Random(0).sample(train, min(args.rows, len(train)))
    tokenizer, pieces = reward_tokenizer(cfg0, args.root)
    texts, true = [format_pair(r["prompt"], r["flow"]) for r in test], np.array([r["score"] for r in test])
    data = PairDataset([r["prompt"] for r in rows], [r["flow"] for r in rows], [r["score"] for r in rows])
    for lr in args.lr or [cfg0.learning_rate]:
        cfg = cfg0.model_copy(update={"learning_rate": lr, "epochs": args.epochs or cfg0.epochs, "n_train": len(rows)})
        model = build_surrogate(cfg, len(tokenizer), 7919)  # the regression head's seed
        if pieces:
            init_from_pieces(model, tokenizer, pieces)
        keep_layers(model, args.layers)
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as work:  # never resume another setting's checkpoint
            trained = train_surrogate(model, tokenizer, data, cfg, Path(work), seed)
        seconds = time.perf_counter() - start
        pred = predict_texts(model, tokenizer, texts, cfg.max_length, cfg.eval_batch_size, cfg.bf16)
        print(
            json.dumps(
                {
                    "rows": len(rows),
                    "epochs": cfg.epochs,
                    "lr": lr,
                    "layers": args.layers or model.config.num_hidden_layers,
                    "train_s": round(seconds),
                    "samples_per_s": trained["train_samples_per_second"],
                    **regression_metrics(pred, true),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
