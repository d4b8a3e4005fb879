"""Flows for a user's own ComfyUI from the registered champion: usable, naming only installed files, in one family.

Target (issue 25, point 1): >= 95% of 64 generated flows usable (validate, installed, `usable_problems`), naming only
installed files and in one checkpoint family, for two installs: tests/fixtures/object_info_user.json (juggernautXL_v10,
realisticVisionV60B1: name cues) and the same under cue-less names (house_blend, myfavourite_v3) with the user's family
map. 16 prompts x 4 seeds each, through `flowrl generate`'s own steps (load_generator, then fit_to_family).
Needs a pipeline root with a registered champion: `FLOWRL_BENCH_ROOT=/path/to/pipeline/repo python -m bench user_checkpoints`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from bench._common import REPO, Row, status

TARGET = 0.95
SEEDS = (0, 1, 2, 3)
PROMPTS = (
    "anime girl in a neon city",
    "a castle at dawn, dramatic clouds",
    "portrait photo of an old fisherman, 85mm",
    "a red sports car on a mountain road at sunset",
    "a bowl of ramen, steam, food photography",
    "watercolor painting of a fox in a snowy forest",
    "cyberpunk street market at night, rain",
    "a cozy cabin interior, warm light",
    "macro photo of a dew drop on a leaf",
    "a dragon over a medieval village",
    "studio product shot of a perfume bottle",
    "pixel art spaceship",
    "a lighthouse in a storm, oil painting",
    "a cute robot watering plants, 3d render",
    "fashion photo, woman in a red coat, street",
    "an astronaut riding a horse",
)
FIXTURE = REPO / "tests/fixtures/object_info_user.json"
RENAMED = {
    "juggernautXL_v10.safetensors": "house_blend.safetensors",
    "realisticVisionV60B1_v60B1VAE.safetensors": "myfavourite_v3.safetensors",
}
USER_MAP = ["house_blend.safetensors=sdxl", "myfavourite_v3.safetensors=sd15"]


def installs():
    """(label, ObjectInfo, FamilyMap) of the two installs."""
    from flowrl.comfy.families import FamilyMap
    from flowrl.comfy.object_info import ObjectInfo, load_object_info

    info = load_object_info(FIXTURE)
    text = FIXTURE.read_text()
    for old, new in RENAMED.items():
        text = text.replace(old, new)
    renamed = ObjectInfo.from_dict(json.loads(text), "renamed fixture")
    return [
        ("user fixture", info, FamilyMap(info)),
        ("cue-less names + map", renamed, FamilyMap.from_arguments(renamed, USER_MAP)),
    ]


def main() -> dict:
    from flowrl.cli.generate import fit_to_family, load_generator, quiet_libraries
    from flowrl.comfy.families import family_problems
    from flowrl.comfy.object_info import find_missing
    from flowrl.params.model import load_params

    root = Path(os.environ.get("FLOWRL_BENCH_ROOT", REPO))
    if not (root / "mlflow/mlflow.db").exists():
        raise RuntimeError(f"{root} has no MLflow store: run the pipeline there first (through `register`)")
    os.chdir(root)
    params = load_params(root / "params.yaml")
    figures: dict = {"root": str(root), "flows_each": len(PROMPTS) * len(SEEDS)}
    with quiet_libraries():
        generate = load_generator(
            f"models:/{params.register.model_name}@{params.register.champion_alias}", root / "params.yaml", None
        )
        for label, info, fmap in installs():
            ok, reasons = 0, []
            for seed in SEEDS:
                for result in generate(list(PROMPTS), None, seed, info):
                    fitted, _ = fit_to_family(result, fmap) if result["valid"] else (result, [])
                    why = (
                        fitted["error"]
                        if not fitted["valid"]
                        else (
                            "; ".join(family_problems(fitted["workflow"], fmap))
                            or "; ".join(map(str, find_missing(fitted["workflow"], info)))
                        )
                    )
                    ok += not why
                    reasons += [why] if why else []
            figures[label] = {"usable_installed_one_family": ok / figures["flows_each"], "failures": reasons[:5]}
            print(f"{label}: {ok}/{figures['flows_each']}")
    return figures


def rows(f: dict) -> list[Row]:
    return [
        (
            f"{label}: flows usable, installed only, one family",
            f"{f[label]['usable_installed_one_family']:.0%} of {f['flows_each']}",
            f">= {TARGET:.0%}",
            status(f[label]["usable_installed_one_family"] >= TARGET),
        )
        for label in ("user fixture", "cue-less names + map")
        if label in f
    ]
