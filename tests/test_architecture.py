"""The import rule of README.md's "Architecture", checked on the source.

- no import cycle among the modules of vrref/, checker/ and spec/ (at any depth, lazy
  imports inside functions included: a cycle through a lazy import is still a cycle in the
  design);
- vrref imports neither checker nor spec, except vrref/cli.py, the composition root;
- spec imports neither vrref nor checker (it is the plain statement of correctness);
- vrref/core (the sans-I/O protocol core) imports nothing from vrref/runtime or vrref/dns,
  and vrref/dns nothing from vrref/runtime.

The graph is built from every import statement, with ``from package import module``
resolved to the module, so a rule cannot be dodged by importing a package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("vrref", "checker", "spec")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The first-party modules ``path`` imports (``from a.b import c`` counts as a.b.c when
    that is a module, else as a.b)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def import_graph() -> nx.DiGraph:
    modules = all_modules()
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for name, path in modules.items():
        for target in imports_of(path, set(modules)):
            # A package's __init__ is imported with any of its modules; it is not a cycle for
            # a module to be inside the package it names.
            if target != name and not name.startswith(target + "."):
                graph.add_edge(name, target)
    return graph


def test_the_graph_sees_the_real_imports() -> None:
    graph = import_graph()
    assert graph.has_edge("vrref.core.replica", "vrref.core.messages")
    assert graph.has_edge("checker.trace", "spec.invariants")
    assert graph.number_of_edges() > 50


def test_no_import_cycle() -> None:
    cycles = list(nx.simple_cycles(import_graph()))
    assert cycles == [], f"import cycles: {cycles[:5]}"


def edges_from(graph: nx.DiGraph, source: str, target: str) -> list[tuple[str, str]]:
    return [
        (a, b)
        for a, b in graph.edges
        if (a == source or a.startswith(source + "."))
        and (b == target or b.startswith(target + "."))
    ]


def test_vrref_imports_neither_checker_nor_spec_outside_its_cli() -> None:
    graph = import_graph()
    bad = [
        (a, b)
        for target in ("checker", "spec")
        for a, b in edges_from(graph, "vrref", target)
        if a != "vrref.cli"
    ]
    assert bad == []


def test_spec_imports_neither_vrref_nor_checker() -> None:
    graph = import_graph()
    assert edges_from(graph, "spec", "vrref") + edges_from(graph, "spec", "checker") == []


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ("vrref.core", "vrref.runtime"),
        ("vrref.core", "vrref.dns"),
        ("vrref.core", "vrref.history"),
        ("vrref.dns", "vrref.runtime"),
    ],
)
def test_layers_import_downward_only(source: str, target: str) -> None:
    assert edges_from(import_graph(), source, target) == []


def test_a_planted_cycle_would_be_found(tmp_path: Path) -> None:
    graph = nx.DiGraph([("a", "b"), ("b", "c"), ("c", "a")])
    assert list(nx.simple_cycles(graph))
    sample = tmp_path / "m.py"
    sample.write_text("def f():\n    from vrref.core import replica\n    import checker.trace\n")
    modules = set(all_modules())
    assert imports_of(sample, modules) == {"vrref.core", "vrref.core.replica", "checker.trace"}
