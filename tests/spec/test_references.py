"""The repository is self-contained: what its code and docs cite, a clone can resolve.

Two checks. No tracked source or documentation file cites the working notes that once lived
outside the repository (their content is now ``spec/traps.md``, ``spec/dns.md`` and the
README). And every repository path that ``README.md`` or ``spec/*.md`` names (a ``spec/``
document, a module or test under ``vrref/``, ``checker/``, ``tests/`` or ``bench/``, or a
backticked folder) exists, and every test they name in backticks is defined under tests/.
Each check is a function of the text, so the last tests plant bad references in a string and
watch them caught.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Assembled from parts, so that this file neither cites them nor matches a grep for them.
OUTSIDE_DOCUMENTS = tuple(
    "-".join(parts) + ".md"
    for parts in (("VR", "NOTES"), ("DNS", "NOTES"), ("DESIGN",), ("STYLE",))
)
_OUTSIDE = re.compile(r"(?<![\w-])(" + "|".join(re.escape(d) for d in OUTSIDE_DOCUMENTS) + r")")

# A path starts at a top-level folder of the repository, is not the tail of a longer path or
# of a URL, and ends in .py or .md (or, inside backticks, in "/" for a folder).
_ROOTS = r"(?:spec|vrref|checker|tests|bench)"
_FILE = re.compile(r"(?<![\w./-])(" + _ROOTS + r"/[\w./-]*?\.(?:py|md))(?![\w/-])")
_FOLDER = re.compile(r"`(" + _ROOTS + r"/[\w./-]*/)`")
# A test named in backticks, possibly as a prefix: `test_trap_3_*`.
_TEST = re.compile(r"`(test_\w+)(\*?)`")

PENDING: dict[str, str] = {}
"""Files still citing an outside document, each with why; emptied as they are fixed."""


def outside_citations(text: str) -> list[str]:
    """The outside documents ``text`` cites, in order."""
    return _OUTSIDE.findall(text)


def mentioned_paths(text: str) -> list[str]:
    """The repository paths ``text`` names: files ending .py/.md, and backticked folders."""
    return _FILE.findall(text) + _FOLDER.findall(text)


def missing_paths(text: str, root: Path = ROOT) -> list[str]:
    """The paths ``text`` names that do not exist under ``root``."""
    missing = []
    for path in mentioned_paths(text):
        target = root / path
        if not (target.is_dir() if path.endswith("/") else target.is_file()):
            missing.append(path)
    return missing


def missing_tests(text: str, defined: set[str]) -> list[str]:
    """The tests ``text`` names in backticks (a trailing ``*`` makes a prefix) that are not
    among ``defined``."""
    return [
        name + star
        for name, star in _TEST.findall(text)
        if not (any(d.startswith(name) for d in defined) if star else name in defined)
    ]


def defined_tests() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "tests").rglob("*.py"):
        names |= set(re.findall(r"^def (test_\w+)", path.read_text(encoding="utf-8"), re.M))
    return names


def tracked_files() -> list[str]:
    try:
        out = subprocess.run(
            ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: no list of tracked files")
    return [
        name
        for name in out.splitlines()
        if name.endswith((".py", ".md", ".toml")) or Path(name).name == "Makefile"
    ]


def citing_files() -> dict[str, list[str]]:
    found = {}
    for name in tracked_files():
        path = ROOT / name
        if path.is_file():
            cited = outside_citations(path.read_text(encoding="utf-8", errors="replace"))
            if cited:
                found[name] = cited
    return found


def test_no_tracked_file_cites_a_document_outside_the_repository() -> None:
    offending = {name: cited for name, cited in citing_files().items() if name not in PENDING}
    assert offending == {}, "cite spec/traps.md, spec/dns.md or README.md instead"


def test_every_pending_exception_is_still_needed() -> None:
    still = citing_files()
    assert [name for name in PENDING if name not in still] == [], "fixed: drop it from PENDING"


DOCUMENTS = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "spec").glob("*.md"))]


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_path_a_document_names_exists(document: str) -> None:
    text = (ROOT / document).read_text(encoding="utf-8")
    assert mentioned_paths(text), f"{document} names no path: is the pattern still right?"
    assert missing_paths(text) == []
    assert missing_tests(text, defined_tests()) == []


def test_the_documents_include_the_protocol_notes() -> None:
    assert {"spec/traps.md", "spec/dns.md", "spec/vr.md"} <= set(DOCUMENTS)


def test_a_planted_outside_citation_is_caught() -> None:
    planted = "see " + OUTSIDE_DOCUMENTS[0] + ", trap 3; and " + OUTSIDE_DOCUMENTS[2] + "."
    assert outside_citations(planted) == [OUTSIDE_DOCUMENTS[0], OUTSIDE_DOCUMENTS[2]]
    longer_name = "MY-" + OUTSIDE_DOCUMENTS[2]
    assert outside_citations("see spec/traps.md, trap 3 (spec/traps.md); " + longer_name) == []


def test_planted_missing_paths_are_caught_and_prose_is_not_a_path(tmp_path: Path) -> None:
    (tmp_path / "spec").mkdir()
    (tmp_path / "spec" / "traps.md").write_text("")
    (tmp_path / "tests" / "core").mkdir(parents=True)
    text = (
        "Rules in `spec/traps.md` and spec/nope.md (trap 2); code in vrref/core/gone.py,\n"
        "tests in `tests/core/` and `tests/gone/`; see tests/core/test_x.py::test_y.\n"
        "Not paths: and/or, spec/vr, seeds/s, https://example.org/spec/web.md, a/tests/x.py.\n"
    )
    assert mentioned_paths(text) == [
        "spec/traps.md",
        "spec/nope.md",
        "vrref/core/gone.py",
        "tests/core/test_x.py",
        "tests/core/",
        "tests/gone/",
    ]
    assert missing_paths(text, tmp_path) == [
        "spec/nope.md",
        "vrref/core/gone.py",
        "tests/core/test_x.py",
        "tests/gone/",
    ]


def test_planted_missing_tests_are_caught() -> None:
    text = "`test_trap_1_ok`, `test_trap_2_*`, `test_trap_3_*`, `test_gone`, test_not_backticked"
    defined = {"test_trap_1_ok", "test_trap_2_something"}
    assert missing_tests(text, defined) == ["test_trap_3_*", "test_gone"]
