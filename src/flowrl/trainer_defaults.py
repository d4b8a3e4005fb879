"""Settings every Hugging Face trainer of the project shares (SFT, reward surrogates, GRPO)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def common_trainer_kwargs(output_dir: Path, seed: int, bf16: bool, logging_steps: int) -> dict[str, Any]:
    """CPU when there is no GPU, bf16 autocast as configured, seeded data order, no external loggers
    (MLflow runs are opened by the stage, not by the trainer), in-process data loading, a progress bar."""
    return dict(
        output_dir=str(output_dir),
        bf16=bf16,
        use_cpu=not torch.cuda.is_available(),
        gradient_checkpointing=False,  # small models: memory is not the limit, speed is
        logging_steps=logging_steps,
        report_to="none",
        seed=seed,
        data_seed=seed,
        dataloader_num_workers=0,
        disable_tqdm=False,
    )
