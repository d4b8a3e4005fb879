"""`flowrl generate PROMPT` as a user runs it: wall time per call (model loading included) and whether the
printed workflow is usable.

Target (issue 25; was 15 s): <= 5 s wall for one prompt from the registered champion on the 2-core CPU machine,
and a usable flow. Runs the `flowrl` command of a pipeline root (FLOWRL_BENCH_ROOT, default this
repository) in that root, once per prompt, each a fresh process (nothing cached between calls), with
the default `--model` (models:/<register.model_name>@champion). Needs a pipeline run through `register`.
Then one more fresh process splits a call into imports, model load and sampling (`breakdown`), and
a prompt of `register.max_prompt_chars` - 1,000 characters is timed against a short one (`long_prompt_s`).

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

PROMPTS = (
    "a castle at dawn, dramatic clouds",
    "portrait photo of an old fisherman, 85mm",
    "anime girl with silver hair, cherry blossoms",
    "a red sports car on a mountain road at sunset",
    "a bowl of ramen, steam, food photography",
)
TARGET_S = 5.0
# one `flowrl generate` call, timed in parts (run in the pipeline root's interpreter, a fresh process)
BREAKDOWN = """
import json, sys, time
t0 = time.perf_counter()
import torch  # what loading the champion imports (the embedded store: no mlflow; the cpu policy: no transformers)
from flowrl.cli.generate import load_generator, quiet_libraries
t1 = time.perf_counter()
from pathlib import Path
with quiet_libraries():
    generate = load_generator(sys.argv[1], Path("params.yaml"), None)
    t2 = time.perf_counter()
    generate([sys.argv[2]], None, 0)
    t3 = time.perf_counter()
print(json.dumps({"imports_s": round(t1 - t0, 2), "model_load_s": round(t2 - t1, 2), "sampling_s": round(t3 - t2, 2),
                  "mlflow_imported": "mlflow" in sys.modules, "transformers_imported": "transformers" in sys.modules}))
"""
# the floor under any call that runs the policy: a fresh process importing torch (transformers' Llama and tokenizer
# classes added 2.7 s more before the cpu policy ran in plain torch, flowrl.policy.plain_llama)
FLOOR = "import torch"


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
            proc = subprocess.run(
                [str(flowrl), "generate", prompt, "-o", str(out)], cwd=root, capture_output=True, text=True
            )
            seconds.append(round(time.monotonic() - t0, 2))
            if proc.returncode != 0:
                raise RuntimeError(f"flowrl generate failed ({proc.returncode}): {proc.stderr[-2000:]}")
            graph = json.loads(out.read_text())
            found = [str(p) for p in validate_graph(graph) or usable_problems(graph)]
            usable.append(not found)
            problems += found
            print(f"{seconds[-1]:.1f} s, {'usable' if not found else 'NOT usable'}: {prompt}")
        from flowrl.params.model import load_params

        params = load_params(root / "params.yaml")
        model = f"models:/{params.register.model_name}@{params.register.champion_alias}"
        python = root / ".venv/bin/python"
        breakdown = _run_json([str(python), "-c", BREAKDOWN, model, PROMPTS[0]], root)
        floor = []
        for _ in range(3):
            t0 = time.monotonic()
            subprocess.run([str(python), "-c", FLOOR], cwd=root, check=True, capture_output=True)
            floor.append(time.monotonic() - t0)
        breakdown["import_floor_s"] = round(statistics.median(floor), 2)
        long_prompt = ("a castle at dawn, dramatic clouds, " * 1000)[: params.register.max_prompt_chars - 1000]
        t0 = time.monotonic()
        proc = subprocess.run(
            [str(flowrl), "generate", long_prompt, "-o", str(Path(tmp) / "long.json")],
            cwd=root,
            capture_output=True,
            text=True,
        )
        long_s = round(time.monotonic() - t0, 2)
        if proc.returncode not in (0, 1):  # 1: the flow drawn was not usable, still an answer
            raise RuntimeError(f"flowrl generate (long prompt) failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return {
        "root": str(root),
        "prompts": len(PROMPTS),
        "seconds": seconds,
        "median_s": statistics.median(seconds),
        "max_s": max(seconds),
        "usable": sum(usable) / len(usable),
        "problems": problems[:10],
        "breakdown": breakdown,
        "long_prompt_chars": len(long_prompt),
        "long_prompt_s": long_s,
    }


def _run_json(cmd: list[str], cwd: Path) -> dict:
    """The JSON a command prints on its last stdout line."""
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:2]} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def rows(f: dict) -> list[Row]:
    return [
        (
            "`flowrl generate` wall time per prompt, median (max)",
            f"{f['median_s']:.1f} s ({f['max_s']:.1f} s)",
            f"<= {TARGET_S:.0f} s",
            status(f["median_s"] <= TARGET_S),
        ),
        ("printed workflows usable", f"{f['usable']:.0%} of {f['prompts']}", "100%", status(f["usable"] == 1.0)),
        ("every call (s)", ", ".join(f"{s:.1f}" for s in f["seconds"]), "", ""),
        *(
            [
                (
                    "one call: imports / model load / sampling",
                    " / ".join(f"{f['breakdown'][k]:.1f} s" for k in ("imports_s", "model_load_s", "sampling_s")),
                    "",
                    "",
                )
            ]
            if "breakdown" in f
            else []
        ),
        *(
            [
                (
                    "floor: a fresh process importing torch",
                    f"{f['breakdown']['import_floor_s']:.1f} s",
                    "",
                    "",
                )
            ]
            if "import_floor_s" in f.get("breakdown", {})
            else []
        ),
        *(
            [
                (
                    f"a {f['long_prompt_chars']:,}-character prompt",
                    f"{f['long_prompt_s']:.1f} s",
                    f"<= {TARGET_S:.0f} s (capped in tokens)",
                    status(f["long_prompt_s"] <= TARGET_S),
                )
            ]
            if "long_prompt_s" in f
            else []
        ),
    ]
