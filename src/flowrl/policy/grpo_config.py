"""The GRPO trainer's settings from the `grpo` and `policy` params sections: trl's GRPOConfig (the arguments every
training section shares come from flowrl.runtime.trainer_defaults), the fresh LoRA it trains and vLLM generation."""

from __future__ import annotations

from pathlib import Path

from peft import LoraConfig
from trl import GRPOConfig

from flowrl.errors import FlowRLError
from flowrl.params.model import GRPOStageConfig, PolicyConfig
from flowrl.runtime.trainer_defaults import section_trainer_kwargs


def lora_config(cfg: GRPOStageConfig) -> LoraConfig:
    """A fresh LoRA on the projections only: lm_head and embed_tokens stay frozen (paper A.6.3)."""
    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.target_modules),
        task_type="CAUSAL_LM",
    )


class VLLMMissingError(FlowRLError):
    """grpo.use_vllm is on but vLLM is not installed."""


def vllm_kwargs(cfg: GRPOStageConfig) -> dict:
    """trl's vLLM generation (`use_vllm`, colocated on the training GPUs) when `grpo.use_vllm`; off by default."""
    if not cfg.use_vllm:
        return {"use_vllm": False}
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        raise VLLMMissingError(
            "grpo.use_vllm is true but vLLM is not installed; pip install vllm on the GPU worker or set grpo.use_vllm: false"
        )
    return {"use_vllm": True, "vllm_mode": "colocate"}


def trainer_args(cfg: GRPOStageConfig, policy: PolicyConfig, output_dir: Path, seed: int) -> GRPOConfig:
    """trl GRPOConfig from the `grpo` and `policy` sections (group baseline scaled by the group std)."""
    return GRPOConfig(
        **section_trainer_kwargs(cfg, output_dir, seed, policy.bf16),
        **vllm_kwargs(cfg),
        lr_scheduler_type=cfg.lr_scheduler,
        adam_beta2=cfg.adam_beta2,
        max_grad_norm=cfg.max_grad_norm,
        beta=cfg.beta,
        epsilon=cfg.epsilon,
        loss_type=cfg.loss_type,
        scale_rewards="group",
        num_generations=cfg.num_generations,
        max_completion_length=cfg.max_new_tokens or policy.max_new_tokens,
        temperature=cfg.temperature,
        top_p=policy.top_p or 1.0,
        log_completions=False,
    )
