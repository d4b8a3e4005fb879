"""Stage code deps come from the import graph: every project module a stage imports is a dep in dvc.yaml."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flowrl.pipeline.code_deps import DATA_FILES, code_deps
from flowrl.pipeline.files import DVC_YAML
from flowrl.pipeline.stages import RUNNER, STAGES

REPO = Path(__file__).resolve().parents[1]


def _deps(stage: str) -> list[str]:
    return yaml.safe_load((REPO / DVC_YAML).read_text())["stages"][stage]["deps"]


def _covered(path: str, deps: list[str]) -> bool:
    return any(path == d or path.startswith(d + "/") for d in deps)


def test_imports_inside_functions_are_followed_transitively(tmp_path):
    pkg = tmp_path / "src" / "pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "entry.py").write_text("import json\n\ndef run():\n    from pkg import helper\n    import torch\n")
    (pkg / "helper.py").write_text("from pkg.deep import x\n")
    (pkg / "deep.py").write_text("x = 1\n")
    (pkg / "unused.py").write_text("")
    assert code_deps("pkg.entry", root=tmp_path) == [
        "src/pkg/__init__.py",
        "src/pkg/deep.py",
        "src/pkg/entry.py",
        "src/pkg/helper.py",
    ]


@pytest.mark.parametrize(
    ("stage", "modules"),
    [
        ("grpo", ["reward/prefix.py", "runtime/trainer_defaults.py", "runtime/device.py", "encoding/vocab.py"]),
        ("sft", ["encoding/schema.py", "encoding/codec.py", "comfy/validate.py"]),
        ("evaluate", ["reward/ensemble.py", "reward/head.py", "reward/features.py"]),
        ("triplets", ["scoring/simulator.py", "comfy/components.json"]),  # the scorer is imported by name from params
    ],
)
def test_the_deps_the_hand_written_lists_missed(stage, modules):
    deps = _deps(stage)
    assert [m for m in modules if f"src/flowrl/{m}" not in deps] == []


IMPORTED = """
import sys, json, importlib
for module in sys.argv[1:]:
    importlib.import_module(module)
print(json.dumps(sorted(m.__file__ for m in list(sys.modules.values()) if getattr(m, "__file__", None))))
"""


@pytest.mark.parametrize("name", list(STAGES))
def test_every_project_module_a_stage_imports_is_a_dep(name):
    """What the stage's module and the runner really import (a fresh interpreter's sys.modules) is in dvc.yaml."""
    out = subprocess.run(
        [sys.executable, "-c", IMPORTED, STAGES[name].module, RUNNER],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": f"{REPO / 'src'}:{REPO}", "OMP_NUM_THREADS": "1", "PATH": ""},
    ).stdout
    project = [REPO / "src", REPO / "flows", REPO / "tasks"]  # not .venv, which may sit inside the repository too
    files = {
        str(Path(f).relative_to(REPO))
        for f in json.loads(out)
        if Path(f).is_absolute() and any(Path(f).is_relative_to(d) for d in project)
    }
    deps = _deps(name)
    assert sorted(f for f in files if not _covered(f, deps)) == [], (
        f"{name} imports these, missing from its deps in dvc.yaml"
    )


def test_every_data_file_in_the_package_belongs_to_a_module_that_reads_it():
    data = [
        str(p.relative_to(REPO))
        for p in (REPO / "src/flowrl").rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc")
    ]
    declared = [f for files in DATA_FILES.values() for f in files]
    assert [p for p in data if not _covered(p, declared)] == [], (
        "add the module that reads it to flowrl.pipeline.code_deps.DATA_FILES"
    )


# Modules that use __file__ for something other than reading a data file beside them.
NOT_DATA_READERS = {
    "flowrl.pipeline.code_deps": "finds the repository root",
    "flowrl.tracking.pyfunc": "ships src/flowrl with the model",
    "flowrl.pipeline.files": "reads the packages' docstrings for the layout table",
}


def test_every_module_reading_files_beside_it_declares_them():
    readers = {
        str(p.relative_to(REPO / "src"))[:-3].replace("/", ".").removesuffix(".__init__")
        for p in (REPO / "src/flowrl").rglob("*.py")
        if re.search(r"\b__file__\b", p.read_text())
    }
    declared = [f for files in DATA_FILES.values() for f in files]
    inside = {r for r in readers if _covered("src/" + r.replace(".", "/"), declared)}  # e.g. base_flows/build.py
    assert readers - inside - set(DATA_FILES) - set(NOT_DATA_READERS) == set()
