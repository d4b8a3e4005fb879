"""`flowrl pipeline dvc-yaml` and `flowrl pipeline diagram`: write the files generated from the stage declarations."""

from __future__ import annotations

from pathlib import Path

import typer

from flowrl.cli.app import fail, pipeline_app
from flowrl.errors import FlowRLError


@pipeline_app.command("dvc-yaml")
def dvc_yaml_cmd(root: Path = typer.Option(Path("."), help="repository root")) -> None:
    """Write dvc.yaml from the stage declarations."""
    from flowrl.pipeline.files import write_dvc_yaml  # reads the params models: not needed for `flowrl --help`

    try:
        typer.echo(f"wrote {write_dvc_yaml(root)}")
    except FlowRLError as exc:
        fail(str(exc))


@pipeline_app.command("diagram")
def diagram_cmd(root: Path = typer.Option(Path("."), help="repository root")) -> None:
    """Write docs/architecture.md (the stage diagram and the layout) and the README's layout table."""
    from flowrl.pipeline.files import write_architecture

    try:
        typer.echo(f"wrote {write_architecture(root)}")
    except FlowRLError as exc:
        fail(str(exc))
