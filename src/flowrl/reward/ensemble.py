"""An ensemble of surrogate reward models: mean and population std of their scores (paper eq. 4).

On disk (`models/reward/full`, `models/reward/prefix`): `ensemble.json` (kind, members,
max_length, input template, resolved tau), `tokenizer/`, and one `member_<i>/` per model
(config.json + model.safetensors). `Ensemble.load` reads the spec's `kind` and returns this
class (`finetune`) or a `flowrl.reward.head.HeadEnsemble` (`head`): both have `predict`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from flowrl.io import read_json, write_json
from flowrl.reward.encoder import SPEC_FILE, RewardLoadError
from flowrl.reward.members import MemberEnsemble, member_dir
from flowrl.reward.model import TEMPLATE, format_pair, predict_texts
from flowrl.runtime.device import Placement, load_kwargs, placement

if TYPE_CHECKING:
    from flowrl.reward.head import HeadEnsemble


def load_member(folder: str | Path, where: Placement | None = None) -> PreTrainedModel:
    """One saved surrogate (safetensors), in eval mode, on `where` (None or the CPU: fp32 on the CPU; a bf16 GPU:
    bf16 weights there, see flowrl.runtime.device)."""
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            str(folder), local_files_only=True, **load_kwargs(where)
        )
    except (OSError, ValueError) as exc:
        raise RewardLoadError(
            f"{folder}: not a saved surrogate model ({exc}); rerun the reward stage (dvc repro reward)"
        ) from None
    return model.eval()


class Ensemble(MemberEnsemble):
    """N surrogate models sharing one tokenizer; `predict` gives (mean, population std).

    Attributes:
        tau: the resolved uncertainty cutoff written by the reward stage (None when not resolved).
    """

    kind = "finetune"

    def __init__(
        self,
        members: Sequence[PreTrainedModel],
        tokenizer: PreTrainedTokenizerBase,
        max_length: int,
        batch_size: int = 64,
        bf16: bool = True,
        tau: float | None = None,
    ):
        super().__init__(members, tau)
        self.tokenizer, self.max_length, self.batch_size, self.bf16 = tokenizer, max_length, batch_size, bf16

    def member_scores(self, prompts: Sequence[str], flows: Sequence[str], progress: bool = False) -> torch.Tensor:
        """Scores of every member, shape (N, B)."""
        if len(prompts) != len(flows):
            raise ValueError(f"{len(prompts)} prompts but {len(flows)} flows; pass one flow per prompt")
        texts = [format_pair(p, f) for p, f in zip(prompts, flows)]
        rows = [
            predict_texts(
                m,
                self.tokenizer,
                texts,
                self.max_length,
                self.batch_size,
                self.bf16,
                desc=f"member {i}" if progress else None,
            )
            for i, m in enumerate(self.members)
        ]
        return torch.from_numpy(np.stack(rows)) if rows else torch.empty(0, 0)

    def predict_with_members(
        self, prompts: Sequence[str], flows: Sequence[str], progress: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(member scores (N, B), mean (B,), std (B,)) from one pass."""
        scores = self.member_scores(prompts, flows, progress)
        return scores, scores.mean(dim=0), scores.std(dim=0, correction=0)

    def save(self, folder: str | Path) -> Path:
        """Write the members (safetensors + config.json), the tokenizer and `ensemble.json`."""
        folder = Path(folder)
        for i, m in enumerate(self.members):
            m.save_pretrained(member_dir(folder, i))
        self.tokenizer.save_pretrained(folder / "tokenizer")
        write_spec(folder, len(self.members), self.max_length, self.batch_size, self.bf16, self.tau)
        return folder

    @classmethod
    def load(cls, folder: str | Path, where: Placement | str | None = None) -> Ensemble | HeadEnsemble:
        """Load an ensemble written by `save` or by the reward stage, of whichever kind the spec names.

        Args:
            where: device of the fine-tuned members (flowrl.runtime.device; None: the `device` setting in force). Head
                members are small MLPs over cached features and stay on the CPU.
        """
        folder = Path(folder)
        if not (folder / SPEC_FILE).exists():
            raise RewardLoadError(
                f"{folder}: no {SPEC_FILE}, so not a reward ensemble; run the reward stage (dvc repro reward)"
            )
        spec = read_json(folder / SPEC_FILE)
        kind = spec.get("kind", "finetune")  # specs written before head members existed have no kind
        if kind == "head":
            from flowrl.reward.head import HeadEnsemble

            return HeadEnsemble.load(folder)
        if kind != "finetune":
            raise RewardLoadError(
                f"{folder / SPEC_FILE}: unknown ensemble kind {kind!r} (head or finetune); rerun the reward stage (dvc repro reward)"
            )
        tokenizer = AutoTokenizer.from_pretrained(str(folder / "tokenizer"), local_files_only=True)
        where = where if isinstance(where, Placement) else placement(where)
        members = [load_member(member_dir(folder, i), where) for i in range(int(spec["n_members"]))]
        return cls(
            members, tokenizer, int(spec["max_length"]), int(spec["batch_size"]), bool(spec["bf16"]), spec.get("tau")
        )


def write_spec(
    folder: Path, n_members: int, max_length: int, batch_size: int, bf16: bool, tau: float | None = None
) -> Path:
    """Write `ensemble.json` describing how to rebuild and feed the ensemble."""
    spec = {
        "kind": "finetune",
        "n_members": n_members,
        "max_length": max_length,
        "batch_size": batch_size,
        "bf16": bf16,
        "template": TEMPLATE,
        "tau": tau,
    }
    return write_json(folder / SPEC_FILE, spec)


def set_spec_tau(folder: Path, tau: float) -> Path:
    """Record the resolved uncertainty cutoff in an ensemble's `ensemble.json` (either kind)."""
    spec = read_json(folder / SPEC_FILE)
    spec["tau"] = float(tau)
    return write_json(folder / SPEC_FILE, spec)
