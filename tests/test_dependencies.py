"""Every third-party package the project imports is declared in pyproject.toml; torch's CPU pin lives in the constraints."""

from __future__ import annotations

import ast
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
PROJECT = {"flowrl", "flows", "tasks", "bench", "__future__"}


def _imported() -> dict[str, str]:
    """Top-level third-party module -> a file importing it (src/flowrl, flows, tasks; imports inside functions too)."""
    found: dict[str, str] = {}
    for folder in ("src/flowrl", "flows", "tasks"):
        for path in (REPO / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for top in (n.split(".")[0] for n in names):
                    if top not in sys.stdlib_module_names and top not in PROJECT:
                        found.setdefault(top, str(path.relative_to(REPO)))
    return found


def _declared() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = [*project["dependencies"], *(r for extra in project["optional-dependencies"].values() for r in extra)]
    return {canonicalize_name(Requirement(r).name) for r in reqs}


def test_every_imported_package_is_declared():
    dists = packages_distributions()
    declared = _declared()
    missing = {
        module: where
        for module, where in _imported().items()
        if not declared & {canonicalize_name(d) for d in dists.get(module, [module])}
    }
    assert missing == {}, "declare these in pyproject.toml"


def test_torch_is_ranged_in_the_dependencies_and_pinned_in_the_cpu_constraints():
    torch = next(
        Requirement(r)
        for r in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
        if Requirement(r).name == "torch"
    )
    assert not any(s.operator == "==" for s in torch.specifier)
    pins = [
        Requirement(line)
        for line in (REPO / "constraints-cpu.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert [str(r) for r in pins] == ["torch==2.13.0"] and torch.specifier.contains("2.13.0")
    assert (
        "-c $(CONSTRAINTS)" in (REPO / "Makefile").read_text()
        and "CONSTRAINTS := constraints-cpu.txt" in (REPO / "Makefile").read_text()
    )
