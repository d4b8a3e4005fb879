"""`flowrl generate PROMPT` as a user runs it: wall time per call (model loading included) and whether the
printed workflow is usable.

Target (policy issue): <= 15 s wall for one prompt from the registered champion on the 2-core CPU machine,
and a usable flow. Runs the `flowrl` command of a pipeline root (FLOWRL_BENCH_ROOT, default this
repository) in that root, once per prompt, each a fresh process (nothing cached between calls), with
the default `--model` (models:/<register.model_name>@champion). Needs a pipeline run through `register`.

Run: `FLOWRL_BENCH_ROOT=/path/to/pipeline/repo python -m bench generate_cli` (~1-2 min).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench._common import REPO, Row, status
from flowrl.comfy.usable import usable_problems
from flowrl.comfy.validate import validate_graph

PROMPTS = ("a castle at dawn, dramatic clouds", "portrait photo of an old fisherman, 85mm",
           "anime girl with silver hair, cherry blossoms", "a red sports car on a mountain road at sunset",
           "a bowl of ramen, steam, food photography")
TARGET_S = 15.0


def main() -> dict:
    root = Path(os.environ.get("FLOWRL_BENCH_ROOT", REPO))
    flowrl = root / ".venv/bin/flowrl"
    if not (root / "mlflow/mlflow.db").exists():
        raise RuntimeError(f"{root} has no MLflow store: run the pipeline there first (through `register`)")
    seconds, usable, problems = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i, prompt in enumerate(PROMPTS):
            out = Path(tmp) / f"{i}.json"
            t0 = time.monotonic()
            proc = subprocess.run([str(flowrl), "generate", prompt, "-o", str(out)], cwd=root, capture_output=True, text=True)
            seconds.append(round(time.monotonic() - t0, 2))
            if proc.returncode != 0:
                raise RuntimeError(f"flowrl generate failed ({proc.returncode}): {proc.stderr[-2000:]}")
            graph = json.loads(out.read_text())
            found = [str(p) for p in validate_graph(graph) or usable_problems(graph)]
            usable.append(not found)
            problems += found
            print(f"{seconds[-1]:.1f} s, {'usable' if not found else 'NOT usable'}: {prompt}")
    return {"root": str(root), "prompts": len(PROMPTS), "seconds": seconds, "median_s": statistics.median(seconds),
            "max_s": max(seconds), "usable": sum(usable) / len(usable), "problems": problems[:10]}


def rows(f: dict) -> list[Row]:
    return [
        ("`flowrl generate` wall time per prompt, median (max)", f"{f['median_s']:.1f} s ({f['max_s']:.1f} s)",
         f"<= {TARGET_S:.0f} s", status(f["median_s"] <= TARGET_S)),
        ("printed workflows usable", f"{f['usable']:.0%} of {f['prompts']}", "100%", status(f["usable"] == 1.0)),
        ("every call (s)", ", ".join(f"{s:.1f}" for s in f["seconds"]), "", ""),
    ]
