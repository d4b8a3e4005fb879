"""The `flows` stage: base-flow library (+ imported real workflows) and its augmented variants.

Writes data/flows/base.jsonl {"id","name","source","graph"}, data/flows/augmented.jsonl
{"id","base_id","graph"}, reports/flows/rejected.json and reports/flows/metrics.json.
"""

from __future__ import annotations

import collections
from pathlib import Path

from flowrl.comfy.graph import PROMPT_PLACEHOLDER, is_link, load_workflow
from flowrl.comfy.validate import format_problems, validate_graph
from flowrl.data.augment import SAMPLER_NODES, AugmentError, augment_library, flow_family, flow_signature
from flowrl.data.base_flows import load_base_flows
from flowrl.encoding.codec import is_encoded_flow
from flowrl.errors import FlowRLError
from flowrl.io import write_json, write_jsonl
from flowrl.params.model import Params
from flowrl.pipeline.stages import STAGES, FlowsFiles

# Class-type prefixes that make a graph something other than plain text-to-image.
NON_T2I_PREFIXES = (
    "LoadImage",
    "LoadVideo",
    "VHS_",
    "ControlNet",
    "IPAdapter",
    "SVD_",
    "ImageOnlyCheckpoint",
    "InpaintModel",
    "SaveAnimated",
    "LoadAudio",
)
TEXT_INPUTS = {"CLIPTextEncode": ("text",), "CLIPTextEncodeSDXL": ("text_g", "text_l")}


class ImportRejected(FlowRLError):
    """A workflow file cannot serve as a text-to-image base flow; the message says why."""


def _positive_text_node(graph: dict, source: str) -> str:
    """Id of the text-encode node feeding the positive input of the first sampler."""
    for node_id in sorted(graph, key=lambda k: (len(str(k)), str(k))):
        node = graph[node_id]
        if node["class_type"] in SAMPLER_NODES and is_link(node["inputs"].get("positive")):
            src = str(node["inputs"]["positive"][0])
            if graph.get(src, {}).get("class_type") in TEXT_INPUTS:
                return src
            raise ImportRejected(
                f"{source}: the positive prompt of sampler {node_id} comes from "
                f"{graph.get(src, {}).get('class_type')!r}, not a CLIPTextEncode(SDXL) node"
            )
    raise ImportRejected(f"{source}: no KSampler/KSamplerAdvanced with a linked positive prompt")


def as_base_flow(graph: dict, source: str) -> dict:
    """The text-to-image base flow for an imported API graph, its positive text set to PROMPT_PLACEHOLDER.

    Raises:
        ImportRejected: not text-to-image (image/video inputs, no EmptyLatentImage or sampler),
            an unsupported checkpoint family, or the graph does not validate against the node catalog.
    """
    classes = {node.get("class_type") for node in graph.values() if isinstance(node, dict)}
    odd = sorted(c for c in classes if isinstance(c, str) and c.startswith(NON_T2I_PREFIXES))
    if odd:
        raise ImportRejected(f"{source}: not text-to-image (uses {', '.join(odd)})")
    if "EmptyLatentImage" not in classes:
        raise ImportRejected(f"{source}: not text-to-image (no EmptyLatentImage)")
    problems = validate_graph(graph)
    if problems:
        raise ImportRejected(format_problems(problems, source))
    try:
        flow_family(graph, source)
    except AugmentError as exc:
        raise ImportRejected(str(exc)) from None
    text_node = _positive_text_node(graph, source)
    out = {node_id: {"class_type": n["class_type"], "inputs": dict(n["inputs"])} for node_id, n in graph.items()}
    for name in TEXT_INPUTS[out[text_node]["class_type"]]:
        out[text_node]["inputs"][name] = PROMPT_PLACEHOLDER
    return out


def import_base_flows(dirs: list[Path]) -> tuple[list[dict], list[dict]]:
    """Base-flow rows from every *.json under `dirs`, and the rejected files with their reason.

    Returns:
        (rows {"id","name","source","graph"}, rejected {"file","reason"}), both sorted by file path.
    """
    accepted, rejected = [], []
    for path in sorted(p for d in dirs for p in Path(d).rglob("*.json")):
        try:
            graph = as_base_flow(load_workflow(path, is_encoded_flow), str(path))
        except FlowRLError as exc:
            rejected.append({"file": str(path), "reason": str(exc)})
            continue
        name = f"{path.parent.name}_{path.stem}"
        accepted.append({"id": f"import-{name}", "name": name, "source": str(path), "graph": graph})
    return accepted, rejected


def run(params: Params, root: Path = Path(".")) -> dict[str, float]:
    """Build base flows (library + imports), augment them, write the stage files; return the metrics."""
    root = Path(root)
    base_rows = [
        {"id": f"lib-{name}", "name": name, "source": "library", "graph": graph} for name, graph in load_base_flows()
    ]
    dirs = [d if Path(d).is_absolute() else root / d for d in params.flows.extra_base_dirs]
    missing = [str(d) for d in dirs if not Path(d).is_dir()]
    if missing:
        raise FlowRLError(f"flows.extra_base_dirs: {', '.join(missing)} not found; fix the path in params.yaml")
    imported, rejected = import_base_flows(dirs)
    seen = {flow_signature(r["graph"]): r["id"] for r in base_rows}
    n_imported = 0
    for row in imported:
        signature = flow_signature(row["graph"])
        if signature in seen:
            rejected.append(
                {"file": row["source"], "reason": f"{row['source']}: duplicate of base flow {seen[signature]}"}
            )
            continue
        seen[signature] = row["id"]
        base_rows.append(row)
        n_imported += 1
    variants, n_duplicates = augment_library(
        [(r["id"], r["graph"]) for r in base_rows], params.flows.variants_per_base, params.seed
    )
    family_of = {r["id"]: flow_family(r["graph"], r["id"]) for r in base_rows}
    write_jsonl(root / FlowsFiles.base, base_rows)
    write_jsonl(root / FlowsFiles.augmented, variants)
    write_json(root / FlowsFiles.rejected, rejected)
    metrics: dict[str, float] = {
        "n_base": len(base_rows),
        "n_imported": n_imported,
        "n_rejected": len(rejected),
        "n_variants": len(variants),
        "n_duplicates_dropped": n_duplicates,
    }
    base_counts = collections.Counter(family_of.values())
    variant_counts = collections.Counter(family_of[v["base_id"]] for v in variants)
    for family in sorted(base_counts):
        metrics[f"n_base_{family}"] = base_counts[family]
        metrics[f"n_variants_{family}"] = variant_counts[family]
    write_json(root / STAGES["flows"].metrics, metrics)
    return metrics
