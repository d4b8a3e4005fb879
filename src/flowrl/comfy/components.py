"""Catalog of real model files and sampling settings that flows may use, by checkpoint family.

SD1.5 ranges (steps, cfg, resolutions, LoRA weights, sampler popularity) are derived from real
CivitAI generation settings by scripts/derive_components.py into components.json; SDXL, Turbo,
Lightning and Pony ranges follow their model cards (the CivitAI data is almost all SD1.5).
See docs/components.md for the derivation and numbers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

FAMILIES = ("sd15", "sdxl", "sdxl_turbo", "sdxl_lightning", "pony")
STYLES = ("photo", "anime", "art", "3d", "general")
# Families sharing the SDXL architecture: their LoRAs, VAEs and refiner are interchangeable.
SDXL_GROUP = ("sdxl", "sdxl_turbo", "sdxl_lightning", "pony")


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint file with its architecture family and main style."""

    name: str
    family: str
    style: str
    refiner: bool = False


@dataclass(frozen=True)
class Lora:
    """A LoRA file with the family it was trained on, its style and a typical weight range."""

    name: str
    family: str
    style: str
    weight_min: float
    weight_max: float


@dataclass(frozen=True)
class FamilyRanges:
    """Sampling settings that work for one checkpoint family.

    steps/cfg are inclusive (low, high); resolutions are (width, height) pairs;
    samplers are (sampler_name, scheduler, weight) triples, weights summing to ~1.
    """

    steps: tuple[int, int]
    cfg: tuple[float, float]
    resolutions: tuple[tuple[int, int], ...]
    samplers: tuple[tuple[str, str, float], ...]
    clip_skip: tuple[int, ...] = (1,)


CHECKPOINTS: list[Checkpoint] = [
    # SD1.5
    Checkpoint("dreamshaper_8.safetensors", "sd15", "general"),
    Checkpoint("realisticVisionV60B1_v51HyperVAE.safetensors", "sd15", "photo"),
    Checkpoint("realisticVisionV51_v51VAE.safetensors", "sd15", "photo"),
    Checkpoint("majicmixRealistic_v7.safetensors", "sd15", "photo"),
    Checkpoint("epicrealism_naturalSinRC1VAE.safetensors", "sd15", "photo"),
    Checkpoint("cyberrealistic_v42.safetensors", "sd15", "photo"),
    Checkpoint("revAnimated_v122EOL.safetensors", "sd15", "art"),
    Checkpoint("ghostmix_v20Bakedvae.safetensors", "sd15", "art"),
    Checkpoint("deliberate_v2.safetensors", "sd15", "art"),
    Checkpoint("counterfeitV30_v30.safetensors", "sd15", "anime"),
    Checkpoint("anything-v5-PrtRE.safetensors", "sd15", "anime"),
    Checkpoint("meinamix_meinaV11.safetensors", "sd15", "anime"),
    Checkpoint("toonyou_beta6.safetensors", "sd15", "anime"),
    Checkpoint("disneyPixarCartoon_v10.safetensors", "sd15", "3d"),
    Checkpoint("v1-5-pruned-emaonly.safetensors", "sd15", "general"),
    # SDXL
    Checkpoint("sd_xl_base_1.0.safetensors", "sdxl", "general"),
    Checkpoint("juggernautXL_v9Rundiffusionphoto2.safetensors", "sdxl", "photo"),
    Checkpoint("realvisxlV40_v40Bakedvae.safetensors", "sdxl", "photo"),
    Checkpoint("dreamshaperXL_alpha2Xl10.safetensors", "sdxl", "general"),
    Checkpoint("animagineXLV31_v30.safetensors", "sdxl", "anime"),
    Checkpoint("crystalClearXL_ccxl.safetensors", "sdxl", "photo"),
    Checkpoint("protovisionXLHighFidelity3D_release0630Bakedvae.safetensors", "sdxl", "3d"),
    Checkpoint("zavychromaxl_v80.safetensors", "sdxl", "art"),
    Checkpoint("sd_xl_refiner_1.0.safetensors", "sdxl", "general", refiner=True),
    # SDXL Turbo
    Checkpoint("sd_xl_turbo_1.0_fp16.safetensors", "sdxl_turbo", "general"),
    Checkpoint("dreamshaperXL_turboDpmppSDEKarras.safetensors", "sdxl_turbo", "general"),
    # SDXL Lightning
    Checkpoint("realvisxlV40_v40LightningBakedvae.safetensors", "sdxl_lightning", "photo"),
    Checkpoint("juggernautXL_v9Rdphoto2Lightning.safetensors", "sdxl_lightning", "photo"),
    Checkpoint("sdxl_lightning_4step.safetensors", "sdxl_lightning", "general"),
    Checkpoint("dreamshaperXL_lightningDPMSDE.safetensors", "sdxl_lightning", "art"),
    # Pony
    Checkpoint("ponyDiffusionV6XL_v6StartWithThisOne.safetensors", "pony", "anime"),
    Checkpoint("autismmixSDXL_autismmixPony.safetensors", "pony", "anime"),
    Checkpoint("ponyRealism_v21MainVAE.safetensors", "pony", "photo"),
]

LORAS: list[Lora] = [
    # SD1.5 (weights: CivitAI p10..p90 = 0.5..1.0, narrowed per LoRA author advice)
    Lora("add_detail.safetensors", "sd15", "general", 0.3, 1.0),
    Lora("more_details.safetensors", "sd15", "general", 0.3, 0.8),
    Lora("epi_noiseoffset2.safetensors", "sd15", "photo", 0.5, 1.0),
    Lora("LowRA.safetensors", "sd15", "photo", 0.3, 0.7),
    Lora("detail_slider_v4.safetensors", "sd15", "general", 0.5, 1.5),
    Lora("film_grain_v1.safetensors", "sd15", "photo", 0.4, 0.8),
    Lora("animeoutlineV4_16.safetensors", "sd15", "anime", 0.5, 1.0),
    Lora("flat2.safetensors", "sd15", "anime", -1.0, 1.0),
    Lora("blindbox_v1_mix.safetensors", "sd15", "3d", 0.6, 1.0),
    Lora("ghibli_style_offset.safetensors", "sd15", "anime", 0.6, 1.0),
    Lora("Colorful_Portraits.safetensors", "sd15", "art", 0.5, 0.9),
    Lora("fantasy_world_v1.safetensors", "sd15", "art", 0.5, 0.9),
    # SDXL (also usable on Turbo/Lightning/Pony, same architecture)
    Lora("add-detail-xl.safetensors", "sdxl", "general", 0.5, 1.5),
    Lora("xl_more_art-full_v1.safetensors", "sdxl", "art", 0.5, 1.0),
    Lora("SDXLrender_v2.0.safetensors", "sdxl", "3d", 0.5, 1.0),
    Lora("sdxl_photorealistic_slider_v1-0.safetensors", "sdxl", "photo", 0.5, 1.5),
    Lora("Harrlogos_v2.0.safetensors", "sdxl", "general", 0.6, 1.0),
    Lora("pixel-art-xl.safetensors", "sdxl", "art", 0.6, 1.2),
    Lora("Aesthetic_Anime_v1s.safetensors", "sdxl", "anime", 0.5, 1.0),
    Lora("sdxl_lightning_4step_lora.safetensors", "sdxl_lightning", "general", 1.0, 1.0),
    Lora("Concept Art Twilight Style SDXL_LoRA_Pony Diffusion V6 XL.safetensors", "pony", "art", 0.6, 1.0),
    Lora("g0th1cPXL.safetensors", "pony", "anime", 0.6, 1.0),
]

SAMPLERS: list[str] = [
    "euler",
    "euler_ancestral",
    "heun",
    "dpm_2",
    "dpm_2_ancestral",
    "lms",
    "dpm_fast",
    "dpm_adaptive",
    "dpmpp_2s_ancestral",
    "dpmpp_sde",
    "dpmpp_2m",
    "dpmpp_2m_sde",
    "dpmpp_3m_sde",
    "ddim",
    "uni_pc",
    "lcm",
]
SCHEDULERS: list[str] = ["normal", "karras", "exponential", "sgm_uniform", "simple", "ddim_uniform", "beta"]
UPSCALE_MODELS: list[str] = [
    "4x-UltraSharp.pth",
    "RealESRGAN_x4plus.pth",
    "RealESRGAN_x4plus_anime_6B.pth",
    "4x_NMKD-Siax_200k.pth",
    "4x_foolhardy_Remacri.pth",
    "4x-AnimeSharp.pth",
]
FACE_DETECTORS: list[str] = ["bbox/face_yolov8m.pt", "bbox/face_yolov8n.pt", "bbox/hand_yolov8s.pth"]
SAM_MODELS: list[str] = ["sam_vit_b_01ec64.pth"]
VAES: dict[str, list[str]] = {
    "sd15": ["vae-ft-mse-840000-ema-pruned.safetensors", "kl-f8-anime2.ckpt", "orangemix.vae.pt"],
    "sdxl": ["sdxl_vae.safetensors", "sdxl.vae.safetensors"],
}

_SDXL_SIZES = ((1024, 1024), (832, 1216), (1216, 832), (896, 1152), (1152, 896), (768, 1344), (1344, 768))
# Model-card recommendations (stability.ai SDXL, SDXL-Turbo, ByteDance SDXL-Lightning, PonyDiffusion V6 XL).
_MODEL_CARD_RANGES = {
    "sdxl": FamilyRanges(
        steps=(20, 40),
        cfg=(5.0, 9.0),
        resolutions=_SDXL_SIZES,
        samplers=(
            ("dpmpp_2m", "karras", 0.35),
            ("dpmpp_2m_sde", "karras", 0.2),
            ("euler_ancestral", "normal", 0.2),
            ("euler", "normal", 0.1),
            ("dpmpp_3m_sde", "exponential", 0.1),
            ("uni_pc", "normal", 0.05),
        ),
    ),
    # SDXL-Turbo card: 1-4 steps at cfg 0 (no guidance); community merges use 4-8 steps at cfg 1-2.5.
    "sdxl_turbo": FamilyRanges(
        steps=(1, 8),
        cfg=(1.0, 2.5),
        resolutions=((512, 512), (768, 768), (1024, 1024), (832, 1216)),
        samplers=(("euler_ancestral", "normal", 0.4), ("dpmpp_sde", "karras", 0.4), ("lcm", "sgm_uniform", 0.2)),
    ),
    # SDXL-Lightning card: 2/4/8-step models, Euler with sgm_uniform ("trailing") schedule, cfg ~1.
    "sdxl_lightning": FamilyRanges(
        steps=(4, 8),
        cfg=(1.0, 2.0),
        resolutions=_SDXL_SIZES,
        samplers=(("euler", "sgm_uniform", 0.5), ("dpmpp_sde", "karras", 0.3), ("dpmpp_2m", "sgm_uniform", 0.2)),
    ),
    # Pony V6 card: Euler a, 25 steps, cfg ~7, clip skip 2.
    "pony": FamilyRanges(
        steps=(20, 35),
        cfg=(5.0, 8.5),
        resolutions=_SDXL_SIZES,
        samplers=(("euler_ancestral", "normal", 0.5), ("dpmpp_2m", "karras", 0.3), ("dpmpp_2m_sde", "karras", 0.2)),
        clip_skip=(2,),
    ),
}


@cache
def _derived() -> dict:
    """The CivitAI-derived statistics shipped next to this module (see scripts/derive_components.py)."""
    return json.loads((Path(__file__).with_name("components.json")).read_text())


@cache
def family_ranges(family: str) -> FamilyRanges:
    """Sampling ranges for a checkpoint family ('sd15' from CivitAI data, others from model cards).

    Raises:
        KeyError: for a family not in FAMILIES.
    """
    if family in _MODEL_CARD_RANGES:
        return _MODEL_CARD_RANGES[family]
    if family != "sd15":
        raise KeyError(f"unknown checkpoint family {family!r}; expected one of {FAMILIES}")
    sd15 = _derived()["sd15"]
    samplers = tuple((s, sch, w) for s, sch, w in sd15["samplers"] if w >= 0.004)
    return FamilyRanges(
        steps=(int(sd15["steps"]["p10"]), int(sd15["steps"]["p90"])),
        cfg=(float(sd15["cfg"]["p10"]), float(sd15["cfg"]["p90"])),
        resolutions=tuple((w, h) for w, h, _ in sd15["resolutions"]),
        samplers=samplers,
        clip_skip=tuple(int(k) for k in sd15["clip_skip"] if int(k) <= 2),
    )


def family_group(family: str) -> str:
    """'sd15' or 'sdxl': the architecture a family's LoRAs, VAEs and refiners must match."""
    return "sdxl" if family in SDXL_GROUP else "sd15"


def checkpoint_info(name: str) -> Checkpoint | None:
    """The catalog entry for a checkpoint file name, or None if unknown."""
    return _CHECKPOINTS_BY_NAME.get(name)


def lora_info(name: str) -> Lora | None:
    """The catalog entry for a LoRA file name, or None if unknown."""
    return _LORAS_BY_NAME.get(name)


# Substrings of checkpoint names of architectures this catalog does not cover (SD2.x, SD3, Flux, video...).
_UNSUPPORTED_HINTS = (
    "v2-",
    "sd2",
    "sd_2",
    "768-v",
    "sd3",
    "flux",
    "svd",
    "cascade",
    "hunyuan",
    "ltx",
    "wan2",
    "cosmos",
    "aura",
    "hidream",
    "lumina",
    "mochi",
)


def guess_family(ckpt_name: str) -> str | None:
    """Family of a checkpoint file: the catalog's if known, else guessed from the name; None if unsupported."""
    info = checkpoint_info(ckpt_name)
    if info is not None:
        return info.family
    lower = ckpt_name.lower()
    if any(hint in lower for hint in _UNSUPPORTED_HINTS):
        return None
    for hint, family in (("turbo", "sdxl_turbo"), ("lightning", "sdxl_lightning"), ("pony", "pony"), ("xl", "sdxl")):
        if hint in lower:
            return family
    return "sd15"


def compatible_loras(family: str) -> list[Lora]:
    """LoRAs to sample for a checkpoint family: its own, plus generic SDXL ones on any SDXL-group family."""
    return [l for l in LORAS if l.family == family or (l.family == "sdxl" and family_group(family) == "sdxl")]


def lora_fits(lora: Lora, checkpoint_family: str) -> bool:
    """Whether a LoRA can be applied on a checkpoint of `checkpoint_family` (same architecture group)."""
    return family_group(lora.family) == family_group(checkpoint_family)


_CHECKPOINTS_BY_NAME = {c.name: c for c in CHECKPOINTS}
_LORAS_BY_NAME = {l.name: l for l in LORAS}
