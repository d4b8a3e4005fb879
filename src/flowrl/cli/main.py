"""The `flowrl` command-line program: the apps of flowrl.cli.app with every command module's commands."""

from __future__ import annotations

import sys

# Importing a command module registers its commands on the apps (they import cli_app, never this module).
import flowrl.cli.encode  # noqa: F401
import flowrl.cli.flow  # noqa: F401
import flowrl.cli.generate  # noqa: F401
import flowrl.cli.pipeline  # noqa: F401
from flowrl.cli.app import app, fail, flow_app  # noqa: F401 - the public entry points
from flowrl.errors import FlowRLError


def main() -> None:
    """Entry point that turns any FlowRLError into a one-screen message."""
    try:
        app()
    except FlowRLError as exc:
        fail(str(exc))


if __name__ == "__main__":
    sys.exit(main())
