"""The package's module structure: no import circles, no private names across modules, short files.

The import graph is built from the source with ``ast``, not by importing: every ``import`` and
``from ... import`` statement counts, at module level and inside functions, because an import
hidden in a function to dodge a circle is still a circle between the two files. A ``from .x import
name`` where ``name`` is a submodule of ``x`` is an import of that submodule; otherwise it is an
import of ``x`` itself (its ``__init__.py`` for a package). Reaching a submodule does not count as
importing the parent package's ``__init__.py``: Python runs it, but every file would then import
``xaibias/__init__.py`` and the graph would say nothing.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "xaibias"
MAX_LINES = 600


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules(root: Path = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file of the package under ``root``."""
    return {_module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _base(module: str, path: Path, node: ast.ImportFrom) -> str | None:
    """The absolute dotted name a ``from`` statement imports from (None outside the package)."""
    if node.level == 0:
        return node.module
    # A package's own __init__ is its level-1 anchor; a plain module's anchor is its parent.
    anchor = module.split(".") if _is_package(path) else module.split(".")[:-1]
    if node.level > 1:
        anchor = anchor[: len(anchor) - (node.level - 1)]
    return ".".join(anchor + ([node.module] if node.module else []))


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of ``name`` that is a module of the package."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def import_edges(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the package modules it imports anywhere in its file."""
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    target = _resolve(alias.name, modules)
                    if target is not None:
                        graph[module].add(target)
            elif isinstance(node, ast.ImportFrom):
                base = _base(module, path, node)
                if base is None or _resolve(base, modules) is None:
                    continue
                for alias in node.names:
                    submodule = f"{base}.{alias.name}"
                    graph[module].add(submodule if submodule in modules else _resolve(base, modules))
    for module in graph:
        graph[module].discard(module)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a list of modules (first == last), or None when there is none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def private_imports(modules: dict[str, Path]) -> list[str]:
    """``from <package module> import _name`` where ``_name`` is not a submodule: one line each."""
    found = []
    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, ast.ImportFrom):
                continue
            base = _base(module, path, node)
            if base is None or _resolve(base, modules) is None:
                continue
            for alias in node.names:
                private = alias.name.startswith("_") and not alias.name.startswith("__")
                if private and f"{base}.{alias.name}" not in modules:
                    found.append(f"{module} (line {node.lineno}): from {base} import {alias.name}")
    return found


def test_graph_sees_function_level_and_submodule_imports(tmp_path):
    # A circle closed only by an import inside a function, and one through `from . import sub`.
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import thing\n")
    (pkg / "b.py").write_text("def f():\n    from .a import other\n")
    (pkg / "sub" / "__init__.py").write_text("from .. import c\n")
    (pkg / "c.py").write_text("from .sub import leaf\n")
    (pkg / "sub" / "leaf.py").write_text("from ..b import _hidden\n")
    modules = _modules(pkg)
    graph = import_edges(modules)
    assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.b"] == {"pkg.a"}
    assert graph["pkg.sub"] == {"pkg.c"} and graph["pkg.c"] == {"pkg.sub.leaf"}
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.a"]
    assert find_cycle(graph | {"pkg.b": set()}) is None
    assert private_imports(modules) == ["pkg.sub.leaf (line 1): from pkg.b import _hidden"]


def test_no_import_cycles():
    cycle = find_cycle(import_edges(_modules()))
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_no_private_names_across_modules():
    found = private_imports(_modules())
    assert not found, "private names imported from another module:\n" + "\n".join(found)


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_length(path):
    n = len(path.read_text().splitlines())
    assert n <= MAX_LINES, f"{path.relative_to(PACKAGE.parent)} has {n} lines (limit {MAX_LINES})"
