"""The pipeline's stages in order: name -> the `run(params, root)` function that does the work.

Imported lazily so that asking for one stage does not import torch for the others.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

from flowrl.config import Params
from flowrl.errors import FlowRLError

StageFn = Callable[[Params, Path], dict]

# stage name -> "module:function". The order is the pipeline's order.
STAGES: dict[str, str] = {
    "prompts": "flowrl.data.prompts:run",
    "flows": "flowrl.data.flows:run",
    "encode": "flowrl.encoding.stage:run",
    "triplets": "flowrl.data.triplets:run",
    "validate": "flowrl.data.validate:run",
    "sft": "flowrl.policy.sft:run",
    "reward": "flowrl.reward.train:run",
    "grpo": "flowrl.policy.grpo:run",
    "evaluate": "flowrl.evaluation.evaluate:run",
    "register": "flowrl.tracking.registry:run",
}


def stage_function(name: str) -> StageFn:
    """Import and return the function of stage `name`."""
    if name not in STAGES:
        raise FlowRLError(f"unknown stage {name!r}; stages are: {', '.join(STAGES)}")
    module, func = STAGES[name].split(":")
    return getattr(importlib.import_module(module), func)
