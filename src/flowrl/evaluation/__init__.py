"""The `evaluate` stage: every method and baseline on the held-out prompts, scored; win rates, adaptivity, novelty,
validity, the report and plots."""
