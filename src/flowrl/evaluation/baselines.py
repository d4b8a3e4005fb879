"""Baselines that need no trained policy: fixed flows and ComfyGen-style retrieval (paper Table 1).

* `fixed_popular`, `fixed_popular_2`: the base flows with the most and second most variants in the
  scored set (counted through `data/flows/augmented.jsonl` base_id); the flow used is the base flow.
* `fixed_<family>`: per checkpoint family, the smallest base flow (fewest nodes) whose only
  checkpoint belongs to that family: a plain single-checkpoint flow, as "fixed monolithic model".
* `training_flow`: a training flow drawn at random for each asked prompt (seeded): the distribution the
  SFT pairs draw their flows from, so the yardstick SFT's mean score is held to.
* `comfygen`: retrieval in the spirit of ComfyGen's in-context variant. Training prompts are
  embedded with TF-IDF over character 3-5-grams (scikit-learn; rapidfuzz token-set ratio when
  scikit-learn is missing); for a new prompt the `k` most similar training prompts vote with their
  triplets, and the scored flow with the best mean score among those triplets is chosen (ties:
  more triplets, then flow id). It can only return flows that were scored.
"""

from __future__ import annotations

import logging
import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from flowrl.comfy.components import checkpoint_info
from flowrl.errors import FlowRLError
from flowrl.evaluation.validity import Candidate

log = logging.getLogger(__name__)


class BaselineInputError(FlowRLError):
    """The data a baseline needs is missing or inconsistent."""


@dataclass(frozen=True)
class FixedFlow:
    """The same flow for every prompt."""

    flow: Candidate

    def __call__(self, prompts: Sequence[str]) -> list[Candidate]:
        return [self.flow] * len(prompts)


@dataclass(frozen=True)
class TrainingFlowSampler:
    """A flow drawn uniformly from `flows` for each prompt, the same draws for the same seed."""

    flows: tuple[Candidate, ...]
    seed: int = 0

    def __call__(self, prompts: Sequence[str]) -> list[Candidate]:
        rng = random.Random(self.seed)
        return [rng.choice(self.flows) for _ in prompts]


def popular_base_ids(scored_ids: Sequence[str], base_of: dict[str, str]) -> list[str]:
    """Base flow ids ordered by how many scored flows derive from them (most first; ties by id).

    Raises:
        BaselineInputError: a scored flow id has no base_id in `base_of`.
    """
    missing = [i for i in scored_ids if i not in base_of]
    if missing:
        raise BaselineInputError(
            f"scored flows {missing[:3]} are not in data/flows/augmented.jsonl; rerun the triplets stage"
        )
    counts = Counter(base_of[i] for i in scored_ids)
    return sorted(counts, key=lambda b: (-counts[b], b))


def best_flow_id(train_rows: Sequence[dict], min_rows: int = 5) -> str:
    """Id of the scored flow with the highest mean training score over at least `min_rows` prompts: the best fixed flow.

    With few triplets (the tiny profile) no flow may reach `min_rows`; then the flows with the most rows compete.

    Raises:
        BaselineInputError: there are no training triplets.
    """
    by_flow: dict[str, list[float]] = {}
    for row in train_rows:
        by_flow.setdefault(row["flow_id"], []).append(float(row["score"]))
    if not by_flow:
        raise BaselineInputError("no training triplets to pick the best fixed flow from; rerun the triplets stage")
    need = min(min_rows, max(map(len, by_flow.values())))
    means = {f: sum(s) / len(s) for f, s in by_flow.items() if len(s) >= need}
    return max(sorted(means), key=lambda f: means[f])


def graph_family(graph: dict) -> str | None:
    """Checkpoint family of a graph that loads exactly one known checkpoint, else None."""
    names = {
        node["inputs"]["ckpt_name"]
        for node in graph.values()
        if isinstance(node.get("inputs", {}).get("ckpt_name"), str)
    }
    if len(names) != 1:
        return None
    info = checkpoint_info(names.pop())
    return info.family if info else None


def plain_family_flows(base_rows: Sequence[dict]) -> dict[str, dict]:
    """Per checkpoint family, the base flow row with the fewest nodes among single-checkpoint flows of that family."""
    best: dict[str, dict] = {}
    for row in sorted(base_rows, key=lambda r: (len(r["graph"]), r["id"])):
        family = graph_family(row["graph"])
        if family and family not in best:
            best[family] = row
    return best


def _similarity(queries: Sequence[str], corpus: Sequence[str]) -> np.ndarray:
    """Similarity matrix (len(queries), len(corpus)): TF-IDF char n-gram cosine, or rapidfuzz token-set ratio."""
    try:
        from sklearn.feature_extraction.text import TfidfVectorizer
    except ImportError:  # pragma: no cover - scikit-learn ships with the ops extra
        from rapidfuzz import fuzz, process

        return process.cdist(queries, corpus, scorer=fuzz.token_set_ratio, processor=str.lower, workers=1) / 100.0
    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True, lowercase=True)
    matrix = vectorizer.fit_transform(corpus)
    return (vectorizer.transform(queries) @ matrix.T).toarray()


class ComfyGenRetriever:
    """Pick, per prompt, the scored flow with the best mean score over the triplets of the k nearest training prompts.

    Args:
        triplets: rows {"prompt", "flow_id", "score"} (data/triplets/train.jsonl).
        flows: flow id -> Candidate (text and graph of every scored flow).
        k: nearest training prompts that vote.
    """

    def __init__(self, triplets: Sequence[dict], flows: dict[str, Candidate], k: int):
        if not triplets:
            raise BaselineInputError("comfygen needs training triplets; data/triplets/train.jsonl is empty")
        unknown = {row["flow_id"] for row in triplets} - set(flows)
        if unknown:
            raise BaselineInputError(
                f"triplets name flows {sorted(unknown)[:3]} missing from data/triplets/scored_flows.jsonl; rerun the triplets stage"
            )
        by_prompt: dict[str, list[tuple[str, float]]] = defaultdict(list)
        for row in triplets:
            by_prompt[row["prompt"]].append((row["flow_id"], float(row["score"])))
        self.prompts = sorted(by_prompt)
        self.votes = [by_prompt[p] for p in self.prompts]
        self.flows = flows
        self.k = min(k, len(self.prompts))

    def pick(self, similarity_row: np.ndarray) -> str:
        """Flow id with the best mean score among the triplets of the k most similar training prompts."""
        nearest = np.argsort(-similarity_row, kind="stable")[: self.k]
        scores: dict[str, list[float]] = defaultdict(list)
        for i in nearest:
            for flow_id, score in self.votes[i]:
                scores[flow_id].append(score)
        return max(sorted(scores), key=lambda f: (float(np.mean(scores[f])), len(scores[f])))

    def __call__(self, prompts: Sequence[str]) -> list[Candidate]:
        if not prompts:
            return []
        similarity = _similarity(list(prompts), self.prompts)
        return [self.flows[self.pick(row)] for row in similarity]
