"""One surrogate reward model: input format, batched prediction, and training with HF Trainer.

Training is transformers' `Trainer` on a regression head (MSE, AdamW, bf16 autocast as configured; on the device
of the `device` setting, fp32 master weights),
checkpointing every epoch so a killed run resumes from its last epoch.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm
from transformers import PreTrainedModel, Trainer, TrainerCallback, TrainingArguments
from transformers.tokenization_utils_base import PreTrainedTokenizerBase
from transformers.trainer_utils import get_last_checkpoint

from flowrl.params.model import RewardConfig
from flowrl.runtime.device import autocast as device_autocast
from flowrl.runtime.trainer_defaults import common_trainer_kwargs

TEMPLATE = "[PROMPT] {prompt} [FLOW] {flow}"


def format_pair(prompt: str, flow: str) -> str:
    """The surrogate's input text (paper A.6.2).

    >>> format_pair("a cat", "ckpt sdxl")
    '[PROMPT] a cat [FLOW] ckpt sdxl'
    """
    return TEMPLATE.format(prompt=prompt, flow=flow)


class PairDataset(Dataset):
    """(prompt, flow, score) rows as '[PROMPT] p [FLOW] f' texts with float labels."""

    def __init__(self, prompts: Sequence[str], flows: Sequence[str], scores: Sequence[float]):
        self.texts = [format_pair(p, f) for p, f in zip(prompts, flows, strict=True)]
        self.scores = [float(s) for s in scores]

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, i: int) -> dict:
        return {"text": self.texts[i], "label": self.scores[i]}


class PairCollator:
    """Tokenise a batch of PairDataset items with dynamic padding, cut at `max_length`."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, max_length: int):
        self.tokenizer, self.max_length = tokenizer, max_length

    def __call__(self, items: list[dict]) -> dict:
        batch = self.tokenizer(
            [it["text"] for it in items], truncation=True, max_length=self.max_length, padding=True, return_tensors="pt"
        )
        batch["labels"] = torch.tensor([it["label"] for it in items], dtype=torch.float32)
        return batch


@torch.no_grad()
def predict_texts(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    max_length: int,
    batch_size: int = 64,
    bf16: bool = True,
    desc: str | None = None,
) -> np.ndarray:
    """Scores (len(texts),) of one surrogate; inputs are sorted by length so batches pad little.

    Args:
        desc: tqdm label; None shows no progress bar.
    """
    model.eval()
    device = next(model.parameters()).device
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.empty(len(texts), dtype=np.float32)
    starts = range(0, len(texts), batch_size)
    for start in tqdm(starts, desc=desc, unit="batch", disable=desc is None or len(starts) < 2):
        idx = order[start : start + batch_size]
        enc = tokenizer(
            [texts[i] for i in idx], truncation=True, max_length=max_length, padding=True, return_tensors="pt"
        ).to(device)
        with device_autocast(device, bf16):  # CPU: as configured; a bf16 GPU: always (flowrl.runtime.device)
            logits = model(**enc).logits
        out[idx] = logits.float().reshape(-1).cpu().numpy()
    return out


def training_args(cfg: RewardConfig, output_dir: Path, seed: int, logging_steps: int = 5) -> TrainingArguments:
    """Trainer settings from the `reward` section: AdamW at cfg.learning_rate, a checkpoint per epoch."""
    return TrainingArguments(
        **common_trainer_kwargs(output_dir, seed, cfg.bf16, logging_steps, cfg.gradient_checkpointing),
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay,
        lr_scheduler_type="constant",  # paper: plain Adam at 8e-5
        save_strategy="epoch",
        save_total_limit=1,
        save_only_model=False,
        logging_strategy="steps",
        remove_unused_columns=False,
    )


def train_surrogate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    data: PairDataset,
    cfg: RewardConfig,
    work_dir: Path,
    seed: int,
    callbacks: Sequence[TrainerCallback] = (),
) -> dict[str, float]:
    """Fit `model` on `data` (MSE), resuming from the last epoch checkpoint in `work_dir`.

    Returns:
        {"first_loss", "final_loss", "train_samples_per_second", "resumed_from_step"}.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    last = get_last_checkpoint(str(work_dir))
    steps = -(-len(data) // cfg.batch_size) * cfg.epochs
    trainer = Trainer(
        model=model,
        args=training_args(cfg, work_dir, seed, logging_steps=max(1, steps // 10)),
        train_dataset=data,
        data_collator=PairCollator(tokenizer, cfg.max_length),
        callbacks=list(callbacks),
    )
    result = trainer.train(resume_from_checkpoint=last)
    losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    return {
        "first_loss": float(losses[0]) if losses else float("nan"),
        "final_loss": float(losses[-1]) if losses else float(result.training_loss),
        "train_samples_per_second": float(result.metrics.get("train_samples_per_second", float("nan"))),
        "resumed_from_step": float(Path(last).name.split("-")[-1]) if last else 0.0,
    }


def clear_checkpoints(work_dir: Path) -> None:
    """Remove a finished model's epoch checkpoints."""
    shutil.rmtree(work_dir, ignore_errors=True)
