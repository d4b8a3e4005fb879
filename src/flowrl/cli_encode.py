"""`flowrl flow encode` and `flowrl flow decode`: workflow JSON <-> the compact flow encoding."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from flowrl.cli import fail, flow_app
from flowrl.comfy.graph import load_workflow
from flowrl.encoding.codec import decode_flow, encode_flow
from flowrl.errors import FlowRLError


@flow_app.command("encode")
def encode_cmd(path: Path = typer.Argument(..., help="API or UI workflow JSON file")) -> None:
    """Print the compact encoding of a workflow (one line per node)."""
    try:
        typer.echo(encode_flow(load_workflow(path)))
    except FlowRLError as exc:
        fail(f"{path}: {exc}" if str(path) not in str(exc) else str(exc))


@flow_app.command("decode")
def decode_cmd(path: Path = typer.Argument(..., help="text file holding one encoded flow")) -> None:
    """Print the API-format JSON (indent 2) of an encoded flow."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"{path}: cannot read as UTF-8 text ({exc})")
    try:
        typer.echo(json.dumps(decode_flow(text), indent=2, ensure_ascii=False))
    except FlowRLError as exc:
        fail(f"{path}: {exc}")
