"""Does a method adapt its flow to the prompt? Adaptivity gain and the diversity of the flows it delivers.

* adaptivity gain: every delivered flow is scored on its own prompt and on a fixed other evaluated
  prompt (`other_prompt_index`: prompt i -> prompt (i + n/2) mod n, the same for every method);
  gain = mean of score(own) - score(other). Invalid flows score 0 on both. The differences are
  averaged per prompt before the standard error (the flows of one prompt share its prompt pair).
  A flow that ignores the prompt has gain 0 exactly: the other prompts are a permutation of the own ones.
* top checkpoint share: share of valid flows whose base checkpoint (the CheckpointLoaderSimple
  ckpt_name that is not a refiner) is the most common one; entropies (bits) of the checkpoint and of
  the structure (sorted multiset of node class_types) distributions over valid flows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from scipy.stats import entropy

from flowrl.comfy.components import checkpoint_info
from flowrl.evaluation.metrics import paired_difference, per_prompt_means

NO_CHECKPOINT = "(none)"


def other_prompt_index(n: int) -> list[int]:
    """The fixed derangement i -> (i + n // 2) mod n of n >= 2 prompts (no prompt maps to itself).

    >>> other_prompt_index(5)
    [2, 3, 4, 0, 1]
    """
    if n < 2:
        raise ValueError(f"an adaptivity gain needs at least two prompts, got {n}")
    return [(i + n // 2) % n for i in range(n)]


def base_checkpoint(graph: dict) -> str:
    """ckpt_name of the graph's non-refiner CheckpointLoaderSimple nodes ('+'-joined if several; NO_CHECKPOINT if none)."""
    names = sorted(
        {
            node["inputs"]["ckpt_name"]
            for node in graph.values()
            if node.get("class_type") == "CheckpointLoaderSimple"
            and isinstance(node.get("inputs", {}).get("ckpt_name"), str)
            and not getattr(checkpoint_info(node["inputs"]["ckpt_name"]), "refiner", False)
        }
    )
    return "+".join(names) or NO_CHECKPOINT


def structure_key(graph: dict) -> str:
    """The flow's structure: its node class_types as a sorted multiset, comma-joined."""
    return ",".join(sorted(node.get("class_type", "?") for node in graph.values()))


def entropy_bits(keys: Sequence[str]) -> float:
    """Shannon entropy in bits of the empirical distribution of `keys` (NaN when empty).

    >>> entropy_bits(["a", "a", "b", "b"])
    1.0
    """
    return float(entropy(list(Counter(keys).values()), base=2)) if keys else float("nan")


def diversity(graphs: Sequence[dict | None]) -> dict[str, float | str | None]:
    """top_checkpoint, top_checkpoint_share, checkpoint_entropy_bits and structure_entropy_bits over the valid (non-None) graphs."""
    valid = [g for g in graphs if g is not None]
    if not valid:
        return {
            "top_checkpoint": None,
            "top_checkpoint_share": float("nan"),
            "checkpoint_entropy_bits": float("nan"),
            "structure_entropy_bits": float("nan"),
        }
    checkpoints = [base_checkpoint(g) for g in valid]
    top, count = min(Counter(checkpoints).items(), key=lambda kv: (-kv[1], kv[0]))  # ties: alphabetical
    return {
        "top_checkpoint": top,
        "top_checkpoint_share": count / len(valid),
        "checkpoint_entropy_bits": entropy_bits(checkpoints),
        "structure_entropy_bits": entropy_bits([structure_key(g) for g in valid]),
    }


def scores_on_other_prompts(
    graphs: Sequence[dict | None], prompts: Sequence[str], n_prompts: int, scorer
) -> list[float]:
    """Score of each flow on the other prompt of its own; `prompts` is round-major (flow j was asked for prompt j mod n_prompts).

    Invalid flows (None) score 0.
    """
    other = other_prompt_index(n_prompts)
    keep = [j for j, g in enumerate(graphs) if g is not None]
    scores = [0.0] * len(graphs)
    if keep:
        asked = [prompts[(j // n_prompts) * n_prompts + other[j % n_prompts]] for j in keep]
        for j, s in zip(keep, scorer.score(asked, [graphs[j] for j in keep]), strict=True):
            scores[j] = float(s)
    return scores


def adaptivity_gain(own: Sequence[float], other: Sequence[float], n_prompts: int) -> dict[str, float]:
    """Mean, SE and mean/SE of own - other over flows, per-prompt means first (round-major, `n_prompts` per round)."""
    return paired_difference(per_prompt_means(own, n_prompts), per_prompt_means(other, n_prompts))


def adaptivity_metrics(
    graphs: Sequence[dict | None], own: Sequence[float], prompts: Sequence[str], n_prompts: int, scorer
) -> dict:
    """adaptivity_gain, adaptivity_se, adaptivity_n_se (NaN for fewer than two prompts) and the `diversity` measures of one method."""
    if n_prompts < 2:
        gain = {"mean": float("nan"), "se": float("nan"), "n_se": float("nan")}
    else:
        gain = adaptivity_gain(own, scores_on_other_prompts(graphs, prompts, n_prompts, scorer), n_prompts)
    return {
        "adaptivity_gain": gain["mean"],
        "adaptivity_se": gain["se"],
        "adaptivity_n_se": gain["n_se"],
        **diversity(graphs),
    }
