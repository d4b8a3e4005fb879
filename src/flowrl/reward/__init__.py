"""The surrogate reward: an ensemble of members (fine-tuned encoders or small heads over cached features) and prefix
models, trained by the `reward` stage (train), and the uncertainty-aware, per-token reward GRPO sees (shaping)."""
