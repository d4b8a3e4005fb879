"""Seconds per GRPO step and where they go: generation, reward (ensemble; per-token prefix reward),
reference/KL forward, policy forward + backward, and the rest (optimizer step, logging).

What runs: the real stage, `flowrl.policy.grpo.run(params, root)`, on inputs built from scratch in
a temp folder: generated prompts, an SFT policy folder (the profile's base model with the flow
tokens and a fresh SFT LoRA; cpu: SmolLM2-135M) and reward ensembles of fresh surrogates (cpu:
MiniLM, `reward.n_models` + `reward.n_prefix_models`). Timings come from wrapping, for the run
only, the trainer's sampling (`FlowGRPOTrainer._generate_single_turn`), trl's reward call
(`_calculate_rewards`: validity + ensemble), `ShapedReward.per_token_rewards` (eq. 3 prefix
pass), trl's `_get_per_token_logps_and_entropies` (without grad: the KL reference, adapter off;
with grad: the policy forward), `_prepare_inputs` and `training_step`
(policy forward + backward = training_step - prepare_inputs).

Reduced to keep it to a few minutes on one core (said in the figures): STEPS steps, batch
BATCH = 1 prompt x group GROUP, MAX_NEW_TOKENS new tokens per completion (cpu profile: 8 = 2 x 4 and
320), no probe. Untrained models: flow lengths and validity differ from a trained policy's.
No target: the figures size the cpu budget in params.yaml (`grpo:` comment).

Run: `python -m bench grpo_step` (~2 min on one core). `measure()` is reused by bench/scale.py.
"""

from __future__ import annotations

import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import torch
from transformers import TrainerCallback
from trl import GRPOTrainer

from bench._common import Row, Stopwatch, bench_params, bench_setup, policy_name, reward_name
from flowrl.data.base_flows import load_base_flows
from flowrl.data.prompt_generator import generate_prompts
from flowrl.encoding.schema import infer_schema
from flowrl.encoding.vocab import flow_tokens
from flowrl.io import write_jsonl
from flowrl.params.model import Params
from flowrl.policy import grpo
from flowrl.reward.shaping import ShapedReward

STEPS, GROUP, BATCH, MAX_NEW_TOKENS = 2, 4, 4, 96
PARTS = (
    "generation",
    "reward_ensemble",
    "reward_per_token",
    "reference_kl_forward",
    "policy_forward_backward",
    "other",
)


def write_stage_inputs(root: Path, params: Params, n_prompts: int) -> None:
    """Everything `grpo.run` reads, from scratch: prompts, an SFT policy folder, full and prefix reward ensembles."""
    from peft import get_peft_model

    from flowrl.policy.loading import load_policy, load_tokenizer, save_policy_spec
    from flowrl.policy.sft import lora_config
    from flowrl.reward.encoder import build_surrogate, load_reward_tokenizer
    from flowrl.reward.ensemble import Ensemble

    seed, cfg = params.seed, params.reward
    rows = generate_prompts(n_prompts + 2, seed)
    write_jsonl(root / grpo.PROMPTS, rows[:n_prompts])
    write_jsonl(root / grpo.HOLDOUT, rows[n_prompts:])
    model, tokenizer = load_policy(params.policy, flow_tokens(infer_schema(g for _, g in load_base_flows())), seed)
    get_peft_model(model, lora_config(params.sft)).save_pretrained(str(root / grpo.SFT_DIR), safe_serialization=True)
    tokenizer.save_pretrained(str(root / grpo.SFT_DIR))
    save_policy_spec(root / grpo.SFT_DIR, params.policy, seed, len(load_tokenizer(params.policy)))
    rtok = load_reward_tokenizer(cfg)
    for name, n in (("full", cfg.n_models), ("prefix", cfg.n_prefix_models)):
        if n:
            members = [build_surrogate(cfg, len(rtok), seed + i) for i in range(n)]
            Ensemble(members, rtok, cfg.max_length, cfg.eval_batch_size, cfg.bf16).save(root / grpo.REWARD_DIR / name)


class StepSplit(TrainerCallback):
    """Per optimizer step: wall seconds and the stopwatch's buckets accumulated during it."""

    def __init__(self, watch: Stopwatch):
        self.watch, self.steps, self._start = watch, [], 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self.watch.reset()
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        total = time.perf_counter() - self._start
        s = dict(self.watch.seconds)
        split = {
            "generation": s.get("generation", 0.0),
            "reward_ensemble": s.get("reward_ensemble", 0.0),
            "reward_per_token": s.get("reward_per_token", 0.0),
            "reference_kl_forward": s.get("reference_kl_forward", 0.0),
            "policy_forward_backward": s.get("training_step", 0.0) - s.get("prepare_inputs", 0.0),
        }
        split["other"] = total - sum(split.values())
        self.steps.append({"total": total, **split})


def _logps_bucket() -> str:
    return "policy_forward" if torch.is_grad_enabled() else "reference_kl_forward"


def measure(
    params: Params, steps: int = STEPS, group: int = GROUP, batch: int = BATCH, max_new_tokens: int = MAX_NEW_TOKENS
) -> dict:
    """Run `steps` GRPO steps of the stage on fresh inputs; per-step seconds split by part, and the stage's metrics."""
    params = params.model_copy(
        update={
            "grpo": params.grpo.model_copy(
                update={
                    "max_steps": steps,
                    "num_generations": group,
                    "batch_size": batch,
                    "max_new_tokens": max_new_tokens,
                    "n_probe": 0,
                    "save_steps": 10_000,
                    "n_train_prompts": None,
                }
            )
        }
    )
    watch = Stopwatch()
    split = StepSplit(watch)
    with tempfile.TemporaryDirectory(prefix="flowrl-bench-grpo-") as tmp, ExitStack() as patches:
        root = Path(tmp)
        start = time.perf_counter()
        write_stage_inputs(root, params, n_prompts=max(2, steps * batch // group))
        setup_s = time.perf_counter() - start
        for owner, attr, key in (
            (grpo.FlowGRPOTrainer, "_generate_single_turn", "generation"),
            (GRPOTrainer, "_calculate_rewards", "reward_ensemble"),
            (ShapedReward, "per_token_rewards", "reward_per_token"),
            (GRPOTrainer, "_get_per_token_logps_and_entropies", _logps_bucket),
            (GRPOTrainer, "_prepare_inputs", "prepare_inputs"),
            (GRPOTrainer, "training_step", "training_step"),
        ):
            patches.enter_context(watch.patch(owner, attr, key))
        start = time.perf_counter()
        metrics = grpo.run(params, root, callbacks=[split])
        run_s = time.perf_counter() - start
    per_step = split.steps
    mean = {k: sum(s[k] for s in per_step) / len(per_step) for k in ("total", *PARTS)}
    return {
        "steps": per_step,
        "mean": mean,
        "setup_s": setup_s,
        "stage_run_s": run_s,
        "group": group,
        "batch": batch,
        "max_new_tokens": max_new_tokens,
        "train_validity": metrics["train_validity_final"],
        "reward_mean_final": metrics["reward_mean_final"],
    }


def main() -> dict:
    """Time STEPS steps of the grpo stage on the profile's models; print and return the split."""
    torch.set_flush_denormal(True)
    params, setup = bench_setup()
    result = measure(params)
    cpu = bench_params("cpu")  # to say what was reduced
    figures = {
        **setup,
        "policy": policy_name(params.policy),
        "reward": f"{reward_name(params.reward)} x {params.reward.n_models} + {params.reward.n_prefix_models} prefix",
        "bf16": params.policy.bf16,
        **result,
        "reduced": f"{STEPS} steps, batch {BATCH} (group {GROUP}), {MAX_NEW_TOKENS} new tokens, no probe; cpu profile: "
        f"{cpu.grpo.max_steps} steps, batch {cpu.grpo.batch_size} (group {cpu.grpo.num_generations}), {cpu.grpo.max_new_tokens} new tokens",
    }
    m = result["mean"]
    print(
        f"{m['total']:.1f} s/step: "
        + ", ".join(f"{k} {m[k]:.1f}" for k in PARTS)
        + f"; train validity {result['train_validity']:.2f}; setup {result['setup_s']:.0f} s"
    )
    return figures


def rows(f: dict) -> list[Row]:
    """The report's table for this bench."""
    m = f["mean"]
    out: list[Row] = [
        ("models", f"{f['policy']}; reward {f['reward']}; bf16 {f['bf16']}", "", ""),
        ("reduced size", f["reduced"], "", ""),
        (
            "seconds per step (mean of steps: " + ", ".join(f"{s['total']:.1f}" for s in f["steps"]) + ")",
            f"{m['total']:.1f}",
            "",
            "",
        ),
    ]
    out += [(f"  {part.replace('_', ' ')}", f"{m[part]:.1f} s ({m[part] / m['total']:.0%})", "", "") for part in PARTS]
    out.append(("validity of the step's completions (last step)", f"{f['train_validity']:.2f}", "", ""))
    return out


if __name__ == "__main__":
    main()
