"""What a training stage will cost, computed before it starts and without weights (models built on the meta device).

Per stage (sft, reward, grpo) and per GPU: parameters, trainable parameters, bytes of frozen weights, of the trainable
state (fp32 master copy, gradient, AdamW moments: 16 bytes a parameter) and of activations at the configured micro
batch and length. Activations count what autograd keeps per token and layer (flash/SDPA attention: no seq^2 term),
the layer inputs only under gradient checkpointing (plus one layer recomputed), and the loss over the vocabulary
(logits, their fp32 upcast, the saved log-softmax and, in backward, two fp32 gradients of that size), which dominates for Llama-3's 128k vocabulary.
Lengths are the configured caps, so this is the worst case; padding-free batches of real flows use less.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from flowrl.errors import FlowRLError

GB = 1e9
ADAMW_STATE = 4 + 4 + 4 + 4  # fp32 weight, fp32 gradient, exp_avg, exp_avg_sq (bytes per trainable parameter)
TokenRows = Literal["new", "full"]
SMOLLM2_VOCAB, MINILM_VOCAB = 49152, 30522  # the packaged tokenizers (tiny, gguf; tiny, minilm)
PROMPT_TOKENS = 128  # GRPO prompt length cap in the estimate (chat template + prompt; generated prompts: at most 90)


class CostError(FlowRLError):
    """The cost of a stage cannot be estimated from its settings."""


@dataclass
class Shapes:
    """What the activation count needs from a transformer config."""

    hidden: int
    layers: int
    intermediate: int
    kv_dim: int
    vocab: int
    gated_mlp: bool

    @classmethod
    def of(cls, model: nn.Module) -> Shapes:
        c = model.config
        heads = c.num_attention_heads
        head_dim = getattr(c, "head_dim", None) or c.hidden_size // heads
        kv_dim = (getattr(c, "num_key_value_heads", None) or heads) * head_dim
        gated = c.model_type in ("llama", "mistral", "qwen2", "modernbert")
        return cls(c.hidden_size, c.num_hidden_layers, c.intermediate_size, kv_dim, c.vocab_size, gated)

    def saved_per_token_layer(self) -> int:
        """Activation elements autograd keeps per token in one layer: two norms (input, output), q/k/v/attention
        output and o_proj input, the MLP input and its 3 (gated: 4) intermediate tensors."""
        return 2 * self.hidden + 2 * self.hidden + 2 * self.kv_dim + self.hidden + (4 if self.gated_mlp else 2) * self.intermediate


@dataclass
class MemoryEstimate:
    """Bytes one GPU needs for one stage (frozen weights, trainable state, activations) and what they come from."""

    stage: str
    params: int
    trainable: int
    micro_batch: int
    seq_len: int
    gradient_checkpointing: bool
    weights: float
    trainable_state: float
    activations: float
    extra: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> float:
        return self.weights + self.trainable_state + self.activations + self.extra

    def fits(self, gpu_bytes: float = 80 * GB, headroom: float = 0.9) -> bool:
        """True when the total stays under `headroom` of the GPU (the rest: CUDA context, allocator fragmentation)."""
        return self.total <= headroom * gpu_bytes

    def row(self) -> str:
        return (f"{self.stage:<7}{self.params / 1e9:>8.3f}B{self.trainable / 1e6:>10.1f}M{self.micro_batch:>5}x{self.seq_len:<6}"
                f"{'on ' if self.gradient_checkpointing else 'off':>5}{self.weights / GB:>9.1f}{self.trainable_state / GB:>9.1f}"
                f"{self.activations / GB:>9.1f}{self.extra / GB:>8.1f}{self.total / GB:>9.1f}")


HEADER = f"{'stage':<7}{'params':>9}{'trainable':>11}{'batch x len':>12}{'ckpt':>5}{'weights':>9}{'train st':>9}{'activ.':>9}{'extra':>8}{'total GB':>9}"


def lora_params(model: nn.Module, r: int, target_modules: list[str]) -> int:
    """Parameters LoRA of rank `r` adds: r * (in + out) for each Linear whose name ends in a target."""
    return sum(r * (m.in_features + m.out_features) for name, m in model.named_modules()
               if isinstance(m, nn.Linear) and name.rsplit(".", 1)[-1] in target_modules)


def token_row_params(model: nn.Module, new_tokens: int, rows: TokenRows) -> int:
    """Trainable embedding/head parameters: only the new flow-token rows (peft `trainable_token_indices`), or full
    copies of embed_tokens and lm_head (peft `modules_to_save`, today's setting)."""
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    tied = head is None or head.weight is emb.weight
    if rows == "new":
        return new_tokens * emb.weight.shape[1] * (1 if tied else 2)
    return emb.weight.numel() + (0 if tied else head.weight.numel())


def activation_bytes(shapes: Shapes, tokens: int, act_bytes: int, checkpointing: bool, loss_over_vocab: bool = True,
                     seq_len: int = 0, heads: int = 0) -> float:
    """Autograd memory of one forward/backward over `tokens` tokens (micro batch x length).

    Args:
        act_bytes: bytes per activation element (2 under bf16 autocast, 4 in fp32).
        checkpointing: keep only each layer's input, recompute one layer at a time in backward.
        loss_over_vocab: a causal-LM loss: logits, fp32 upcast (when not fp32), log-softmax, and the gradients of
            log-softmax and logits alive together in backward.
        seq_len, heads: when given, attention materialises its scores (eager, or SDPA's math kernel as on CPUs
            with a mask): its softmax output, heads x seq_len x seq_len a sequence and layer, is kept for backward.
    """
    per_layer = (shapes.saved_per_token_layer() + heads * seq_len) * act_bytes
    body = (shapes.layers * shapes.hidden * act_bytes + per_layer) if checkpointing else shapes.layers * per_layer
    loss = shapes.vocab * (act_bytes + (0 if act_bytes == 4 else 4) + 4 + 4 + 4) if loss_over_vocab else 0
    return float(tokens * (body + loss))


def estimate_training(stage: str, model: nn.Module, trainable: int, micro_batch: int, seq_len: int, *,
                      weight_bytes: int, act_bytes: int, checkpointing: bool, full_finetune: bool = False,
                      loss_over_vocab: bool = True, extra: float = 0.0, notes: list[str] | None = None,
                      materialized_attention: bool = False) -> MemoryEstimate:
    """Memory of a training step of `model` with `trainable` parameters in fp32 under AdamW.

    Args:
        full_finetune: the trainable parameters are the model's own (all weights train); otherwise they are
            added beside frozen weights (LoRA, token-row deltas, peft modules_to_save copies).
        materialized_attention: attention keeps its seq x seq scores (eager or math SDPA, e.g. on CPUs);
            False for flash / memory-efficient SDPA (GPUs).
        extra: further bytes on the GPU (a frozen reward ensemble, a KV cache).
    """
    params = sum(p.numel() for p in model.parameters())
    frozen = params - trainable if full_finetune else params
    heads = model.config.num_attention_heads if materialized_attention else 0
    acts = activation_bytes(Shapes.of(model), micro_batch * seq_len, act_bytes, checkpointing, loss_over_vocab, seq_len, heads)
    return MemoryEstimate(stage, params, trainable, micro_batch, seq_len, checkpointing, float(max(frozen, 0) * weight_bytes),
                          float(trainable * ADAMW_STATE), acts, extra, list(notes or []))


def largest_micro_batch(make: Callable[[int], MemoryEstimate], batch: int, gpu_bytes: float = 80 * GB) -> int | None:
    """Largest divisor of `batch` whose estimate `make(micro_batch)` fits the GPU; None when even 1 does not."""
    for b in sorted((d for d in range(1, batch + 1) if batch % d == 0), reverse=True):
        if make(b).fits(gpu_bytes):
            return b
    return None


def kv_cache_bytes(shapes: Shapes, sequences: int, length: int, act_bytes: int) -> float:
    """Keys and values of every layer for `sequences` x `length` tokens (generation)."""
    return float(2 * shapes.layers * shapes.kv_dim * sequences * length * act_bytes)


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
    raise CostError(f"cost estimate: no config for {setting.split('.')[0]}.source={source!r} model={model!r} without a "
                    f"download; use source random, dir, or hub with one of {shipped()}")


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
            return BertForSequenceClassification(BertConfig(vocab_size=MINILM_VOCAB, num_labels=1, **reward.tiny.model_dump()))
    return _config_model(reward.source, reward.model, "regression", "reward.model")


def estimate_stages(params, new_tokens: int = 210, gradient_checkpointing: bool = True, token_rows: TokenRows = "new",
                    weight_bytes: int | None = None, gpu_bytes: float = 80 * GB,
                    materialized_attention: bool = False) -> dict[str, MemoryEstimate]:
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
            return estimate_training(name, lm, lora + rows, b, length, weight_bytes=wb, act_bytes=ab,
                                     checkpointing=gradient_checkpointing, full_finetune=full, extra=extra, notes=[note],
                                     materialized_attention=materialized_attention)
        return _fit(make, batch, name, gpu_bytes)

    what = ("all weights (source scratch)" if policy.source == "scratch"
            else f"LoRA r={sft.lora_r} on {len(sft.target_modules)} projections + {token_rows} token rows")
    out["sft"] = policy_stage("sft", sft, sft.batch_size, sft.max_length, 0.0, what)
    if reward.member == "finetune":
        enc = reward_meta_model(reward)
        n = sum(p.numel() for p in enc.parameters())

        def make_reward(b: int) -> MemoryEstimate:
            return estimate_training("reward", enc, n, b, reward.max_length, weight_bytes=wb, act_bytes=ab,
                                     checkpointing=gradient_checkpointing, loss_over_vocab=False, full_finetune=True,
                                     materialized_attention=materialized_attention,
                                     notes=[f"one of {reward.n_models}+{reward.n_prefix_models} members, all weights trained"])
        out["reward"] = _fit(make_reward, reward.batch_size, "reward", gpu_bytes)
        members = (reward.n_models + reward.n_prefix_models) * n * wb
    else:
        members = 0.0
    length = PROMPT_TOKENS + (grpo.max_new_tokens or policy.max_new_tokens)
    kv = kv_cache_bytes(shapes, grpo.batch_size, length, ab)
    out["grpo"] = policy_stage("grpo", grpo, grpo.batch_size, length, members + kv,
                               f"LoRA r={grpo.lora_r}; frozen reward members {members / GB:.1f} GB + KV cache {kv / GB:.1f} GB in extra")
    return out


def _fit(make, batch: int, name: str, gpu_bytes: float) -> MemoryEstimate:
    b = largest_micro_batch(make, batch, gpu_bytes)
    est = make(b or 1)
    if b is None:
        est.notes.append(f"does not fit {gpu_bytes / GB:.0f} GB even at micro batch 1: shard it (FSDP/ZeRO-3) or shorten {name}.max_length")
    elif b < batch:
        est.notes.append(f"{name}.batch_size {batch} fits as micro batch {b} x grad_accum {batch // b}; "
                         f"at {batch} it needs {make(batch).total / GB:.0f} GB")
    return est


def format_estimates(estimates: dict[str, MemoryEstimate], gpu_bytes: float = 80 * GB) -> str:
    """A table (GB per GPU) with one note line per stage."""
    lines = [f"estimated memory per GPU (fits = under 90% of {gpu_bytes / GB:.0f} GB)", HEADER]
    for est in estimates.values():
        lines.append(est.row() + ("  fits" if est.fits(gpu_bytes) else "  DOES NOT FIT"))
    lines += [f"  {est.stage}: {note}" for est in estimates.values() for note in est.notes]
    return "\n".join(lines)


def training_flops(params: int, trainable_fraction: float, tokens: float, checkpointing: bool) -> float:
    """Forward + backward FLOPs: 2N a token forward, 2N for input gradients, 2N x trainable share for weight
    gradients, and another forward under checkpointing."""
    return tokens * params * (2 + 2 + 2 * trainable_fraction + (2 if checkpointing else 0))


def stage_hours(flops: float, gpus: int, peak_flops: float = 989e12, mfu: float = 0.35) -> float:
    """Wall-clock hours at `mfu` of `peak_flops` per GPU (H100 SXM bf16 dense: 989 TFLOP/s), linear in GPUs."""
    return flops / (gpus * peak_flops * mfu) / 3600


class PeakMemory:
    """Peak memory a block adds: CUDA allocator peak on a GPU; on the CPU the peak resident set (VmHWM, reset
    through /proc/self/clear_refs) minus the resident set at entry, which counts every allocation of the process.

    >>> with PeakMemory("cpu") as peak:
    ...     buf = bytearray(50_000_000)
    >>> peak.bytes > 40e6 or not peak.supported
    True
    """

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.bytes = 0.0
        self.supported = True

    @staticmethod
    def _status(key: str) -> float:
        with open("/proc/self/status") as f:
            return next(float(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
            return self
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset the peak resident set (Linux >= 4.0)
            self._start = self._status("VmRSS")
        except (OSError, StopIteration):
            self.supported = False
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.bytes = float(torch.cuda.max_memory_allocated(self.device) - self._start)
        elif self.supported:
            self.bytes = self._status("VmHWM") - self._start


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
        estimates = estimate_stages(params, new_tokens=new_tokens, token_rows=params.sft.token_rows,
                                    gradient_checkpointing=bool(getattr(getattr(params, stage, None), "gradient_checkpointing", False)),
                                    materialized_attention=resolve_device().type == "cpu")
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
        sizes = {f"{k}_gb": getattr(est, k) / GB for k in ("weights", "trainable_state", "activations", "extra", "total")}
        mlflow.log_dict({k: getattr(est, k) for k in ("stage", "params", "trainable", "micro_batch", "seq_len", "gradient_checkpointing", "notes")}
                        | sizes, "cost_estimate.json")
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
    parser.add_argument("--new-tokens", type=int, default=210, help="flow vocabulary size (reports/encode n_flow_tokens)")
    parser.add_argument("--full-token-rows", action="store_true", help="train full embed/lm_head copies (today) instead of new rows")
    parser.add_argument("--no-checkpointing", action="store_true", help="estimate without gradient checkpointing")
    args = parser.parse_args(argv)
    return exit_code(lambda: print_estimate(load_params(args.params, profile=args.profile), new_tokens=args.new_tokens,
                                            token_rows="full" if args.full_token_rows else "new",
                                            gradient_checkpointing=not args.no_checkpointing))


if __name__ == "__main__":
    raise SystemExit(main())

