"""GPU smoke bench: SFT steps, reward member steps, GRPO-like steps and a guided evaluation batch at paper shapes.

Random weights at real shapes (`flowrl.model_configs`: Llama-3.1-8B policy, ModernBERT-base reward), so it needs no
hub access. Per stage: seconds per step (after one warm-up step), tokens per second and peak memory.

- sft: LoRA r=16 on the 7 projections + the new flow-token rows of embed/lm_head (peft trainable_token_indices),
  gradient checkpointing, AdamW, micro batch x length from the cost estimate (`flowrl.cli.cost`, `flowrl.runtime.memory`).
- reward: one ModernBERT regression member, all weights trained, MSE loss.
- grpo: sample a group of completions with the KV cache (`flowrl.policy.decoding.sampling.generate_ids`), then a
  forward/backward of a GRPO-style loss (group-normalised advantages x token log-probs, KL to the adapter-off
  reference). trl's trainer is not used: the step's tensors, not its bookkeeping, decide time and memory.
- guided: dual-model guided sampling of an evaluation batch (`flowrl.policy.decoding.guidance.GuidedScorer`, base + adapter).

Shapes: `paper` on a GPU (bf16 weights and autocast), `reduced` (same code, tiny dims, fp32) on the CPU, which the
test suite runs so the bench cannot rot. On the CPU, peak memory is the resident-set high-water delta of the stage
(a lower bound after earlier stages freed memory the process keeps).

Run: `python -m bench gpu_smoke` (paper shapes when CUDA is present, else reduced; FLOWRL_SMOKE_SHAPE overrides).
"""

from __future__ import annotations

import os
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass

import torch

from flowrl.model_configs import build_random_model
from flowrl.runtime.device import autocast as device_autocast
from flowrl.runtime.device import fast_bf16_on, placement, resolve_device
from flowrl.runtime.memory import PeakMemory

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass(frozen=True)
class Shape:
    """Models and sizes of one smoke run."""

    policy: str | dict
    reward: str | dict
    new_tokens: int  # flow vocabulary (paper data: 210)
    sft_batch: int
    sft_len: int
    reward_batch: int
    reward_len: int
    grpo_prompts: int
    grpo_group: int
    prompt_len: int
    new_len: int
    eval_batch: int
    steps: int = 2


SHAPES = {
    # micro batches that fit one 80 GB GPU per the cost estimate; sft/reward lengths are the paper's caps
    "paper": Shape(
        "meta-llama/Llama-3.1-8B", "answerdotai/ModernBERT-base", 210, 8, 2048, 32, 4096, 4, 4, 128, 500, 32
    ),
    "reduced": Shape(
        {
            "model_type": "llama",
            "vocab_size": 512,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "tie_word_embeddings": False,
        },
        {
            "model_type": "modernbert",
            "vocab_size": 512,
            "hidden_size": 32,
            "intermediate_size": 48,
            "num_hidden_layers": 3,
            "num_attention_heads": 4,
            "global_attn_every_n_layers": 3,
            "local_attention": 16,
            "pad_token_id": 0,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "cls_token_id": 1,
            "sep_token_id": 2,
        },
        8,
        2,
        64,
        4,
        64,
        2,
        2,
        16,
        12,
        4,
    ),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(device: torch.device, steps: int, step) -> tuple[float, float]:
    """(mean seconds per step after one warm-up step, peak bytes over all of them)."""
    with PeakMemory(device) as peak:
        step()
        _sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            step()
        _sync(device)
    return (time.perf_counter() - start) / steps, peak.bytes


def _autocast(device: torch.device, bf16: bool):
    """Training autocast: the stages' (bf16 where the device computes in it; flowrl.runtime.device)."""
    return device_autocast(device, bf16) if bf16 else nullcontext()


def _lora(rows: list[int]):
    """The paper's LoRA (r=16 on the 7 projections) with the new flow-token rows of embed/lm_head trainable."""
    from peft import LoraConfig

    return LoraConfig(
        r=16, lora_alpha=16, target_modules=TARGETS, trainable_token_indices={"embed_tokens": rows, "lm_head": rows}
    )


def _policy(shape: Shape, device: torch.device, bf16: bool):
    """Random-weight policy with a LoRA adapter and trainable new-token rows, checkpointing on."""
    from peft import get_peft_model

    # placed as the stages place a frozen base (flowrl.runtime.device: bf16 on a bf16 GPU), built there (no CPU copy)
    where = placement(device, frozen=True)
    base = build_random_model(shape.policy, "causal-lm", seed=0, device=where.device, dtype=where.dtype)
    vocab = base.config.vocab_size
    rows = list(range(vocab - shape.new_tokens, vocab))
    model = get_peft_model(base, _lora(rows))
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    return model, vocab


def _stage(name: str, seconds: float, peak: float, tokens: int, **extra) -> dict:
    return {
        "stage": name,
        "step_s": round(seconds, 4),
        "tokens_per_s": round(tokens / seconds, 1) if seconds else 0.0,
        "peak_mem_gb": round(peak / 1e9, 3),
        "tokens_per_step": tokens,
        **extra,
    }


def sft_stage(model, vocab: int, shape: Shape, device: torch.device, bf16: bool) -> dict:
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    ids = torch.randint(0, vocab, (shape.sft_batch, shape.sft_len), device=device)

    def step():
        with _autocast(device, bf16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    seconds, peak = _timed(device, shape.steps, step)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    del opt
    return _stage(
        "sft",
        seconds,
        peak,
        shape.sft_batch * shape.sft_len,
        trainable_params=trainable,
        batch=f"{shape.sft_batch}x{shape.sft_len}",
    )


def reward_stage(shape: Shape, device: torch.device, bf16: bool) -> dict:
    # trained in full: fp32 master weights on the device, bf16 autocast (as the reward stage's Trainer)
    where = placement(device, frozen=False)
    member = build_random_model(
        shape.reward, "regression", seed=1, device=where.device, dtype=where.dtype, setting="reward.model"
    ).train()
    member.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    opt = torch.optim.AdamW(member.parameters(), lr=8e-5)
    vocab = member.config.vocab_size
    ids = torch.randint(3, vocab, (shape.reward_batch, shape.reward_len), device=device)
    labels = torch.rand(shape.reward_batch, device=device)

    def step():
        with _autocast(device, bf16):
            loss = member(input_ids=ids, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    seconds, peak = _timed(device, shape.steps, step)
    n = sum(p.numel() for p in member.parameters())
    del member, opt
    return _stage(
        "reward",
        seconds,
        peak,
        shape.reward_batch * shape.reward_len,
        trainable_params=n,
        batch=f"{shape.reward_batch}x{shape.reward_len}",
    )


class _PolicyScorer:
    """Next-token log-probs and KV cache of one model (the `StepScorer` of flowrl.policy.decoding.sampling)."""

    def __init__(self, model):
        self.model = model

    def __call__(self, input_ids, attention_mask, position_ids, past_key_values):
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            use_cache=True,
            logits_to_keep=1,
        )
        return out.logits[:, -1].float().log_softmax(-1), out.past_key_values


def _sample(scorer, vocab: int, batch: int, shape: Shape, device: torch.device, bf16: bool) -> torch.Tensor:
    from flowrl.policy.decoding.sampling import SamplingConfig, generate_ids, seeded_uniforms

    prompt = torch.randint(0, vocab, (batch, shape.prompt_len), device=device)
    cfg = SamplingConfig(
        max_new_tokens=shape.new_len, batch_size=batch, bf16=bf16
    )  # generate_ids: flowrl.runtime.device.autocast
    uniforms = seeded_uniforms(batch, shape.new_len, 0).to(device)
    with torch.no_grad():
        new = generate_ids(scorer, prompt, torch.ones_like(prompt), cfg, vocab, 0, uniforms)  # eos=vocab: never
    return torch.cat([prompt, new], dim=1)


def grpo_stage(model, vocab: int, shape: Shape, device: torch.device, bf16: bool, beta: float = 0.2) -> dict:
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-6)
    n = shape.grpo_prompts * shape.grpo_group
    gen_seconds = []

    def step():
        model.eval()
        start = time.perf_counter()
        seqs = _sample(_PolicyScorer(model), vocab, n, shape, device, bf16)
        _sync(device)
        gen_seconds.append(time.perf_counter() - start)
        rewards = torch.rand(shape.grpo_prompts, shape.grpo_group, device=device)  # stands in for the ensemble
        adv = ((rewards - rewards.mean(1, keepdim=True)) / (rewards.std(1, keepdim=True) + 1e-4)).flatten()
        targets = seqs[:, shape.prompt_len :]
        model.train()
        with _autocast(device, bf16):
            with torch.no_grad(), model.disable_adapter():
                ref = model(input_ids=seqs).logits[:, shape.prompt_len - 1 : -1].float().log_softmax(-1)
                ref = ref.gather(-1, targets[..., None]).squeeze(-1)
            logp = model(input_ids=seqs).logits[:, shape.prompt_len - 1 : -1].float().log_softmax(-1)
            logp = logp.gather(-1, targets[..., None]).squeeze(-1)
        kl = torch.exp(ref - logp) - (ref - logp) - 1
        loss = (-(torch.exp(logp - logp.detach()) * adv[:, None]) + beta * kl).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    seconds, peak = _timed(device, shape.steps, step)
    generation = sum(gen_seconds[1:]) / max(len(gen_seconds) - 1, 1)
    del opt
    return _stage(
        "grpo",
        seconds,
        peak,
        n * (shape.prompt_len + shape.new_len),
        generation_s=round(generation, 4),
        generated_tokens_per_s=round(n * shape.new_len / generation, 1) if generation else 0.0,
        batch=f"{shape.grpo_prompts}x{shape.grpo_group} completions of {shape.new_len}",
    )


def guided_stage(model, vocab: int, shape: Shape, device: torch.device, bf16: bool) -> dict:
    from flowrl.policy.decoding.guidance import BASE, GuidedScorer

    model.add_adapter("grpo", _lora(list(range(vocab - shape.new_tokens, vocab))))
    model.eval()
    scorer = GuidedScorer(model, 1.5, BASE, "grpo")
    seconds, peak = _timed(device, 1, lambda: _sample(scorer, vocab, shape.eval_batch, shape, device, bf16))
    return _stage(
        "guided_eval", seconds, peak, shape.eval_batch * shape.new_len, batch=f"{shape.eval_batch} prompts, gamma 1.5"
    )


def run(shape_name: str = "reduced", device: str | None = None) -> dict:
    """Every stage at `shape_name` on `device` (a `device` setting; default: FLOWRL_DEVICE, else auto = CUDA when
    present, flowrl.runtime.device); figures per stage."""
    dev = resolve_device(device)
    shape = SHAPES[shape_name]
    bf16 = fast_bf16_on(dev)
    torch.manual_seed(0)
    start = time.perf_counter()
    stages = [reward_stage(shape, dev, bf16)]
    model, vocab = _policy(shape, dev, bf16)
    stages += [
        sft_stage(model, vocab, shape, dev, bf16),
        grpo_stage(model, vocab, shape, dev, bf16),
        guided_stage(model, vocab, shape, dev, bf16),
    ]
    gpu = torch.cuda.get_device_name(dev) if dev.type == "cuda" else None
    note = (
        None
        if gpu
        else (
            "no GPU was available: reduced shapes on the CPU (same code, tiny dims); "
            "paper-shape figures need `python -m bench gpu_smoke` on a GPU host"
        )
    )
    return {
        "shape": shape_name,
        "device": gpu or "cpu",
        "bf16": bf16,
        "steps": shape.steps,
        "note": note,
        "shape_settings": {k: v for k, v in asdict(shape).items() if k not in ("policy", "reward")}
        | {
            "policy": shape.policy if isinstance(shape.policy, str) else "reduced llama",
            "reward": shape.reward if isinstance(shape.reward, str) else "reduced modernbert",
        },
        "total_s": round(time.perf_counter() - start, 2),
        "stages": {s.pop("stage"): s for s in stages},
    }


def main() -> dict:
    shape = os.environ.get("FLOWRL_SMOKE_SHAPE") or ("paper" if resolve_device().type == "cuda" else "reduced")
    return run(shape)


def rows(f: dict) -> list[tuple[str, str, str, str]]:
    """Report rows: per stage seconds per step, tokens/s and peak memory."""
    out = [
        (
            "device / shape",
            f"{f['device']} / {f['shape']}",
            "paper shape on one H200 in < 8 min",
            "yes" if f["shape"] == "paper" and f["total_s"] < 480 else "no (not measured on a GPU)",
        )
    ]
    for name, s in f["stages"].items():
        out.append(
            (f"{name}: s/step, tokens/s, peak GB", f"{s['step_s']}, {s['tokens_per_s']}, {s['peak_mem_gb']}", "-", "-")
        )
    return out  # figures["note"] (no GPU) is listed under the table by the report
