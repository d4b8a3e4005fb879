"""Write tests/fixtures/object_info_user.json: a recorded-style ComfyUI /object_info for a typical user.

Source of the node facts: ../shared/data/comfyui_workflows/node_widgets.json (which classes are custom
nodes: `custom_node_pack`) and src/flowrl/comfy/node_catalog.json (input types, ranges, fixed
choices, outputs; itself built from node_widgets.json by scripts/build_catalog.py). The user has
core ComfyUI only (no custom node packs), two checkpoints that are NOT among the training catalog's
(src/flowrl/comfy/components.py), one of its LoRAs plus one other, one VAE and no upscaler.

    python scripts/build_object_info_fixture.py

It also writes src/flowrl/comfy/custom_node_packs.json (which catalog classes are custom nodes, and their pack),
so that a missing core node is never called a missing custom node.
"""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NODE_WIDGETS = REPO.parent / "shared" / "data" / "comfyui_workflows" / "node_widgets.json"
CATALOG = REPO / "src" / "flowrl" / "comfy" / "node_catalog.json"
OUT = REPO / "tests" / "fixtures" / "object_info_user.json"
PACKS_OUT = REPO / "src" / "flowrl" / "comfy" / "custom_node_packs.json"  # custom class -> its pack (the rest is core)

# custom nodes the catalog adds by hand (scripts/build_catalog.py CUSTOM_NODES), with their packs
HAND_WRITTEN_CUSTOM = {
    "CR LoRA Stack": "ComfyUI_Comfyroll_CustomNodes",
    "CR Apply LoRA Stack": "ComfyUI_Comfyroll_CustomNodes",
    "Automatic CFG": "ComfyUI-AutomaticCFG",
}
CATEGORY = "fixture"  # the frontend marks a node with an empty category as deprecated
CORE_PACK = "Comfy"  # node_widgets.json's pack name for ComfyUI's own nodes
# the user's model files, by input name; every other file list is empty
INSTALLED = {
    "ckpt_name": ["juggernautXL_v10.safetensors", "realisticVisionV60B1_v60B1VAE.safetensors"],
    "lora_name": ["add_detail.safetensors", "detail_tweaker_xl.safetensors"],
    "vae_name": ["vae-ft-mse-840000-ema-pruned.safetensors"],
}


def _input(spec: dict, name: str, control: bool) -> list:
    if spec["kind"] == "link":
        return [spec["type"]]
    if spec["type"] == "COMBO":
        return [spec["choices"] if spec["choices"] is not None else list(INSTALLED.get(name, [])), {}]
    opts = {k: spec[k] for k in ("default", "min", "max") if spec[k] is not None}
    if control:
        opts["control_after_generate"] = True
    if spec["type"] == "STRING" and name in ("text", "text_g", "text_l"):
        opts["multiline"] = True
    return [spec["type"], opts]


def custom_packs() -> dict[str, str]:
    """Catalog class -> the custom node pack that provides it; a class not listed is core ComfyUI."""
    widgets = json.loads(NODE_WIDGETS.read_text())
    catalog = json.loads(CATALOG.read_text())
    packs = {ct: widgets.get(ct, {}).get("custom_node_pack") for ct in catalog}
    return dict(sorted({**{ct: p for ct, p in packs.items() if p and p != CORE_PACK}, **HAND_WRITTEN_CUSTOM}.items()))


def build() -> dict:
    catalog = json.loads(CATALOG.read_text())
    custom = custom_packs()
    info = {}
    for ct, c in sorted(catalog.items()):
        if ct in custom or c["virtual"]:
            continue
        order = c["widgets"] + [n for n in sorted(c["inputs"]) if n not in c["widgets"]]
        groups = {"required": {}, "optional": {}}
        for name in order:
            if name in c["inputs"]:
                spec = c["inputs"][name]
                groups["required" if spec["required"] else "optional"][name] = _input(
                    spec, name, name in c["control_after_generate"]
                )
        info[ct] = {
            "input": {k: v for k, v in groups.items() if v},
            "input_order": {k: list(v) for k, v in groups.items() if v},
            "output": c["outputs"],
            "output_is_list": [False] * len(c["outputs"]),
            "output_name": c["outputs"],
            "name": ct,
            "display_name": ct,
            "description": "",
            "python_module": "nodes",
            "category": CATEGORY,
            "output_node": c["is_output_node"],
        }
    return info


if __name__ == "__main__":
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(build(), separators=(",", ":"), sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {OUT} ({OUT.stat().st_size / 1024:.0f} KiB)")
    PACKS_OUT.write_text(json.dumps(custom_packs(), indent=1) + "\n", encoding="utf-8")
    print(f"wrote {PACKS_OUT}")
