"""Print the CivitAI statistics behind the preference simulator's SD1.5 sweet spots, and the shipped constants.

Reads ../shared/data/civitai/generations.jsonl (real A1111 generation settings people published);
the simulator itself never reads it. SDXL-family sweet spots come from model cards (this data is
~85% SD1.5). See docs/simulator.md for how each constant follows from these numbers.

Usage: .venv/bin/python scripts/calibrate_simulator.py [--source PATH]
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

import numpy as np

from flowrl.scoring import simulator as S

DEFAULT_SOURCE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "civitai" / "generations.jsonl"
QS = (5, 10, 25, 50, 75, 90, 95)


def quantiles(values: list[float]) -> dict[str, float]:
    """p5..p95 of `values`, rounded."""
    return {f"p{q}": round(float(np.percentile(values, q)), 3) for q in QS} if values else {}


def calibrate(rows: list[dict]) -> dict:
    """SD1.5 statistics: steps, cfg, megapixels, LoRA weights, and the derived sweet spots."""
    sd15 = [r for r in rows if r.get("base_model") in ("SD 1.5", "SD 1.4")]
    num = lambda key: [float(r[key]) for r in sd15 if isinstance(r.get(key), (int, float)) and r[key] > 0]
    mp = [r["width"] * r["height"] / 1e6 for r in sd15 if r.get("width") and r.get("height")]
    weights = [
        float(l["weight"]) for r in sd15 for l in (r.get("loras") or []) if isinstance(l.get("weight"), (int, float))
    ]
    steps, cfg = quantiles(num("steps")), quantiles(num("cfg"))
    return {
        "n_sd15": len(sd15),
        "steps": steps,
        "cfg": cfg,
        "megapixels": quantiles(mp),
        "lora_weight": quantiles(weights),
        "samplers": collections.Counter(r.get("sampler") for r in sd15).most_common(8),
        "derived": {
            "steps_sweet": (steps["p10"], steps["p75"]),
            "cfg_sweet": (cfg["p5"], cfg["p90"] - 1.0),
            "native_mp": (mp and round(float(np.percentile(mp, 5)), 3), mp and round(float(np.percentile(mp, 75)), 3)),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    args = parser.parse_args()
    with args.source.open() as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    stats = calibrate(rows)
    print(json.dumps(stats, indent=1))
    print(
        "shipped: STEPS_SWEET['sd15'] =",
        S.STEPS_SWEET["sd15"],
        " CFG_SWEET['sd15'] =",
        S.CFG_SWEET["sd15"],
        " NATIVE_MP['sd15'] =",
        S.NATIVE_MP["sd15"],
    )


if __name__ == "__main__":
    main()
