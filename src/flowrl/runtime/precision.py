"""Whether bf16 autocast pays off on this machine (`bf16: auto` in params.yaml).

bf16 is fast where the hardware computes in it: a CUDA GPU that supports it, or a CPU with
AVX512-BF16 or AMX-BF16. Elsewhere PyTorch emulates it: on an AVX2-only CPU (AMD EPYC, 2 cores)
a bf16 lm-head matmul forward/backward took 57 s against 4.8 s in fp32, one thread each.
"""

from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
# a GPU torch can use needs its driver: NVIDIA (CUDA), AMD (ROCm) or WSL's GPU bridge
GPU_DRIVER_PATHS = ("/proc/driver/nvidia", "/dev/nvidiactl", "/dev/kfd", "/dev/dxg")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU feature flags Linux reports (empty where /proc/cpuinfo does not exist)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return set()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return set(line.partition(":")[2].split())


def gpu_driver_present() -> bool:
    """Whether a GPU driver is loaded; without one torch.cuda.is_available() is False, known without importing torch."""
    return any(Path(p).exists() for p in GPU_DRIVER_PATHS)


@lru_cache(maxsize=1)
def fast_bf16() -> bool:
    """True when bf16 autocast runs natively on the device training and sampling use.

    torch (1-3 s to import) is only asked where a GPU driver is present or it is already imported, so reading
    params.yaml (`flowrl --help`, argument errors) stays fast on CPU machines.
    """
    if "torch" in sys.modules or gpu_driver_present():
        import torch

        if torch.cuda.is_available():
            return torch.cuda.is_bf16_supported()
    return any(flag in cpu_flags() for flag in BF16_CPU_FLAGS)


def resolve_bf16(value: object) -> object:
    """`auto` becomes fast_bf16(); true/false (and anything pydantic should reject) pass through."""
    return fast_bf16() if isinstance(value, str) and value.strip().lower() == "auto" else value
