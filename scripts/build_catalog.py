"""Build src/flowrl/comfy/node_catalog.json: the ComfyUI node definitions the validator and UI converter use.

Sources (in order of precedence, later ones override earlier ones):
1. ../shared/data/comfyui_workflows/node_widgets.json: per class type the ordered widget names, link input
   names, output types, control_after_generate widgets, widget_list_variants and UI-only widgets.
2. ../shared/data/comfyui_workflows/api/*.json: observed values (widget type = Python type of the values seen;
   link type = the output type of the node a link comes from; a link input absent somewhere = optional).
3. TYPE_FACTS / CUSTOM_NODES below: hand-written facts from ComfyUI's node definitions (comfy/samplers.py
   KSampler.SAMPLERS / SCHEDULERS, nodes.py INPUT_TYPES ranges) and the custom-node packs the paper's flows
   use (ComfyUI_Comfyroll_CustomNodes, ComfyUI-Impact-Pack, ComfyUI-AutomaticCFG).

Usage: .venv/bin/python scripts/build_catalog.py [--shared ../shared]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "src" / "flowrl" / "comfy" / "node_catalog.json"

# comfy/samplers.py (KSampler.SAMPLERS and SCHEDULER_NAMES, late 2025).
SAMPLERS = [
    "euler",
    "euler_cfg_pp",
    "euler_ancestral",
    "euler_ancestral_cfg_pp",
    "heun",
    "heunpp2",
    "dpm_2",
    "dpm_2_ancestral",
    "lms",
    "dpm_fast",
    "dpm_adaptive",
    "dpmpp_2s_ancestral",
    "dpmpp_2s_ancestral_cfg_pp",
    "dpmpp_sde",
    "dpmpp_sde_gpu",
    "dpmpp_2m",
    "dpmpp_2m_cfg_pp",
    "dpmpp_2m_sde",
    "dpmpp_2m_sde_gpu",
    "dpmpp_2m_sde_heun",
    "dpmpp_2m_sde_heun_gpu",
    "dpmpp_3m_sde",
    "dpmpp_3m_sde_gpu",
    "ddpm",
    "lcm",
    "ipndm",
    "ipndm_v",
    "deis",
    "res_multistep",
    "res_multistep_cfg_pp",
    "res_multistep_ancestral",
    "res_multistep_ancestral_cfg_pp",
    "gradient_estimation",
    "gradient_estimation_cfg_pp",
    "er_sde",
    "seeds_2",
    "seeds_3",
    "sa_solver",
    "sa_solver_pece",
    "ddim",
    "uni_pc",
    "uni_pc_bh2",
]
SCHEDULERS = [
    "simple",
    "sgm_uniform",
    "karras",
    "exponential",
    "ddim_uniform",
    "beta",
    "normal",
    "linear_quadratic",
    "kl_optimal",
]
UPSCALE_METHODS = ["nearest-exact", "bilinear", "area", "bicubic", "bislerp", "lanczos"]
MAX_RES = 16384
MAX_SEED = 2**64 - 1

# Facts that hold for an input name on every node that has it (nodes.py conventions).
NAME_FACTS: dict[str, dict] = {
    "seed": {"type": "INT", "min": 0, "max": MAX_SEED},
    "noise_seed": {"type": "INT", "min": 0, "max": MAX_SEED},
    "steps": {"type": "INT", "min": 1, "max": 10000},
    "cfg": {"type": "FLOAT", "min": 0.0, "max": 100.0},
    "denoise": {"type": "FLOAT", "min": 0.0, "max": 1.0},
    "sampler_name": {"type": "COMBO", "choices": SAMPLERS},
    "scheduler": {"type": "COMBO", "choices": SCHEDULERS},
    "width": {"type": "INT", "min": 16, "max": MAX_RES},
    "height": {"type": "INT", "min": 16, "max": MAX_RES},
    "batch_size": {"type": "INT", "min": 1, "max": 4096},
    "strength_model": {"type": "FLOAT", "min": -100.0, "max": 100.0},
    "strength_clip": {"type": "FLOAT", "min": -100.0, "max": 100.0},
    "upscale_method": {"type": "COMBO", "choices": UPSCALE_METHODS},
    "start_at_step": {"type": "INT", "min": 0, "max": 10000},
    "end_at_step": {"type": "INT", "min": 0, "max": 10000},
}
# Per-class facts (override NAME_FACTS).
TYPE_FACTS: dict[str, dict[str, dict]] = {
    "KSamplerAdvanced": {
        "add_noise": {"type": "COMBO", "choices": ["enable", "disable"]},
        "return_with_leftover_noise": {"type": "COMBO", "choices": ["disable", "enable"]},
    },
    "KSampler": {
        "seed": {"default": 0},
        "steps": {"default": 20},
        "cfg": {"default": 8.0},
        "denoise": {"default": 1.0},
        "sampler_name": {"default": "euler"},
        "scheduler": {"default": "normal"},
    },
    "EmptyLatentImage": {"width": {"default": 512}, "height": {"default": 512}, "batch_size": {"default": 1}},
    "CLIPSetLastLayer": {"stop_at_clip_layer": {"type": "INT", "min": -24, "max": -1, "default": -1}},
    "LatentUpscale": {
        "crop": {"type": "COMBO", "choices": ["disabled", "center"]},
        "width": {"min": 0},
        "height": {"min": 0},
    },
    "LatentUpscaleBy": {"scale_by": {"type": "FLOAT", "min": 0.01, "max": 8.0, "default": 1.5}},
    "ImageScale": {
        "crop": {"type": "COMBO", "choices": ["disabled", "center"]},
        "width": {"min": 0},
        "height": {"min": 0},
    },
    "LoraLoader": {"strength_model": {"default": 1.0}, "strength_clip": {"default": 1.0}},
    "Wan22ImageToVideoLatent": {"start_image": {"required": False}},  # optional in comfy_extras/nodes_wan.py
    "SAMLoader": {"device_mode": {"type": "COMBO", "choices": ["AUTO", "Prefer GPU", "CPU"]}},
    "CLIPTextEncodeSDXL": {
        k: {"type": "INT", "min": 0, "max": MAX_RES}
        for k in ("width", "height", "crop_w", "crop_h", "target_width", "target_height")
    },
}
TYPE_FACTS["CLIPTextEncodeSDXL"].update({"text_g": {"type": "STRING"}, "text_l": {"type": "STRING"}})

# Custom/core nodes used by the paper's flows that the shared files do not contain: (widgets, links, outputs).
# Each input: name -> fact dict with kind/type; order = widget order in widgets_values.
CUSTOM_NODES: dict[str, dict] = {
    "CR LoRA Stack": {
        "widgets": [
            (f"{k}_{i}", t)
            for i in (1, 2, 3)
            for k, t in (
                ("switch", {"type": "COMBO", "choices": ["Off", "On"]}),
                ("lora_name", {"type": "COMBO"}),
                ("model_weight", {"type": "FLOAT", "min": -10.0, "max": 10.0}),
                ("clip_weight", {"type": "FLOAT", "min": -10.0, "max": 10.0}),
            )
        ],
        "links": [("lora_stack", "LORA_STACK", False)],
        "outputs": ["LORA_STACK", "STRING"],
    },
    "CR Apply LoRA Stack": {
        "widgets": [],
        "links": [("model", "MODEL", True), ("clip", "CLIP", True), ("lora_stack", "LORA_STACK", True)],
        "outputs": ["MODEL", "CLIP", "STRING"],
    },
    "Automatic CFG": {
        "widgets": [("hard_mode", {"type": "BOOLEAN"}), ("boost", {"type": "BOOLEAN"})],
        "links": [("model", "MODEL", True)],
        "outputs": ["MODEL"],
    },
    "FreeU": {
        "widgets": [
            ("b1", {"type": "FLOAT", "min": 0.0, "max": 10.0, "default": 1.1}),
            ("b2", {"type": "FLOAT", "min": 0.0, "max": 10.0, "default": 1.2}),
            ("s1", {"type": "FLOAT", "min": 0.0, "max": 10.0, "default": 0.9}),
            ("s2", {"type": "FLOAT", "min": 0.0, "max": 10.0, "default": 0.2}),
        ],
        "links": [("model", "MODEL", True)],
        "outputs": ["MODEL"],
    },
    "FreeU_V2": {
        "widgets": [
            ("b1", {"type": "FLOAT", "min": 0.0, "max": 10.0, "default": 1.3}),
            ("b2", {"type": "FLOAT", "min": 0.0, "max": 10.0, "default": 1.4}),
            ("s1", {"type": "FLOAT", "min": 0.0, "max": 10.0, "default": 0.9}),
            ("s2", {"type": "FLOAT", "min": 0.0, "max": 10.0, "default": 0.2}),
        ],
        "links": [("model", "MODEL", True)],
        "outputs": ["MODEL"],
    },
    "RescaleCFG": {
        "widgets": [("multiplier", {"type": "FLOAT", "min": 0.0, "max": 1.0, "default": 0.7})],
        "links": [("model", "MODEL", True)],
        "outputs": ["MODEL"],
    },
    "CLIPTextEncodeSDXLRefiner": {
        "widgets": [
            ("ascore", {"type": "FLOAT", "min": 0.0, "max": 1000.0, "default": 6.0}),
            ("width", {"type": "INT", "min": 0, "max": MAX_RES, "default": 1024}),
            ("height", {"type": "INT", "min": 0, "max": MAX_RES, "default": 1024}),
            ("text", {"type": "STRING"}),
        ],
        "links": [("clip", "CLIP", True)],
        "outputs": ["CONDITIONING"],
    },
}

# Link types by input name, used where the shared files show no (or conflicting) source types.
LINK_NAME_TYPES = {
    "model": "MODEL",
    "clip": "CLIP",
    "vae": "VAE",
    "images": "IMAGE",
    "image": "IMAGE",
    "pixels": "IMAGE",
    "samples": "LATENT",
    "latent_image": "LATENT",
    "mask": "MASK",
    "positive": "CONDITIONING",
    "negative": "CONDITIONING",
    "conditioning": "CONDITIONING",
}

# Model-file COMBO inputs: any file name is accepted (open set).
OPEN_COMBO_SUFFIX = ("_name", "_name1", "_name2", "_name3", "_name4")
OUTPUT_NODE_PREFIXES = ("Save", "Preview")
OUTPUT_NODES_WITH_OUTPUTS = {"VHS_VideoCombine"}  # OUTPUT_NODE = True in their packs, yet they return values


def _value_type(values: list) -> str:
    kinds = {type(v) for v in values if not isinstance(v, list)}
    if kinds == {bool}:
        return "BOOLEAN"
    if kinds and kinds <= {int}:
        return "INT"
    if kinds and kinds <= {int, float}:
        return "FLOAT"
    if kinds == {str}:
        return "STRING"
    return "*"


def _observe(api_dir: Path) -> tuple[dict, dict, dict]:
    """Observed widget values, link source types and presence counts per (class, input)."""
    values: dict = defaultdict(list)
    link_types: dict = defaultdict(set)
    seen: dict = defaultdict(int)
    present: dict = defaultdict(int)
    widgets = json.loads((api_dir.parent / "node_widgets.json").read_text())
    for path in sorted(api_dir.glob("*.json")):
        graph = json.loads(path.read_text())
        graph = graph.get("prompt", graph)
        for node in graph.values():
            ct = node["class_type"]
            seen[ct] += 1
            for name, value in node["inputs"].items():
                present[(ct, name)] += 1
                if isinstance(value, list) and len(value) == 2 and isinstance(value[1], int):
                    src = graph.get(str(value[0]))
                    outs = widgets.get(src["class_type"], {}).get("outputs", []) if src else []
                    if value[1] < len(outs):
                        link_types[(ct, name)].add(outs[value[1]])
                else:
                    values[(ct, name)].append(value)
    return values, link_types, {k: present[k] == seen[k[0]] for k in present}


def _closed_combo(name: str, observed: list) -> dict:
    return {"type": "COMBO", "choices": None} if name.endswith(OPEN_COMBO_SUFFIX) else {}


def build(shared: Path) -> dict:
    """Return the catalog dict {class_type: spec}."""
    root = shared / "data" / "comfyui_workflows"
    widgets = json.loads((root / "node_widgets.json").read_text())
    values, link_types, always = _observe(root / "api")
    catalog: dict[str, dict] = {}
    for ct, w in sorted(widgets.items()):
        variants = w.get("widget_list_variants") or [w["widgets"]]
        base = min(variants, key=len)
        ui_only = w.get("ui_only_widgets", [])
        inputs = {}
        for name in w["widgets"]:
            obs = values.get((ct, name), [])
            spec = {
                "kind": "widget",
                "type": _value_type(obs) if obs else "*",
                "required": name in base and name not in ui_only,
                "choices": None,
                "min": None,
                "max": None,
                "default": None,
            }
            if spec["type"] == "STRING":
                spec.update(_closed_combo(name, obs))
            spec.update(NAME_FACTS.get(name, {}))
            if (
                spec["type"] == "INT"
                and NAME_FACTS.get(name, {}).get("type") is None
                and any(isinstance(v, float) for v in obs)
            ):
                spec["type"] = "FLOAT"
            spec.update(TYPE_FACTS.get(ct, {}).get(name, {}))
            inputs[name] = spec
        for name in w["links"]:
            if values.get((ct, name)):  # documented as a link but given as a value in real files
                inputs[name] = {
                    "kind": "widget",
                    "type": _value_type(values[(ct, name)]),
                    "required": False,
                    "choices": None,
                    "min": None,
                    "max": None,
                    "default": None,
                }
                continue
            types = sorted(link_types.get((ct, name), set()))
            typ = types[0] if len(types) == 1 else LINK_NAME_TYPES.get(name, "*")
            inputs[name] = {
                "kind": "link",
                "type": typ,
                "required": always.get((ct, name), False),
                "choices": None,
                "min": None,
                "max": None,
                "default": None,
                **TYPE_FACTS.get(ct, {}).get(name, {}),
            }
        outputs = [] if ct.startswith(OUTPUT_NODE_PREFIXES) and ct not in ("PreviewAny",) else w["outputs"]
        catalog[ct] = {
            "inputs": inputs,
            "outputs": outputs,
            "is_output_node": (not outputs and not w.get("virtual"))
            or ct.startswith(OUTPUT_NODE_PREFIXES)
            or ct in OUTPUT_NODES_WITH_OUTPUTS,
            "widgets": w["widgets"],
            "widget_variants": variants,
            "control_after_generate": w.get("control_after_generate", []),
            "ui_only_widgets": ui_only,
            "virtual": bool(w.get("virtual")),
            "source": w.get("source", ""),
        }
    for ct, c in CUSTOM_NODES.items():
        inputs = {}
        for name, fact in c["widgets"]:
            inputs[name] = {
                "kind": "widget",
                "type": "*",
                "required": True,
                "choices": None,
                "min": None,
                "max": None,
                "default": None,
                **fact,
            }
        for name, typ, req in c["links"]:
            inputs[name] = {
                "kind": "link",
                "type": typ,
                "required": req,
                "choices": None,
                "min": None,
                "max": None,
                "default": None,
            }
        names = [n for n, _ in c["widgets"]]
        catalog[ct] = {
            "inputs": inputs,
            "outputs": c["outputs"],
            "is_output_node": False,
            "widgets": names,
            "widget_variants": [names],
            "control_after_generate": [],
            "ui_only_widgets": [],
            "virtual": False,
            "source": "hand-written (scripts/build_catalog.py CUSTOM_NODES)",
        }
    return catalog


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    args = parser.parse_args()
    catalog = build(args.shared)
    OUT.write_text(json.dumps(catalog, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {OUT.relative_to(REPO)}: {len(catalog)} class types")


if __name__ == "__main__":
    main()
