"""Where models run: one `device` setting (params.yaml, top level) resolved once for every loader.

`device: auto | cpu | cuda | cuda:N`. `auto` is CUDA when present (under `accelerate launch` / `torchrun`, the
process's `cuda:LOCAL_RANK`), else the CPU. Frozen weights (inference, the base under a LoRA) load in bf16 on GPUs
that support it (`torch.cuda.is_bf16_supported()`), fp32 elsewhere; weights that train in full stay fp32 (the trainer's
bf16 autocast does the mixed precision). On the CPU nothing moves and nothing is cast, so CPU runs sample and train
exactly as before this module existed.

Stages call `configure(params.device)` at their start (`start_stage`); loaders called without an explicit device use
`current()`: the configured setting, else the FLOWRL_DEVICE environment variable, else `auto`. `FLOWRL_DEVICE` is how
serving (the MLflow pyfunc model, `flowrl generate`) picks a device without params.
"""

from __future__ import annotations

import os
import re
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch

from flowrl.errors import FlowRLError

ENV = "FLOWRL_DEVICE"
SETTING = re.compile(r"^(auto|cpu|meta|cuda(:\d+)?)$")
_configured: str | None = None


class DeviceError(FlowRLError):
    """The `device` setting names a device this machine does not have, or is not a device name."""


def check_setting(value: str) -> str:
    """Normalise a `device` setting; refuse anything but auto, cpu, cuda, cuda:N (and meta, for tests)."""
    text = str(value).strip().lower()
    if not SETTING.match(text):
        raise DeviceError(f"device: {value!r} is not a device; use auto, cpu, cuda or cuda:N")
    return text


def configure(setting: str | None) -> None:
    """Set the process-wide setting that `current()` returns (None: back to FLOWRL_DEVICE / auto)."""
    global _configured
    _configured = None if setting is None else check_setting(setting)


def current() -> str:
    """The setting in force: configured by the stage, else $FLOWRL_DEVICE, else auto."""
    return _configured or check_setting(os.environ.get(ENV) or "auto")


def resolve_device(setting: str | None = None) -> torch.device:
    """The torch device of a setting (None: `current()`); `auto` is cuda:LOCAL_RANK (0 without a launcher) or cpu."""
    text = check_setting(setting) if setting is not None else current()
    if text == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0) or 0))
    if text.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(f"device: {text} but torch sees no CUDA GPU here; set device: auto or cpu")
    return torch.device(text)


def fast_bf16_on(device: torch.device) -> bool:
    """True where bf16 weights/autocast are native: a CUDA GPU that supports bf16 (Ampere and later)."""
    return device.type == "cuda" and torch.cuda.is_bf16_supported()


@dataclass(frozen=True)
class Placement:
    """A device and the dtype frozen weights take there."""

    device: torch.device
    dtype: torch.dtype

    @property
    def moves(self) -> bool:
        """False on the CPU: models stay where and as they were built (today's behaviour, bit for bit)."""
        return self.device.type != "cpu"


def placement(setting: str | torch.device | None = None, frozen: bool = True) -> Placement:
    """Device and weight dtype: bf16 for frozen weights on a bf16 GPU (the meta device counts as one, for tests)."""
    device = setting if isinstance(setting, torch.device) else resolve_device(setting)
    bf16 = fast_bf16_on(device) or device.type == "meta"
    return Placement(device, torch.bfloat16 if frozen and bf16 else torch.float32)


def place(model, where: Placement | str | torch.device | None = None, frozen: bool = True):
    """Move `model` to the device (and, for frozen weights, the dtype) of `where`; on the CPU return it untouched."""
    where = where if isinstance(where, Placement) else placement(where, frozen)
    if not where.moves:
        return model
    return model.to(device=where.device, dtype=where.dtype)


def load_kwargs(where: Placement | None) -> dict[str, Any]:
    """`from_pretrained` keyword arguments that load straight onto the device in its dtype (none on the CPU: fp32)."""
    if where is None or not where.moves:
        return {"dtype": torch.float32}
    return {"dtype": where.dtype, "device_map": {"": str(where.device)}}


def model_device(model) -> torch.device:
    """The device of a model's first parameter (cpu for a model without parameters)."""
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def autocast(device: torch.device | str, bf16: bool) -> AbstractContextManager:
    """bf16 autocast for a forward on `device`: on the CPU only when `bf16` (policy/reward `bf16`, as before);
    on a GPU whenever it computes in bf16 (sampling and scoring in bf16 weights, logits upcast by the callers)."""
    device = torch.device(device)
    if device.type == "cpu":
        return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()
    if device.type == "cuda" and (bf16 or fast_bf16_on(device)):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def trainer_kwargs(setting: str | None = None) -> dict[str, Any]:
    """TrainingArguments device settings: use_cpu when the setting resolves to the CPU. On GPUs accelerate places
    the model (one process per GPU under `accelerate launch` / `torchrun`; CUDA_VISIBLE_DEVICES picks the GPUs)."""
    return {"use_cpu": resolve_device(setting).type == "cpu"}


def inputs_to(batch: dict, device: torch.device) -> dict:
    """A tokenizer batch (or dict of tensors) moved to `device`."""
    return {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}


__all__ = [
    "DeviceError",
    "Placement",
    "autocast",
    "check_setting",
    "configure",
    "current",
    "inputs_to",
    "load_kwargs",
    "model_device",
    "place",
    "placement",
    "resolve_device",
    "trainer_kwargs",
]


def is_main_process() -> bool:
    """False in the extra processes of a multi-GPU launch (accelerate launch / torchrun set RANK): only rank 0
    saves models, writes reports and talks to Prefect and MLflow."""
    return int(os.environ.get("RANK", "0")) == 0
