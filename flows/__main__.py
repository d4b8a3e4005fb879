"""`python -m flows STAGE [--profile P]`: run one stage's Prefect flow (what dvc.yaml calls)."""

from __future__ import annotations

import argparse
import os
import sys

# Offline machines: Prefect's telemetry would only log a failed DNS lookup per run.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from flowrl.errors import exit_code


def main(argv: list[str] | None = None) -> int:
    from flows.stages import STAGE_FLOWS

    parser = argparse.ArgumentParser(prog="python -m flows", description=__doc__)
    parser.add_argument("stage", choices=list(STAGE_FLOWS))
    parser.add_argument("--profile", default=None, help="override params.yaml `profile` (tiny, cpu, paper)")
    args = parser.parse_args(argv)
    return exit_code(STAGE_FLOWS[args.stage], profile=args.profile)


if __name__ == "__main__":
    sys.exit(main())
