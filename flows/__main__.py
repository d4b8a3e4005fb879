"""`python -m flows STAGE [--profile P]`: run one stage's Prefect flow (what dvc.yaml calls)."""

from __future__ import annotations

import argparse
import os
import sys

# Offline machines: Prefect's telemetry would only log a failed DNS lookup per run.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from flowrl.errors import exit_code


def main(argv: list[str] | None = None) -> int:
    from flowrl.pipeline.stages import STAGES

    parser = argparse.ArgumentParser(prog="python -m flows", description=__doc__)
    parser.add_argument("stage", choices=list(STAGES))
    parser.add_argument("--profile", default=None, help="override params.yaml `profile` (tiny, cpu, paper)")
    args = parser.parse_args(argv)
    from pathlib import Path

    from flowrl.params.model import load_params

    # params first, outside Prefect: a bad or missing params.yaml is one line, not a flow-run traceback
    if (code := exit_code(load_params, Path("params.yaml").resolve(), args.profile)) != 0:
        return code
    # torch and Prefect: imported once the arguments and params are good
    from flowrl.runtime.device import is_main_process
    from flows.stages import STAGE_FLOWS

    if not is_main_process():  # the extra processes of a multi-GPU launch train and leave Prefect and MLflow to rank 0
        return exit_code(run_stage_directly, args.stage, args.profile)
    return exit_code(STAGE_FLOWS[args.stage], profile=args.profile)


def run_stage_directly(name: str, profile: str | None) -> dict:
    """The stage function on the params it declares, outside Prefect (ranks > 0 of a multi-GPU launch)."""
    from pathlib import Path

    from flowrl.params.model import load_params
    from flowrl.pipeline.stage_params import declared_view
    from flowrl.pipeline.stages import stage, stage_function

    root = Path(".").resolve()
    return stage_function(name)(declared_view(load_params(root / "params.yaml", profile), stage(name)), root)


if __name__ == "__main__":
    sys.exit(main())
