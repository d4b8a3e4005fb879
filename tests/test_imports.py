"""The package's modules import each other without circles and only down the layers (read from the source)."""

from __future__ import annotations

import ast
from pathlib import Path

from flowrl.pipeline.files import LAYERS

SRC = Path(__file__).resolve().parents[1] / "src"


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_nodes(tree: ast.AST):
    """Every node except those under `if TYPE_CHECKING:` (imports for annotations only)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            stack.extend(node.orelse)
        else:
            stack.extend(ast.iter_child_nodes(node))


def import_graph(type_only: bool = False) -> dict[str, set[str]]:
    """flowrl module -> the flowrl modules it imports (anywhere in the file, lazy imports included; with `type_only`,
    the imports under `if TYPE_CHECKING:` too)."""
    modules = {module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree) if type_only else _runtime_nodes(tree):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets |= {f"{node.module}.{alias.name}" for alias in node.names} | {node.module}
        graph[name] = {t for t in targets if t in modules and t != name and t != "flowrl"}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a list of modules, or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The same graph between sub-packages (flowrl.data, flowrl.scoring, ...; top-level modules stand alone)."""
    top = lambda m: ".".join(m.split(".")[:2])  # noqa: E731
    out: dict[str, set[str]] = {}
    for name, targets in graph.items():
        out.setdefault(top(name), set()).update(top(t) for t in targets if top(t) != top(name))
    return out


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_import_circle():
    assert find_cycle(import_graph()) is None


def test_no_package_import_circle():
    assert find_cycle(package_graph(import_graph(type_only=True))) is None


# LAYERS: the sub-packages (and the two shared modules), lowest first; each imports only from those before it,
# type-only imports included. Written once, in flowrl.pipeline.files (docs/architecture.md and the README show it).
# At most this many modules beside the packages at the top of src/flowrl (__init__ not counted).
TOP_LEVEL_MODULES = 4


def test_every_package_and_module_has_a_layer():
    top = {p.stem for p in (SRC / "flowrl").glob("*.py") if p.stem != "__init__"}
    packages = {p.parent.name for p in (SRC / "flowrl").glob("*/__init__.py")}
    assert top | packages == set(LAYERS), f"place these in LAYERS: {sorted((top | packages) - set(LAYERS))}"
    assert len(top) <= TOP_LEVEL_MODULES, f"group the top-level modules into packages: {sorted(top)}"


def test_packages_import_only_lower_layers():
    graph = package_graph(import_graph(type_only=True))
    for i, name in enumerate(LAYERS):
        higher = {f"flowrl.{p}" for p in LAYERS[i + 1 :]}
        assert not graph[f"flowrl.{name}"] & higher, (
            f"flowrl.{name} imports {sorted(graph[f'flowrl.{name}'] & higher)}, a higher layer"
        )


def test_no_source_file_over_400_lines():
    long = {str(p.relative_to(SRC)): n for p in SRC.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}, f"split these by concern: {long}"
