"""The protocol core is sans-I/O: its modules import no sockets, threads, clocks or dice.

Checked on the source (every import statement, at any depth), so a lazy import inside a
function is caught too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SANS_IO_PACKAGES = ("vrref/core", "vrref/dns")
"""The protocol core and the DNS service it replicates: every module in them, at any depth,
is checked, so a new module cannot be forgotten."""
CORE = sorted(
    str(p.relative_to(ROOT)) for package in SANS_IO_PACKAGES for p in (ROOT / package).rglob("*.py")
)
FORBIDDEN = {
    "socket",
    "threading",
    "time",
    "random",
    "asyncio",
    "selectors",
    "multiprocessing",
    "subprocess",
    "secrets",
    "os",
    "datetime",
    "pickle",
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("module", CORE)
def test_core_module_imports_nothing_that_does_io(module: str) -> None:
    path = ROOT / module
    if not path.exists():
        pytest.fail(f"{module} is missing")
    assert imported_modules(path) & FORBIDDEN == set()


def test_the_walk_finds_the_core_modules() -> None:
    assert {"vrref/core/replica.py", "vrref/core/messages.py", "vrref/dns/zone.py"} <= set(CORE)


def test_the_checker_would_notice_a_forbidden_import(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text("def f():\n    import time.monotonic as t\n    from socket import socket\n")
    assert imported_modules(sample) & FORBIDDEN == {"time", "socket"}


def test_spec_imports_neither_vrref_nor_checker() -> None:
    for path in (ROOT / "spec").glob("*.py"):
        assert imported_modules(path) & {"vrref", "checker"} == set(), path
