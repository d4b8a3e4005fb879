"""Files generated from the stage declarations (flowrl.pipeline.stages): dvc.yaml and the stage diagram.

`flowrl pipeline dvc-yaml` and `flowrl pipeline diagram` write them; tests check the checked-in
copies are current, so the declarations are the one place the pipeline's shape is written.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from flowrl.io import write_text
from flowrl.pipeline.code_deps import code_deps
from flowrl.pipeline.stages import PARAMS_MODULE, PARAMS_STAGE, RUNNER, STAGES, ResolvedParams, Stage

DVC_YAML = Path("dvc.yaml")
ARCHITECTURE = Path("docs/architecture.md")
PYTHON = ".venv/bin/python"

DVC_HEADER = """\
# GENERATED from src/flowrl/pipeline/stages.py by `flowrl pipeline dvc-yaml`; edit the declarations, not this file
# (tests/test_stages.py fails when the two disagree).
# Each stage runs its Prefect flow (python -m flows STAGE), which records an MLflow run. The `params`
# stage writes data/params/<stage>.yaml, the values a stage reads with the active profile applied:
# a stage depends on its own file only, so editing another profile or an unread key reruns nothing.
# A stage's code deps are the project files its module and the runner import (flowrl.pipeline.code_deps).
"""


def _dvc_stage(stage: Stage) -> dict:
    entry: dict = {
        "cmd": f"{PYTHON} -m flows {stage.name}",
        "deps": [str(p) for p in (ResolvedParams.of(stage.name), *stage.inputs)] + code_deps(stage.module, RUNNER),
    }
    outs = [str(p) for p in stage.outs] + [{str(p): {"cache": False}} for p in (*stage.uncached, *(c.path for c in stage.curves))]
    if stage.persist:
        outs = [{o: {"persist": True}} if isinstance(o, str) else o for o in outs]
    if outs:
        entry["outs"] = outs
    entry["metrics"] = [{str(stage.metrics): {"cache": False}}]
    if stage.plots:
        entry["plots"] = [{str(p): {"cache": False}} for p in stage.plots]
    return entry


def render_dvc_yaml() -> str:
    """dvc.yaml as the declarations say it."""
    stages = {PARAMS_STAGE: {
        "cmd": f"{PYTHON} -m {PARAMS_MODULE}",
        "deps": code_deps(PARAMS_MODULE),
        "params": [{"params.yaml": None}],  # the whole file: `dvc exp run -S key=value` edits it
        "outs": [str(ResolvedParams.dir)],
    }}
    stages.update({stage.name: _dvc_stage(stage) for stage in STAGES.values()})
    plots = [{f"{stage.name}_{title}": {"x": curve.x, "y": {str(curve.path): list(columns)}, "title": f"{stage.name}: {title}"}}
             for stage in STAGES.values() for curve in stage.curves for title, columns in curve.y]
    body = yaml.safe_dump({"stages": stages, "plots": plots}, sort_keys=False, default_flow_style=False, width=120)
    return DVC_HEADER + body


def _producer(path: Path) -> tuple[str, str]:
    """(node id, edge label) of what writes `path`: an output folder of a stage, or a stage's metrics file."""
    for stage in STAGES.values():
        if path == stage.metrics:
            return stage.name, path.name
        for out in (*stage.outs, *stage.uncached):
            if path == out or out in path.parents:
                return _node(out), "" if path == out else str(path.relative_to(out))
    raise ValueError(f"{path}: no stage writes it")


def _node(path: Path) -> str:
    return "f_" + str(path).replace("/", "_").replace(".", "_")


def render_diagram() -> str:
    """A mermaid flowchart: stages (rounded) reading and writing artifacts (boxes)."""
    lines = ["flowchart LR"]
    for stage in STAGES.values():
        lines.append(f"    {stage.name}([{stage.name}])")
        for out in (*stage.outs, *stage.uncached):
            lines.append(f"    {_node(out)}[{out}]")
            lines.append(f"    {stage.name} --> {_node(out)}")
    for stage in STAGES.values():
        for path in stage.inputs:
            node, label = _producer(path)
            lines.append(f"    {node} -->|{label}| {stage.name}" if label else f"    {node} --> {stage.name}")
    return "\n".join(lines) + "\n"


def _params_table() -> str:
    rows = ["| stage | params it reads | writes | metrics |", "|---|---|---|---|"]
    for stage in STAGES.values():
        outs = ", ".join(f"`{p}`" for p in (*stage.outs, *stage.uncached)) or "MLflow registry"
        rows.append(f"| `{stage.name}` | {', '.join(f'`{k}`' for k in stage.params)} | {outs} | `{stage.metrics}` |")
    return "\n".join(rows) + "\n"


ARCHITECTURE_TEXT = """\
# Architecture: the pipeline's stages

<!-- GENERATED from src/flowrl/pipeline/stages.py by `flowrl pipeline diagram`; edit the declarations, not this file. -->

Every stage is declared once in `src/flowrl/pipeline/stages.py`: the function that runs it, the params keys
it reads, the files it reads and writes, its metrics and plots. `dvc.yaml` and this page are
generated from those declarations (`flowrl pipeline dvc-yaml`, `flowrl pipeline diagram`) and tests
fail when either is stale. A stage function is `run(params, root)`; when the pipeline runs it,
`params` holds only the keys the stage declares (reading another raises), and DVC tracks those
keys through `data/params/<stage>.yaml`, written by the `params` stage with the active profile
applied, so editing a profile that is not active reruns nothing.

Stages (rounded) and the artifacts they write (boxes); an edge label names the file read
when a stage reads one file of a folder.

```mermaid
{diagram}```

{table}
Sub-packages import only from those before them in this order: `comfy`, `encoding`, `scoring`,
`data`, `reward`, `policy`, `evaluation`, `tracking`; the CLI (`cli_*.py`, registered on the apps of
`cli_app.py`), `flows/` (Prefect flows) and `tasks/` (Prefect tasks) sit on top. `tests/test_imports.py`
checks the order and that no module import circle exists.
"""


def render_architecture() -> str:
    """docs/architecture.md as the declarations say it."""
    return ARCHITECTURE_TEXT.format(diagram=render_diagram(), table=_params_table())


def write_dvc_yaml(root: Path = Path(".")) -> Path:
    return write_text(root / DVC_YAML, render_dvc_yaml())


def write_architecture(root: Path = Path(".")) -> Path:
    return write_text(root / ARCHITECTURE, render_architecture())
