"""Stored counterexamples as regression tests: each file in tests/counterexamples/ was
written by ``vrref explore --history`` (the commands are in README.md) and is replayed by
``vrref replay``: under the mutant that produced it the violation reproduces; under the real
core it does not (the trace either runs clean or stops being possible). A protocol change
that reintroduces one of these bugs fails here, with the trace to read."""

from __future__ import annotations

from pathlib import Path

import pytest

from checker.cli import replay as replay_cli
from checker.explore import counterexamples as replay
from checker.mutants import MUTANTS
from vrref.history import read_history

FILES = sorted((Path(__file__).parent / "counterexamples").glob("*.jsonl"))


def test_one_stored_counterexample_per_mutant() -> None:
    assert {path.stem for path in FILES} == set(MUTANTS)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_counterexample_reproduces_under_its_mutant_only(path: Path) -> None:
    header = read_history(path).header
    assert header["mutant"] == path.stem
    outcome = replay.replay_file(path)
    assert outcome.broken == header["property"]
    assert replay.replay_file(path, None).broken is None
    assert replay_cli.main([str(path), "--core", "--quiet"]) == 0
