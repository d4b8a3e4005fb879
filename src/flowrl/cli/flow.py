"""`flowrl flow validate`, `flowrl flow convert` and `flowrl flow to-ui`: check and convert ComfyUI workflow files."""

from __future__ import annotations

from pathlib import Path

import typer

from flowrl.cli.app import fail, flow_app
from flowrl.comfy.graph import load_workflow, workflow_json
from flowrl.comfy.validate import format_problems, validate_graph
from flowrl.encoding.codec import is_encoded_flow
from flowrl.errors import FlowRLError

OBJECT_INFO_HELP = (
    "Your ComfyUI: its URL (http://127.0.0.1:8188) or a saved copy of <URL>/object_info; "
    "checks installed node classes and model files instead of the node catalog."
)


def _load(path: Path) -> dict:
    try:
        return load_workflow(path, is_encoded_flow)
    except FlowRLError as exc:
        fail(str(exc), code=2)


def write_or_print(data: dict, out: Path | None, source: str) -> None:
    """Print a workflow's JSON (also for `-o -`), or write it to `out` like a careful Unix tool (`flowrl.io.write_text`:
    atomic, mode and symlink kept, FIFOs written into, no folder created); values JSON cannot carry are refused."""
    from flowrl.io import write_text

    text = workflow_json(data, source)
    if out is None or str(out) == "-":
        typer.echo(text)
    else:
        write_text(out, text + "\n", make_parents=False)
        typer.secho(f"wrote {out}", err=True)


@flow_app.command("validate")
def validate_cmd(
    path: Path = typer.Argument(..., help="API or UI workflow JSON file"),
    object_info: str | None = typer.Option(None, "--object-info", help=OBJECT_INFO_HELP),
) -> None:
    """Check a workflow against the node catalog (or your ComfyUI); exit 1 when invalid, 2 when unreadable."""
    graph = _load(path)
    if object_info is None:
        problems = validate_graph(graph)
        if problems:
            typer.echo(format_problems(problems, str(path)))
            raise typer.Exit(1)
        typer.echo(f"OK: {len(graph)} nodes")
        return
    from flowrl.comfy.object_info import check_installed, format_installed, load_object_info

    try:
        info = load_object_info(object_info)
    except FlowRLError as exc:
        fail(str(exc), code=2)
    missing, problems = check_installed(graph, info)
    if missing or problems:
        typer.echo(format_installed(missing, problems, str(path), info))
        raise typer.Exit(1)
    typer.echo(f"OK: {len(graph)} nodes, all installed on {info.source}")


@flow_app.command("convert")
def convert_cmd(path: Path = typer.Argument(..., help="UI (or API) workflow JSON file")) -> None:
    """Print the API-format JSON of a workflow (UI files are converted)."""
    try:
        typer.echo(workflow_json(_load(path), str(path)))
    except FlowRLError as exc:
        fail(str(exc))


@flow_app.command("to-ui")
def to_ui_cmd(
    path: Path = typer.Argument(..., help="API-format workflow JSON file (a UI file is converted and laid out again)"),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Write the UI workflow to this file instead of printing it (- : print)."
    ),
) -> None:
    """Print a UI workflow (for the ComfyUI editor: drag it in, or Workflow > Open) with an automatic layout."""
    from flowrl.comfy.ui_export import api_to_ui

    try:
        write_or_print(api_to_ui(_load(path), source=str(path)), out, str(path))
    except FlowRLError as exc:
        fail(str(exc))
