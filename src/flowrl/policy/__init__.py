"""The policy LM: loading (loading), SFT (sft, pairing, prompt_codes), GRPO (grpo, grpo_trainer), decoding (decoding:
constrained sampling and dual-model guidance), the served policy (inference, its request checks in requests) and the
cpu policy's forward in plain torch for a fast start (plain_llama)."""
