"""Where and how models run: the `device` setting (device), bf16 detection (precision) and the Hugging Face trainer
settings every trainer shares (trainer_defaults)."""
