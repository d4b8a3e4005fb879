"""Settings every Hugging Face trainer of the project shares (SFT, reward surrogates, GRPO)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flowrl.runtime.device import trainer_kwargs


def common_trainer_kwargs(output_dir: Path, seed: int, bf16: bool, logging_steps: int,
                          gradient_checkpointing: bool = False) -> dict[str, Any]:
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
