"""Whether bf16 autocast pays off on this machine (`bf16: auto` in params.yaml).

bf16 is fast where the hardware computes in it: a CUDA GPU that supports it, or a CPU with
AVX512-BF16 or AMX-BF16. Elsewhere PyTorch emulates it: on an AVX2-only CPU (AMD EPYC, 2 cores)
a bf16 lm-head matmul forward/backward took 57 s against 4.8 s in fp32, one thread each.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU feature flags Linux reports (empty where /proc/cpuinfo does not exist)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return set()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return set(line.partition(":")[2].split())


@lru_cache(maxsize=1)
def fast_bf16() -> bool:
    """True when bf16 autocast runs natively on the device training and sampling use."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return any(flag in cpu_flags() for flag in BF16_CPU_FLAGS)


def resolve_bf16(value: object) -> object:
    """`auto` becomes fast_bf16(); true/false (and anything pydantic should reject) pass through."""
    return fast_bf16() if isinstance(value, str) and value.strip().lower() == "auto" else value
