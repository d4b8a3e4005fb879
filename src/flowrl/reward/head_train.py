"""Train (or resume) an ensemble of head members over cached features.

Features are computed once for all rows (the prompt embeddings come from the on-disk cache);
each member then trains on its own `reward.split` share in seconds. A finished member is saved
at once with a fingerprint of its data and settings, so a killed stage keeps it on rerun.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from flowrl.io import write_json
from flowrl.params.model import RewardConfig
from flowrl.reward.head import FEATURES_FILE, Featurizer, HeadNet, member_arch, save_member, train_head, write_head_spec
from flowrl.reward.members import member_fingerprint, train_or_keep_members

# settings that change what a head member learns; a finished member trained under others is retrained
HEAD_FIELDS = ("member", "source", "model", "tiny", "head", "split", "n_train")


def train_head_ensemble(
    folder: Path,
    rows: Sequence[dict],
    cfg: RewardConfig,
    n_models: int,
    featurizer: Featurizer,
    seed: int,
    splits: Sequence[np.ndarray],
    cache: str | None = None,
) -> list[dict]:
    """Train (or resume) `n_models` head members on `rows` ({"prompt","flow","score"}) into `folder`.

    Args:
        splits: row indices per member (`member_splits`).
        cache: the prompt cache's path relative to `folder`, recorded in the spec.
    Returns:
        Per-member training stats.
    """
    folder.mkdir(parents=True, exist_ok=True)
    key = member_fingerprint(rows, cfg, HEAD_FIELDS, n_models, seed)
    data = featurizer.transform([r["prompt"] for r in rows], [r["flow"] for r in rows], progress=True)
    y = torch.tensor([float(r["score"]) for r in rows], dtype=torch.float32)

    def train_member(i: int):
        idx = splits[i]
        if cfg.n_train is not None and len(idx) > cfg.n_train:
            idx = np.random.default_rng(seed + i).choice(idx, cfg.n_train, replace=False)
        idx = torch.as_tensor(idx, dtype=torch.long)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + 7919 * (i + 1))
            net = HeadNet(**member_arch(cfg.head, i, featurizer.space.n_tokens, data.dense.shape[1]))
            stats_i = {
                "n_rows": len(idx),
                "fingerprint": key,
                **train_head(net, data.take(idx), y[idx], cfg.head, seed + i, desc=f"{folder.name} member {i}"),
            }
        return stats_i, lambda tmp: save_member(net, tmp, {})

    all_stats = train_or_keep_members(folder, n_models, key, train_member)
    for stale in folder.glob("member_*"):  # members of an earlier, larger ensemble
        if stale.name.removeprefix("member_").isdigit() and int(stale.name.removeprefix("member_")) >= n_models:
            shutil.rmtree(stale)
    write_json(folder / FEATURES_FILE, featurizer.space.to_dict())
    write_head_spec(folder, n_models, featurizer.embedder, None, cache)
    return all_stats
