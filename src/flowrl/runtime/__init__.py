"""Where and how models run: the `device` setting (device), bf16 detection (precision), the Hugging Face trainer
settings every trainer shares (trainer_defaults), the memory and compute of a training step (memory) and a saved
tokenizer read without transformers for fast inference (plain_tokenizer)."""
