"""The prompt template shared by SFT, GRPO and guided sampling (paper A.6.1)."""

from __future__ import annotations

PROMPT_TEMPLATE = ">>> Prompt:\n{prompt}\n>>> Flow:\n"


def format_prompt(prompt: str) -> str:
    """Wrap a user prompt in the template; the model continues with the encoded flow and EOS.

    >>> format_prompt("a red fox")
    '>>> Prompt:\\na red fox\\n>>> Flow:\\n'
    """
    return PROMPT_TEMPLATE.format(prompt=prompt.strip())
