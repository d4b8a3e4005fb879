"""A tiny, hand-made stage-data tree (prompts, base/augmented flows, encoded flows, triplets) and a toy scorer."""

from __future__ import annotations

import copy
import random
from pathlib import Path

import pytest

from flowrl.data.base_flows import load_base_flows
from flowrl.encoding.codec import encode_flow
from flowrl.evaluation.baselines import graph_family
from flowrl.io import write_jsonl
from flowrl.params.model import EvaluateConfig, Params, load_params

# Base flows from the shipped library: one or more per checkpoint family.
BASES = (
    "sd15_txt2img_basic",
    "sd15_one_lora",
    "sdxl_txt2img_basic",
    "sdxl_turbo_one_step",
    "sdxl_lightning_4step",
    "pony_clipskip_loras",
)
# How many scored variants each base gets: sd15_one_lora is the most popular, sdxl_txt2img_basic second.
SCORED_PER_BASE = {"sd15_one_lora": 4, "sdxl_txt2img_basic": 3, "sd15_txt2img_basic": 1, "pony_clipskip_loras": 1}
FIRST_STEPS = {
    "sdxl_turbo_one_step": 1,
    "sdxl_lightning_4step": 4,
}  # variants stay within the family's step range (usable)
REPO = Path(__file__).resolve().parents[2]
# The test half of the holdout (flowrl.data.prompts.holdout_split), the prompts evaluate uses, and the dev half.
# Ordered so that evaluate's other prompt (i -> i + 2) of an anime prompt is a photo prompt and vice versa.
HOLDOUT = [
    "an anime girl with silver hair",
    "anime boy, cherry blossoms",
    "a photo of an old fisherman",
    "portrait photo of a woman in rain",
]
DEV = ["anime cat girl in a cafe", "a photo of a red vintage car", "a photo of a busy night market"]


def with_steps(graph: dict, steps: int) -> dict:
    """Copy of `graph` with every sampler's `steps` set (a flow variant)."""
    out = copy.deepcopy(graph)
    for node in out.values():
        if "steps" in node["inputs"] and not isinstance(node["inputs"]["steps"], list):
            node["inputs"]["steps"] = steps
    return out


class ToyScorer:
    """Anime prompts like pony flows, photo prompts like sdxl; more steps help a little."""

    def score(self, prompts: list[str], graphs: list[dict]) -> list[float]:
        out = []
        for prompt, graph in zip(prompts, graphs, strict=True):
            family = graph_family(graph) or ""
            steps = max(
                (n["inputs"].get("steps", 0) for n in graph.values() if isinstance(n["inputs"].get("steps"), int)),
                default=0,
            )
            match = ("anime" in prompt and family == "pony") or ("photo" in prompt and family == "sdxl")
            out.append(0.5 * match + steps / 1000)
        return out


def write_stage_data(root: Path) -> dict:
    """Write the upstream stage files under `root`; return the ids used."""
    library = dict(load_base_flows())
    base_rows = [{"id": name, "name": name, "source": "library", "graph": library[name]} for name in BASES]
    augmented = [
        {"id": f"{name}_v{i}", "base_id": name, "graph": with_steps(library[name], FIRST_STEPS.get(name, 20) + i)}
        for name in BASES
        for i in range(5)
    ]
    encoded = [{"id": r["id"], "text": encode_flow(r["graph"])} for r in base_rows + augmented]
    texts = {r["id"]: r["text"] for r in encoded}
    scored = [
        {"id": f"{b}_v{i}", "graph": with_steps(library[b], 20 + i), "text": texts[f"{b}_v{i}"]}
        for b, n in SCORED_PER_BASE.items()
        for i in range(n)
    ]
    rng = random.Random(0)
    train_prompts = [f"anime style character number {i}" for i in range(10)] + [
        f"a photo of a city street {i}" for i in range(10)
    ]
    scorer = ToyScorer()
    graphs = {r["id"]: r["graph"] for r in scored}
    triplets = []
    for prompt in train_prompts:
        for flow in rng.sample(scored, 4):
            triplets.append(
                {
                    "prompt": prompt,
                    "flow_id": flow["id"],
                    "flow": flow["text"],
                    "score": scorer.score([prompt], [graphs[flow["id"]]])[0],
                }
            )
    interleaved = [
        p for pair in zip(HOLDOUT, DEV + [None]) for p in pair if p is not None
    ]  # dev rows between test rows
    write_jsonl(
        root / "data/prompts/holdout.jsonl",
        [{"id": f"h{i}", "prompt": p, "negative_prompt": None, "source": "test"} for i, p in enumerate(interleaved)],
    )
    write_jsonl(root / "data/flows/base.jsonl", base_rows)
    write_jsonl(root / "data/flows/augmented.jsonl", augmented)
    write_jsonl(root / "data/encode/flows.jsonl", encoded)
    write_jsonl(root / "data/triplets/scored_flows.jsonl", scored)
    write_jsonl(root / "data/triplets/train.jsonl", triplets)
    return {"texts": texts}


@pytest.fixture
def stage_root(tmp_path: Path) -> Path:
    write_stage_data(tmp_path)
    return tmp_path


@pytest.fixture
def eval_params() -> Params:
    """The repository's tiny profile, with an evaluate section sized for the synthetic data."""
    params = load_params(REPO / "params.yaml", profile="tiny")
    evaluate = EvaluateConfig(n_prompts=4, comfygen_k=3, nld_pairs=50, gammas=[1.5, 2.0], batch_size=4)
    return params.model_copy(update={"evaluate": evaluate})
