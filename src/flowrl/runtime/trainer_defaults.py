"""Settings every Hugging Face trainer of the project shares (SFT, reward surrogates, GRPO)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from flowrl.runtime.device import trainer_kwargs


def common_trainer_kwargs(
    output_dir: Path, seed: int, bf16: bool, logging_steps: int, gradient_checkpointing: bool = False
) -> dict[str, Any]:
    """The CPU when the `device` setting resolves to it (flowrl.runtime.device; accelerate places the model on GPUs),
    bf16 autocast as configured, seeded data order, no external loggers (MLflow runs are opened by the stage, not
    by the trainer), in-process data loading, a progress bar.

    Args:
        gradient_checkpointing: recompute activations in backward (non-reentrant, so LoRA and frozen inputs work);
            off for small models, where memory is not the limit and speed is.
    """
    return dict(
        output_dir=str(output_dir),
        bf16=bf16,
        **trainer_kwargs(),
        gradient_checkpointing=gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if gradient_checkpointing else None,
        logging_steps=logging_steps,
        report_to="none",
        seed=seed,
        data_seed=seed,
        dataloader_num_workers=0,
        disable_tqdm=False,
    )


class TrainingSection(Protocol):
    """The fields of a params section that trains with a Hugging Face trainer (`sft`, `grpo`)."""

    max_steps: int
    num_epochs: float
    batch_size: int
    grad_accum: int
    learning_rate: float
    weight_decay: float
    save_steps: int
    logging_steps: int
    gradient_checkpointing: bool


# trainer argument -> the field of a training section that sets it (named alike in `sft` and `grpo`)
SECTION_SCHEDULE = {
    "max_steps": "max_steps",
    "num_train_epochs": "num_epochs",
    "per_device_train_batch_size": "batch_size",
    "gradient_accumulation_steps": "grad_accum",
    "learning_rate": "learning_rate",
    "weight_decay": "weight_decay",
    "save_steps": "save_steps",
}


def section_trainer_kwargs(cfg: TrainingSection, output_dir: Path, seed: int, bf16: bool) -> dict[str, Any]:
    """`common_trainer_kwargs` and the schedule every training section names alike (SECTION_SCHEDULE: steps or
    epochs, per-device batch, accumulation, learning rate, weight decay, checkpoint interval), the last two
    checkpoints kept. The one builder of the SFT and GRPO trainers' arguments; each adds its own."""
    return {
        **common_trainer_kwargs(output_dir, seed, bf16, cfg.logging_steps, cfg.gradient_checkpointing),
        **{arg: getattr(cfg, field) for arg, field in SECTION_SCHEDULE.items()},
        "save_total_limit": 2,
    }
