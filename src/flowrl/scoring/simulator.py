"""Preference simulator: a deterministic, documented stand-in for "render in ComfyUI + HPSv2" (docs/simulator.md).

Score = LOW + SPAN * sigmoid(utility / TEMPERATURE) + noise, on an HPSv2-like scale (about 0.15-0.35);
invalid graphs, and graphs a render could not execute, score exactly 0. `utility` sums the rules below; constants come from
scripts/calibrate_simulator.py (CivitAI generation settings) and model cards.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from functools import lru_cache

from flowrl.comfy import components as C
from flowrl.comfy.usable import handover_problems, practical_problems, refiner_problems, rendered_subgraph
from flowrl.comfy.validate import validate_graph
from flowrl.scoring.base import ScorerError
from flowrl.scoring.flow_features import FlowFeatures, flow_features
from flowrl.scoring.prompt_features import PromptFeatures, prompt_features

LOW, SPAN, TEMPERATURE = 0.15, 0.20, 2.5  # score range (LOW, LOW + SPAN), like HPSv2 on real images
DEFAULT_NOISE_SD = 0.0025  # ~15-18% of the between-flow sd on the bench set (docs/simulator.md)

# Sweet spots (inclusive). SD1.5 from CivitAI (scripts/calibrate_simulator.py): steps p10..p75, cfg p5..(p90 - 1),
# megapixels p5..p75;
# the others follow their model cards (the CivitAI data holds almost no SDXL-family settings).
STEPS_SWEET = {"sd15": (20, 30), "sdxl": (25, 40), "sdxl_turbo": (4, 8), "sdxl_lightning": (4, 8), "pony": (20, 35)}
CFG_SWEET = {
    "sd15": (5.0, 9.0),
    "sdxl": (5.0, 8.0),
    "sdxl_turbo": (1.0, 2.0),
    "sdxl_lightning": (1.0, 2.0),
    "pony": (5.0, 8.5),
}
# Native pixel counts (megapixels): SD1.5 is trained at 512x512 (CivitAI mode 512x768), the SDXL group at ~1 MP.
NATIVE_MP = {"sd15": (0.262, 0.467), "sdxl": (0.75, 1.3)}
FAMILY_BASE = {"sd15": 0.0, "sdxl": 0.4, "sdxl_turbo": 0.1, "sdxl_lightning": 0.25, "pony": 0.2}
GOOD_PAIRS = {
    ("dpmpp_2m", "karras"): 0.2,
    ("dpmpp_2m_sde", "karras"): 0.2,
    ("dpmpp_sde", "karras"): 0.15,
    ("dpmpp_3m_sde", "exponential"): 0.15,
    ("euler_ancestral", "normal"): 0.1,
    ("euler", "sgm_uniform"): 0.1,
    ("ddim", "ddim_uniform"): 0.05,
    ("uni_pc", "normal"): 0.05,
}
BAD_SAMPLERS = {"dpm_fast": -0.5, "dpm_adaptive": -0.3, "lms": -0.15, "dpm_2": -0.1}
# Preferred log(width/height) per prompt family: portraits tall, landscapes/interiors wide, products square.
ASPECT_TARGET = {
    "photo_portrait": -0.4,
    "photo_landscape": 0.45,
    "anime": -0.3,
    "fantasy_illustration": 0.0,
    "oil_painting": -0.15,
    "render_3d": 0.0,
    "scifi_cyberpunk": 0.3,
    "architecture_interior": 0.35,
    "cartoon_comic": 0.0,
    "food_product": 0.0,
}
# What individual checkpoints are known for beyond their coarse style (community model descriptions), added
# as bonus x the prompt's weight on that family: several families share the "art" style.
CHECKPOINT_AFFINITY = {
    "zavychromaxl_v80.safetensors": {"fantasy_illustration": 0.6, "scifi_cyberpunk": 0.4},
    "revAnimated_v122EOL.safetensors": {"fantasy_illustration": 0.6, "anime": 0.2},
    "ghostmix_v20Bakedvae.safetensors": {"anime": 0.4, "fantasy_illustration": 0.3},
    "deliberate_v2.safetensors": {"oil_painting": 0.7},
    "dreamshaper_8.safetensors": {"fantasy_illustration": 0.4, "oil_painting": 0.2},
    "dreamshaperXL_alpha2Xl10.safetensors": {"fantasy_illustration": 0.3, "scifi_cyberpunk": 0.3},
    "disneyPixarCartoon_v10.safetensors": {"cartoon_comic": 0.8, "render_3d": 0.3},
    "toonyou_beta6.safetensors": {"cartoon_comic": 0.8},
    "protovisionXLHighFidelity3D_release0630Bakedvae.safetensors": {"render_3d": 0.6, "scifi_cyberpunk": 0.3},
    "crystalClearXL_ccxl.safetensors": {"food_product": 0.5, "architecture_interior": 0.3},
    "juggernautXL_v9Rundiffusionphoto2.safetensors": {"photo_portrait": 0.3, "photo_landscape": 0.2},
    "realvisxlV40_v40Bakedvae.safetensors": {"photo_portrait": 0.4},
    "epicrealism_naturalSinRC1VAE.safetensors": {"photo_landscape": 0.4},
    "majicmixRealistic_v7.safetensors": {"photo_portrait": 0.4},
}
INCOHERENT = -2.0  # an SD1.5 LoRA on an SDXL checkpoint, a refiner on SD1.5, lcm without an LCM model
UNPROMPTED = -6.0  # the main sampler's positive conditioning does not encode the prompt
NOISY = -4.0  # two-pass KSamplerAdvanced passes that do not hand over cleanly (comfy.usable.handover_problems)
REPEAT_PENALTY = -0.3  # the same LoRA file applied again (doubles its strength; no second style bonus)
ADDON_CAP = 0.6  # stacked add-on passes (hires, upscalers, face detailer, FreeU) saturate towards this gain


def _outside(x: float, lo: float, hi: float) -> tuple[float, float]:
    """Relative distance below `lo` and above `hi` (0 inside), capped at 3."""
    below = (lo - x) / lo if x < lo and lo > 0 else 0.0
    above = (x - hi) / hi if x > hi and hi > 0 else 0.0
    return min(below, 3.0), min(above, 3.0)


def _sampling(f: FlowFeatures, family: str) -> float:
    """Steps, cfg, sampler/scheduler and CFG-rescale rules."""
    s_lo, s_hi = STEPS_SWEET[family]
    c_lo, c_hi = CFG_SWEET[family]
    fast = family in ("sdxl_turbo", "sdxl_lightning")
    below, above = _outside(f.steps, s_lo, s_hi)
    u = -1.5 * below - (0.6 if fast else 0.25) * above
    below, above = _outside(f.cfg, c_lo, c_hi)
    burn = (1.5 if fast else 1.2) * above * (0.5 if f.cfg_fix else 1.0)
    u += -1.0 * below - burn + (0.05 if f.cfg_fix else 0.0)
    u += GOOD_PAIRS.get((f.sampler, f.scheduler), 0.0) + BAD_SAMPLERS.get(f.sampler, 0.0)
    if f.sampler == "lcm" and family != "sdxl_turbo" and not any("lcm" in n.lower() for n, _ in f.loras):
        u += INCOHERENT
    if family == "sdxl_lightning" and f.scheduler not in ("sgm_uniform", "karras", "simple"):
        u -= 0.3
    return u


def _resolution(p: PromptFeatures, f: FlowFeatures, family: str) -> float:
    """Native resolution per family (SD1.5 too big duplicates subjects, SDXL too small is mushy) and aspect fit."""
    if f.width <= 0 or f.height <= 0:
        return -1.0
    mp = f.width * f.height / 1e6
    lo, hi = NATIVE_MP[C.family_group(family)]
    below, above = _outside(mp, lo, hi)
    u = -1.2 * below - 0.9 * above
    target = sum(w * ASPECT_TARGET[fam] for fam, w in p.families.items())
    return u - 0.9 * abs(math.log(f.width / f.height) - target)


def _loras(p: PromptFeatures, f: FlowFeatures, family: str) -> float:
    """Architecture fit, style match, weight sweet spots (too strong burns), prompt-named LoRAs, stacking.

    A LoRA file applied twice counts once, and each repeat burns (REPEAT_PENALTY): applying the same
    weights again doubles their strength, it does not add a second style.
    """
    u = 0.0
    named = {n.lower() for n, _ in p.loras}
    seen: set[str] = set()
    for name, weight in f.loras:
        if name in seen:
            u += REPEAT_PENALTY
            continue
        seen.add(name)
        info = C.lora_info(name)
        stem = name.rsplit(".", 1)[0].lower()
        if stem in named:
            u += 0.3
        if info is None:
            continue
        if not C.lora_fits(info, family):
            u += INCOHERENT
            continue
        below, above = _outside(abs(weight), max(info.weight_min, 0.1), max(info.weight_max, abs(info.weight_min)))
        strength = min(abs(weight), 1.0)
        if "logo" in stem:
            fit = p.text  # text/logo LoRAs only help prompts asking for lettering
        elif "pixel" in stem:
            fit = p.pixel  # a pixel-art LoRA turns any render into pixel art: only prompts asking for it gain
        else:
            fit = p.style_share(info.style) if info.style != "general" else 0.3 + 0.5 * p.detail
        u += 0.6 * (fit - 0.45) * strength - 0.3 * below - 1.5 * above
    return u - 0.25 * max(0, len(f.loras) - 3)


def _saturate(gain: float) -> float:
    """Diminishing returns of stacked add-on passes: the sum of their gains, capped smoothly at ADDON_CAP."""
    return ADDON_CAP * (1.0 - math.exp(-gain / ADDON_CAP)) if gain > 0 else gain


def _addons(p: PromptFeatures, f: FlowFeatures, family: str) -> float:
    """Hires fix, upscale models, face detailer, FreeU, refiner, CLIP skip, prompt-model interactions.

    Each add-on helps some prompts and costs others (an upscaler over-sharpens a flat illustration,
    a face detailer invents faces in textures, FreeU oversaturates photos); the gains of a stack
    saturate (`_saturate`), so stacking every add-on does not beat picking the ones a prompt needs.
    """
    u, gain = 0.0, 0.0
    need = 0.3 + 0.4 * p.detail + 0.3 * p.landscape
    for i, d in enumerate(f.hires_denoise):
        gain += 0.6 * need * (0.3 if d < 0.2 else 1.0) / (i + 1)
        u -= 1.0 * (d - 0.65) / 0.35 if d > 0.65 else 0.0
    if f.hires_denoise and C.family_group(family) == "sd15":
        u += 0.9 * max(
            0.0, f.width * f.height / 1e6 - NATIVE_MP["sd15"][1]
        )  # hires fix is the right way to get SD1.5 to large sizes
    for i, name in enumerate(f.upscale_models):
        anime_model = "anime" in name.lower()
        match = p.families["anime"] + p.families["cartoon_comic"]
        gain += (0.35 * need + (0.2 * match - 0.1 * (1 - match) if anime_model else 0.0)) / (i + 1)
        u -= 0.15 * max(0.0, 0.6 - need)  # over-sharpening where the prompt asks for no fine detail
    if f.face_detailer:
        gain += 0.8 * p.face * (1 - 0.5 * p.families["photo_landscape"])
        u -= 0.15 * (1.0 - p.face)  # detects "faces" in textures when the prompt has none
    if f.freeu:
        gain += 0.1 * (1.0 - p.style_share("photo"))
        u -= 0.05 * p.style_share("photo")
    u += _saturate(gain)
    if f.refiner:
        if family == "sdxl":
            u += 0.5 * p.style_share("photo") - 0.15  # the SDXL refiner polishes photos, flattens stylised art
        elif C.family_group(family) == "sd15":
            u += INCOHERENT
        else:
            u -= 0.3
    if f.clip_skip > 2:
        u -= 0.4 * (f.clip_skip - 2)
    elif f.clip_skip == 2:
        u += 0.2 * (p.families["anime"] + p.families["cartoon_comic"]) - 0.15 * p.style_share("photo")
        if family == "pony":
            u += 0.2
    elif family == "pony":
        u -= 0.3
    if family == "pony" and p.quality_tags:
        u += 0.05 * min(p.quality_tags, 4)  # Pony was trained on quality tags (score_9, masterpiece...)
    if C.family_group(family) == "sdxl":
        u += 0.3 * p.text
    return u


def utility(p: PromptFeatures, f: FlowFeatures) -> float:
    """Noise-free preference utility of flow features `f` for prompt features `p` (higher is better)."""
    family = f.family or "sd15"
    if not f.prompt_wired:
        return UNPROMPTED  # the image ignores the prompt (or is steered away from it): nothing else matters
    style = p.style_share(f.style)
    u = FAMILY_BASE[family] + 2.2 * (style - 0.5)
    u += sum(bonus * p.families[fam] for fam, bonus in CHECKPOINT_AFFINITY.get(f.checkpoint or "", {}).items())
    if family == "pony":
        u += 0.4 * (p.families["anime"] + p.families["cartoon_comic"]) - 0.4 * p.style_share("photo") * (
            f.style != "photo"
        )
    return u + _sampling(f, family) + _resolution(p, f, family) + _loras(p, f, family) + _addons(p, f, family)


@lru_cache(maxsize=65536)
def _rendered(graph_json: str) -> tuple[FlowFeatures, float] | None:
    """Features of what a render would execute (output nodes and their ancestors) and the utility its image loses to
    noise (NOISY when its KSamplerAdvanced passes do not hand over cleanly, else 0), or None when it would not render.

    A flow does not render when the executed part fails validation, has no sampler or checkpoint, or
    would not fit a 24 GB GPU (`flowrl.comfy.usable.practical_problems`). Nodes that feed no output add nothing.
    """
    graph = rendered_subgraph(json.loads(graph_json))
    if not graph or validate_graph(graph) or practical_problems(graph) or refiner_problems(graph):
        return None
    f = flow_features(graph)
    if f.n_samplers == 0 or not f.has_output or f.checkpoint is None or f.family is None:
        return None
    return f, NOISY if handover_problems(graph) else 0.0


class PreferenceSimulator:
    """Scores (prompt, API flow) pairs like human preference for real pipelines (see docs/simulator.md).

    Args:
        noise: add the per-pair noise (deterministic, hash-seeded on seed, prompt and flow).
        noise_sd: its standard deviation on the score scale.
        seed: changes every pair's noise draw.
    """

    def __init__(self, noise: bool = True, noise_sd: float = DEFAULT_NOISE_SD, seed: int = 0) -> None:
        if not isinstance(noise, bool):
            raise ScorerError(
                f"PreferenceSimulator: noise must be true/false, got {noise!r}; fix scoring.options.noise"
            )
        if not isinstance(noise_sd, (int, float)) or noise_sd < 0:
            raise ScorerError(
                f"PreferenceSimulator: noise_sd must be a number >= 0, got {noise_sd!r}; fix scoring.options.noise_sd"
            )
        if not isinstance(seed, int):
            raise ScorerError(f"PreferenceSimulator: seed must be an integer, got {seed!r}; fix scoring.options.seed")
        self.noise, self.noise_sd, self.seed = noise, float(noise_sd), seed

    def _noise(self, prompt: str, graph_json: str) -> float:
        digest = hashlib.sha256(f"{self.seed}\x00{prompt}\x00{graph_json}".encode()).digest()
        return random.Random(int.from_bytes(digest[:8], "big")).gauss(0.0, self.noise_sd)

    def score_one(self, prompt: str, graph: dict) -> float:
        """Score of one pair; exactly 0.0 for an invalid graph."""
        graph_json = json.dumps(graph, sort_keys=True, separators=(",", ":"))
        rendered = _rendered(graph_json)
        if rendered is None:
            return 0.0
        features, noise_loss = rendered
        u = utility(prompt_features(prompt), features) + noise_loss
        value = LOW + SPAN / (1.0 + math.exp(-u / TEMPERATURE))
        if self.noise:
            value += self._noise(prompt, graph_json)
        return max(0.01, value)

    def score(self, prompts: list[str], flows: list[dict]) -> list[float]:
        """One score per (prompts[i], flows[i]) pair."""
        if len(prompts) != len(flows):
            raise ScorerError(
                f"PreferenceSimulator.score: {len(prompts)} prompts but {len(flows)} flows; pass one flow per prompt"
            )
        return [self.score_one(p, g) for p, g in zip(prompts, flows)]

    def __call__(self, prompts: list[str], completions: list[dict], **_) -> list[float]:
        """trl-style reward call."""
        return self.score(list(prompts), list(completions))
