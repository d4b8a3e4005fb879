"""Where and how models run: the `device` setting (device), bf16 detection (precision), the Hugging Face trainer
settings every trainer shares (trainer_defaults) and the memory and compute of a training step (memory)."""
