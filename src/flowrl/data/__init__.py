"""The pipeline's data stages: prompts (generated, from files or the CivitAI API, cleaned and split), base flows and
their augmentation, (prompt, flow, score) triplets, and the Great Expectations checks of them all (validate)."""
