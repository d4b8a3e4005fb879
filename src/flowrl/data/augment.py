"""Augment base flows into many variants by re-sampling compatible components and settings.

A variant keeps its base's structure (same nodes and links) and the architecture family of its
main checkpoint; it re-draws checkpoint, LoRAs and weights, sampler/scheduler, steps, cfg,
resolution, seed, hires denoise and scale, upscale/VAE/detector models and patch strengths from
flowrl.comfy.components, within that family's ranges. Every variant validates against the node
catalog and variants are de-duplicated by canonical form.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Iterable

from tqdm import tqdm

from flowrl.comfy import components as C
from flowrl.comfy.graph import is_link
from flowrl.comfy.validate import ensure_valid
from flowrl.encoding.codec import canonical_form
from flowrl.errors import FlowRLError

SAMPLER_NODES = ("KSampler", "KSamplerAdvanced")
HIRES_SOURCES = ("LatentUpscale", "LatentUpscaleBy")
MAX_SEED = 2**32 - 1
# Attempts per wanted variant before giving up on a small design space (e.g. a 1-step Turbo flow).
ATTEMPTS_PER_VARIANT = 3


class AugmentError(FlowRLError):
    """A base flow cannot be augmented (no supported checkpoint)."""


def _numbers_as_float(value):
    """`value` with every int (not bool) made a float, so 1 and 1.0 sign the same (UI vs API files)."""
    if isinstance(value, dict):
        return {k: _numbers_as_float(v) for k, v in value.items()}
    if isinstance(value, list):
        if is_link(value):
            return [str(value[0]), value[1]]
        return [_numbers_as_float(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def flow_signature(graph: dict) -> str:
    """A string equal for graphs that are the same flow (canonical form, sorted-key JSON)."""
    form = _numbers_as_float(canonical_form(graph))
    return json.dumps(form, sort_keys=True, separators=(",", ":"))


def main_checkpoint_nodes(graph: dict) -> list[str]:
    """Ids of the CheckpointLoaderSimple nodes that load a non-refiner checkpoint."""
    out = []
    for node_id, node in graph.items():
        if node.get("class_type") == "CheckpointLoaderSimple":
            info = C.checkpoint_info(str(node["inputs"].get("ckpt_name", "")))
            if info is None or not info.refiner:
                out.append(node_id)
    return out


def flow_family(graph: dict, source: str = "<graph>") -> str:
    """Checkpoint family of a flow's main checkpoint ('sd15', 'sdxl', 'sdxl_turbo', ...).

    Raises:
        AugmentError: no CheckpointLoaderSimple, or a checkpoint of an architecture the catalog lacks.
    """
    nodes = main_checkpoint_nodes(graph)
    if not nodes:
        raise AugmentError(
            f"{source}: no CheckpointLoaderSimple with a main checkpoint; "
            "only SD1.5/SDXL checkpoint flows can be augmented"
        )
    name = str(graph[nodes[0]]["inputs"].get("ckpt_name", ""))
    family = C.guess_family(name)
    if family is None:
        raise AugmentError(
            f"{source}: checkpoint {name!r} (node {nodes[0]}) is not an SD1.5/SDXL-family model; "
            f"supported families: {', '.join(C.FAMILIES)}"
        )
    return family


def _round(value: float, step: float) -> float:
    """`value` rounded to a multiple of `step` (as humans type settings)."""
    return round(round(value / step) * step, 4)


def _hires_sampler_ids(graph: dict) -> set[str]:
    """KSampler nodes whose latent comes from a latent upscale (the hires-fix second pass)."""
    out = set()
    for node_id, node in graph.items():
        latent = node["inputs"].get("latent_image")
        if node["class_type"] == "KSampler" and is_link(latent):
            if graph.get(str(latent[0]), {}).get("class_type") in HIRES_SOURCES:
                out.add(node_id)
    return out


def _pick_sampler(rng: random.Random, ranges: C.FamilyRanges) -> tuple[str, str]:
    """(sampler_name, scheduler) drawn with the family's popularity weights."""
    sampler, scheduler, _ = rng.choices(ranges.samplers, weights=[w for _, _, w in ranges.samplers])[0]
    return sampler, scheduler


def _pick_loras(rng: random.Random, family: str, k: int) -> list[C.Lora]:
    """k LoRAs compatible with `family`, distinct while the catalog allows."""
    pool = C.compatible_loras(family)
    if k <= len(pool):
        return rng.sample(pool, k)
    return [rng.choice(pool) for _ in range(k)]


def _lora_weight(rng: random.Random, lora: C.Lora) -> float:
    return _round(rng.uniform(lora.weight_min, lora.weight_max), 0.05)


def make_variant(base: dict, family: str, rng: random.Random) -> dict:
    """One variant of `base` with components re-drawn for `family` (see module docstring).

    Args:
        base: API graph of the base flow.
        family: its checkpoint family (flow_family(base)).
        rng: the random source; the same state gives the same variant.
    Returns:
        A new API graph with the same nodes and links.
    """
    g = copy.deepcopy(base)
    ranges = C.family_ranges(family)
    group = C.family_group(family)
    checkpoints = [c for c in C.CHECKPOINTS if c.family == family and not c.refiner]
    seed = rng.randint(0, MAX_SEED)
    sampler, scheduler = _pick_sampler(rng, ranges)
    steps = rng.randint(*ranges.steps)
    cfg = _round(rng.uniform(*ranges.cfg), 0.5)
    width, height = rng.choice(ranges.resolutions)
    hires_ids = _hires_sampler_ids(g)
    n_loras = sum(1 for n in g.values() if n["class_type"] == "LoraLoader") + sum(
        1
        for n in g.values()
        if n["class_type"] == "CR LoRA Stack"
        for i in (1, 2, 3)
        if n["inputs"].get(f"switch_{i}") == "On"
    )
    loras = iter(_pick_loras(rng, family, n_loras))
    for node_id in main_checkpoint_nodes(g):
        g[node_id]["inputs"]["ckpt_name"] = rng.choice(checkpoints).name
    for node_id, node in g.items():
        ct, inp = node["class_type"], node["inputs"]
        if ct == "LoraLoader":
            lora = next(loras)
            inp["lora_name"] = lora.name
            inp["strength_model"] = _lora_weight(rng, lora)
            inp["strength_clip"] = inp["strength_model"] if rng.random() < 0.7 else 1.0
        elif ct == "CR LoRA Stack":
            for i in (1, 2, 3):
                if inp.get(f"switch_{i}") == "On":
                    lora = next(loras)
                    inp[f"lora_name_{i}"] = lora.name
                    inp[f"model_weight_{i}"] = inp[f"clip_weight_{i}"] = _lora_weight(rng, lora)
        elif ct == "KSampler":
            inp.update(seed=seed, sampler_name=sampler, scheduler=scheduler, cfg=cfg)
            if node_id in hires_ids:
                inp["steps"] = max(ranges.steps[0], steps // 2)
                inp["denoise"] = _round(rng.uniform(0.4, 0.6), 0.05)
            else:
                inp["steps"] = steps
        elif ct == "KSamplerAdvanced":
            old_steps = max(int(inp.get("steps", 1)), 1)
            for key in ("start_at_step", "end_at_step"):
                if isinstance(inp.get(key), int) and inp[key] < old_steps:  # 10000 = "to the end" stays
                    inp[key] = round(inp[key] / old_steps * steps)
            inp.update(noise_seed=seed, sampler_name=sampler, scheduler=scheduler, cfg=cfg, steps=steps)
        elif ct == "EmptyLatentImage":
            inp.update(width=width, height=height)
        elif ct == "CLIPTextEncodeSDXL":
            inp.update(width=width, height=height, target_width=width, target_height=height)
        elif ct == "CLIPTextEncodeSDXLRefiner":
            inp.update(width=width, height=height)
        elif ct == "LatentUpscale":
            scale = rng.choice((1.25, 1.5, 2.0) if group == "sd15" else (1.25, 1.5))
            inp.update(width=_round(width * scale, 8), height=_round(height * scale, 8))
            inp["width"], inp["height"] = int(inp["width"]), int(inp["height"])
        elif ct == "LatentUpscaleBy":
            inp["scale_by"] = rng.choice((1.25, 1.5, 1.75, 2.0) if group == "sd15" else (1.25, 1.5))
        elif ct == "CLIPSetLastLayer":
            inp["stop_at_clip_layer"] = -rng.choice(ranges.clip_skip)
        elif ct == "VAELoader":
            inp["vae_name"] = rng.choice(C.VAES[group])
        elif ct == "UpscaleModelLoader":
            inp["model_name"] = rng.choice(C.UPSCALE_MODELS)
        elif ct == "UltralyticsDetectorProvider":
            inp["model_name"] = rng.choice([m for m in C.FACE_DETECTORS if "face" in m])
        elif ct == "FaceDetailer":
            face_sampler, face_scheduler = _pick_sampler(rng, ranges)
            inp.update(
                seed=seed,
                sampler_name=face_sampler,
                scheduler=face_scheduler,
                cfg=cfg,
                steps=rng.randint(*ranges.steps),
                denoise=_round(rng.uniform(0.3, 0.55), 0.05),
                guide_size=rng.choice((384, 512, 768)),
            )
        elif ct in ("FreeU", "FreeU_V2"):
            inp.update(
                b1=_round(rng.uniform(1.05, 1.4), 0.05),
                b2=_round(rng.uniform(1.1, 1.6), 0.05),
                s1=_round(rng.uniform(0.6, 1.0), 0.05),
                s2=_round(rng.uniform(0.2, 0.6), 0.05),
            )
        elif ct == "RescaleCFG":
            inp["multiplier"] = _round(rng.uniform(0.5, 0.8), 0.05)
    return g


def augment_flow(
    base: dict, n: int, rng: random.Random, source: str = "<graph>", seen: set[str] | None = None
) -> tuple[list[dict], int]:
    """Up to `n` distinct valid variants of one base flow.

    Args:
        base: API graph of the base flow.
        n: variants wanted.
        rng: random source (seeded by the caller for determinism).
        source: name used in error messages.
        seen: signatures already taken (updated in place); the base's own is added.
    Returns:
        (variants, number of duplicate draws dropped).
    Raises:
        AugmentError: the base has no supported checkpoint.
        GraphValidationError: a variant does not validate (a bug in the catalog ranges).
    """
    family = flow_family(base, source)
    seen = set() if seen is None else seen
    seen.add(flow_signature(base))
    variants, duplicates = [], 0
    for _ in range(n * ATTEMPTS_PER_VARIANT):
        if len(variants) == n:
            break
        variant = make_variant(base, family, rng)
        signature = flow_signature(variant)
        if signature in seen:
            duplicates += 1
            continue
        ensure_valid(variant, source=f"variant {len(variants)} of {source}")
        seen.add(signature)
        variants.append(variant)
    return variants, duplicates


def augment_library(bases: Iterable[tuple[str, dict]], n: int, seed: int) -> tuple[list[dict], int]:
    """Variants of every base flow as rows {"id", "base_id", "graph"}.

    Args:
        bases: (base id, API graph) pairs.
        n: variants per base (params.flows.variants_per_base).
        seed: random seed; each base gets its own stream so adding a base does not change the others.
    Returns:
        (rows, duplicates dropped).
    """
    bases = list(bases)
    rows, duplicates, seen = [], 0, set()
    for base_id, graph in tqdm(bases, desc="augment", unit="base"):
        rng = random.Random(f"{seed}:{base_id}")
        variants, dropped = augment_flow(graph, n, rng, source=base_id, seen=seen)
        duplicates += dropped
        rows += [{"id": f"{base_id}-v{i:05d}", "base_id": base_id, "graph": v} for i, v in enumerate(variants)]
    return rows, duplicates
