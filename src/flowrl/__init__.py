"""FlowRL-Ops: turn a text prompt into a ComfyUI workflow tailored to it."""

__version__ = "0.1.0"
