"""`flowrl --help`, every `flowrl flow ...` command and `flowrl generate`'s argument errors never import torch,
transformers or mlflow (seconds of CPU before a JSON check); each runs in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "mlflow", "peft")
# runs the CLI as `flowrl` does, then prints which heavy modules it imported
PROBE = (
    "import json, sys\nfrom flowrl.cli.main import main\nsys.argv = ['flowrl', *sys.argv[1:]]\n"
    "try:\n    main()\nexcept SystemExit:\n    pass\n"
    f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]), file=sys.stderr)"
)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("startup")
    flow = tmp / "flow.json"
    flow.write_text(
        json.dumps({"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "a.safetensors"}}})
    )
    encoded = tmp / "flow.txt"
    encoded.write_text("not a flow\n")
    return {
        "flow": str(flow),
        "encoded": str(encoded),
        "info": str(REPO / "tests/fixtures/object_info_user.json"),
        "params": str(REPO / "params.yaml"),
    }


COMMANDS = [
    ["--help"],
    ["flow", "--help"],
    ["generate", "--help"],
    ["flow", "validate", "{flow}"],
    ["flow", "validate", "{flow}", "--object-info", "{info}"],
    ["flow", "validate", "{flow}", "--object-info", "http://"],
    ["flow", "convert", "{flow}"],
    ["flow", "to-ui", "{flow}"],
    ["flow", "encode", "{flow}"],
    ["flow", "decode", "{encoded}"],
    ["generate", "  ", "--params", "{params}"],
    ["generate", "a fox", "--gamma", "-1", "--params", "{params}"],
    ["generate", "a fox", "--seed", "-1", "--params", "{params}"],
    ["generate", "a fox", "--submit", "http://127.0.0.1:99999", "--params", "{params}"],
    ["generate", "a fox", "--object-info", "{flow}", "--params", "{params}"],
    ["generate", "a fox", "--object-info", "", "--params", "{params}"],
    ["generate", "a fox", "--model", "{encoded}", "--params", "{params}"],
    ["generate", "a fox", "--profile", "nope", "--params", "{params}"],
]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a)[:60])
def test_command_leaves_heavy_libraries_unimported(files, args):
    argv = [a.format(**files) for a in args]
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *argv],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    imported = json.loads(proc.stderr.strip().splitlines()[-1])
    assert imported == [], f"flowrl {' '.join(argv)} imported {imported}"
