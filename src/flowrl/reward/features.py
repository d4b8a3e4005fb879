"""Features a head member reads: a structured view of the flow graph and the prompt's words.

A flow is decoded (`flowrl.encoding.codec.decode_flow`) and read as a graph, never as text:
- `class=<ClassType>` per node that feeds an output (`dead=<ClassType>` for one that does not);
- `<Class>.<input>=<value>` per string/bool setting (checkpoint, LoRA, sampler, scheduler,
  upscaler, ...); a LoRA-like node adds `<token>*<strength input>` weighted by its strength;
- `<Class>.<input>~<word>` per word of a free-text setting other than the `<prompt>` slot;
- numeric settings (steps, cfg, denoise, width, height, batch, strengths, ...) as numbers in
  slots `<Class>.<input>`: sign-log scaled, standardised with the training flows' statistics,
  clipped; a value outside the training range also sets `unk:out_of_range`; an exact value
  common in training also gets its own token `<Class>.<input>#<value>` (sweet spots).
Seeds, link ids, node ids and output file names are never read. A token the training flows
never showed maps to an unknown bucket (`unk:class`, `unk:value`), and each pair of model files
(checkpoint, LoRAs, upscaler, ...) no training flow combined adds `unk:combination`; the
buckets' untrained rows make the members disagree: that is what σ should do on flows unlike the
training data.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from flowrl.errors import FlowRLError

# Inputs that carry no preference: seeds (may also be absent), output names.
SKIP_INPUTS = frozenset({"seed", "noise_seed", "filename_prefix"})
PROMPT_SLOT = "<prompt>"
UNK_CLASS, UNK_VALUE, UNK_RANGE, UNK_PAIR = "unk:class", "unk:value", "unk:out_of_range", "unk:combination"
UNKNOWN = (UNK_CLASS, UNK_VALUE, UNK_RANGE, UNK_PAIR)
MODEL_FILES = (".safetensors", ".ckpt", ".pth", ".pt", ".bin", ".gguf")
CLIP = 6.0  # standardised numbers beyond ±CLIP training std are clipped (the range token says so)
_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    """Lower-case alphanumeric words of `text`.

    >>> words("A Cat, 4K photo!")
    ['a', 'cat', '4k', 'photo']
    """
    return _WORD.findall(text.lower())


def signed_log(x: float) -> float:
    """sign(x) * log1p(|x|): puts steps, cfg, denoise and pixel sizes on comparable scales.

    >>> round(signed_log(-1.0), 4)
    -0.6931
    """
    return math.copysign(math.log1p(abs(x)), x)


@dataclass
class FlowView:
    """What a head member sees of one flow: token weights and raw numbers per slot."""

    tokens: Counter = field(default_factory=Counter)
    numbers: dict[str, list[float]] = field(default_factory=dict)


@lru_cache(maxsize=1)
def _output_classes() -> frozenset[str]:
    from flowrl.comfy.catalog import load_catalog

    return frozenset(ct for ct, spec in load_catalog().specs.items() if spec.is_output_node)


def _is_link(value: object) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)


def live_nodes(graph: dict) -> set[str]:
    """Ids of the nodes that feed an output node (all nodes when the graph has no output yet, e.g. a prefix)."""
    outputs = [nid for nid, node in graph.items() if node.get("class_type") in _output_classes()]
    if not outputs:
        return set(graph)
    live, stack = set(), list(outputs)
    while stack:
        nid = stack.pop()
        if nid in live or nid not in graph:
            continue
        live.add(nid)
        stack.extend(v[0] for v in graph[nid].get("inputs", {}).values() if _is_link(v))
    return live


def view_graph(graph: dict) -> FlowView:
    """The structured view of a decoded API graph (see the module docstring)."""
    view = FlowView()
    live = live_nodes(graph)
    for nid, node in graph.items():
        ct = str(node.get("class_type", ""))
        view.tokens[f"class={ct}" if nid in live else f"dead={ct}"] += 1
        if nid not in live:
            continue  # a node that feeds nothing renders nothing: its settings carry no preference
        inputs = node.get("inputs", {})
        strengths = {k: float(v) for k, v in inputs.items() if k.startswith("strength") and _is_number(v)}
        for name, value in inputs.items():
            if name in SKIP_INPUTS or _is_link(value):
                continue
            slot = f"{ct}.{name}"
            if _is_number(value):
                view.numbers.setdefault(slot, []).append(float(value))
                view.tokens[f"{slot}#{_number_text(value)}"] += 1
            elif isinstance(value, bool) or value is None:
                view.tokens[f"{slot}={str(value).lower()}"] += 1
            elif isinstance(value, str) and (value == PROMPT_SLOT or " " not in value.strip()):
                token = f"{slot}={value}"
                view.tokens[token] += 1
                for s_name, s_value in strengths.items():
                    view.tokens[f"{token}*{s_name}"] += s_value
            elif isinstance(value, str):
                for w in set(words(value)):
                    view.tokens[f"{slot}~{w}"] += 1
    return view


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number_text(value: float) -> str:
    return repr(float(value)) if math.isfinite(value) else "nonfinite"


def component_pairs(view: FlowView) -> set[str]:
    """Unordered pairs of the model files a flow combines (checkpoint, LoRAs, upscaler, ...).

    >>> sorted(component_pairs(FlowView(tokens=Counter({"A.ckpt_name=x.safetensors": 1, "B.lora_name=y.safetensors": 1, "class=B": 1}))))
    ['A.ckpt_name=x.safetensors|B.lora_name=y.safetensors']
    """
    files = sorted(
        t for t in view.tokens if "*" not in t and t.endswith(MODEL_FILES) and not t.startswith(("class=", "dead="))
    )
    return {f"{a}|{b}" for i, a in enumerate(files) for b in files[i + 1 :]}


def parse_flow(text: str) -> FlowView | None:
    """The view of an encoded flow (or a prefix of one); None when it does not decode."""
    from flowrl.encoding.codec import decode_flow

    try:
        return view_graph(decode_flow(text))
    except (FlowRLError, TypeError, ValueError, AttributeError):
        return None


class FeatureSpaceError(FlowRLError):
    """A saved feature space is malformed."""


@dataclass
class FeatureSpace:
    """Token vocabulary and numeric slots fitted on the training flows and prompts.

    Index 0 is padding; the unknown buckets follow; then flow tokens, then prompt words (`p:<w>`).
    """

    tokens: list[str]
    slots: list[str]
    mean: list[float]
    std: list[float]
    low: list[float]
    high: list[float]
    pairs: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.index = {t: i for i, t in enumerate(self.tokens)}
        self.slot_index = {s: i for i, s in enumerate(self.slots)}
        self.pair_set = set(self.pairs)

    @classmethod
    def fit(cls, views: Iterable[FlowView], prompts: Iterable[str], min_count: int = 2) -> FeatureSpace:
        """Every token of the training flows (so no training row has an unknown), prompt words of at
        least `min_count` distinct training prompts, per-slot statistics, seen model-file pairs."""
        token_count: Counter = Counter()
        numbers: dict[str, list[float]] = {}
        pairs: set[str] = set()
        for view in views:
            token_count.update(set(view.tokens))
            pairs.update(component_pairs(view))
            for slot, values in view.numbers.items():
                numbers.setdefault(slot, []).extend(v for v in values if math.isfinite(v))
        word_count: Counter = Counter(w for p in prompts for w in set(words(p)))
        flow_tokens = sorted(token_count)
        prompt_tokens = sorted(f"p:{w}" for w, c in word_count.items() if c >= min_count)
        slots = sorted(s for s, v in numbers.items() if v)
        logs = [np.array([signed_log(v) for v in numbers[s]]) for s in slots]
        return cls(
            tokens=["<pad>", *UNKNOWN, *flow_tokens, *prompt_tokens],
            slots=slots,
            mean=[float(x.mean()) for x in logs],
            std=[float(max(x.std(), 1e-3)) for x in logs],
            low=[float(min(numbers[s])) for s in slots],
            high=[float(max(numbers[s])) for s in slots],
            pairs=sorted(pairs),
        )

    def to_dict(self) -> dict:
        return {
            "tokens": self.tokens,
            "slots": self.slots,
            "mean": self.mean,
            "std": self.std,
            "low": self.low,
            "high": self.high,
            "pairs": self.pairs,
        }

    @classmethod
    def from_dict(cls, raw: dict, source: str = "feature space") -> FeatureSpace:
        try:
            return cls(**{k: list(raw[k]) for k in ("tokens", "slots", "mean", "std", "low", "high", "pairs")})
        except (KeyError, TypeError) as exc:
            raise FeatureSpaceError(
                f"{source}: malformed feature space ({exc}); rerun the reward stage (dvc repro reward)"
            ) from None

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)

    def flow_row(self, view: FlowView) -> tuple[list[int], list[float], np.ndarray]:
        """(token ids, weights, standardised numbers) of one flow view."""
        ids, weights = [], []
        numbers = np.zeros(len(self.slots), dtype=np.float32)
        for token, weight in view.tokens.items():
            i = self.index.get(token)
            if i is None and "#" in token:
                continue  # a new exact number: its slot carries the value, the range check its novelty
            if i is None:
                i = self.index[UNK_CLASS if token.startswith(("class=", "dead=")) else UNK_VALUE]
            ids.append(i)
            weights.append(float(weight))
        for slot, values in view.numbers.items():
            j = self.slot_index.get(slot)
            if j is None:
                continue  # a setting no training flow had: its `slot=value` token is already unknown
            finite = [v for v in values if math.isfinite(v)]
            out = len(finite) < len(values) or any(v < self.low[j] or v > self.high[j] for v in finite)
            if out:
                ids.append(self.index[UNK_RANGE])
                weights.append(1.0)
            if finite:
                z = (np.mean([signed_log(v) for v in finite]) - self.mean[j]) / self.std[j]
                numbers[j] = float(np.clip(z, -CLIP, CLIP))
        new_pairs = sum(p not in self.pair_set for p in component_pairs(view))
        if new_pairs:
            ids.append(self.index[UNK_PAIR])
            weights.append(float(new_pairs))
        return ids, weights, numbers

    def prompt_row(self, prompt: str) -> list[int]:
        """Ids of the prompt's known words (unknown words are dropped: a new prompt is not a new flow)."""
        return [self.index[f"p:{w}"] for w in set(words(prompt)) if f"p:{w}" in self.index]


def pack_rows(rows: Sequence[tuple[list[int], list[float]]]) -> tuple[np.ndarray, np.ndarray]:
    """Pad (ids, weights) rows into (B, L) int64 ids and float32 weights (pad id 0, weight 0)."""
    width = max((len(ids) for ids, _ in rows), default=1) or 1
    ids = np.zeros((len(rows), width), dtype=np.int64)
    weights = np.zeros((len(rows), width), dtype=np.float32)
    for r, (i, w) in enumerate(rows):
        ids[r, : len(i)] = i
        weights[r, : len(w)] = w
    return ids, weights
