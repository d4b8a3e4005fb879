"""The code a pipeline stage runs: the project files its entry module imports, found from the import graph.

`modulefinder` follows every import statement in the byte code, at module level and inside functions,
transitively. Its search path holds only the project (src/ and the repository root, for `flows` and
`tasks`), so third-party and standard-library imports end the walk. Two things an import statement
does not show are declared here: the data files a module reads (DATA_FILES) and the packages a module
imports by a name taken from params (LOADS_BY_NAME). dvc.yaml lists the result as each stage's deps.
"""

from __future__ import annotations

import importlib.machinery
import pkgutil
from functools import cache
from modulefinder import ModuleFinder
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
SRC = Path("src")

# Files or folders (relative to the repository root) a module reads at run time.
DATA_FILES: dict[str, tuple[str, ...]] = {
    "flowrl.comfy.components": ("src/flowrl/comfy/components.json",),
    "flowrl.comfy.catalog": ("src/flowrl/comfy/node_catalog.json",),
    "flowrl.comfy.object_info": ("src/flowrl/comfy/custom_node_packs.json",),
    "flowrl.data.base_flows": ("src/flowrl/data/base_flows",),
    "flowrl.model_configs": ("src/flowrl/model_configs",),
}
# Packages any of whose modules a module may import by a name from params (scoring.scorer).
LOADS_BY_NAME: dict[str, str] = {"flowrl.scoring.base": "flowrl.scoring"}


class ProjectFinder(ModuleFinder):
    """ModuleFinder that takes a folder without `__init__.py` for no module: the run outputs beside the code
    (`mlflow/`, `data/`, ...) would otherwise be namespace packages that shadow the libraries of the same name."""

    def find_module(self, name, path, parent=None):
        spec = importlib.machinery.PathFinder.find_spec(name, self.path if path is None else path)
        if spec is None or spec.loader is None:
            raise ImportError(f"No project module named {name}")
        return super().find_module(name, path, parent)


def _package_modules(package: str, root: Path) -> list[str]:
    path = root / SRC / package.replace(".", "/")
    return [f"{package}.{m.name}" for m in pkgutil.iter_modules([str(path)])]


@cache
def imported_modules(module: str, root: Path = ROOT) -> dict[str, Path]:
    """Project modules (name -> source file) `module` imports, itself included, transitively."""
    finder = ProjectFinder(path=[str(root / SRC), str(root)])
    todo, done = [module], set()
    while todo:
        name = todo.pop()
        done.add(name)
        finder.import_hook(name)
        for found in list(finder.modules):
            if found in LOADS_BY_NAME:
                todo += [m for m in _package_modules(LOADS_BY_NAME[found], root) if m not in done and m not in todo]
    return {name: Path(m.__file__) for name, m in finder.modules.items() if m.__file__}


def code_deps(*modules: str, root: Path = ROOT) -> list[str]:
    """Repository-relative source and data files that `modules` run, sorted; files inside a listed folder are left out."""
    found: dict[str, Path] = {}
    for module in modules:
        found.update(imported_modules(module, root))
    paths = {str(path.relative_to(root)) for path in found.values()}
    paths |= {p for name in found for p in DATA_FILES.get(name, ())}
    folders = {p for p in paths if (root / p).is_dir()}
    return sorted(p for p in paths if not any(p.startswith(f + "/") for f in folders))
