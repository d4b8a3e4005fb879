"""The surrogate reward: an ensemble of members (fine-tuned encoders or small heads over cached features) and prefix
models, trained by the `reward` stage (train), the uncertainty-aware, per-token reward GRPO sees (shaping), and the
frozen prompt encoder (prompt_cache; MiniLM in plain torch where it can, plain_bert)."""
