"""Results live in git the DVC way: a clone shows and diffs the committed metrics and plots, and a code
change marks the stages that import it changed. Stage outputs are placeholders recorded with `dvc commit`
(no stage runs), so this checks dvc.yaml and .gitignore, not the stages."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flowrl.pipeline.figures import BEGIN, END, README, disagreement, write_readme
from flowrl.pipeline.files import DVC_YAML
from flowrl.pipeline.stages import STAGES

REPO = Path(__file__).resolve().parents[2]
DVC = str(Path(sys.executable).with_name("dvc"))
KEEP = ["src", "flows", "tasks", "dvc.yaml", "params.yaml", ".dvc", ".dvcignore", ".gitignore"]
GIT_ID = ["-c", "user.name=t", "-c", "user.email=t@t"]


def _run(args: list[str], cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def _path(entry) -> str:
    return entry if isinstance(entry, str) else next(iter(entry))


def _placeholders(root: Path, value: float) -> None:
    """Every output and dep in dvc.yaml: metrics {"score": value}, per-step logs two rows of every plotted column, the rest stubs."""
    spec = yaml.safe_load((root / DVC_YAML).read_text())
    columns: dict[str, list[str]] = {}
    for plot in spec["plots"]:
        for path, cols in next(iter(plot.values()))["y"].items():
            columns[path] = columns.get(path, []) + cols
    for stage in spec["stages"].values():
        for kind in ("outs", "metrics", "plots"):
            for path in map(_path, stage.get(kind, [])):
                target = root / path
                target.parent.mkdir(parents=True, exist_ok=True)
                if kind == "metrics":
                    target.write_text(json.dumps({"score": value}))
                elif path in columns:
                    target.write_text(
                        json.dumps([{"step": s, **dict.fromkeys(columns[path], value * s)} for s in (1, 2)])
                    )
                elif target.suffix:
                    target.write_text("stub")
                else:
                    target.mkdir(exist_ok=True)
                    (target / "stub").write_text("stub")
        for path in stage["deps"]:  # files inside an output folder (data/params/<stage>.yaml)
            if not (root / path).exists():
                (root / path).write_text("stub")


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> tuple[Path, Path]:
    """(workspace, fresh clone): two commits of dvc.lock and figures, score 1.0 then 2.0."""
    ws = tmp_path_factory.mktemp("results")
    for name in KEEP:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(
                src, ws / name, ignore=shutil.ignore_patterns("__pycache__", "tmp", "cache", "config.local")
            )
        else:
            shutil.copy2(src, ws / name)
    _run(["git", "init", "-q"], ws)
    for value in (1.0, 2.0):
        _placeholders(ws, value)
        _run([DVC, "commit", "-f", "-q"], ws)
        _run(["git", "add", "-A"], ws)
        _run(["git", *GIT_ID, "commit", "-qm", f"run {value}"], ws)
    _run(["git", "clone", "-q", str(ws), str(ws.parent / "clone")], ws.parent)
    return ws, ws.parent / "clone"


def test_a_fresh_clone_shows_the_committed_metrics(clone):
    _, fresh = clone
    shown = json.loads(_run([DVC, "metrics", "show", "--json"], fresh))
    files = shown[""]["data"]
    assert {str(s.metrics) for s in STAGES.values()} <= set(files)
    assert all(f["data"] == {"score": 2.0} for f in files.values())


def test_a_fresh_clone_diffs_metrics_and_plots_across_commits(clone):
    _, fresh = clone
    diff = json.loads(_run([DVC, "metrics", "diff", "HEAD~1", "--json"], fresh))
    assert diff[str(STAGES["grpo"].metrics)]["score"] == {"old": 1.0, "new": 2.0, "diff": 1.0}
    plots = json.loads(_run([DVC, "plots", "diff", "HEAD~1", "--json"], fresh))
    assert not plots.get("errors"), plots["errors"]
    assert {"sft_loss", "grpo_reward", "grpo_kl", "grpo_validity"} <= set(plots["data"])
    for name, plot in plots["data"].items():  # vega plots hold both revisions in one entry, images one entry each
        assert {rev for entry in plot for rev in entry["revisions"]} == {"HEAD~1", "workspace"}, name


def test_touching_a_module_marks_the_stages_that_import_it_changed(clone):
    ws, _ = clone
    assert "Data and pipelines are up to date" in _run([DVC, "status"], ws)
    with (ws / "src/flowrl/reward/prefix.py").open("a") as fh:
        fh.write("\n# touched\n")
    changed = json.loads(_run([DVC, "status", "--json"], ws))
    assert set(changed) == {"reward", "grpo"}  # the two stages that import reward/prefix.py
    assert changed["grpo"] == [{"changed deps": {"src/flowrl/reward/prefix.py": "modified"}}]


def test_only_the_figures_of_reports_are_committed(clone):
    ws, _ = clone
    tracked = set(_run(["git", "ls-files", "reports"], ws).split())
    figures = {str(p) for s in STAGES.values() for p in (s.metrics, *s.plots, *(c.path for c in s.curves))}
    assert tracked == figures


def test_readme_figures_name_the_run_and_go_stale_with_a_new_one(clone):
    ws, _ = clone
    run = _run(["git", "log", "-1", "--format=%h", "--", "dvc.lock"], ws).strip()
    (ws / README).write_text(f"# r\n\n{BEGIN} -->\n{END}\n")
    write_readme(ws)
    assert f"run committed in `{run}`" in (ws / README).read_text() and disagreement(ws) is None
    _placeholders(ws, 3.0)  # a new run, committed without regenerating the README
    _run([DVC, "commit", "-f", "-q"], ws)
    _run(["git", "add", "-A"], ws)
    _run(["git", *GIT_ID, "commit", "-qm", "run 3"], ws)
    assert "differ from those of" in disagreement(ws)
