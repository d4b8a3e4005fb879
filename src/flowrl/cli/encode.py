"""`flowrl flow encode` and `flowrl flow decode`: workflow JSON <-> the compact flow encoding."""

from __future__ import annotations

from pathlib import Path

import typer

from flowrl.cli.app import fail, flow_app
from flowrl.comfy.graph import load_workflow, workflow_json
from flowrl.encoding.codec import decode_flow, encode_flow, is_encoded_flow
from flowrl.errors import FlowRLError


@flow_app.command("encode")
def encode_cmd(path: Path = typer.Argument(..., help="API or UI workflow JSON file")) -> None:
    """Print the compact encoding of a workflow (one line per node)."""
    try:
        typer.echo(encode_flow(load_workflow(path, is_encoded_flow)))
    except FlowRLError as exc:
        fail(f"{path}: {exc}" if str(path) not in str(exc) else str(exc))


@flow_app.command("decode")
def decode_cmd(path: Path = typer.Argument(..., help="text file holding one encoded flow")) -> None:
    """Print the API-format JSON (indent 2) of an encoded flow."""
    try:
        text = path.read_bytes().decode("utf-8").removeprefix("\ufeff")  # a BOM is an editor's, not the flow's
    except OSError as exc:
        fail(f"{path}: cannot read ({exc.strerror}); give the text file `flowrl flow encode` wrote")
    except UnicodeDecodeError as exc:
        fail(
            f"{path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); "
            "give the text file `flowrl flow encode` wrote, saved as UTF-8"
        )
    try:
        typer.echo(workflow_json(decode_flow(text), str(path)))
    except FlowRLError as exc:
        fail(f"{path}: {exc}" if str(path) not in str(exc) else str(exc))
