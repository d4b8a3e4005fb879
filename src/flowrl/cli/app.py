"""The `flowrl` Typer apps and the one error printer; command modules add their commands to these."""

from __future__ import annotations

import typer

app = typer.Typer(help="FlowRL-Ops: prompt-adaptive ComfyUI workflows.", no_args_is_help=True, add_completion=False)
flow_app = typer.Typer(help="Inspect, validate, convert and encode ComfyUI workflow files.", no_args_is_help=True)
pipeline_app = typer.Typer(
    help="Files generated from the stage declarations (src/flowrl/pipeline/stages.py).", no_args_is_help=True
)
app.add_typer(flow_app, name="flow")
app.add_typer(pipeline_app, name="pipeline")


def fail(message: str, code: int = 2) -> None:
    """Print one clear error (no traceback) and exit non-zero."""
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code)
