"""Head members: a small MLP over cached features (frozen prompt embedding, prompt words, flow view).

`Featurizer` turns (prompt, flow) pairs into tensors; `HeadNet` is one member; `HeadEnsemble`
has the same `predict(prompts, flows) -> (mean, std)` API as the fine-tuned `Ensemble`.
A flow that does not decode gets mean NaN and std inf: `ShapedReward` gives it the validity
penalty (`reward.invalid_reward`), so GRPO never sees an exception from here.

On disk (`models/reward/{full,prefix}`): `ensemble.json` (kind "head", members, resolved tau,
prompt cache path), `features.json` (the fitted `FeatureSpace`), and per member
`member_<i>/model.safetensors` + `member_<i>/config.json`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from flowrl.io import read_json, write_json
from flowrl.params.model import HeadConfig, RewardConfig
from flowrl.reward.encoder import SPEC_FILE, RewardLoadError
from flowrl.reward.features import UNKNOWN, FeatureSpace, pack_rows, parse_flow
from flowrl.reward.members import MemberEnsemble, member_dir
from flowrl.reward.prompt_cache import PromptEmbedder

FEATURES_FILE = "features.json"
CACHE_FILE = "prompt_embeddings.safetensors"


@dataclass
class Batch:
    """Model inputs for B pairs: padded token ids/weights (B, L), dense (B, D + K), readable flow (B,)."""

    ids: torch.Tensor
    weights: torch.Tensor
    dense: torch.Tensor
    ok: torch.Tensor

    def __len__(self) -> int:
        return len(self.ok)

    def take(self, idx: torch.Tensor | np.ndarray) -> Batch:
        idx = torch.as_tensor(idx, dtype=torch.long)
        return Batch(self.ids[idx], self.weights[idx], self.dense[idx], self.ok[idx])


class Featurizer:
    """(prompt, flow) pairs -> `Batch`, with parsed flows memoised (GRPO re-scores the same prefixes)."""

    def __init__(self, space: FeatureSpace, embedder: PromptEmbedder, memo_size: int = 100_000):
        self.space, self.embedder, self.memo_size = space, embedder, memo_size
        self._rows: dict[str, tuple[list[int], list[float], np.ndarray] | None] = {}

    def flow_row(self, flow: str) -> tuple[list[int], list[float], np.ndarray] | None:
        """(token ids, weights, numbers) of a flow; None when it does not decode."""
        if flow not in self._rows:
            if len(self._rows) >= self.memo_size:
                self._rows.clear()
            view = parse_flow(flow)
            self._rows[flow] = None if view is None else self.space.flow_row(view)
        return self._rows[flow]

    def transform(self, prompts: Sequence[str], flows: Sequence[str], progress: bool = False) -> Batch:
        if len(prompts) != len(flows):
            raise ValueError(f"{len(prompts)} prompts but {len(flows)} flows; pass one flow per prompt")
        emb = self.embedder.embed(prompts, progress=progress)
        prompt_ids = {p: self.space.prompt_row(p) for p in set(prompts)}
        rows, numbers, ok = [], np.zeros((len(flows), len(self.space.slots)), dtype=np.float32), []
        for b, (prompt, flow) in enumerate(
            tqdm(list(zip(prompts, flows)), desc="flow features", unit="pair", disable=not progress)
        ):
            row = self.flow_row(flow)
            ok.append(row is not None)
            ids, weights, nums = row if row is not None else ([], [], numbers[b])
            numbers[b] = nums
            p_ids = prompt_ids[prompt]
            rows.append((ids + p_ids, weights + [1.0] * len(p_ids)))
        ids, weights = pack_rows(rows)
        dense = np.concatenate([emb.reshape(len(prompts), -1), numbers], axis=1)
        return Batch(
            torch.from_numpy(ids),
            torch.from_numpy(weights),
            torch.from_numpy(dense),
            torch.tensor(ok, dtype=torch.bool),
        )


class HeadNet(nn.Module):
    """Multi-hot token weights and dense features -> two linear maps summed -> MLP -> one score.

    The token map is a plain (tokens x hidden) matrix applied to a multi-hot vector built per batch:
    on 2 CPU cores that is faster than an EmbeddingBag with per-token weights.
    """

    def __init__(
        self,
        n_tokens: int,
        n_dense: int,
        hidden: int,
        depth: int,
        dropout: float,
        embed_std: float,
        unknown_std: float = 1.0,
    ):
        super().__init__()
        self.arch = {
            "n_tokens": n_tokens,
            "n_dense": n_dense,
            "hidden": hidden,
            "depth": depth,
            "dropout": dropout,
            "embed_std": embed_std,
            "unknown_std": unknown_std,
        }
        self.tokens = nn.Linear(n_tokens, hidden, bias=False)
        nn.init.normal_(self.tokens.weight, std=embed_std)
        with (
            torch.no_grad()
        ):  # the unknown buckets (ids 1..len(UNKNOWN)) never train: their random rows make members disagree
            self.tokens.weight[:, 1 : 1 + len(UNKNOWN)].normal_(std=unknown_std)
        self.dense = nn.Linear(n_dense, hidden)
        layers: list[nn.Module] = [nn.ReLU(), nn.Dropout(dropout)]
        for _ in range(depth - 1):
            layers += [nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout)]
        self.mlp = nn.Sequential(*layers, nn.Linear(hidden, 1))
        self.register_buffer("y_mean", torch.zeros(()))
        self.register_buffer("y_std", torch.ones(()))

    def standardised(
        self, ids: torch.Tensor, weights: torch.Tensor, dense: torch.Tensor, known_only: bool = False
    ) -> torch.Tensor:
        """Scores (B,) in standardised target units (what training fits).

        Args:
            known_only: drop the unknown buckets (their effect at its prior mean, zero).
        """
        if known_only:
            weights = weights * (ids > len(UNKNOWN)).to(weights.dtype)
        multi_hot = torch.zeros(ids.shape[0], self.tokens.in_features, dtype=dense.dtype).scatter_add_(1, ids, weights)
        multi_hot[:, 0] = 0.0  # padding
        return self.mlp(self.tokens(multi_hot) + self.dense(dense)).squeeze(-1)

    def forward(
        self, ids: torch.Tensor, weights: torch.Tensor, dense: torch.Tensor, known_only: bool = False
    ) -> torch.Tensor:
        """Scores (B,) in the triplets' units."""
        return self.standardised(ids, weights, dense, known_only) * self.y_std + self.y_mean

    def first_layer(
        self, ids: torch.Tensor, weights: torch.Tensor, dense: torch.Tensor, known_only: bool = False, bias: bool = True
    ) -> torch.Tensor:
        """The pre-activation of the first layer (B, hidden) from part of the inputs: it is linear, so the prompt's part
        and the flow's part add up (`score_grid`); `dense` holds the columns of `self.dense` that part owns, in order."""
        if known_only:
            weights = weights * (ids > len(UNKNOWN)).to(weights.dtype)
        multi_hot = torch.zeros(ids.shape[0], self.tokens.in_features, dtype=weights.dtype).scatter_add_(
            1, ids, weights
        )
        multi_hot[:, 0] = 0.0  # padding
        return (
            self.tokens(multi_hot) + dense @ self.dense.weight.T[: dense.shape[1]] + (self.dense.bias if bias else 0.0)
        )


def member_arch(cfg: HeadConfig, i: int, n_tokens: int, n_dense: int) -> dict:
    """Constructor arguments of member `i` (widths cycle through `cfg.hidden`: members differ in shape too)."""
    return {
        "n_tokens": n_tokens,
        "n_dense": n_dense,
        "hidden": cfg.hidden[i % len(cfg.hidden)],
        "depth": cfg.depth,
        "dropout": cfg.dropout,
        "embed_std": cfg.embed_std,
        "unknown_std": cfg.unknown_std,
    }


def train_head(
    net: HeadNet, data: Batch, y: torch.Tensor, cfg: HeadConfig, seed: int, desc: str | None = None
) -> dict[str, float]:
    """Fit `net` on `data` -> `y` (MSE on standardised targets, Adam; weight decay on the dense layers only).

    Returns:
        {"first_loss", "final_loss", "train_samples_per_second"} (losses on standardised targets).
    """
    gen = torch.Generator().manual_seed(seed)
    net.y_mean.fill_(float(y.mean()))
    net.y_std.fill_(float(y.std().clamp(min=1e-6)))
    target = (y - net.y_mean) / net.y_std
    decay = [p for n, p in net.named_parameters() if not n.startswith("tokens.")]
    # the token rows get no decay: a row no training flow used keeps its random init (the unknown bucket)
    opt = torch.optim.Adam(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": net.tokens.parameters(), "weight_decay": 0.0}],
        lr=cfg.learning_rate,
    )
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, cfg.epochs))
    losses, t0 = [], time.perf_counter()
    net.train()
    for _ in tqdm(range(cfg.epochs), desc=desc, unit="epoch", disable=desc is None):
        order, total = torch.randperm(len(data), generator=gen), 0.0
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            b = data.take(idx)
            pred = net.standardised(b.ids, b.weights, b.dense)
            loss = nn.functional.mse_loss(pred, target[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        sched.step()
        losses.append(total / max(len(data), 1))
    net.eval()
    seconds = time.perf_counter() - t0
    return {
        "first_loss": losses[0],
        "final_loss": losses[-1],
        "train_samples_per_second": len(data) * cfg.epochs / max(seconds, 1e-9),
    }


def save_member(net: HeadNet, folder: Path, stats: dict) -> None:
    """Weights (safetensors) and the constructor arguments + training stats (config.json)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(folder / "model.safetensors"))
    write_json(folder / "config.json", {"arch": net.arch, **stats})


def load_member(folder: Path) -> HeadNet:
    """A saved head member, in eval mode."""
    from safetensors.torch import load_file

    try:
        net = HeadNet(**read_json(folder / "config.json")["arch"])
        net.load_state_dict(load_file(str(folder / "model.safetensors")))
    except (OSError, KeyError, TypeError, RuntimeError) as exc:
        raise RewardLoadError(
            f"{folder}: not a saved head member ({exc}); rerun the reward stage (dvc repro reward)"
        ) from None
    return net.eval()


class HeadEnsemble(MemberEnsemble):
    """N head members over one `Featurizer`; `predict` gives (mean, population std), as `Ensemble` does, with NaN
    mean and inf std for unreadable flows.

    The std is over the members' full scores, so the unknown buckets' random rows widen it on novel flows; the mean
    is over their known-only scores (the unknowns' effect at its prior mean, zero), so that noise does not move the
    ranking. Without unknowns the two agree.

    Attributes:
        tau: the resolved uncertainty cutoff written by the reward stage (None when not resolved).
    """

    kind = "head"

    def __init__(
        self, members: Sequence[HeadNet], featurizer: Featurizer, tau: float | None = None, batch_size: int = 4096
    ):
        super().__init__(members, tau)
        self.featurizer, self.batch_size = featurizer, batch_size

    @torch.inference_mode()
    def _scores(
        self, prompts: Sequence[str], flows: Sequence[str], progress: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(known-only, full) scores of every member, each (N, B); NaN for a flow that does not decode."""
        known, full = (torch.full((len(self.members), len(flows)), float("nan")) for _ in range(2))
        for start in range(0, len(flows), self.batch_size):
            batch = self.featurizer.transform(
                prompts[start : start + self.batch_size], flows[start : start + self.batch_size], progress
            )
            nan = torch.full((len(batch),), float("nan"))
            for i, net in enumerate(self.members):
                known[i, start : start + len(batch)] = torch.where(
                    batch.ok, net(batch.ids, batch.weights, batch.dense, known_only=True), nan
                )
                full[i, start : start + len(batch)] = torch.where(
                    batch.ok, net(batch.ids, batch.weights, batch.dense), nan
                )
        return known, full

    @torch.inference_mode()
    def score_grid(
        self, prompts: Sequence[str], flows: Sequence[str], progress: bool = False, chunk: int = 8
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std), each (P, F), of every prompt with every flow, as `predict` gives them for each pair.

        The first layer of a member is linear in its inputs, so the flows' part and the prompts' part are computed once
        and added per pair; only the layers after it run P x F times (SFT's reward pairing scores every training flow
        for every prompt this way: ~100x fewer operations than `predict` on the P x F pairs).
        """
        from flowrl.reward.features import pack_rows

        rows = [self.featurizer.flow_row(f) for f in flows]
        ok = torch.tensor([r is not None for r in rows])
        f_ids, f_w = (torch.from_numpy(a) for a in pack_rows([(r[0], r[1]) if r else ([], []) for r in rows]))
        f_num = torch.from_numpy(
            np.stack([r[2] if r else np.zeros(len(self.featurizer.space.slots), np.float32) for r in rows])
        )
        emb = torch.from_numpy(self.featurizer.embedder.embed(list(prompts), progress=progress))
        p_ids, p_w = (
            torch.from_numpy(a)
            for a in pack_rows([(ids, [1.0] * len(ids)) for ids in map(self.featurizer.space.prompt_row, prompts)])
        )
        known = torch.empty(len(self.members), len(prompts), len(flows))
        full = torch.empty_like(known)
        for i, net in enumerate(
            tqdm(self.members, desc="scoring the prompt x flow grid", unit="member", disable=not progress)
        ):
            n_emb = emb.shape[1]
            for out, known_only in ((known[i], True), (full[i], False)):
                # flow side: its tokens and numbers (the dense columns after the prompt embedding), plus the bias
                flow_side = net.first_layer(
                    f_ids, f_w, torch.cat([torch.zeros(len(flows), n_emb), f_num], 1), known_only
                )
                prompt_side = net.first_layer(p_ids, p_w, emb, known_only, bias=False)
                for start in range(0, len(prompts), chunk):
                    pre = prompt_side[start : start + chunk, None, :] + flow_side[None]
                    out[start : start + chunk] = net.mlp(pre).squeeze(-1) * net.y_std + net.y_mean
        nan = torch.tensor(float("nan"))
        mean = torch.where(ok[None], known.mean(0), nan)
        std = torch.where(ok[None], full.std(0, correction=0), torch.tensor(float("inf")))
        return mean, std

    def member_scores(self, prompts: Sequence[str], flows: Sequence[str], progress: bool = False) -> torch.Tensor:
        """Scores of every member with its unknown buckets, shape (N, B); NaN for a flow that does not decode."""
        return self._scores(prompts, flows, progress)[1]

    def predict_with_members(
        self, prompts: Sequence[str], flows: Sequence[str], progress: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(member scores (N, B), mean (B,), std (B,)) from one pass, as `member_scores` and `predict` give them."""
        known, full = self._scores(prompts, flows, progress)
        mean, std = known.mean(dim=0), full.std(dim=0, correction=0)
        return full, mean, torch.where(torch.isnan(mean), torch.full_like(std, float("inf")), std)

    def save(self, folder: str | Path) -> Path:
        """Write the members, the feature space, the prompt cache and `ensemble.json` into `folder`."""
        folder = Path(folder)
        for i, net in enumerate(self.members):
            save_member(net, member_dir(folder, i), {})
        write_json(folder / FEATURES_FILE, self.featurizer.space.to_dict())
        embedder = self.featurizer.embedder
        embedder.cache_path = folder / CACHE_FILE
        embedder.save()
        write_head_spec(folder, len(self.members), embedder, self.tau, CACHE_FILE)
        return folder

    @classmethod
    def load(cls, folder: str | Path, cfg: RewardConfig | None = None) -> HeadEnsemble:
        """Load a head ensemble written by the reward stage (or `save`)."""
        from flowrl.params.model import RewardConfig as _RewardConfig

        folder = Path(folder)
        spec = read_json(folder / SPEC_FILE)
        encoder_cfg = _RewardConfig.model_validate(spec["prompt_encoder"])
        cache = folder / spec["prompt_cache"] if spec.get("prompt_cache") else None
        embedder = PromptEmbedder(encoder_cfg, int(spec["prompt_max_length"]), cache)
        space = FeatureSpace.from_dict(read_json(folder / FEATURES_FILE), str(folder / FEATURES_FILE))
        members = [load_member(member_dir(folder, i)) for i in range(int(spec["n_members"]))]
        return cls(members, Featurizer(space, embedder), spec.get("tau"))


def write_head_spec(
    folder: Path, n_members: int, embedder: PromptEmbedder, tau: float | None, cache: str | None = None
) -> Path:
    """`ensemble.json` of a head ensemble: what to rebuild its featurizer from, and the resolved tau."""
    spec = {
        "kind": "head",
        "n_members": n_members,
        "tau": tau,
        "prompt_max_length": embedder.max_length,
        "prompt_encoder": embedder.cfg.model_dump(mode="json", include={"source", "model", "tiny"}),
        "prompt_cache": cache,
    }
    return write_json(folder / SPEC_FILE, spec)
