"""`flowrl flow validate` / `flowrl flow convert`: output and exit codes."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from flowrl.cli.main import app
from tests.comfy.test_validate import T2I

runner = CliRunner()


def test_validate_ok_and_invalid(tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(T2I))
    result = runner.invoke(app, ["flow", "validate", str(good)])
    assert result.exit_code == 0 and result.output.strip() == f"OK: {len(T2I)} nodes"
    bad = dict(T2I, **{"3": {"class_type": "KSampler", "inputs": {**T2I["3"]["inputs"], "scheduler": "nope"}}})
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    result = runner.invoke(app, ["flow", "validate", str(tmp_path / "bad.json")])
    assert result.exit_code == 1
    assert "1 problem(s)" in result.output and "node 3 (KSampler) input 'scheduler'" in result.output


def test_unreadable_input_exits_2_without_traceback(tmp_path):
    (tmp_path / "x.json").write_text("{oops")
    for args in (["flow", "validate", str(tmp_path / "x.json")], ["flow", "convert", str(tmp_path / "missing.json")]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and "error:" in result.output and "Traceback" not in result.output


def test_convert_prints_api_json(shared_workflows):
    ui_file = shared_workflows / "ui" / "ex_2_pass_txt2img_hiresfix_esrgan_workflow.json"
    result = runner.invoke(app, ["flow", "convert", str(ui_file)])
    assert result.exit_code == 0
    graph = json.loads(result.output)
    assert {n["class_type"] for n in graph.values()} >= {"KSampler", "SaveImage", "ImageUpscaleWithModel"}
    assert result.output.startswith('{\n  "')
