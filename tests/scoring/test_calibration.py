"""The simulator's shipped SD1.5 constants are the ones scripts/calibrate_simulator.py derives from CivitAI."""

from __future__ import annotations

import json

from flowrl.scoring import simulator as S
from scripts.calibrate_simulator import calibrate
from tests.conftest import shared_path


def test_shipped_constants_match_derivation():
    path = shared_path("data", "civitai", "generations.jsonl")
    with path.open() as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    derived = calibrate(rows)["derived"]
    assert S.STEPS_SWEET["sd15"] == tuple(int(v) for v in derived["steps_sweet"])
    assert S.CFG_SWEET["sd15"] == tuple(derived["cfg_sweet"])
    assert S.NATIVE_MP["sd15"] == tuple(derived["native_mp"])
