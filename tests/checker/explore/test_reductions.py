"""The explorer's reductions checked against the real core (checker/explore/vr/reductions.py).

- The checking mode delivers every collected message to a clone of its receiver and
  requires no effect and no state change: on the real core it finds nothing and explores
  exactly the states the unchecked run explores; on a collector with an unsound rule
  planted, it names the message.
- Verdicts, the broken property and counterexample lengths are the same with each
  reduction on and off, on mutants of the bug zoo.
"""

from __future__ import annotations

import pytest

from checker.explore.search import ExploreConfig, Explorer, Result
from checker.explore.vr import model as vr_model
from checker.explore.vr import reductions
from checker.explore.vr.model import Bounds, VRModel
from checker.mutants import replica_class
from vrref.core.messages import PrepareOk

ONE_OP = Bounds(ops_per_client=1, drop_count_max=0, duplicate_count_max=0)
ONE_OP_LOSS = Bounds(ops_per_client=1, drop_count_max=1, duplicate_count_max=1, resend_count_max=0)
TWO_CLIENTS = Bounds(
    client_count=2,
    ops_per_client=1,
    view_number_max=0,
    drop_count_max=0,
    duplicate_count_max=0,
    resend_count_max=0,
)


def run(model: VRModel, **config: object) -> Result[vr_model.VRState, vr_model.Action]:
    return Explorer(model, ExploreConfig(progress_seconds=None, **config)).run()  # type: ignore[arg-type]


def test_the_check_finds_nothing_on_the_real_core_and_changes_no_count() -> None:
    plain = run(VRModel(ONE_OP_LOSS))
    checked = run(VRModel(ONE_OP_LOSS, check_reductions=True))
    assert plain.verdict == checked.verdict == "ok"
    assert checked.distinct == plain.distinct
    names = [p.name for p in checked.properties]
    assert reductions.PROPERTY in names and reductions.PROPERTY not in [
        p.name for p in plain.properties
    ]
    assert all(p.holds for p in checked.properties if p.name == reductions.PROPERTY)


def test_the_check_catches_an_unsound_collection_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    sound = vr_model._obsolete

    def collect_every_prepare_ok(item: vr_model.InFlight, replicas, clients) -> bool:  # type: ignore[no-untyped-def]
        return isinstance(item[1], PrepareOk) or sound(item, replicas, clients)

    monkeypatch.setattr(vr_model, "_obsolete", collect_every_prepare_ok)
    result = run(VRModel(ONE_OP, check_reductions=True))
    assert result.verdict == "violation"
    failing = result.violations[0]
    assert failing.name == reductions.PROPERTY
    assert failing.trace is not None
    explained = VRModel(ONE_OP, check_reductions=True).explain(failing.trace[-1].state)
    assert "collected PREPAREOK" in explained


def test_without_the_check_the_unsound_rule_goes_unnoticed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Why the mode exists: the unsound rule hides every commit, and nothing else says so."""
    sound = vr_model._obsolete
    monkeypatch.setattr(
        vr_model,
        "_obsolete",
        lambda item, r, c: isinstance(item[1], PrepareOk) or sound(item, r, c),
    )
    result = run(VRModel(ONE_OP))
    assert result.violations == []
    assert result.verdict == "vacuous"  # only a SOMETIMES goal notices: no request completes


CASES = [
    ("commit-too-few-prepareoks", ONE_OP),
    ("no-client-table", ONE_OP_LOSS),
    ("commit-backwards-on-startview", ONE_OP),
]


def summary(result: Result[vr_model.VRState, vr_model.Action]) -> tuple[str, str | None, int]:
    first = result.violations[0] if result.violations else None
    length = len(first.trace) if first is not None and first.trace is not None else 0
    return result.verdict, first.name if first else None, length


@pytest.mark.parametrize(("mutant", "bounds"), CASES, ids=[m for m, _ in CASES])
def test_garbage_collection_on_and_off_agree_on_the_bug_zoo(mutant: str, bounds: Bounds) -> None:
    kind = replica_class(mutant)
    on = run(VRModel(bounds, kind, mutant=mutant, collect_garbage=True))
    off = run(VRModel(bounds, kind, mutant=mutant, collect_garbage=False))
    assert summary(on) == summary(off)
    assert summary(on)[0] == "violation"


@pytest.mark.parametrize("mutant", [None, "commit-too-few-prepareoks", "no-client-table"])
def test_client_symmetry_on_and_off_agree(mutant: str | None) -> None:
    kind = replica_class(mutant)
    on = run(VRModel(TWO_CLIENTS, kind, mutant=mutant), symmetry=True)
    off = run(VRModel(TWO_CLIENTS, kind, mutant=mutant))
    assert summary(on) == summary(off)
    if mutant is None:
        assert on.verdict == "ok" and on.distinct < off.distinct
