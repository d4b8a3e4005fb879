"""Derive the SD1.5 sampling ranges in src/flowrl/comfy/components.json from real CivitAI settings.

Reads ../shared/data/civitai/generations.jsonl (A1111-style generation metadata), prints
quantiles per base model and writes the small derived catalog the package ships. SDXL, Turbo,
Lightning and Pony ranges are not in this data (it is ~85% SD1.5); they come from the model
cards and live in flowrl.comfy.components.

Usage: .venv/bin/python scripts/derive_components.py [--source PATH] [--out PATH]
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

import numpy as np

from flowrl.io import write_json

DEFAULT_SOURCE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "civitai" / "generations.jsonl"
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src" / "flowrl" / "data" / "components.json"

# A1111 sampler label -> (ComfyUI sampler_name, scheduler). Labels without a scheduler suffix
# use ComfyUI's "normal" schedule, which is what A1111 does.
A1111_TO_COMFY = {
    "Euler a": ("euler_ancestral", "normal"),
    "Euler": ("euler", "normal"),
    "Heun": ("heun", "normal"),
    "LMS": ("lms", "normal"),
    "LMS Karras": ("lms", "karras"),
    "DPM2": ("dpm_2", "normal"),
    "DPM2 Karras": ("dpm_2", "karras"),
    "DPM2 a": ("dpm_2_ancestral", "normal"),
    "DPM2 a Karras": ("dpm_2_ancestral", "karras"),
    "DPM fast": ("dpm_fast", "normal"),
    "DPM adaptive": ("dpm_adaptive", "normal"),
    "DPM++ 2S a": ("dpmpp_2s_ancestral", "normal"),
    "DPM++ 2S a Karras": ("dpmpp_2s_ancestral", "karras"),
    "DPM++ SDE": ("dpmpp_sde", "normal"),
    "DPM++ SDE Karras": ("dpmpp_sde", "karras"),
    "DPM++ 2M": ("dpmpp_2m", "normal"),
    "DPM++ 2M Karras": ("dpmpp_2m", "karras"),
    "DPM++ 2M SDE": ("dpmpp_2m_sde", "normal"),
    "DPM++ 2M SDE Karras": ("dpmpp_2m_sde", "karras"),
    "DPM++ 2M SDE Exponential": ("dpmpp_2m_sde", "exponential"),
    "DPM++ 3M SDE": ("dpmpp_3m_sde", "normal"),
    "DPM++ 3M SDE Karras": ("dpmpp_3m_sde", "karras"),
    "DPM++ 3M SDE Exponential": ("dpmpp_3m_sde", "exponential"),
    "DDIM": ("ddim", "ddim_uniform"),
    "UniPC": ("uni_pc", "normal"),
    "LCM": ("lcm", "sgm_uniform"),
}
QUANTILES = (0.05, 0.1, 0.5, 0.9, 0.95)


def _quantiles(values: list[float]) -> dict[str, float]:
    """Quantiles of `values` keyed 'p5', 'p10', ... (empty dict for no values)."""
    if not values:
        return {}
    qs = np.quantile(np.asarray(values, dtype=float), QUANTILES)
    return {f"p{round(q * 100)}": round(float(v), 3) for q, v in zip(QUANTILES, qs)}


def derive(rows: list[dict]) -> dict:
    """Statistics per base model plus the SD1.5 calibration block.

    Args:
        rows: generation records with base_model, sampler, steps, cfg, width, height, clip_skip, loras.
    Returns:
        {"per_base_model": {...}, "sd15": {steps, cfg, clip_skip, resolutions, lora_weight, samplers}}
    """
    by_base: dict[str, list[dict]] = collections.defaultdict(list)
    for row in rows:
        by_base[row.get("base_model") or "unknown"].append(row)
    per_base = {}
    for base, group in sorted(by_base.items(), key=lambda kv: -len(kv[1])):
        per_base[base] = {
            "n": len(group),
            "steps": _quantiles([r["steps"] for r in group if isinstance(r.get("steps"), (int, float))]),
            "cfg": _quantiles([r["cfg"] for r in group if isinstance(r.get("cfg"), (int, float))]),
        }
    sd15 = by_base.get("SD 1.5", []) + by_base.get("SD 1.4", [])
    sizes = collections.Counter((r["width"], r["height"]) for r in sd15 if r.get("width") and r.get("height"))
    samplers = collections.Counter(A1111_TO_COMFY[r["sampler"]] for r in sd15 if r.get("sampler") in A1111_TO_COMFY)
    mapped = sum(samplers.values())
    clip = collections.Counter(r.get("clip_skip") or 1 for r in sd15)
    lora_weights = [
        float(l["weight"]) for r in sd15 for l in (r.get("loras") or []) if isinstance(l.get("weight"), (int, float))
    ]
    return {
        "source": "../shared/data/civitai/generations.jsonl (CivitAI image metadata)",
        "per_base_model": per_base,
        "sd15": {
            "n": len(sd15),
            "steps": _quantiles([r["steps"] for r in sd15 if r.get("steps")]),
            "cfg": _quantiles([r["cfg"] for r in sd15 if r.get("cfg")]),
            "clip_skip": {str(k): v for k, v in sorted(clip.items()) if v >= 20},
            "resolutions": [[w, h, n] for (w, h), n in sizes.most_common(8)],
            "lora_weight": _quantiles(lora_weights),
            "n_lora_uses": len(lora_weights),
            "share_with_lora": round(sum(1 for r in sd15 if r.get("loras")) / max(len(sd15), 1), 3),
            "samplers": [[s, sch, round(n / mapped, 4)] for (s, sch), n in samplers.most_common()],
            "sampler_mapped_share": round(mapped / max(len(sd15), 1), 3),
        },
    }


def main() -> None:
    """Read the CivitAI generations, print the statistics, write the derived catalog."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="generations.jsonl to read")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="components.json to write")
    args = parser.parse_args()
    rows = [json.loads(line) for line in args.source.read_text().splitlines() if line.strip()]
    stats = derive(rows)
    for base, s in stats["per_base_model"].items():
        print(f"{base:>14}  n={s['n']:>6}  steps={s['steps']}  cfg={s['cfg']}")
    print(json.dumps(stats["sd15"], indent=1))
    write_json(args.out, stats)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
