"""Is a valid graph one a person could run? Orphan nodes, practical sizes, duplicate nodes.

`validate_graph` checks what ComfyUI checks (types, links, ranges of the node definitions). A flow is
*usable* when, beyond that, every node feeds an output (ComfyUI silently skips the rest, so they are
dead weight or a sign of a broken flow), the sizes, batch and steps are practical on one 24 GB GPU
for the model family, no node is an exact duplicate of another, and every sampler's positive
conditioning encodes the prompt (and its negative does not), and two-pass `KSamplerAdvanced` flows hand
over their leftover noise cleanly (`handover_problems`: rules every training flow keeps). The limits below come from the
training flows (largest: 1344x1536 latents, 45 steps, batch 1, hires to 2048x3072) and the model
cards (SD1.5 at 512, SDXL-family at 1024, Turbo/Lightning at 1-8 steps); see docs/simulator.md.
"""

from __future__ import annotations

import json
import math

from flowrl.comfy.catalog import Catalog, load_catalog
from flowrl.comfy.graph import PROMPT_PLACEHOLDER, is_link
from flowrl.comfy.validate import Problem, validate_graph

MAX_SIDE = 4096  # pixels, any latent or image size input
MAX_PASS_MEGAPIXELS = 8.4  # width x height x batch of one sampling pass (2048 x 4096): beyond this a 24 GB GPU runs out
MAX_FIRST_PASS_MEGAPIXELS = {
    "sd15": 1.6,
    "sdxl": 2.4,
}  # first (EmptyLatentImage) pass per family group (training flows: 1024x1536, 1344x1536)
MAX_BATCH = 4
# Practical sampler settings per checkpoint family (an input of any node, KSampler or FaceDetailer alike). The
# distilled SDXL models are made for few steps and almost no guidance (model cards: Turbo 1-4 steps at CFG 0-1,
# Lightning 2-8 steps at CFG 1; the training flows: 1-8 steps, CFG 1-2.5); far beyond, images burn.
SAMPLER_LIMITS = {
    "steps": {"sd15": 150, "sdxl": 150, "sdxl_turbo": 12, "sdxl_lightning": 12, "pony": 150},
    "cfg": {"sdxl_turbo": 3.0, "sdxl_lightning": 3.0},
}
SIZE_NODES = {"EmptyLatentImage": ("width", "height", "batch_size"), "LatentUpscale": ("width", "height", None)}


def feeding_nodes(graph: dict, catalog: Catalog | None = None) -> set[str]:
    """Ids of the output nodes and of every node an output node depends on (what ComfyUI would execute)."""
    catalog = catalog or load_catalog()
    outputs = [
        nid
        for nid, node in graph.items()
        if (spec := catalog.get(node.get("class_type"))) is not None and spec.is_output_node
    ]
    seen: set[str] = set()
    stack = list(outputs)
    while stack:
        nid = stack.pop()
        if nid in seen or nid not in graph:
            continue
        seen.add(nid)
        stack.extend(str(v[0]) for v in graph[nid].get("inputs", {}).values() if is_link(v))
    return seen


def rendered_subgraph(graph: dict, catalog: Catalog | None = None) -> dict:
    """The part of `graph` a render executes: output nodes and their ancestors (ids kept)."""
    keep = feeding_nodes(graph, catalog)
    return {nid: node for nid, node in graph.items() if nid in keep}


def _family(graph: dict) -> str | None:
    from flowrl.comfy import components as C

    for node in graph.values():
        if node.get("class_type") == "CheckpointLoaderSimple":
            info = C.checkpoint_info(str(node.get("inputs", {}).get("ckpt_name", "")))
            if info is None or not info.refiner:
                return C.guess_family(str(node["inputs"].get("ckpt_name", "")))
    return None


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def practical_problems(graph: dict) -> list[Problem]:
    """Sizes, batch and steps that would not render on one 24 GB GPU or are far outside the family's range."""
    from flowrl.comfy import components as C

    problems = []
    family = _family(graph)
    group = C.family_group(family) if family else None
    for nid, node in graph.items():
        ct, inputs = node.get("class_type"), node.get("inputs", {})
        if ct in SIZE_NODES:
            w_name, h_name, b_name = SIZE_NODES[ct]
            w, h = _number(inputs.get(w_name)), _number(inputs.get(h_name))
            batch = _number(inputs.get(b_name)) if b_name else 1.0
            if w is None or h is None or batch is None:
                continue
            if max(w, h) > MAX_SIDE:
                problems.append(Problem(nid, ct, w_name, f"{int(w)}x{int(h)} is larger than {MAX_SIDE} pixels a side"))
            if batch > MAX_BATCH:
                problems.append(Problem(nid, ct, b_name, f"batch {int(batch)} is more than {MAX_BATCH} images a run"))
            if w * h * batch / 1e6 > MAX_PASS_MEGAPIXELS:
                problems.append(
                    Problem(nid, ct, None, f"{int(w)}x{int(h)} x {int(batch)} images would not fit a 24 GB GPU")
                )
            if ct == "EmptyLatentImage" and group and w * h / 1e6 > MAX_FIRST_PASS_MEGAPIXELS[group]:
                problems.append(
                    Problem(
                        nid,
                        ct,
                        None,
                        f"{int(w)}x{int(h)} is far above the native size of a {family} model; "
                        "use a hires-fix pass to go larger",
                    )
                )
        for name, limits in SAMPLER_LIMITS.items():
            value = _number(inputs.get(name))
            limit = limits.get(family or "sd15", math.inf)
            if value is not None and value > limit:
                problems.append(
                    Problem(
                        nid,
                        ct,
                        name,
                        f"{name} {value:g} is more than the practical {limit:g} for {family or 'this model'}",
                    )
                )
    return problems


def orphan_problems(graph: dict, catalog: Catalog | None = None) -> list[Problem]:
    """One problem per node that feeds no output node."""
    keep = feeding_nodes(graph, catalog)
    return [
        Problem(nid, node.get("class_type"), None, "feeds no output node (ComfyUI would skip it)")
        for nid, node in graph.items()
        if nid not in keep
    ]


TEXT_INPUTS = ("text", "text_g", "text_l")


def prompt_in_conditioning(graph: dict, link) -> bool | None:
    """Whether the text encoder a `positive`/`negative` link points to writes the user's prompt (None: not a text encoder)."""
    if not is_link(link):
        return None
    node = graph.get(str(link[0]), {})
    texts = [v for n, v in node.get("inputs", {}).items() if n in TEXT_INPUTS and isinstance(v, str)]
    return any(PROMPT_PLACEHOLDER in t for t in texts) if texts else None


def conditioning_problems(graph: dict) -> list[Problem]:
    """Samplers whose positive conditioning does not carry the prompt, or whose negative does (an image of the wrong text).

    Only for template flows, whose prompt is the PROMPT_PLACEHOLDER; a filled-in workflow's prompt text is unknown here.
    """
    if not any(
        PROMPT_PLACEHOLDER in v
        for node in graph.values()
        for v in node.get("inputs", {}).values()
        if isinstance(v, str)
    ):
        return []
    problems = []
    for nid, node in graph.items():
        inputs = node.get("inputs", {})
        if prompt_in_conditioning(graph, inputs.get("positive")) is False:
            problems.append(
                Problem(nid, node.get("class_type"), "positive", "its conditioning does not encode the prompt")
            )
        if prompt_in_conditioning(graph, inputs.get("negative")) is True:
            problems.append(
                Problem(nid, node.get("class_type"), "negative", "the prompt is used as the negative conditioning")
            )
    return problems


REFINER_ENCODERS = ("CLIPTextEncodeSDXLRefiner",)


def is_refiner_checkpoint(name: str) -> bool:
    """Whether a checkpoint file is an SDXL refiner (by the component catalog, else by its name)."""
    from flowrl.comfy import components as C

    info = C.checkpoint_info(name)
    return info.refiner if info is not None else "refiner" in name.lower()


def model_checkpoint(graph: dict, link, depth: int = 0) -> str | None:
    """ckpt_name of the checkpoint a MODEL link comes from, through model patches (LoRA, FreeU, ...); None if unknown."""
    if not is_link(link) or depth > len(graph):
        return None
    node = graph.get(str(link[0]), {})
    inputs = node.get("inputs", {})
    if node.get("class_type") == "CheckpointLoaderSimple":
        return str(inputs.get("ckpt_name", ""))
    return model_checkpoint(graph, inputs.get("model"), depth + 1)


def refiner_problems(graph: dict) -> list[Problem]:
    """Samplers that mix the SDXL refiner's conditioning with a base model, or base conditioning with the refiner.

    The refiner's text encoder gives 1,280-wide conditioning, the base model expects 2,048: ComfyUI fails at run time.
    """
    problems = []
    for nid, node in graph.items():
        inputs = node.get("inputs", {})
        ckpt = model_checkpoint(graph, inputs.get("model"))
        if ckpt is None:
            continue
        for name in ("positive", "negative"):
            src = graph.get(str(inputs[name][0]), {}) if is_link(inputs.get(name)) else {}
            if "class_type" in src and (src["class_type"] in REFINER_ENCODERS) != is_refiner_checkpoint(ckpt):
                problems.append(
                    Problem(
                        nid,
                        node.get("class_type"),
                        name,
                        f"{src['class_type']} conditioning does not fit the model of {ckpt}",
                    )
                )
    return problems


def duplicate_problems(graph: dict) -> list[Problem]:
    """One problem per node that repeats an earlier node exactly (same class, same inputs)."""
    seen: dict[str, str] = {}
    problems = []
    for nid, node in graph.items():
        key = json.dumps([node.get("class_type"), node.get("inputs", {})], sort_keys=True, default=str)
        if key in seen:
            problems.append(Problem(nid, node.get("class_type"), None, f"duplicates node {seen[key]}"))
        else:
            seen[key] = nid
    return problems


# Two-pass KSamplerAdvanced rules: every training flow keeps them (base + augmented, 244 two-pass flows; docs/simulator.md).
# A pass *continues* another when its latent is a KSamplerAdvanced output returned with leftover noise.
ADVANCED = "KSamplerAdvanced"
EMPTY_LATENT = "EmptyLatentImage"
CONTINUED = (
    "steps",
    "scheduler",
    "start_at_step",
    "add_noise",
)  # the inputs a continuing pass takes from the pass before it


def _int(value) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def continues(graph: dict, node: dict) -> dict | None:
    """The inputs of the KSamplerAdvanced pass whose leftover noise `node` (a KSamplerAdvanced) continues, else None."""
    link = node.get("inputs", {}).get("latent_image")
    src = graph.get(str(link[0]), {}) if is_link(link) else {}
    if src.get("class_type") == ADVANCED and src.get("inputs", {}).get("return_with_leftover_noise") == "enable":
        return src["inputs"]
    return None


def fresh_latent(graph: dict, node: dict) -> bool:
    """Whether a sampler's latent_image is an EmptyLatentImage (a first pass, not a hires pass on an upscaled latent)."""
    link = node.get("inputs", {}).get("latent_image")
    return is_link(link) and graph.get(str(link[0]), {}).get("class_type") == EMPTY_LATENT


def handover_value(first: dict | None, name: str):
    """What a KSamplerAdvanced pass must set `name` to: after `first` (the pass it continues) or, with None, as a fresh pass.

    Continuing: the same steps and scheduler (one noise schedule), start where the first ended, add no noise.
    Fresh: add noise and start at step 0 (an empty latent started later, or without noise, is a grey or blank image).
    Returns None where the rule leaves `name` free.
    """
    if first is None:
        return {"add_noise": "enable", "start_at_step": 0}.get(name)
    if name not in CONTINUED:
        return None
    return "disable" if name == "add_noise" else first.get("end_at_step" if name == "start_at_step" else name)


def handover_problems(graph: dict) -> list[Problem]:
    """Two-pass KSamplerAdvanced flows whose passes do not hand over at one step of one schedule (a noisy image), and
    KSamplers that denoise an empty latent only partly (a washed-out image).

    Per KSamplerAdvanced pass: the `handover_value` rules; leftover noise returned exactly when it stops before its last step; it ends
    after it starts. A pass returned with leftover noise goes only into passes that continue it (decoded, it is noise).
    """
    problems = []
    for nid, node in graph.items():
        if node.get("class_type") == "KSampler" and fresh_latent(graph, node) and node["inputs"].get("denoise", 1) != 1:
            problems.append(
                Problem(
                    nid,
                    "KSampler",
                    "denoise",
                    f"denoise {node['inputs'].get('denoise')} on an empty latent "
                    "leaves part of the noise it never adds: a washed-out image (a fresh pass denoises 1)",
                )
            )
        if node.get("class_type") != ADVANCED:
            continue
        inputs, first = node.get("inputs", {}), continues(graph, node)
        for name in ("add_noise", "start_at_step") + (CONTINUED[:2] if first else ()):
            want = handover_value(first, name)
            if want is not None and inputs.get(name) != want:
                what = f"the pass it continues has {want}" if first else f"a pass on fresh noise has {want}"
                problems.append(Problem(nid, ADVANCED, name, f"{name} {inputs.get(name)} does not hand over: {what}"))
        steps, start, end = (
            _int(inputs.get("steps")),
            _int(inputs.get("start_at_step")),
            _int(inputs.get("end_at_step")),
        )
        if (
            steps is not None
            and end is not None
            and (inputs.get("return_with_leftover_noise") == "enable") != (end < steps)
        ):
            problems.append(
                Problem(
                    nid,
                    ADVANCED,
                    "return_with_leftover_noise",
                    "leftover noise is returned exactly when "
                    f"the pass stops before its last step (end_at_step {end} of {steps} steps)",
                )
            )
        if start is not None and end is not None and end <= start:
            problems.append(
                Problem(nid, ADVANCED, "end_at_step", f"end_at_step {end} is not after start_at_step {start}")
            )
        if inputs.get("return_with_leftover_noise") == "enable":
            for uid, user in graph.items():
                for name, v in user.get("inputs", {}).items():
                    if (
                        is_link(v)
                        and str(v[0]) == str(nid)
                        and (user.get("class_type") != ADVANCED or name != "latent_image")
                    ):
                        problems.append(
                            Problem(
                                uid,
                                user.get("class_type"),
                                name,
                                f"takes the leftover noise of pass {nid}; "
                                "only a KSamplerAdvanced pass that continues it may",
                            )
                        )
    return problems


def usable_problems(graph: dict, catalog: Catalog | None = None) -> list[Problem]:
    """Everything that stops a person from running `graph` as is (empty list = usable)."""
    problems = validate_graph(graph, catalog)
    if problems:
        return problems
    return (
        orphan_problems(graph, catalog)
        + duplicate_problems(graph)
        + conditioning_problems(graph)
        + refiner_problems(graph)
        + handover_problems(graph)
        + practical_problems(graph)
    )


def is_usable(graph: dict) -> bool:
    """True when `graph` validates and has no usability problem."""
    return not usable_problems(graph)
