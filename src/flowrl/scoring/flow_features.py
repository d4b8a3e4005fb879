"""Features of an API-format ComfyUI flow: checkpoints, LoRAs, sampling settings, resolution and add-on passes."""

from __future__ import annotations

from dataclasses import dataclass, field

from flowrl.comfy import components as C
from flowrl.comfy.graph import is_link
from flowrl.comfy.usable import prompt_in_conditioning

SAMPLER_NODES = ("KSampler", "KSamplerAdvanced", "SamplerCustom")
LATENT_UPSCALE_NODES = ("LatentUpscale", "LatentUpscaleBy", "NNLatentUpscale")
FREEU_NODES = ("FreeU", "FreeU_V2")
CFG_FIX_NODES = ("RescaleCFG", "Automatic CFG")
FACE_DETAILER_NODES = ("FaceDetailer", "FaceDetailerPipe")
OUTPUT_NODES = ("SaveImage", "PreviewImage", "Image Save", "SaveAnimatedWEBP")


@dataclass(frozen=True)
class FlowFeatures:
    """What the simulator reads from a flow (main = the first-pass sampler and the non-refiner checkpoint)."""

    checkpoint: str | None
    family: str | None  # flowrl.comfy.components family of the main checkpoint (None: unsupported)
    style: str  # component style of the main checkpoint ('general' if unknown)
    refiner: bool
    loras: tuple[tuple[str, float], ...] = field(default_factory=tuple)  # (file name, model strength)
    sampler: str = ""
    scheduler: str = ""
    steps: int = 0
    cfg: float = 0.0
    width: int = 0
    height: int = 0
    hires_denoise: tuple[float, ...] = field(default_factory=tuple)  # one per latent hires-fix pass
    upscale_models: tuple[str, ...] = field(default_factory=tuple)  # ImageUpscaleWithModel passes
    face_detailer: bool = False
    freeu: bool = False
    cfg_fix: bool = False
    clip_skip: int = 1
    n_samplers: int = 0
    has_output: bool = False
    prompt_wired: bool = True  # the main sampler's positive conditioning encodes the prompt (and its negative does not)


def _source_class(graph: dict, value) -> str | None:
    """class_type of the node a link points to (None for a widget value or a dangling link)."""
    if not is_link(value):
        return None
    node = graph.get(str(value[0]))
    return node.get("class_type") if isinstance(node, dict) else None


def _lora_entries(node: dict) -> list[tuple[str, float]]:
    inputs = node.get("inputs", {})
    kind = node.get("class_type")
    if kind in ("LoraLoader", "LoraLoaderModelOnly"):
        return [(str(inputs.get("lora_name", "")), float(inputs.get("strength_model", 1.0)))]
    if kind == "CR LoRA Stack":
        out = []
        for i in range(1, 4):
            name = str(inputs.get(f"lora_name_{i}", "None"))
            if inputs.get(f"switch_{i}") == "On" and name != "None":
                out.append((name, float(inputs.get(f"model_weight_{i}", 1.0))))
        return out
    return []


def flow_features(graph: dict) -> FlowFeatures:
    """Parse `graph` (API format) into FlowFeatures; never raises on odd but well-formed graphs."""
    nodes = {nid: n for nid, n in graph.items() if isinstance(n, dict)}
    kinds = [n.get("class_type") for n in nodes.values()]
    ckpts = [
        str(n.get("inputs", {}).get("ckpt_name", ""))
        for n in nodes.values()
        if n.get("class_type") == "CheckpointLoaderSimple"
    ]
    infos = [(name, C.checkpoint_info(name)) for name in ckpts]
    main = next((name for name, info in infos if info is None or not info.refiner), None)
    main_info = C.checkpoint_info(main) if main else None
    refiner = any(info is not None and info.refiner for _, info in infos) or (
        main is not None and len(ckpts) > 1 and any("refiner" in c.lower() for c in ckpts)
    )
    loras = tuple(e for n in nodes.values() for e in _lora_entries(n))

    samplers = [n for n in nodes.values() if n.get("class_type") in SAMPLER_NODES]
    first = [n for n in samplers if _source_class(graph, n.get("inputs", {}).get("latent_image")) == "EmptyLatentImage"]
    main_sampler = (first or samplers or [None])[0]
    hires = tuple(
        float(n["inputs"].get("denoise", 1.0))
        for n in samplers
        if _source_class(graph, n.get("inputs", {}).get("latent_image")) in LATENT_UPSCALE_NODES
    )
    latent = next((n for n in nodes.values() if n.get("class_type") == "EmptyLatentImage"), None)
    s_in = main_sampler.get("inputs", {}) if main_sampler else {}
    clip_layers = [
        int(n["inputs"].get("stop_at_clip_layer", -1))
        for n in nodes.values()
        if n.get("class_type") == "CLIPSetLastLayer" and not is_link(n["inputs"].get("stop_at_clip_layer"))
    ]
    upscalers = tuple(
        str(graph[str(n["inputs"]["upscale_model"][0])]["inputs"].get("model_name", ""))
        for n in nodes.values()
        if n.get("class_type") == "ImageUpscaleWithModel"
        and _source_class(graph, n.get("inputs", {}).get("upscale_model")) == "UpscaleModelLoader"
    )

    def number(value, default, cast):
        return cast(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default

    return FlowFeatures(
        checkpoint=main,
        family=C.guess_family(main) if main else None,
        style=main_info.style if main_info else "general",
        refiner=refiner,
        loras=loras,
        sampler=str(s_in.get("sampler_name", "")),
        scheduler=str(s_in.get("scheduler", "")),
        steps=number(s_in.get("steps"), 0, int),
        cfg=number(s_in.get("cfg"), 0.0, float),
        width=number(latent["inputs"].get("width"), 0, int) if latent else 0,
        height=number(latent["inputs"].get("height"), 0, int) if latent else 0,
        hires_denoise=hires,
        upscale_models=upscalers,
        face_detailer=any(k in FACE_DETAILER_NODES for k in kinds),
        freeu=any(k in FREEU_NODES for k in kinds),
        cfg_fix=any(k in CFG_FIX_NODES for k in kinds),
        clip_skip=max((-c for c in clip_layers), default=1),
        n_samplers=len(samplers),
        has_output=any(k in OUTPUT_NODES for k in kinds),
        prompt_wired=prompt_in_conditioning(graph, s_in.get("positive")) is not False
        and prompt_in_conditioning(graph, s_in.get("negative")) is not True,
    )
