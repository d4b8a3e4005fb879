"""What a training stage will cost, computed before it starts and without weights (models built on the meta device):
the configured stages' models and shapes given to flowrl.runtime.memory. Lengths are the configured caps, so this
is the worst case; padding-free batches of real flows use less. `python -m flowrl.cli.cost` prints it; a training
stage prints its own at its start (`stage_start`).
"""

from __future__ import annotations

import torch
from torch import nn

from flowrl.errors import FlowRLError
from flowrl.runtime.memory import (
    GB,
    MemoryEstimate,
    Shapes,
    TokenRows,
    estimate_training,
    format_estimates,
    kv_cache_bytes,
    largest_micro_batch,
    lora_params,
    token_row_params,
)

SMOLLM2_VOCAB, MINILM_VOCAB = 49152, 30522  # the packaged tokenizers (tiny, gguf; tiny, minilm)
PROMPT_TOKENS = 128  # GRPO prompt length cap in the estimate (chat template + prompt; generated prompts: at most 90)


class CostError(FlowRLError):
    """The cost of a stage cannot be estimated from its settings."""


def _config_model(source: str, model: str | None, head: str, setting: str) -> nn.Module:
    """A hub/dir/random model on the meta device from its config: shipped, a local folder, or a packaged one."""
    from flowrl.model_configs import build_random_model, shipped

    if source == "random" or (source == "hub" and model in shipped()):
        return build_random_model(model, head, device="meta", setting=setting)
    if source == "dir":
        return build_random_model(f"{model}/config.json", head, device="meta", setting=setting)
    if source == "gguf" and not model:  # the packaged SmolLM2-135M-Instruct
        return build_random_model("HuggingFaceTB/SmolLM2-135M-Instruct", head, device="meta", setting=setting)
    if source == "minilm":
        from flowrl.reward.encoder import minilm_path

        return build_random_model(str(minilm_path() / "config.json"), head, device="meta", setting=setting)
    raise CostError(
        f"cost estimate: no config for {setting.split('.')[0]}.source={source!r} model={model!r} without a "
        f"download; use source random, dir, or hub with one of {shipped()}"
    )


def policy_meta_model(policy, new_tokens: int) -> nn.Module:
    """The policy of the `policy` section (a PolicyConfig) on the meta device, its vocabulary grown by `new_tokens`."""
    if policy.source in ("tiny", "scratch"):
        from flowrl.policy.loading import build_tiny_model

        base = policy.scratch.vocab_size if policy.source == "scratch" else SMOLLM2_VOCAB
        with torch.device("meta"):
            return build_tiny_model(policy, base + new_tokens, 0)
    return _config_model(policy.source, policy.model, "causal-lm", "policy.model")


def reward_meta_model(reward) -> nn.Module:
    """One surrogate of the `reward` section (a RewardConfig) on the meta device."""
    if reward.source == "tiny":
        from transformers import BertConfig, BertForSequenceClassification

        with torch.device("meta"):
            return BertForSequenceClassification(
                BertConfig(vocab_size=MINILM_VOCAB, num_labels=1, **reward.tiny.model_dump())
            )
    return _config_model(reward.source, reward.model, "regression", "reward.model")


def estimate_stages(
    params,
    new_tokens: int = 210,
    gradient_checkpointing: bool = True,
    token_rows: TokenRows = "new",
    weight_bytes: int | None = None,
    gpu_bytes: float = 80 * GB,
    materialized_attention: bool = False,
) -> dict[str, MemoryEstimate]:
    """Per-GPU memory of sft, reward (one fine-tuned member) and grpo for the resolved `params` (a Params).

    Each stage runs at the largest micro batch dividing its configured batch that fits `gpu_bytes` (the rest
    becomes gradient accumulation; a note says so); `new_tokens` is the flow vocabulary size (reports/encode).

    Args:
        token_rows: "new" trains only the flow-token rows of embed/lm_head; "full" trains full copies (today).
        weight_bytes: bytes per frozen weight; default 2 where policy.bf16 is true (bf16 weights), else 4.
        materialized_attention: True for a CPU run (SDPA falls back to kernels that keep seq x seq scores).
    """
    policy, sft, reward, grpo = params.policy, params.sft, params.reward, params.grpo
    bf16 = policy.bf16 is True
    wb, ab = weight_bytes or (2 if bf16 else 4), 2 if bf16 else 4
    lm = policy_meta_model(policy, new_tokens)
    shapes = Shapes.of(lm)
    out: dict[str, MemoryEstimate] = {}

    def policy_stage(name: str, cfg, batch: int, length: int, extra: float, note: str):
        full = policy.source == "scratch" and name == "sft"  # sft of a scratch model trains every weight; grpo: LoRA
        if full:
            lora, rows = sum(p.numel() for p in lm.parameters()), 0
        else:
            lora = lora_params(lm, cfg.lora_r, cfg.target_modules)
            rows = token_row_params(lm, new_tokens, token_rows) if name == "sft" else 0

        def make(b: int) -> MemoryEstimate:
            return estimate_training(
                name,
                lm,
                lora + rows,
                b,
                length,
                weight_bytes=wb,
                act_bytes=ab,
                checkpointing=gradient_checkpointing,
                full_finetune=full,
                extra=extra,
                notes=[note],
                materialized_attention=materialized_attention,
            )

        return _fit(make, batch, name, gpu_bytes)

    what = (
        "all weights (source scratch)"
        if policy.source == "scratch"
        else f"LoRA r={sft.lora_r} on {len(sft.target_modules)} projections + {token_rows} token rows"
    )
    out["sft"] = policy_stage("sft", sft, sft.batch_size, sft.max_length, 0.0, what)
    if reward.member == "finetune":
        enc = reward_meta_model(reward)
        n = sum(p.numel() for p in enc.parameters())

        def make_reward(b: int) -> MemoryEstimate:
            return estimate_training(
                "reward",
                enc,
                n,
                b,
                reward.max_length,
                weight_bytes=wb,
                act_bytes=ab,
                checkpointing=gradient_checkpointing,
                loss_over_vocab=False,
                full_finetune=True,
                materialized_attention=materialized_attention,
                notes=[f"one of {reward.n_models}+{reward.n_prefix_models} members, all weights trained"],
            )

        out["reward"] = _fit(make_reward, reward.batch_size, "reward", gpu_bytes)
        members = (reward.n_models + reward.n_prefix_models) * n * wb
    else:
        members = 0.0
    length = PROMPT_TOKENS + (grpo.max_new_tokens or policy.max_new_tokens)
    kv = kv_cache_bytes(shapes, grpo.batch_size, length, ab)
    out["grpo"] = policy_stage(
        "grpo",
        grpo,
        grpo.batch_size,
        length,
        members + kv,
        f"LoRA r={grpo.lora_r}; frozen reward members {members / GB:.1f} GB + KV cache {kv / GB:.1f} GB in extra",
    )
    return out


def _fit(make, batch: int, name: str, gpu_bytes: float) -> MemoryEstimate:
    b = largest_micro_batch(make, batch, gpu_bytes)
    est = make(b or 1)
    if b is None:
        est.notes.append(
            f"does not fit {gpu_bytes / GB:.0f} GB even at micro batch 1: shard it (FSDP/ZeRO-3) or shorten {name}.max_length"
        )
    elif b < batch:
        est.notes.append(
            f"{name}.batch_size {batch} fits as micro batch {b} x grad_accum {batch // b}; "
            f"at {batch} it needs {make(batch).total / GB:.0f} GB"
        )
    return est


def print_estimate(params, **kwargs) -> dict[str, MemoryEstimate]:
    """Estimate and print the stages' memory (called at stage start); returns the estimates."""
    estimates = estimate_stages(params, **kwargs)
    print(format_estimates(estimates))
    return estimates


def stage_start(params, stage: str, root=".") -> MemoryEstimate | None:
    """At the start of a training stage: apply the `device` setting (flowrl.runtime.device.configure), then print the stage's
    cost estimate (and log it to the active MLflow run as `cost_estimate.json` + metrics). An estimate that cannot be
    made (a hub model with no shipped config) prints why and returns None: it never stops the stage."""
    import json
    from pathlib import Path

    from flowrl.runtime.device import configure, resolve_device

    configure(params.device)
    vocab = Path(root) / "data/encode/vocab.json"
    try:
        new_tokens = len(json.loads(vocab.read_text())) if vocab.exists() else 210
        estimates = estimate_stages(
            params,
            new_tokens=new_tokens,
            token_rows=params.sft.token_rows,
            gradient_checkpointing=bool(getattr(getattr(params, stage, None), "gradient_checkpointing", False)),
            materialized_attention=resolve_device().type == "cpu",
        )
    except (CostError, OSError, ValueError) as exc:
        print(f"cost estimate for {stage}: not available ({exc})", flush=True)
        return None
    est = estimates.get(stage)
    if est is None:  # reward with head members: no fine-tuned encoder to estimate
        return None
    print(f"{stage} on {resolve_device()}: " + format_estimates({stage: est}), flush=True)
    _log_estimate(est)
    return est


def _log_estimate(est: MemoryEstimate) -> None:
    """Log the estimate to the active MLflow run, if any (the stage's run is opened by its flow)."""
    try:
        import mlflow

        if mlflow.active_run() is None:
            return
        sizes = {
            f"{k}_gb": getattr(est, k) / GB for k in ("weights", "trainable_state", "activations", "extra", "total")
        }
        mlflow.log_dict(
            {
                k: getattr(est, k)
                for k in ("stage", "params", "trainable", "micro_batch", "seq_len", "gradient_checkpointing", "notes")
            }
            | sizes,
            "cost_estimate.json",
        )
        mlflow.log_metrics({"est_memory_gb": est.total / GB, "est_trainable_params": float(est.trainable)})
    except Exception as exc:  # noqa: BLE001 - logging the estimate must never fail a stage
        print(f"cost estimate not logged to MLflow ({type(exc).__name__}: {exc})", flush=True)


def main(argv: list[str] | None = None) -> int:
    """`python -m flowrl.cli.cost [--profile paper] [--full-token-rows] [--no-checkpointing]`."""
    import argparse

    from flowrl.errors import exit_code
    from flowrl.params.model import load_params

    parser = argparse.ArgumentParser(prog="python -m flowrl.cli.cost", description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml", help="params file")
    parser.add_argument("--profile", default=None, help="profile to resolve (default: the file's)")
    parser.add_argument(
        "--new-tokens", type=int, default=210, help="flow vocabulary size (reports/encode n_flow_tokens)"
    )
    parser.add_argument(
        "--full-token-rows", action="store_true", help="train full embed/lm_head copies (today) instead of new rows"
    )
    parser.add_argument("--no-checkpointing", action="store_true", help="estimate without gradient checkpointing")
    args = parser.parse_args(argv)
    return exit_code(
        lambda: print_estimate(
            load_params(args.params, profile=args.profile),
            new_tokens=args.new_tokens,
            token_rows="full" if args.full_token_rows else "new",
            gradient_checkpointing=not args.no_checkpointing,
        )
    )


if __name__ == "__main__":
    raise SystemExit(main())
