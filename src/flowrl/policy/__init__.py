"""The policy LM: loading (loading), SFT (sft, pairing, prompt_codes), GRPO (grpo, grpo_trainer), decoding (decoding:
constrained sampling and dual-model guidance) and the served policy (inference)."""
