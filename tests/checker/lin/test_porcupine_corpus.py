"""Porcupine's corpus: every verdict of EXPECTED.tsv, reproduced.

The corpus lives beside the repository (../shared/corpora/porcupine, never copied in); the
tests skip only when that folder is absent. Verdicts are asserted exactly: Unknown (a time
limit hit) fails the test, so a slow search shows up as a failure, not a skip. The c50-bad
case is also held to a step budget, which is what "refuted in about a second" means on any
machine: the failing partition is small, the others are not, and round-robin search must
not wait for the big ones.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from checker import verdict as cli_check
from checker.lin import wgl as lin
from vrref import cli

CORPUS = Path(__file__).resolve().parents[4] / "shared" / "corpora" / "porcupine"
pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"{CORPUS} is absent")


def _expected() -> list[tuple[str, bool]]:
    if not CORPUS.is_dir():
        return []
    rows = (CORPUS / "EXPECTED.tsv").read_text().splitlines()[1:]
    return [(name, verdict == "true") for name, verdict in (r.split("\t") for r in rows if r)]


EXPECTED = _expected()


def test_the_corpus_is_complete() -> None:
    assert len([n for n, _ in EXPECTED if n.startswith("jepsen/")]) == 102
    assert len([n for n, _ in EXPECTED if n.startswith("kv/")]) == 6
    assert sum(ok for _, ok in EXPECTED) == 23 + 3


@pytest.mark.parametrize(("name", "linearizable"), EXPECTED, ids=[n for n, _ in EXPECTED])
def test_verdict(name: str, linearizable: bool) -> None:
    loaded = cli_check.load([str(CORPUS / name)])
    assert loaded.model.name == ("kv" if name.startswith("kv/") else "cas-register")
    result = cli_check.run(loaded, timeout_s=60.0, witness=linearizable)
    expected = lin.Ok if linearizable else lin.Illegal
    assert isinstance(result, expected), result.verdict
    if isinstance(result, lin.Illegal):
        assert result.blocking is not None
        assert result.candidates
    else:
        assert isinstance(result, lin.Ok) and result.linearization is not None
        assert len(result.linearization) >= sum(op.definite for op in loaded.ops)


def test_c50_bad_is_refuted_without_searching_the_big_partitions() -> None:
    loaded = cli_check.load([str(CORPUS / "kv" / "c50-bad.txt")])
    result = cli_check.run(loaded, timeout_s=10.0, witness=False)
    assert isinstance(result, lin.Illegal)
    assert result.stats.partitions == 10
    assert result.stats.steps < 200_000  # ~0.1 s; the whole search is many times that
    assert [op.source.key for op in result.partition[:1]] == ["3"]


def test_empty_log_is_trivially_linearizable() -> None:
    loaded = cli_check.load([str(CORPUS / "jepsen" / "etcd_095.log")], fmt="porcupine-log")
    assert loaded.ops == []
    assert isinstance(cli_check.run(loaded, timeout_s=1.0), lin.Ok)


def test_cli_exit_codes_on_the_corpus(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check", str(CORPUS / "jepsen" / "etcd_002.log")]) == 0
    assert "verdict: LINEARIZABLE" in capsys.readouterr().out
    assert cli.main(["check", str(CORPUS / "jepsen" / "etcd_000.log")]) == 1
    out = capsys.readouterr().out
    assert "verdict: NOT LINEARIZABLE" in out and "cannot be placed next" in out
