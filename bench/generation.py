"""Latency per flow and per token: the SFT policy alone vs dual-model guidance (paper sec. 3.4), on CPU.

Target: guided latency <= 1.5x single-model latency (guidance is one forward over a doubled batch
per step, not two models run one after the other).

What runs: `flowrl.policy.decoding.sampling.sample_flows(model, adapter="sft")` against
`flowrl.policy.decoding.guidance.sample_guided(model, gamma=1.5, sft_adapter="sft", grpo_adapter="grpo")`
on ONE base with two LoRA adapters, bf16 autocast as `params.policy`. The model is the trained
pipeline policy when `models/sft` and `models/grpo` exist (loaded as the evaluate stage does,
`load_guided_policy`: merged SFT base + GRPO adapter, SFT side = "__base__"); otherwise the
profile's base model (cpu: SmolLM2-135M, tiny when its package is missing) with two fresh LoRA
adapters (lora_B drawn small and random so they differ). Same prompts, seed and batch for both;
EOS is masked so every flow runs exactly NEW_TOKENS tokens (a fair per-flow comparison); no
constrained decoding (it would end flows at different lengths). Each setting runs REPEATS times,
alternating, and the median is kept.

Run: `python -m bench generation` (~2-3 min on one core).
"""

from __future__ import annotations

import statistics
import time

import torch
from transformers import LogitsProcessor

from bench._common import REPO, Row, bench_setup, policy_name, status
from flowrl.policy.decoding.guidance import sample_guided
from flowrl.policy.decoding.sampling import SamplingConfig, sample_flows

PROMPTS = [
    "a red fox in the snow",
    "neon city at night, rain, cinematic",
    "portrait of an old sailor, oil painting",
    "cozy wooden cabin interior, warm light",
    "anime girl with a katana under cherry blossoms",
    "macro photo of a dew drop on a leaf",
    "a dragon over a medieval castle, epic",
    "minimalist poster of a mountain lake",
]
NEW_TOKENS = 96
REPEATS = 3
GAMMA = 1.5
TARGET_RATIO = 1.5
SEED = 7


class NoEOS(LogitsProcessor):
    """Masks EOS so every row decodes the full token budget."""

    def __init__(self, eos_token_id: int):
        self.eos = eos_token_id

    def __call__(self, input_ids, scores):
        scores[:, self.eos] = float("-inf")
        return scores


def two_adapter_model(params):
    """(model, tokenizer, adapters, source): the trained sft/grpo policy if present, else a base with two fresh LoRAs."""
    sft_dir, grpo_dir = REPO / "models" / "sft", REPO / "models" / "grpo"
    if (sft_dir / "policy.json").exists() and (grpo_dir / "adapter_config.json").exists():
        from flowrl.policy.decoding.guidance import BASE, load_guided_policy

        model, tokenizer = load_guided_policy(sft_dir, grpo_dir)
        return model, tokenizer, (BASE, "grpo"), "trained policy: models/sft (merged) + models/grpo adapter"
    from peft import get_peft_model

    from flowrl.data.base_flows import load_base_flows
    from flowrl.encoding.schema import infer_schema
    from flowrl.encoding.vocab import flow_tokens
    from flowrl.policy.grpo import lora_config
    from flowrl.policy.loading import load_policy

    base, tokenizer = load_policy(params.policy, flow_tokens(infer_schema(g for _, g in load_base_flows())), SEED)
    torch.manual_seed(SEED)
    model = get_peft_model(base, lora_config(params.grpo), adapter_name="sft")
    model.add_adapter("grpo", lora_config(params.grpo))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.02)
    return (
        model.eval(),
        tokenizer,
        ("sft", "grpo"),
        f"{policy_name(params.policy)} + two fresh LoRA adapters (r{params.grpo.lora_r})",
    )


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> dict:
    """Time single vs guided sampling; print and return per-flow / per-token latency and the ratio."""
    torch.set_flush_denormal(True)
    params, setup = bench_setup()
    model, tokenizer, (sft_name, grpo_name), source = two_adapter_model(params)
    cfg = SamplingConfig(
        temperature=params.policy.temperature,
        top_p=params.policy.top_p,
        max_new_tokens=NEW_TOKENS,
        batch_size=len(PROMPTS),
        seed=SEED,
        bf16=params.policy.bf16,
    )
    no_eos = [NoEOS(tokenizer.eos_token_id)]
    runs = {
        "single": lambda: sample_flows(model, tokenizer, PROMPTS, cfg, adapter=sft_name, logits_processor=no_eos),
        "guided": lambda: sample_guided(
            model, tokenizer, PROMPTS, cfg, GAMMA, sft_name, grpo_name, logits_processor=no_eos
        ),
    }
    sample_flows(
        model, tokenizer, PROMPTS[:2], SamplingConfig(max_new_tokens=4, batch_size=2, bf16=cfg.bf16)
    )  # warm-up
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for rep in range(REPEATS):
        for name, run in runs.items():
            seconds[name].append(timed(run))
            print(
                f"repeat {rep + 1}/{REPEATS} {name}: {seconds[name][-1]:.1f} s for {len(PROMPTS)} flows x {NEW_TOKENS} tokens"
            )
    figures: dict = {
        **setup,
        "model": source,
        "bf16": cfg.bf16,
        "gamma": GAMMA,
        "batch": len(PROMPTS),
        "new_tokens_per_flow": NEW_TOKENS,
        "repeats": REPEATS,
        "eos_masked": True,
        "constrained": False,
    }
    for name, values in seconds.items():
        batch_s = statistics.median(values)
        figures[name] = {
            "batch_s": [round(v, 2) for v in values],
            "s_per_flow": batch_s / len(PROMPTS),
            "ms_per_token": 1000 * batch_s / (len(PROMPTS) * NEW_TOKENS),
            "ms_per_step": 1000 * batch_s / NEW_TOKENS,
        }
    figures["ratio"] = figures["guided"]["s_per_flow"] / figures["single"]["s_per_flow"]
    figures["target_ratio"] = TARGET_RATIO
    print(
        f"per flow: single {figures['single']['s_per_flow']:.2f} s, guided {figures['guided']['s_per_flow']:.2f} s; per token "
        f"{figures['single']['ms_per_token']:.1f} vs {figures['guided']['ms_per_token']:.1f} ms; ratio {figures['ratio']:.2f} "
        f"(target <= {TARGET_RATIO:g})"
    )
    return figures


def rows(f: dict) -> list[Row]:
    """The report's table for this bench."""
    s, g = f["single"], f["guided"]
    return [
        ("model", f"{f['model']}, bf16 {f['bf16']}", "", ""),
        (
            "setting",
            f"batch {f['batch']}, {f['new_tokens_per_flow']} new tokens per flow (EOS masked), gamma {f['gamma']}, median of {f['repeats']}",
            "",
            "",
        ),
        ("SFT alone: s per flow (ms per token)", f"{s['s_per_flow']:.2f} ({s['ms_per_token']:.1f})", "", ""),
        ("guided: s per flow (ms per token)", f"{g['s_per_flow']:.2f} ({g['ms_per_token']:.1f})", "", ""),
        (
            "ms per decoding step for the batch (single / guided)",
            f"{s['ms_per_step']:.0f} / {g['ms_per_step']:.0f}",
            "",
            "",
        ),
        (
            "guided / single latency",
            f"{f['ratio']:.2f}x",
            f"<= {f['target_ratio']:g}x",
            status(f["ratio"] <= f["target_ratio"]),
        ),
    ]


if __name__ == "__main__":
    main()
