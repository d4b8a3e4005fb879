"""`python -m flows STAGE [--profile P]`: run one stage's Prefect flow (what dvc.yaml calls)."""

from __future__ import annotations

import argparse
import os
import sys

# Offline machines: Prefect's telemetry would only log a failed DNS lookup per run.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from flowrl.errors import FlowRLError


def main(argv: list[str] | None = None) -> int:
    from flows.stages import STAGE_FLOWS

    parser = argparse.ArgumentParser(prog="python -m flows", description=__doc__)
    parser.add_argument("stage", choices=list(STAGE_FLOWS))
    parser.add_argument("--profile", default=None, help="override params.yaml `profile` (or set FLOWRL_PROFILE)")
    args = parser.parse_args(argv)
    try:
        STAGE_FLOWS[args.stage](profile=args.profile)
    except FlowRLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
