"""A Llama forward pass in plain torch, for sampling on the CPU without importing transformers' model code.

Why: `flowrl generate` must answer in 5 s (issue 25). Importing transformers' Llama and peft costs ~2.7 s of
that on the 2-core box, and their per-layer overhead dominates a step of the 4.5M-weight `cpu` policy. This
module computes the same logits as `transformers.LlamaForCausalLM` (tests/policy/test_plain_llama.py compares
them) from the files a trained policy folder already holds: `config.json` and `model.safetensors`, with a
GRPO LoRA adapter merged in (W + alpha/r * B A, what peft's `merge_and_unload` does).

It covers what the pipeline's policies use: `model_type` llama, SiLU MLP, no biases, default RoPE. Anything
else (`plain_llama_problem` says what) loads through transformers as before.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

CONFIG, WEIGHTS = "config.json", "model.safetensors"
ADAPTER_CONFIG, ADAPTER_WEIGHTS = "adapter_config.json", "adapter_model.safetensors"
LORA_PREFIX = "base_model.model."


def plain_llama_problem(folder: str | Path, adapter: str | Path | None = None) -> str | None:
    """Why `PlainLlama` cannot run the model in `folder` (+ LoRA `adapter`), or None when it can."""
    folder = Path(folder)
    if not (folder / CONFIG).exists() or not (folder / WEIGHTS).exists():
        return f"{folder} holds no {CONFIG} + {WEIGHTS} (an adapter over a base model)"
    cfg = json.loads((folder / CONFIG).read_text())
    rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    checks = {
        "model_type is not llama": cfg.get("model_type") != "llama",
        "hidden_act is not silu": cfg.get("hidden_act", "silu") != "silu",
        "attention or MLP biases": cfg.get("attention_bias") or cfg.get("mlp_bias"),
        "RoPE scaling": rope.get("rope_type", "default") != "default" or "partial_rotary_factor" in rope,
    }
    if adapter is not None:
        acfg = json.loads((Path(adapter) / ADAPTER_CONFIG).read_text())
        checks |= {
            "adapter is not a plain LoRA": acfg.get("peft_type") != "LORA"
            or acfg.get("use_dora")
            or acfg.get("use_rslora")
            or acfg.get("rank_pattern")
            or acfg.get("alpha_pattern")
            or acfg.get("modules_to_save")
            or acfg.get("bias", "none") != "none"
            or acfg.get("fan_in_fan_out"),
        }
    failed = [what for what, bad in checks.items() if bad]
    return "; ".join(failed) or None


@dataclass
class PlainOutput:
    """What `PlainLlama` returns: the shape of transformers' output that the samplers read."""

    logits: torch.Tensor
    past_key_values: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)


class PlainLlama:
    """Llama weights and a KV-cached forward; called like `LlamaForCausalLM` by `ModelScorer` (flowrl.policy.decoding.sampling)."""

    def __init__(self, config: dict, weights: dict[str, torch.Tensor]):
        self.config = _Config(config)
        self.w = weights
        c = self.config
        self.heads, self.kv_heads = c.num_attention_heads, c.num_key_value_heads
        self.head_dim = c.head_dim
        theta = (c.rope_parameters or {}).get("rope_theta", c.rope_theta)
        self.inv_freq = 1.0 / (theta ** (torch.arange(0, self.head_dim, 2, dtype=torch.float32) / self.head_dim))
        self.lm_head = weights.get("lm_head.weight", weights["model.embed_tokens.weight"])  # tied: not saved
        # one matmul for q, k, v and one for gate, up: a step of this small model costs per call, not per weight
        for i in range(c.num_hidden_layers):
            pre = f"model.layers.{i}."
            weights[pre + "qkv"] = torch.cat([weights[pre + f"self_attn.{n}_proj.weight"] for n in "qkv"])
            weights[pre + "gate_up"] = torch.cat([weights[pre + f"mlp.{n}_proj.weight"] for n in ("gate", "up")])
        self.split_qkv = (self.heads * self.head_dim, self.kv_heads * self.head_dim, self.kv_heads * self.head_dim)

    @classmethod
    def from_folder(cls, folder: str | Path, adapter: str | Path | None = None) -> PlainLlama:
        """The model saved in `folder` (config.json + model.safetensors), with the LoRA `adapter` merged in."""
        from safetensors.torch import load_file

        folder = Path(folder)
        config = json.loads((folder / CONFIG).read_text())
        weights = {k: v.float() for k, v in load_file(str(folder / WEIGHTS)).items()}
        if adapter is not None:
            merge_lora(weights, Path(adapter))
        return cls(config, weights)

    def _rms_norm(self, x: torch.Tensor, name: str) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.config.rms_norm_eps)
        return self.w[name] * x.to(dtype)

    def _rope(self, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = position_ids.float()[..., None] * self.inv_freq  # (B, T, D/2)
        emb = torch.cat([freqs, freqs], dim=-1)
        return emb.cos()[:, None], emb.sin()[:, None]  # (B, 1, T, D)

    @staticmethod
    def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return x * cos + rotated * sin  # as transformers: fp32 under bf16 autocast (cos, sin are fp32)

    def __call__(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        past_key_values: list | None = None,
        use_cache: bool = True,
        logits_to_keep: int = 0,
    ) -> PlainOutput:
        """Logits (B, T or logits_to_keep, V) of `input_ids` (B, T) after `past_key_values`; `attention_mask`
        covers the past and the new tokens (B, P + T), 0 on left padding.

        Always fp32, whatever autocast is in force: at these sizes a bf16 matmul is the slow one on a CPU
        (a 256 x 768 linear at batch 2: 30 us in fp32, 230 us under bf16 autocast, 2-core box, 2026-12-05).
        """
        with torch.autocast("cpu", enabled=False):
            return self._forward(input_ids, attention_mask, position_ids, past_key_values, use_cache, logits_to_keep)

    def _forward(self, input_ids, attention_mask, position_ids, past_key_values, use_cache, logits_to_keep):
        w, bsz, steps = self.w, input_ids.shape[0], input_ids.shape[1]
        past = past_key_values or []
        p_len = past[0][0].shape[2] if past else 0
        keys = attention_mask[:, None, None, :].bool()  # (B, 1, 1, P + T)
        q_pos = torch.arange(p_len, p_len + steps)[:, None]
        k_pos = torch.arange(p_len + steps)[None, :]
        # causal and not padding; a padded query attends to itself so that no row of the softmax is empty
        mask = (keys & (k_pos <= q_pos)) | (k_pos == q_pos)
        cos, sin = self._rope(position_ids)
        x = w["model.embed_tokens.weight"][input_ids]
        cache = []
        for i in range(self.config.num_hidden_layers):
            pre = f"model.layers.{i}."
            h = self._rms_norm(x, pre + "input_layernorm.weight")
            q, k, v = F.linear(h, w[pre + "qkv"]).split(self.split_qkv, dim=-1)
            q = q.view(bsz, steps, self.heads, -1).transpose(1, 2)
            k = k.view(bsz, steps, self.kv_heads, -1).transpose(1, 2)
            v = v.view(bsz, steps, self.kv_heads, -1).transpose(1, 2)
            q, k = self._rotate(q, cos, sin), self._rotate(k, cos, sin)
            if past:
                k, v = torch.cat([past[i][0], k], dim=2), torch.cat([past[i][1], v], dim=2)
            cache.append((k, v))
            if self.heads != self.kv_heads:
                k, v = (t.repeat_interleave(self.heads // self.kv_heads, dim=1) for t in (k, v))
            att = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=1.0 / math.sqrt(self.head_dim))
            att = att.transpose(1, 2).reshape(bsz, steps, -1)
            x = x + F.linear(att, w[pre + "self_attn.o_proj.weight"])
            h = self._rms_norm(x, pre + "post_attention_layernorm.weight")
            gate, up = F.linear(h, w[pre + "gate_up"]).chunk(2, dim=-1)
            x = x + F.linear(F.silu(gate) * up, w[pre + "mlp.down_proj.weight"])
        x = self._rms_norm(x[:, -logits_to_keep:] if logits_to_keep else x, "model.norm.weight")
        return PlainOutput(F.linear(x, self.lm_head), cache if use_cache else [])


def merge_lora(weights: dict[str, torch.Tensor], adapter: Path) -> None:
    """Add a LoRA adapter's `alpha / r * B @ A` to the weights it targets (in place)."""
    from safetensors.torch import load_file

    acfg = json.loads((adapter / ADAPTER_CONFIG).read_text())
    scale = acfg["lora_alpha"] / acfg["r"]
    lora = load_file(str(adapter / ADAPTER_WEIGHTS))
    for name, a in lora.items():
        if ".lora_A." not in name:
            continue
        target = name.removeprefix(LORA_PREFIX).replace(".lora_A.weight", ".weight")
        b = lora[name.replace(".lora_A.", ".lora_B.")]
        weights[target] = weights[target] + scale * (b.float() @ a.float())


class _Config:
    """The config.json fields the forward reads (with transformers' defaults for the optional ones)."""

    def __init__(self, cfg: dict):
        self.raw = cfg
        self.num_hidden_layers = cfg["num_hidden_layers"]
        self.num_attention_heads = cfg["num_attention_heads"]
        self.num_key_value_heads = cfg.get("num_key_value_heads") or cfg["num_attention_heads"]
        self.head_dim = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
        self.rms_norm_eps = cfg.get("rms_norm_eps", 1e-6)
        self.rope_theta = cfg.get("rope_theta", 10000.0)
        self.rope_parameters = cfg.get("rope_parameters")
        self.max_position_embeddings = cfg.get("max_position_embeddings", 2048)
        self.vocab_size = cfg["vocab_size"]


def plain_policy_problem(sft_dir: str | Path, grpo_dir: str | Path | None) -> str | None:
    """Why the trained policy in `sft_dir` (+ `grpo_dir`) cannot be sampled in plain torch, or None when it can:
    it must be saved in full (the `scratch` source), its GRPO adapter a plain LoRA, its tokenizer a tokenizer.json,
    and the device the CPU."""
    from flowrl.runtime.device import placement
    from flowrl.runtime.plain_tokenizer import plain_tokenizer_problem

    try:
        if not json.loads((Path(sft_dir) / "policy.json").read_text()).get("full_weights"):
            return "the SFT policy is an adapter over a base model"
        if placement().moves:
            return "the device is not the CPU"
        return plain_llama_problem(sft_dir, _adapter(grpo_dir)) or plain_tokenizer_problem(sft_dir)
    except (OSError, ValueError, AttributeError) as exc:  # a damaged folder: transformers' loaders name the file
        return f"unreadable policy folder ({exc})"


def load_plain_policy(sft_dir: str | Path, grpo_dir: str | Path | None):
    """(SFT model, SFT + GRPO merged model or None, tokenizer) when `plain_policy_problem` finds none, else None.

    Sets torch to one thread: a model this small gains nothing from intra-op threads, and on busy cores they spin
    (one decoding step of the cpu policy: 4.6 ms on one thread, 680 ms on two; 2-core box at load 5, 2026-12-05).
    """
    from flowrl.runtime.plain_tokenizer import PlainTokenizer

    if plain_policy_problem(sft_dir, grpo_dir) is not None:
        return None
    torch.set_num_threads(1)
    grpo = _adapter(grpo_dir)
    try:
        sft = PlainLlama.from_folder(sft_dir)
        return sft, PlainLlama.from_folder(sft_dir, grpo) if grpo else None, PlainTokenizer(sft_dir)
    except Exception:  # noqa: BLE001 - a damaged file (safetensors and tokenizers raise their own types): transformers' loaders name it
        return None


def sample_plain(plain, prompts: list[str], cfg, gamma: float, logits_processor=None):
    """One flow per prompt from a `load_plain_policy` result: guided by `gamma` when it has a GRPO model."""
    from flowrl.policy.decoding.guidance import PairGuidedScorer
    from flowrl.policy.decoding.sampling import ModelScorer, sample_completions

    sft, grpo, tokenizer = plain
    scorer = PairGuidedScorer(sft, grpo, gamma) if grpo is not None else ModelScorer(sft)
    return sample_completions(scorer, tokenizer, prompts, cfg, logits_processor, desc="guided sampling")


def _adapter(grpo_dir: str | Path | None) -> Path | None:
    return Path(grpo_dir) if grpo_dir is not None and (Path(grpo_dir) / ADAPTER_CONFIG).exists() else None
