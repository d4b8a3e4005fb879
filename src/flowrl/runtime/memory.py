"""Memory and compute of a training step, from a model's shapes (no weights needed: meta-device models do).

Per stage and per GPU: parameters, trainable parameters, bytes of frozen weights, of the trainable state (fp32 master
copy, gradient, AdamW moments: 16 bytes a parameter) and of activations at the configured micro batch and length.
Activations count what autograd keeps per token and layer (flash/SDPA attention: no seq^2 term), the layer inputs
only under gradient checkpointing (plus one layer recomputed), and the loss over the vocabulary (logits, their fp32
upcast, the saved log-softmax and, in backward, two fp32 gradients of that size), which dominates for Llama-3's 128k
vocabulary. `PeakMemory` measures what a block really used. flowrl.cli.cost applies this to the configured stages.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

GB = 1e9
ADAMW_STATE = 4 + 4 + 4 + 4  # fp32 weight, fp32 gradient, exp_avg, exp_avg_sq (bytes per trainable parameter)
TokenRows = Literal["new", "full"]


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
        return (
            2 * self.hidden
            + 2 * self.hidden
            + 2 * self.kv_dim
            + self.hidden
            + (4 if self.gated_mlp else 2) * self.intermediate
        )


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
        return (
            f"{self.stage:<7}{self.params / 1e9:>8.3f}B{self.trainable / 1e6:>10.1f}M{self.micro_batch:>5}x{self.seq_len:<6}"
            f"{'on ' if self.gradient_checkpointing else 'off':>5}{self.weights / GB:>9.1f}{self.trainable_state / GB:>9.1f}"
            f"{self.activations / GB:>9.1f}{self.extra / GB:>8.1f}{self.total / GB:>9.1f}"
        )


HEADER = f"{'stage':<7}{'params':>9}{'trainable':>11}{'batch x len':>12}{'ckpt':>5}{'weights':>9}{'train st':>9}{'activ.':>9}{'extra':>8}{'total GB':>9}"


def lora_params(model: nn.Module, r: int, target_modules: list[str]) -> int:
    """Parameters LoRA of rank `r` adds: r * (in + out) for each Linear whose name ends in a target."""
    return sum(
        r * (m.in_features + m.out_features)
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear) and name.rsplit(".", 1)[-1] in target_modules
    )


def token_row_params(model: nn.Module, new_tokens: int, rows: TokenRows) -> int:
    """Trainable embedding/head parameters: only the new flow-token rows (peft `trainable_token_indices`), or full
    copies of embed_tokens and lm_head (peft `modules_to_save`, today's setting)."""
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    tied = head is None or head.weight is emb.weight
    if rows == "new":
        return new_tokens * emb.weight.shape[1] * (1 if tied else 2)
    return emb.weight.numel() + (0 if tied else head.weight.numel())


def activation_bytes(
    shapes: Shapes,
    tokens: int,
    act_bytes: int,
    checkpointing: bool,
    loss_over_vocab: bool = True,
    seq_len: int = 0,
    heads: int = 0,
) -> float:
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


def estimate_training(
    stage: str,
    model: nn.Module,
    trainable: int,
    micro_batch: int,
    seq_len: int,
    *,
    weight_bytes: int,
    act_bytes: int,
    checkpointing: bool,
    full_finetune: bool = False,
    loss_over_vocab: bool = True,
    extra: float = 0.0,
    notes: list[str] | None = None,
    materialized_attention: bool = False,
) -> MemoryEstimate:
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
    acts = activation_bytes(
        Shapes.of(model), micro_batch * seq_len, act_bytes, checkpointing, loss_over_vocab, seq_len, heads
    )
    return MemoryEstimate(
        stage,
        params,
        trainable,
        micro_batch,
        seq_len,
        checkpointing,
        float(max(frozen, 0) * weight_bytes),
        float(trainable * ADAMW_STATE),
        acts,
        extra,
        list(notes or []),
    )


def largest_micro_batch(make: Callable[[int], MemoryEstimate], batch: int, gpu_bytes: float = 80 * GB) -> int | None:
    """Largest divisor of `batch` whose estimate `make(micro_batch)` fits the GPU; None when even 1 does not."""
    for b in sorted((d for d in range(1, batch + 1) if batch % d == 0), reverse=True):
        if make(b).fits(gpu_bytes):
            return b
    return None


def kv_cache_bytes(shapes: Shapes, sequences: int, length: int, act_bytes: int) -> float:
    """Keys and values of every layer for `sequences` x `length` tokens (generation)."""
    return float(2 * shapes.layers * shapes.kv_dim * sequences * length * act_bytes)


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
