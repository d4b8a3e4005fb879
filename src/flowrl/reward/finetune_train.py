"""Train (or resume) an ensemble of fine-tuned encoder members (`reward.member: finetune`, the paper's).

Each member fine-tunes a fresh surrogate on its own `reward.split` share of the train triplets, checkpointing every
epoch into `.work_<i>/` (resumed from when a killed stage reruns with the same data and settings); a finished member
is kept under a fingerprint of its data and settings (flowrl.reward.members). Head members: flowrl.reward.head_train.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from transformers import TrainerCallback
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from flowrl.encoding.vocab import init_from_pieces
from flowrl.params.model import RewardConfig
from flowrl.reward.encoder import build_surrogate
from flowrl.reward.ensemble import write_spec
from flowrl.reward.members import member_fingerprint, member_splits, train_or_keep_members
from flowrl.reward.model import PairDataset, clear_checkpoints, train_surrogate

# settings that change what a member learns; a finished member trained under others is retrained
TRAINING_FIELDS = (
    "source",
    "model",
    "tiny",
    "add_flow_tokens",
    "split",
    "n_train",
    "epochs",
    "batch_size",
    "learning_rate",
    "weight_decay",
    "max_length",
    "bf16",
)


def _member_rows(rows: Sequence[dict], idx: np.ndarray, cap: int | None, seed: int) -> list[dict]:
    if cap is not None and len(idx) > cap:
        idx = np.random.default_rng(seed).choice(idx, cap, replace=False)
    return [rows[i] for i in idx]


def train_ensemble(
    folder: Path,
    rows: Sequence[dict],
    cfg: RewardConfig,
    n_models: int,
    tokenizer: PreTrainedTokenizerBase,
    seed: int,
    callbacks: Sequence[TrainerCallback] = (),
    pieces: dict[str, list[int]] | None = None,
) -> list[dict]:
    """Train (or resume) `n_models` surrogates on `rows` ({"prompt","flow","score"}) into `folder`.

    `pieces`: flow tokens added to the tokenizer and their base pieces (`token_pieces`); each new
    member's rows for them start as the mean of their pieces' rows.

    Returns:
        Per-member training stats (first/final loss, samples/s, resumed step).
    """
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(folder / "tokenizer")
    splits = member_splits(len(rows), n_models, cfg.split, seed)
    key = member_fingerprint(rows, cfg, TRAINING_FIELDS, n_models, seed)

    def train_member(i: int):
        work = folder / f".work_{i}"
        if (work / "fingerprint").exists() and (work / "fingerprint").read_text() != key:
            clear_checkpoints(work)  # checkpoints of other data or settings: start afresh
        work.mkdir(parents=True, exist_ok=True)
        (work / "fingerprint").write_text(key)
        data_rows = _member_rows(rows, splits[i], cfg.n_train, seed + i)
        data = PairDataset(
            [r["prompt"] for r in data_rows], [r["flow"] for r in data_rows], [r["score"] for r in data_rows]
        )
        model = build_surrogate(cfg, len(tokenizer), seed + 7919 * (i + 1))
        if pieces:
            init_from_pieces(model, tokenizer, pieces)
        stats_i = {
            "n_rows": len(data),
            "fingerprint": key,
            **train_surrogate(model, tokenizer, data, cfg, work, seed + i, callbacks),
        }
        return stats_i, model.save_pretrained

    all_stats = train_or_keep_members(
        folder, n_models, key, train_member, trained=lambda i: clear_checkpoints(folder / f".work_{i}")
    )
    write_spec(folder, n_models, cfg.max_length, cfg.eval_batch_size, cfg.bf16)
    return all_stats
