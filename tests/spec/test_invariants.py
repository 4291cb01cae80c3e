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
    log_start: int = 0
    log: tuple[E, ...] = ()
    checkpoint_digest: str = ""
    checkpoint: str | None = None
    """Here the checkpoint is its service's digest: the ops it covers, joined by "|"."""
    service_digest: str = ""


def digest(checkpoint: object, entries: Sequence[invariants.Entry]) -> str:
    ops = [] if not checkpoint else [str(checkpoint)]
    return "|".join([*ops, *(str(e.request) for e in entries)])


def checkpointed(s: S, at: int) -> S:
    """``s`` after a checkpoint at op-number ``at``: the log keeps the entries after it."""
    covered = s.log[: at - s.log_start]
    ops = digest(s.checkpoint, covered)
    return replace(
        s, log_start=at, log=s.log[at - s.log_start :], checkpoint=ops, checkpoint_digest=ops
    )


def state(replica: int, ops: str, committed: int, **kw: object) -> S:
    """Replica ``replica`` with one log entry per letter of ``ops``, ``committed`` of them
    committed, and a service digest that matches its committed prefix."""
    log = tuple(E(0, op) for op in ops)
    return S(
        replica=replica,
        op_number=len(log),
        commit_number=committed,
        log=log,
        service_digest=digest(None, log[:committed]),
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
    "checkpoints_agree": cluster(
        checkpointed(state(0, "ab", 2), 2),
        replace(checkpointed(state(1, "ab", 2), 2), checkpoint_digest="a|x"),
    ),
}

BAD_STEPS: dict[str, tuple[S, S]] = {
    "views_and_commits_never_decrease": (state(0, "ab", 2, view=1), state(0, "ab", 2, view=0)),
    # A checkpoint at 1 that also forgot the uncommitted entry 2.
    "logs_only_grow_within_a_view": (
        state(0, "ab", 1),
        replace(checkpointed(state(0, "a", 1), 1), op_number=1),
    ),
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


def test_checkpoints_at_one_op_number_must_agree_across_replicas() -> None:
    a = checkpointed(state(0, "ab", 2), 2)
    b = checkpointed(state(1, "xb", 2), 2)  # self-consistent, but another history
    broken = invariants.checkpoints_agree(cluster(a, b))
    assert broken is not None and "different checkpoints at op-number 2" in broken


def test_checkpointed_logs_are_judged_by_absolute_op_numbers() -> None:
    # The same cluster as GOOD, with checkpoints at different op-numbers: nothing breaks.
    good = cluster(
        checkpointed(state(0, "abc", 2), 2),
        checkpointed(state(1, "ab", 2), 1),
        state(2, "a", 1),
        acknowledged={"a": 1},
    )
    assert invariants.check_state(good) == []
    # An op under one replica's checkpoint and different in another's log is divergence.
    forked = cluster(checkpointed(state(0, "ab", 2), 1), state(1, "ax", 2))
    assert invariants.no_committed_divergence(forked) is not None


def test_a_crashed_replicas_disk_keeps_an_acknowledged_op() -> None:
    # Two of three replicas are down; only their disks hold the acknowledged op.
    live = state(0, "", 0)
    disks = [
        replace(state(1, "ab", 0), status="crashed"),
        replace(state(2, "a", 0), status="crashed"),
    ]
    held = ClusterState(
        replicas=[live], replica_count=3, acknowledged={"a": 1}, digest_of=digest, disks=disks
    )
    assert invariants.acknowledged_ops_survive(held) is None
    lost = replace(held, disks=[disks[0], replace(disks[1], log=(), op_number=0)])
    broken = invariants.acknowledged_ops_survive(lost)
    assert broken is not None and "only 1 replicas that kept their state" in broken


def test_logs_only_grow_within_a_view_allows_checkpoints_and_new_views() -> None:
    check = invariants.logs_only_grow_within_a_view
    before = state(0, "ab", 1)
    assert check(before, checkpointed(state(0, "abc", 1), 1)) is None  # truncation, growth
    assert check(before, state(0, "ax", 1)) is not None  # an entry it held changed
    assert check(before, state(0, "a", 1, view=1)) is None  # a new view may replace it
