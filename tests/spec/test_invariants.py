"""Each invariant of spec/invariants.py rejects a known-bad state and accepts a good one.

The states are plain values (the invariants read attributes only), so each test says in a
few lines what the broken situation is. A test per invariant, and a test that no invariant
is left without one: an invariant that accepted everything would pass every exploration.
The last tests hold spec/vr.md and the invariants to each other: every invariant names a
rule that exists, and every rule names an invariant or says why none applies.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from spec import invariants
from spec.invariants import ClusterState

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class E:
    view: int
    request: str


@dataclass(frozen=True)
class S:
    replica: int
    status: str = "normal"
    view: int = 0
    last_normal_view: int = 0
    op_number: int = 0
    commit_number: int = 0
    log: tuple[E, ...] = ()
    service_digest: str = ""


def digest(entries: Sequence[invariants.Entry]) -> str:
    return "|".join(str(e.request) for e in entries)


def state(replica: int, ops: str, committed: int, **kw: object) -> S:
    """Replica ``replica`` with one log entry per letter of ``ops``, ``committed`` of them
    committed, and a service digest that matches its committed prefix."""
    log = tuple(E(0, op) for op in ops)
    return S(
        replica=replica,
        op_number=len(log),
        commit_number=committed,
        log=log,
        service_digest=digest(log[:committed]),
        **kw,  # type: ignore[arg-type]
    )


def cluster(*replicas: S, acknowledged: dict[str, int] | None = None) -> ClusterState:
    return ClusterState(
        replicas=replicas, replica_count=3, acknowledged=acknowledged or {}, digest_of=digest
    )


GOOD = cluster(state(0, "abc", 2), state(1, "ab", 2), state(2, "a", 1), acknowledged={"a": 1})

BAD: dict[str, ClusterState] = {
    "commit_number_within_log": cluster(replace(state(0, "ab", 2), commit_number=3)),
    "no_committed_divergence": cluster(state(0, "ab", 2), state(1, "ax", 2)),
    "requests_execute_at_most_once": cluster(state(0, "aba", 3)),
    "normal_logs_in_a_view_are_prefix_ordered": cluster(state(0, "abc", 1), state(1, "ax", 1)),
    "acknowledged_ops_survive": cluster(
        state(0, "ab", 2), state(1, "", 0), state(2, "", 0), acknowledged={"b": 2}
    ),
    "service_matches_committed_prefix": cluster(replace(state(0, "ab", 2), service_digest="a")),
}

BAD_STEPS: dict[str, tuple[S, S]] = {
    "views_and_commits_never_decrease": (state(0, "ab", 2, view=1), state(0, "ab", 2, view=0)),
}


@pytest.mark.parametrize("invariant", invariants.STATE_INVARIANTS, ids=lambda f: f.__name__)
def test_each_state_invariant_rejects_its_bad_state(invariant: invariants.StateInvariant) -> None:
    name = invariant.__name__
    assert invariant(BAD[name]) is not None
    assert invariant(GOOD) is None
    broken = {f.invariant for f in invariants.check_state(BAD[name])}
    assert name in broken


def test_acknowledged_ops_survive_also_catches_another_op_committed_in_its_place() -> None:
    bad = cluster(state(0, "ab", 2), state(1, "ax", 2), acknowledged={"b": 2})
    message = invariants.acknowledged_ops_survive(bad)
    assert message is not None and "committed another op" in message


def test_a_recovering_replica_proves_nothing_and_breaks_nothing() -> None:
    lost = S(replica=1, status="recovering")
    assert invariants.check_state(cluster(state(0, "ab", 2), lost)) == []


def test_views_and_commits_never_decrease_rejects_each_way_back() -> None:
    check = invariants.views_and_commits_never_decrease
    before = state(0, "ab", 2, view=1)
    assert check(*BAD_STEPS["views_and_commits_never_decrease"]) is not None
    assert check(before, replace(before, commit_number=1)) is not None
    assert check(before, state(0, "xb", 2, view=1)) is not None  # committed prefix changed
    assert check(before, state(0, "abc", 3, view=2)) is None
    assert check(before, S(replica=0, status="recovering")) is None  # a new life


def test_every_invariant_has_a_known_bad_state() -> None:
    assert set(BAD) == {f.__name__ for f in invariants.STATE_INVARIANTS}
    assert set(BAD_STEPS) == {f.__name__ for f in invariants.STEP_INVARIANTS}
    for name, (before, after) in BAD_STEPS.items():
        assert [f.invariant for f in invariants.check_step(before, after)] == [name]


def test_findings_name_their_invariant() -> None:
    found = invariants.check_state(BAD["no_committed_divergence"])
    assert str(found[0]).startswith("no_committed_divergence: replicas 0 and 1 committed")
    assert all(str(f).split(":")[0] in invariants.INVARIANT_NAMES for f in found)


# ------------------------------------------------------------------ spec/vr.md <-> invariants

RULE = re.compile(r"^\*\*(R\d+)\. [^*]+\*\*(.*?)(?=^\*\*R\d+\.|^## |\Z)", re.M | re.S)


def rules() -> dict[str, str]:
    text = (ROOT / "spec" / "vr.md").read_text()
    return {m.group(1): " ".join(m.group(2).split()) for m in RULE.finditer(text)}


def test_every_invariant_names_a_rule_that_exists() -> None:
    known = rules()
    assert len(known) >= 17
    for f in (*invariants.STATE_INVARIANTS, *invariants.STEP_INVARIANTS):
        doc = f.__doc__ or ""
        named = re.findall(r"Rule: (R\d+) \(spec/vr\.md\)", doc)
        assert named, f"{f.__name__}'s docstring names no rule of spec/vr.md"
        assert named[0] in known, f"{f.__name__} names {named[0]}, not in spec/vr.md"


def test_every_rule_names_an_invariant_or_says_why_none_applies() -> None:
    names = set(invariants.INVARIANT_NAMES)
    for rule, text in rules().items():
        mentioned = {n for n in names if f"`{n}`" in text}
        assert mentioned or "No invariant" in text, f"{rule} names no invariant"
        for n in re.findall(r"[Ii]nvariants? `(\w+)`", text):
            assert n in names, f"{rule} names `{n}`, which spec/invariants.py does not define"
