"""The policy's view of a flow: the encoding without what carries no preference, and its way back to a workflow.

The codec (`encode_flow` / `decode_flow`) stays lossless for `flowrl flow encode/decode`. What the
policy reads and writes drops
- sampler seeds (`seed`, `noise_seed`): drawn when the workflow is produced (`--seed` sets them);
- negative-prompt text: one placeholder, NEGATIVE_PLACEHOLDER, filled with DEFAULT_NEGATIVE;
- `filename_prefix`: always OUTPUT_PREFIX.
`policy_text` maps a graph (or lossless text) to the view; `policy_graph` maps view text, or lossless
text, back to a runnable API graph. Scoring, validity and novelty all go through `policy_graph`, so
two flows that differ only in seed are the same flow.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass, replace

from flowrl.comfy.catalog import Catalog, NodeSpec, load_catalog
from flowrl.comfy.graph import PROMPT_PLACEHOLDER, is_link
from flowrl.encoding.codec import decode_flow, encode_flow

SEED_INPUTS = ("seed", "noise_seed")
PREFIX_INPUT = "filename_prefix"
DROPPED_INPUTS = (*SEED_INPUTS, PREFIX_INPUT)
NEGATIVE_PLACEHOLDER = "<negative>"
DEFAULT_NEGATIVE = "lowres, worst quality, low quality, bad anatomy, bad hands, blurry, watermark, signature, text"
OUTPUT_PREFIX = "flowrl"
NEGATIVE_TEXT_INPUTS = ("text", "text_g", "text_l")
MAX_SEED = 2**32 - 1


def _negative_nodes(graph: dict) -> set[str]:
    """Ids of the nodes that feed an input called `negative` (the negative-prompt encoders)."""
    return {
        str(v[0])
        for node in graph.values()
        for name, v in node.get("inputs", {}).items()
        if name == "negative" and is_link(v)
    }


def strip_graph(graph: dict) -> dict:
    """A copy of `graph` without seeds and output prefixes, negative-prompt text replaced by the placeholder."""
    out = copy.deepcopy(graph)
    negative = _negative_nodes(out)
    for node_id, node in out.items():
        inputs = node.get("inputs", {})
        for name in DROPPED_INPUTS:
            if name in inputs and not is_link(inputs[name]):
                del inputs[name]
        if node_id in negative:
            for name in NEGATIVE_TEXT_INPUTS:
                if isinstance(inputs.get(name), str) and PROMPT_PLACEHOLDER not in inputs[name]:
                    inputs[name] = NEGATIVE_PLACEHOLDER
    return out


def policy_text(flow: dict | str) -> str:
    """The policy view of an API graph or of lossless encoded text (canonical order, one line per node)."""
    graph = decode_flow(flow) if isinstance(flow, str) else flow
    return encode_flow(strip_graph(graph))


def fill_graph(graph: dict, seed: int = 0, catalog: Catalog | None = None, negative: str = DEFAULT_NEGATIVE) -> dict:
    """A runnable copy of a policy-view graph: seeds drawn from `seed`, the negative placeholder and output prefix filled.

    Inputs already present are kept, so a lossless graph comes back unchanged.
    """
    catalog = catalog or load_catalog()
    rng = random.Random(seed)
    out = copy.deepcopy(graph)
    for node in out.values():
        spec = catalog.get(node.get("class_type"))
        inputs = node.setdefault("inputs", {})
        for name, value in list(inputs.items()):
            if value == NEGATIVE_PLACEHOLDER:
                inputs[name] = negative
        if spec is None:
            continue
        for name in SEED_INPUTS:
            if name in spec.inputs and name not in inputs:
                inputs[name] = rng.randint(0, MAX_SEED)
        if PREFIX_INPUT in spec.inputs and PREFIX_INPUT not in inputs:
            inputs[PREFIX_INPUT] = OUTPUT_PREFIX
    return out


def policy_graph(text: str, seed: int = 0) -> dict:
    """Decode policy-view (or lossless) text to a runnable API graph; raises FlowDecodeError on malformed text."""
    return fill_graph(decode_flow(text), seed)


def policy_spec(spec: NodeSpec) -> NodeSpec:
    """A node spec without the inputs the policy never writes (they are filled by `fill_graph`)."""
    return replace(spec, inputs={n: i for n, i in spec.inputs.items() if n not in DROPPED_INPUTS or i.kind == "link"})


@dataclass(frozen=True)
class FlowCheck:
    """What one flow text is: its runnable graph (None when it does not decode), whether it validates, whether it is usable."""

    graph: dict | None
    valid: bool
    usable: bool
    problems: tuple[str, ...] = ()


def check_flow_text(text: str, seed: int = 0) -> FlowCheck:
    """Decode policy-view (or lossless) text, fill it (`policy_graph`) and check it: the one decode-then-validate step.

    `valid`: ComfyUI's own checks pass (`validate_graph`); `usable`: also every node feeds an output, sizes,
    batch and steps are practical and no node is duplicated (`flowrl.comfy.usable`).
    """
    from flowrl.comfy.usable import usable_problems
    from flowrl.comfy.validate import validate_graph
    from flowrl.errors import FlowRLError

    try:
        graph = policy_graph(text, seed)
    except (FlowRLError, RecursionError) as exc:
        return FlowCheck(None, False, False, (f"does not decode: {exc}",))
    invalid = validate_graph(graph)
    if invalid:
        return FlowCheck(graph, False, False, tuple(map(str, invalid)))
    unusable = usable_problems(graph)
    return FlowCheck(graph, True, not unusable, tuple(map(str, unusable)))
