"""What the two kinds of reward ensemble share: each member's share of the rows (`member_splits`), members saved in
`member_<i>/` folders, trained (or resumed) one by one by `train_or_keep_members`, and `MemberEnsemble`, the members
with the resolved tau and `predict`.

A finished member is saved at once, with a fingerprint of its data and settings in `train_stats.json`, so a
killed stage keeps it on rerun; a member is written into a temporary folder and renamed into place, so a kill
never leaves half a member.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel

from flowrl.io import read_json, write_json
from flowrl.reward.encoder import RewardLoadError

STATS_FILE = "train_stats.json"  # written into a member folder when the member finished training

# Trains member i; returns its stats and how to save it into a folder.
TrainMember = Callable[[int], tuple[dict, Callable[[Path], Any]]]


def member_fingerprint(rows: Sequence[dict], cfg: BaseModel, fields: Sequence[str], n_models: int, seed: int) -> str:
    """Hash of the rows ({"prompt","flow","score"}), the settings `fields` of `cfg` that change what a member learns,
    the ensemble size and the seed: what a finished member depends on (the key of `train_or_keep_members`)."""
    h = hashlib.sha256(
        json.dumps([cfg.model_dump(mode="json", include=set(fields)), n_models, seed], sort_keys=True).encode()
    )
    for row in rows:
        h.update(json.dumps([row["prompt"], row["flow"], row["score"]]).encode())
    return h.hexdigest()[:16]


def finished_stats(member: Path, key: str) -> dict | None:
    """The training stats of a member folder finished under fingerprint `key`, else None (train it)."""
    path = Path(member) / STATS_FILE
    if path.exists() and (stats := read_json(path)).get("fingerprint") == key:
        return stats
    return None


def member_dir(folder: str | Path, i: int) -> Path:
    """Folder of ensemble member `i`."""
    return Path(folder) / f"member_{i}"


def train_or_keep_members(
    folder: Path, n_models: int, key: str, train_member: TrainMember, trained: Callable[[int], Any] | None = None
) -> list[dict]:
    """Train (or resume) members 0..n_models-1 into `folder`: one finished under fingerprint `key` is kept, any other
    is trained by `train_member(i)` and saved atomically with its stats; `trained(i)` runs once it is in place.

    Returns:
        Per-member training stats, in member order.
    """
    all_stats = []
    for i in range(n_models):
        final = member_dir(folder, i)
        if (done := finished_stats(final, key)) is not None:
            all_stats.append(done)  # finished before a kill: keep it
            continue
        stats_i, save = train_member(i)
        tmp = folder / f".member_{i}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        save(tmp)
        write_json(tmp / STATS_FILE, stats_i)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        if trained is not None:
            trained(i)
        all_stats.append(stats_i)
    return all_stats


class MemberEnsemble:
    """N members and the resolved uncertainty cutoff; `predict` gives (mean, population std) from the subclass's
    `predict_with_members`.

    Attributes:
        tau: the resolved uncertainty cutoff written by the reward stage (None when not resolved).
    """

    kind: str

    def __init__(self, members: Sequence, tau: float | None = None):
        if not members:
            raise RewardLoadError("an ensemble needs at least one member; set reward.n_models >= 1")
        self.members, self.tau = list(members), tau

    def __len__(self) -> int:
        return len(self.members)

    def predict_with_members(
        self, prompts: Sequence[str], flows: Sequence[str], progress: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(member scores (N, B), mean (B,), std (B,)) from one pass."""
        raise NotImplementedError

    def predict(
        self, prompts: Sequence[str], flows: Sequence[str], progress: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Ensemble mean and population std (ddof 0, paper eq. 4), each shape (B,).

        Args:
            progress: show a progress bar per member (for long runs).
        """
        _, mean, std = self.predict_with_members(prompts, flows, progress)
        return mean, std


def member_splits(n_rows: int, n_models: int, method: str, seed: int) -> list[np.ndarray]:
    """Row indices each member trains on.

    kfold: member i leaves out fold i of n_models (all rows when n_models is 1);
    bootstrap: n_rows draws with replacement per member.
    """
    rng = np.random.default_rng(seed)
    if method == "bootstrap":
        return [rng.integers(0, n_rows, n_rows) for _ in range(n_models)]
    if n_models == 1:
        return [rng.permutation(n_rows)]
    folds = np.array_split(rng.permutation(n_rows), n_models)
    return [np.concatenate([f for j, f in enumerate(folds) if j != i]) for i in range(n_models)]
