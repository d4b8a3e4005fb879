"""Errors a user can cause. Each carries one message naming what was wrong and how to fix it."""


class FlowRLError(Exception):
    """Base class: the CLI prints the message (no traceback) and exits non-zero."""


class ConfigError(FlowRLError):
    """params.yaml (or an override) is malformed or asks for something impossible."""
