"""Wall time of the `flowrl` commands that must answer at once: `--help`, every `flowrl flow ...` command and
`flowrl generate`'s argument errors, each a fresh process (`python -m flowrl.cli.main`, what the `flowrl` script runs).

Target (issue 25): <= 0.5 s wall each on the 2-core CPU machine; none imports torch or transformers
(tests/test_cli_startup.py checks that part). Median of 5 runs per command. Run: `python -m bench cli_startup` (~30 s).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._common import REPO, Row, status

TARGET_S = 0.5
RUNS = 5


def commands(tmp: Path) -> dict[str, list[str]]:
    """Label -> argv after `flowrl`."""
    flow = tmp / "flow.json"
    flow.write_text(
        json.dumps({"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "a.safetensors"}}})
    )
    info = str(REPO / "tests/fixtures/object_info_user.json")
    params = ["--params", str(REPO / "params.yaml")]
    return {
        "flowrl --help": ["--help"],
        "flowrl flow validate": ["flow", "validate", str(flow)],
        "flowrl flow validate --object-info FILE": ["flow", "validate", str(flow), "--object-info", info],
        "flowrl flow convert": ["flow", "convert", str(flow)],
        "flowrl flow to-ui": ["flow", "to-ui", str(flow)],
        "flowrl flow encode": ["flow", "encode", str(flow)],
        "flowrl generate '' (empty prompt)": ["generate", " ", *params],
        "flowrl generate --gamma -1": ["generate", "a fox", "--gamma", "-1", *params],
        "flowrl generate --submit http://h:99999": ["generate", "a fox", "--submit", "http://h:99999", *params],
    }


def main() -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, argv in commands(Path(tmp)).items():
            runs = []
            for _ in range(RUNS):
                t0 = time.perf_counter()
                subprocess.run(
                    [sys.executable, "-m", "flowrl.cli.main", *argv],
                    cwd=REPO,
                    env=env,
                    capture_output=True,
                    check=False,
                )
                runs.append(time.perf_counter() - t0)
            seconds[label] = round(statistics.median(runs), 3)
            print(f"{seconds[label]:.2f} s  {label}")
    return {"runs_each": RUNS, "median_s": seconds, "max_median_s": max(seconds.values())}


def rows(f: dict) -> list[Row]:
    return [
        (f"`{label}` wall, median of {f['runs_each']}", f"{s:.2f} s", f"<= {TARGET_S} s", status(s <= TARGET_S))
        for label, s in f["median_s"].items()
    ]
