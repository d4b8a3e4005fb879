"""The `evaluate` stage flow at module level, so prefect.yaml can name it as an entrypoint."""

from __future__ import annotations

from flows.stages import STAGE_FLOWS

evaluate = STAGE_FLOWS["evaluate"]
