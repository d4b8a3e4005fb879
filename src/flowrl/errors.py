"""Errors a user can cause. Each carries one message naming what was wrong and how to fix it."""

import sys


class FlowRLError(Exception):
    """Base class: the CLI prints the message (no traceback) and exits non-zero."""


class ConfigError(FlowRLError):
    """params.yaml (or an override) is malformed or asks for something impossible."""


def exit_code(call, *args, **kwargs) -> int:
    """Run `call` for a command-line entry point: 0 on success; a FlowRLError prints its message
    (no traceback) to stderr and gives 2. Other exceptions propagate (they are bugs, not bad input)."""
    try:
        call(*args, **kwargs)
    except FlowRLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
