"""The package structure: no import cycles, and each layer imports only the layers below.

``party`` (transport, codec, errors) is the bottom; ``he``, ``psi`` and ``secure_agg``
are cryptography on top of it; ``vfl``, ``ftl`` and ``hfl`` are the learning modes.
Read from the source with ``ast`` (nothing is imported), so a cycle is found even
where import order happens to hide it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("party", "he", "psi", "secure_agg", "dp", "vfl", "ftl", "hfl")

#: package -> the other project packages it may import (at any level, lazily too)
ALLOWED: dict[str, set[str]] = {
    "party": set(),
    "he": {"party"},
    "psi": {"party"},
    "secure_agg": {"party"},
    "dp": {"party"},
}
FORBIDDEN: dict[str, set[str]] = {"ftl": {"vfl"}}


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, *, module_level: bool) -> Iterator[ast.Import | ast.ImportFrom]:
    """Import statements; with ``module_level`` only those run when the module is imported
    (not in function bodies, not under ``if TYPE_CHECKING``)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif module_level and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        elif module_level and isinstance(node, ast.If) and _is_type_checking(node):
            yield from (n for s in node.orelse for n in _imports(ast.Module([s], []),
                                                                 module_level=True))
        else:
            yield from _imports(node, module_level=module_level)


def _targets(name: str, node: ast.Import | ast.ImportFrom) -> set[str]:
    """Project modules an import statement in module ``name`` loads (by name, not parents)."""
    found: set[str] = set()
    if isinstance(node, ast.Import):
        found = {a.name for a in node.names}
    else:
        base = node.module or ""
        if node.level:
            is_pkg = MODULES[name].name == "__init__.py"
            pkg = name.split(".") if is_pkg else name.split(".")[:-1]
            pkg = pkg[: len(pkg) - (node.level - 1)]
            base = ".".join(pkg + ([base] if base else []))
        for a in node.names:
            sub = f"{base}.{a.name}"
            found.add(sub if sub in MODULES else base)
    return {m for m in found if m in MODULES or m.split(".")[0] in PACKAGES}


def _graph(*, module_level: bool) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        deps: set[str] = set()
        for node in _imports(tree, module_level=module_level):
            deps |= _targets(name, node)
        graph[name] = {d for d in deps if d in MODULES and d != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles_between_project_modules() -> None:
    assert not _cycles(_graph(module_level=True))


def test_no_import_cycles_even_through_lazy_imports() -> None:
    """An import inside a function is still a dependency: hfl.client -> hfl.deploy ->
    hfl.server -> hfl.client and psi.group <-> psi._worker were cycles of this kind."""
    assert not _cycles(_graph(module_level=False))


def test_the_cycle_check_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("pkg", sorted(ALLOWED))
def test_lower_layers_import_only_what_is_below_them(pkg: str) -> None:
    graph = _graph(module_level=False)
    bad = {f"{m} -> {d}" for m, deps in graph.items() if m.split(".")[0] == pkg
           for d in deps if d.split(".")[0] not in ALLOWED[pkg] | {pkg}}
    assert not bad, f"{pkg} may import only {sorted(ALLOWED[pkg])}: {sorted(bad)}"


@pytest.mark.parametrize("pkg", sorted(FORBIDDEN))
def test_forbidden_imports(pkg: str) -> None:
    graph = _graph(module_level=False)
    bad = {f"{m} -> {d}" for m, deps in graph.items() if m.split(".")[0] == pkg
           for d in deps if d.split(".")[0] in FORBIDDEN[pkg]}
    assert not bad, sorted(bad)
