"""`flowrl flow validate` and `flowrl flow convert`: check and convert ComfyUI workflow files."""

from __future__ import annotations

from pathlib import Path

import typer

from flowrl.cli import fail, flow_app
from flowrl.comfy.graph import load_workflow, workflow_json
from flowrl.comfy.validate import format_problems, validate_graph
from flowrl.errors import FlowRLError


def _load(path: Path) -> dict:
    try:
        return load_workflow(path)
    except FlowRLError as exc:
        fail(str(exc), code=2)


@flow_app.command("validate")
def validate_cmd(path: Path = typer.Argument(..., help="API or UI workflow JSON file")) -> None:
    """Check a workflow against the node catalog; exit 1 when invalid, 2 when unreadable."""
    graph = _load(path)
    problems = validate_graph(graph)
    if problems:
        typer.echo(format_problems(problems, str(path)))
        raise typer.Exit(1)
    typer.echo(f"OK: {len(graph)} nodes")


@flow_app.command("convert")
def convert_cmd(path: Path = typer.Argument(..., help="UI (or API) workflow JSON file")) -> None:
    """Print the API-format JSON of a workflow (UI files are converted)."""
    try:
        typer.echo(workflow_json(_load(path), str(path)))
    except FlowRLError as exc:
        fail(str(exc))
