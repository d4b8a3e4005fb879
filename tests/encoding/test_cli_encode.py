"""`flowrl flow encode` / `flowrl flow decode`: output and exit codes."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from flowrl.cli.main import app
from flowrl.encoding.codec import canonical_form, encode_flow
from tests.encoding.graphs import T2I

runner = CliRunner()


def test_encode_then_decode_gives_canonical_json(tmp_path):
    (tmp_path / "flow.json").write_text(json.dumps(T2I))
    result = runner.invoke(app, ["flow", "encode", str(tmp_path / "flow.json")])
    assert result.exit_code == 0 and result.output == encode_flow(T2I) + "\n"
    (tmp_path / "flow.txt").write_text(result.output)
    result = runner.invoke(app, ["flow", "decode", str(tmp_path / "flow.txt")])
    assert result.exit_code == 0 and json.loads(result.output) == canonical_form(T2I)
    assert result.output.startswith('{\n  "1": {')  # indent 2, as ComfyUI's Export (API)


def test_bad_inputs_exit_2_with_one_line(tmp_path):
    (tmp_path / "bad.txt").write_text("CheckpointLoaderSimple ckpt_name=a\nKSampler model=@5\n")
    result = runner.invoke(app, ["flow", "decode", str(tmp_path / "bad.txt")])
    assert result.exit_code == 2 and "bad.txt: line 2" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["flow", "encode", str(tmp_path / "missing.json")])
    assert result.exit_code == 2 and "missing.json" in result.output
    result = runner.invoke(app, ["flow", "decode", str(tmp_path / "missing.txt")])
    assert result.exit_code == 2 and "missing.txt: cannot read" in result.output
