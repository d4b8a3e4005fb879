"""bf16: auto turns autocast on only where the hardware computes in bf16."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowrl.errors import ConfigError
from flowrl.params.model import load_params
from flowrl.runtime import precision

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


def test_cpu_flags_read_the_flags_line(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512_bf16\n")
    assert {"avx2", "avx512_bf16"} <= precision.cpu_flags(info)
    assert precision.cpu_flags(tmp_path / "missing") == set()


@pytest.mark.parametrize("flags, fast", [({"avx2"}, False), ({"avx2", "avx512_bf16"}, True), ({"amx_bf16"}, True)])
def test_fast_bf16_on_cpu_follows_the_flags(monkeypatch, flags, fast):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(precision, "cpu_flags", lambda: flags)
    precision.fast_bf16.cache_clear()
    try:
        assert precision.fast_bf16() is fast
    finally:
        precision.fast_bf16.cache_clear()


def test_auto_resolves_and_explicit_values_win(tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "fast_bf16", lambda: True)
    params = load_params(PARAMS)
    assert params.policy.bf16 is True and params.reward.bf16 is True  # cpu profile: auto
    assert load_params(PARAMS, profile="tiny").policy.bf16 is False  # tiny: explicit false


def test_a_bad_value_is_a_config_error(tmp_path):
    text = PARAMS.read_text().replace("bf16: auto                 # bf16", "bf16: sometimes  # bf16", 1)
    (tmp_path / "params.yaml").write_text(text)
    with pytest.raises(ConfigError, match="bf16"):
        load_params(tmp_path / "params.yaml")
