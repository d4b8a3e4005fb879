"""Write the shipped base-flow library (one API-format JSON per flow) from the specs below.

The JSON files are the artifact; this builder only keeps them consistent and reviewable.
Rebuild with: .venv/bin/python -m flowrl.data.base_flows.build
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from flowrl.comfy.graph import PROMPT_PLACEHOLDER
from flowrl.comfy.validate import ensure_valid
from flowrl.io import write_json

HERE = Path(__file__).parent

NEG_PHOTO = (
    "(worst quality, low quality:1.4), blurry, deformed, disfigured, bad anatomy, extra fingers, "
    "mutated hands, poorly drawn face, watermark, text, signature, cartoon, 3d render"
)
NEG_ANIME = (
    "(worst quality, low quality:1.4), lowres, bad anatomy, bad hands, missing fingers, extra digit, "
    "fewer digits, cropped, jpeg artifacts, signature, watermark, username, easynegative"
)
NEG_ART = "ugly, deformed, noisy, blurry, low contrast, distorted, grainy, watermark, text, frame, border"
NEG_XL = "lowres, worst quality, blurry, jpeg artifacts, watermark, text, deformed, bad anatomy"
NEG_PONY = "score_4, score_5, score_6, source_pony, source_furry, lowres, bad anatomy, bad hands, watermark"
NEG_SHORT = "blurry, low quality"


@dataclass
class Spec:
    """One base flow: a checkpoint plus the optional features wired around it."""

    name: str
    ckpt: str
    negative: str
    sampler: str = "dpmpp_2m"
    scheduler: str = "karras"
    steps: int = 25
    cfg: float = 7.0
    size: tuple[int, int] = (512, 768)
    loras: list[tuple[str, float]] = field(default_factory=list)
    lora_stack: list[tuple[str, float]] = field(default_factory=list)
    clip_skip: int | None = None
    patches: list[str] = field(default_factory=list)  # freeu, freeu_v2, rescale, autocfg
    vae: str | None = None
    hires: tuple | None = None  # ("latent", w, h, denoise) | ("latent_by", scale, denoise)
    two_pass: bool = False  # KSamplerAdvanced split into two passes
    upscale_model: str | None = None
    face: bool = False
    sdxl_text: bool = False  # CLIPTextEncodeSDXL for the positive prompt


class _Graph:
    """Numbered-node API graph under construction."""

    def __init__(self) -> None:
        self.nodes: dict[str, dict] = {}

    def add(self, class_type: str, **inputs) -> str:
        node_id = str(len(self.nodes) + 1)
        self.nodes[node_id] = {"class_type": class_type, "inputs": inputs}
        return node_id


def _face_detailer(g: _Graph, image, model, clip, vae, pos, neg, seed: int) -> str:
    """Impact-pack FaceDetailer with its YOLO face detector and SAM model."""
    det = g.add("UltralyticsDetectorProvider", model_name="bbox/face_yolov8m.pt")
    sam = g.add("SAMLoader", model_name="sam_vit_b_01ec64.pth", device_mode="AUTO")
    return g.add(
        "FaceDetailer",
        image=image,
        model=model,
        clip=clip,
        vae=vae,
        positive=pos,
        negative=neg,
        bbox_detector=[det, 0],
        segm_detector_opt=[det, 1],
        sam_model_opt=[sam, 0],
        guide_size=512,
        guide_size_for=True,
        max_size=1024,
        seed=seed,
        steps=20,
        cfg=7.0,
        sampler_name="euler",
        scheduler="normal",
        denoise=0.45,
        feather=5,
        noise_mask=True,
        force_inpaint=True,
        bbox_threshold=0.5,
        bbox_dilation=10,
        bbox_crop_factor=3,
        sam_detection_hint="center-1",
        sam_dilation=0,
        sam_threshold=0.93,
        sam_bbox_expansion=0,
        sam_mask_hint_threshold=0.7,
        sam_mask_hint_use_negative="False",
        drop_size=10,
        wildcard="",
        cycle=1,
        inpaint_model=False,
        noise_mask_feather=20,
    )


def build(spec: Spec, seed: int = 123456789) -> dict:
    """API graph for a single-checkpoint Spec."""
    g = _Graph()
    ckpt = g.add("CheckpointLoaderSimple", ckpt_name=spec.ckpt)
    model, clip, vae = [ckpt, 0], [ckpt, 1], [ckpt, 2]
    for lora, weight in spec.loras:
        node = g.add("LoraLoader", model=model, clip=clip, lora_name=lora, strength_model=weight, strength_clip=weight)
        model, clip = [node, 0], [node, 1]
    if spec.lora_stack:
        slots = spec.lora_stack + [("None", 1.0)] * (3 - len(spec.lora_stack))
        stack_inputs = {}
        for i, (lora, weight) in enumerate(slots, start=1):
            stack_inputs |= {
                f"switch_{i}": "On" if lora != "None" else "Off",
                f"lora_name_{i}": lora,
                f"model_weight_{i}": weight,
                f"clip_weight_{i}": weight,
            }
        stack = g.add("CR LoRA Stack", **stack_inputs)
        node = g.add("CR Apply LoRA Stack", model=model, clip=clip, lora_stack=[stack, 0])
        model, clip = [node, 0], [node, 1]
    if spec.clip_skip:
        clip = [g.add("CLIPSetLastLayer", clip=clip, stop_at_clip_layer=-spec.clip_skip), 0]
    for patch in spec.patches:
        if patch == "freeu":
            model = [g.add("FreeU", model=model, b1=1.3, b2=1.4, s1=0.9, s2=0.2), 0]
        elif patch == "freeu_v2":
            model = [g.add("FreeU_V2", model=model, b1=1.3, b2=1.4, s1=0.9, s2=0.2), 0]
        elif patch == "rescale":
            model = [g.add("RescaleCFG", model=model, multiplier=0.7), 0]
        elif patch == "autocfg":
            model = [g.add("Automatic CFG", model=model, hard_mode=True, boost=True), 0]
    if spec.vae:
        vae = [g.add("VAELoader", vae_name=spec.vae), 0]
    width, height = spec.size
    if spec.sdxl_text:
        pos = g.add(
            "CLIPTextEncodeSDXL",
            clip=clip,
            text_g=PROMPT_PLACEHOLDER,
            text_l=PROMPT_PLACEHOLDER,
            width=width,
            height=height,
            crop_w=0,
            crop_h=0,
            target_width=width,
            target_height=height,
        )
    else:
        pos = g.add("CLIPTextEncode", clip=clip, text=PROMPT_PLACEHOLDER)
    neg = g.add("CLIPTextEncode", clip=clip, text=spec.negative)
    latent = g.add("EmptyLatentImage", width=width, height=height, batch_size=1)
    common = dict(
        model=model,
        positive=[pos, 0],
        negative=[neg, 0],
        cfg=spec.cfg,
        sampler_name=spec.sampler,
        scheduler=spec.scheduler,
    )
    if spec.two_pass:
        split = spec.steps * 2 // 3
        first = g.add(
            "KSamplerAdvanced",
            **common,
            latent_image=[latent, 0],
            add_noise="enable",
            noise_seed=seed,
            steps=spec.steps,
            start_at_step=0,
            end_at_step=split,
            return_with_leftover_noise="enable",
        )
        samples = g.add(
            "KSamplerAdvanced",
            **common,
            latent_image=[first, 0],
            add_noise="disable",
            noise_seed=seed,
            steps=spec.steps,
            start_at_step=split,
            end_at_step=10000,
            return_with_leftover_noise="disable",
        )
    else:
        samples = g.add("KSampler", **common, latent_image=[latent, 0], seed=seed, steps=spec.steps, denoise=1.0)
    if spec.hires:
        if spec.hires[0] == "latent":
            _, up_w, up_h, denoise = spec.hires
            up = g.add(
                "LatentUpscale",
                samples=[samples, 0],
                upscale_method="nearest-exact",
                width=up_w,
                height=up_h,
                crop="disabled",
            )
        else:
            _, scale, denoise = spec.hires
            up = g.add("LatentUpscaleBy", samples=[samples, 0], upscale_method="bilinear", scale_by=scale)
        samples = g.add(
            "KSampler", **common, latent_image=[up, 0], seed=seed, steps=max(spec.steps // 2, 4), denoise=denoise
        )
    image = [g.add("VAEDecode", samples=[samples, 0], vae=vae), 0]
    if spec.face:
        image = [_face_detailer(g, image, model, clip, vae, [pos, 0], [neg, 0], seed), 0]
    if spec.upscale_model:
        loader = g.add("UpscaleModelLoader", model_name=spec.upscale_model)
        image = [g.add("ImageUpscaleWithModel", upscale_model=[loader, 0], image=image), 0]
    g.add("SaveImage", images=image, filename_prefix=f"flowrl/{spec.name}")
    return g.nodes


def build_refiner(
    name: str,
    base: str,
    negative: str,
    steps: int = 30,
    refiner_at: int = 24,
    cfg: float = 7.0,
    sampler: str = "dpmpp_2m",
    scheduler: str = "karras",
    size: tuple[int, int] = (1024, 1024),
    loras: list[tuple[str, float]] = (),
    upscale_model: str | None = None,
    seed: int = 123456789,
) -> dict:
    """SDXL base + refiner: two KSamplerAdvanced passes, CLIPTextEncodeSDXL / CLIPTextEncodeSDXLRefiner."""
    g = _Graph()
    ckpt = g.add("CheckpointLoaderSimple", ckpt_name=base)
    model, clip = [ckpt, 0], [ckpt, 1]
    for lora, weight in loras:
        node = g.add("LoraLoader", model=model, clip=clip, lora_name=lora, strength_model=weight, strength_clip=weight)
        model, clip = [node, 0], [node, 1]
    ref = g.add("CheckpointLoaderSimple", ckpt_name="sd_xl_refiner_1.0.safetensors")
    width, height = size
    sdxl = dict(width=width, height=height, crop_w=0, crop_h=0, target_width=width, target_height=height)
    pos = g.add("CLIPTextEncodeSDXL", clip=clip, text_g=PROMPT_PLACEHOLDER, text_l=PROMPT_PLACEHOLDER, **sdxl)
    neg = g.add("CLIPTextEncodeSDXL", clip=clip, text_g=negative, text_l=negative, **sdxl)
    rpos = g.add(
        "CLIPTextEncodeSDXLRefiner", clip=[ref, 1], text=PROMPT_PLACEHOLDER, ascore=6.0, width=width, height=height
    )
    rneg = g.add("CLIPTextEncodeSDXLRefiner", clip=[ref, 1], text=negative, ascore=2.5, width=width, height=height)
    latent = g.add("EmptyLatentImage", width=width, height=height, batch_size=1)
    shared = dict(cfg=cfg, sampler_name=sampler, scheduler=scheduler, noise_seed=seed, steps=steps)
    first = g.add(
        "KSamplerAdvanced",
        model=model,
        positive=[pos, 0],
        negative=[neg, 0],
        latent_image=[latent, 0],
        add_noise="enable",
        start_at_step=0,
        end_at_step=refiner_at,
        return_with_leftover_noise="enable",
        **shared,
    )
    second = g.add(
        "KSamplerAdvanced",
        model=[ref, 0],
        positive=[rpos, 0],
        negative=[rneg, 0],
        latent_image=[first, 0],
        add_noise="disable",
        start_at_step=refiner_at,
        end_at_step=10000,
        return_with_leftover_noise="disable",
        **shared,
    )
    image = [g.add("VAEDecode", samples=[second, 0], vae=[ref, 2]), 0]
    if upscale_model:
        loader = g.add("UpscaleModelLoader", model_name=upscale_model)
        image = [g.add("ImageUpscaleWithModel", upscale_model=[loader, 0], image=image), 0]
    g.add("SaveImage", images=image, filename_prefix=f"flowrl/{name}")
    return g.nodes


# the library, one flow a row, kept as written (the formatter would spread each over up to 15 lines)
# fmt: off
SPECS: list[Spec] = [
    # --- SD1.5 ---
    Spec("sd15_txt2img_basic", "v1-5-pruned-emaonly.safetensors", NEG_SHORT, "euler", "normal", 20, 7.0, (512, 512)),
    Spec("sd15_dreamshaper_dpmpp2m", "dreamshaper_8.safetensors", NEG_ART, "dpmpp_2m", "karras", 25, 7.0),
    Spec("sd15_photo_sde_vae", "realisticVisionV60B1_v51HyperVAE.safetensors", NEG_PHOTO, "dpmpp_sde", "karras", 30, 5.0,
         vae="vae-ft-mse-840000-ema-pruned.safetensors"),
    Spec("sd15_anime_clipskip", "counterfeitV30_v30.safetensors", NEG_ANIME, "euler_ancestral", "normal", 28, 7.0,
         clip_skip=2),
    Spec("sd15_anime_clipskip_vae", "anything-v5-PrtRE.safetensors", NEG_ANIME, "dpmpp_2m", "karras", 25, 8.0,
         clip_skip=2, vae="kl-f8-anime2.ckpt"),
    Spec("sd15_one_lora", "dreamshaper_8.safetensors", NEG_ART, "dpmpp_2m", "karras", 30, 7.0,
         loras=[("add_detail.safetensors", 0.6)]),
    Spec("sd15_two_loras_photo", "majicmixRealistic_v7.safetensors", NEG_PHOTO, "dpmpp_2m_sde", "karras", 30, 6.0,
         loras=[("epi_noiseoffset2.safetensors", 0.8), ("more_details.safetensors", 0.5)]),
    Spec("sd15_three_loras_anime", "meinamix_meinaV11.safetensors", NEG_ANIME, "euler_ancestral", "normal", 30, 7.0,
         loras=[("animeoutlineV4_16.safetensors", 0.7), ("ghibli_style_offset.safetensors", 0.8),
                ("add_detail.safetensors", 0.4)], clip_skip=2),
    Spec("sd15_lora_stack", "revAnimated_v122EOL.safetensors", NEG_ART, "dpmpp_2m", "karras", 30, 7.5,
         lora_stack=[("fantasy_world_v1.safetensors", 0.7), ("add_detail.safetensors", 0.5)]),
    Spec("sd15_lora_stack_three_clipskip", "ghostmix_v20Bakedvae.safetensors", NEG_ANIME, "dpmpp_sde", "karras", 25, 6.5,
         lora_stack=[("Colorful_Portraits.safetensors", 0.6), ("flat2.safetensors", -0.5),
                     ("more_details.safetensors", 0.5)], clip_skip=2),
    Spec("sd15_hires_latent", "dreamshaper_8.safetensors", NEG_ART, "dpmpp_2m", "karras", 25, 7.0, (512, 768),
         hires=("latent", 768, 1152, 0.5)),
    Spec("sd15_hires_latent_by_lora", "epicrealism_naturalSinRC1VAE.safetensors", NEG_PHOTO, "dpmpp_sde", "karras", 25, 5.5,
         (512, 768), loras=[("add_detail.safetensors", 0.5)], hires=("latent_by", 1.5, 0.45)),
    Spec("sd15_hires_anime_clipskip", "counterfeitV30_v30.safetensors", NEG_ANIME, "euler_ancestral", "normal", 28, 8.0,
         (512, 768), clip_skip=2, hires=("latent_by", 2.0, 0.55)),
    Spec("sd15_upscale_model", "cyberrealistic_v42.safetensors", NEG_PHOTO, "dpmpp_2m", "karras", 30, 6.0,
         upscale_model="4x-UltraSharp.pth"),
    Spec("sd15_hires_then_esrgan", "revAnimated_v122EOL.safetensors", NEG_ART, "dpmpp_2m", "karras", 30, 7.0, (512, 512),
         hires=("latent", 768, 768, 0.5), upscale_model="RealESRGAN_x4plus.pth"),
    Spec("sd15_freeu", "dreamshaper_8.safetensors", NEG_ART, "euler_ancestral", "normal", 25, 7.0, patches=["freeu"]),
    Spec("sd15_freeu_v2_lora", "toonyou_beta6.safetensors", NEG_ANIME, "dpmpp_2m", "karras", 25, 7.0,
         loras=[("blindbox_v1_mix.safetensors", 0.8)], patches=["freeu_v2"]),
    Spec("sd15_face_detailer", "realisticVisionV51_v51VAE.safetensors", NEG_PHOTO, "dpmpp_2m", "karras", 30, 5.0,
         face=True),
    Spec("sd15_face_detailer_hires_lora", "majicmixRealistic_v7.safetensors", NEG_PHOTO, "dpmpp_sde", "karras", 25, 6.0,
         loras=[("film_grain_v1.safetensors", 0.5)], hires=("latent_by", 1.5, 0.4), face=True),
    Spec("sd15_rescale_cfg", "disneyPixarCartoon_v10.safetensors", NEG_ART, "dpmpp_2m", "karras", 30, 9.0,
         patches=["rescale"]),
    Spec("sd15_autocfg", "deliberate_v2.safetensors", NEG_ART, "dpmpp_3m_sde", "exponential", 30, 8.0,
         patches=["autocfg"]),
    Spec("sd15_two_pass_advanced", "dreamshaper_8.safetensors", NEG_ART, "uni_pc", "normal", 30, 7.0, two_pass=True),
    Spec("sd15_ddim_square", "v1-5-pruned-emaonly.safetensors", NEG_ART, "ddim", "ddim_uniform", 40, 7.5, (512, 512)),
    Spec("sd15_kitchen_sink", "revAnimated_v122EOL.safetensors", NEG_ART, "dpmpp_2m", "karras", 28, 7.0,
         loras=[("add_detail.safetensors", 0.5)], clip_skip=2, patches=["freeu"],
         vae="vae-ft-mse-840000-ema-pruned.safetensors", hires=("latent_by", 1.5, 0.5),
         upscale_model="4x_NMKD-Siax_200k.pth"),
    # --- SDXL ---
    Spec("sdxl_txt2img_basic", "sd_xl_base_1.0.safetensors", NEG_XL, "euler", "normal", 30, 7.0, (1024, 1024)),
    Spec("sdxl_juggernaut_sdxltext", "juggernautXL_v9Rundiffusionphoto2.safetensors", NEG_PHOTO, "dpmpp_2m_sde",
         "karras", 35, 5.0, (832, 1216), sdxl_text=True),
    Spec("sdxl_loras_vae", "dreamshaperXL_alpha2Xl10.safetensors", NEG_XL, "dpmpp_2m", "karras", 30, 6.0, (1024, 1024),
         loras=[("add-detail-xl.safetensors", 1.0), ("xl_more_art-full_v1.safetensors", 0.7)],
         vae="sdxl_vae.safetensors"),
    Spec("sdxl_anime_lora_stack", "animagineXLV31_v30.safetensors", NEG_ANIME, "euler_ancestral", "normal", 28, 7.0,
         (832, 1216), lora_stack=[("Aesthetic_Anime_v1s.safetensors", 0.8)], clip_skip=2),
    Spec("sdxl_freeu_v2_rescale", "crystalClearXL_ccxl.safetensors", NEG_PHOTO, "dpmpp_3m_sde", "exponential", 30, 6.0,
         (1216, 832), patches=["freeu_v2", "rescale"]),
    Spec("sdxl_hires_upscale", "zavychromaxl_v80.safetensors", NEG_XL, "dpmpp_2m", "karras", 30, 7.0, (832, 1216),
         hires=("latent_by", 1.25, 0.4), upscale_model="4x_foolhardy_Remacri.pth"),
    Spec("sdxl_face_detailer", "realvisxlV40_v40Bakedvae.safetensors", NEG_PHOTO, "dpmpp_sde", "karras", 30, 5.0,
         (896, 1152), face=True),
    Spec("sdxl_two_pass_advanced_3d", "protovisionXLHighFidelity3D_release0630Bakedvae.safetensors", NEG_XL,
         "dpmpp_2m_sde", "karras", 36, 6.5, (1024, 1024), loras=[("SDXLrender_v2.0.safetensors", 0.8)], two_pass=True),
    Spec("sdxl_turbo_one_step", "sd_xl_turbo_1.0_fp16.safetensors", NEG_SHORT, "euler_ancestral", "normal", 1, 1.0,
         (512, 512)),
    Spec("sdxl_turbo_dreamshaper", "dreamshaperXL_turboDpmppSDEKarras.safetensors", NEG_XL, "dpmpp_sde", "karras", 6,
         2.0, (832, 1216), loras=[("add-detail-xl.safetensors", 0.8)]),
    Spec("sdxl_lightning_4step", "sdxl_lightning_4step.safetensors", NEG_SHORT, "euler", "sgm_uniform", 4, 1.0,
         (1024, 1024)),
    Spec("sdxl_lightning_upscale", "juggernautXL_v9Rdphoto2Lightning.safetensors", NEG_PHOTO, "dpmpp_sde", "karras", 6,
         1.5, (832, 1216), upscale_model="4x-UltraSharp.pth"),
    Spec("pony_clipskip_loras", "ponyDiffusionV6XL_v6StartWithThisOne.safetensors", NEG_PONY, "euler_ancestral",
         "normal", 25, 7.0, (832, 1216), loras=[("g0th1cPXL.safetensors", 0.8)], clip_skip=2),
    Spec("pony_realism_face", "ponyRealism_v21MainVAE.safetensors", NEG_PONY, "dpmpp_2m_sde", "karras", 30, 6.0,
         (896, 1152), clip_skip=2, face=True),
]

REFINER_FLOWS = [
    dict(name="sdxl_base_refiner", base="sd_xl_base_1.0.safetensors", negative=NEG_XL),
    dict(name="sdxl_base_refiner_lora_upscale", base="juggernautXL_v9Rundiffusionphoto2.safetensors",
         negative=NEG_PHOTO, steps=40, refiner_at=32, cfg=6.0, sampler="dpmpp_2m_sde", size=(832, 1216),
         loras=[("sdxl_photorealistic_slider_v1-0.safetensors", 0.8)], upscale_model="4x-UltraSharp.pth"),
]
# fmt: on


def build_all() -> dict[str, dict]:
    """Every library flow by name, each checked against the node catalog."""
    flows = {spec.name: build(spec) for spec in SPECS}
    flows |= {kw["name"]: build_refiner(**kw) for kw in REFINER_FLOWS}
    for name, graph in flows.items():
        ensure_valid(graph, source=f"base flow {name}")
    return flows


def main() -> None:
    """Rewrite the JSON files next to this module."""
    for old in HERE.glob("*.json"):
        old.unlink()
    flows = build_all()
    for name, graph in flows.items():
        write_json(HERE / f"{name}.json", graph)
    print(f"wrote {len(flows)} base flows to {HERE}")


if __name__ == "__main__":
    main()
