"""The `flowrl` command-line program."""

from __future__ import annotations

import sys

import typer

from flowrl.errors import FlowRLError

app = typer.Typer(help="FlowRL-Ops: prompt-adaptive ComfyUI workflows.", no_args_is_help=True, add_completion=False)
flow_app = typer.Typer(help="Inspect, validate, convert and encode ComfyUI workflow files.", no_args_is_help=True)
app.add_typer(flow_app, name="flow")


def fail(message: str, code: int = 2) -> None:
    """Print one clear error (no traceback) and exit non-zero."""
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


def _register() -> None:
    """Import the modules that add commands to `app` / `flow_app` (one line each)."""
    import flowrl.cli_flow  # noqa: F401
    import flowrl.cli_encode  # noqa: F401
    import flowrl.cli_generate  # noqa: F401


_register()


def main() -> None:
    """Entry point that turns any FlowRLError into a one-screen message."""
    try:
        app()
    except FlowRLError as exc:
        fail(str(exc))


if __name__ == "__main__":
    sys.exit(main())
