"""Safety properties of Viewstamped Replication, over a global cluster state.

Each invariant is a function named as a claim, with a one-sentence docstring citing VRR, over
the replicas' snapshots (any objects with the attributes of ``ReplicaState``; this package
imports neither vrref nor checker, so it stays the plain statement of correctness). A
property returns ``None`` when it holds and a sentence saying what is wrong when it does not,
so a failing check explains itself.

State invariants (``STATE_INVARIANTS``) must hold in every reachable cluster state; step
invariants (``STEP_INVARIANTS``) compare one replica's state before and after one event.
These two tuples are the one list of invariants: the explorer makes one ALWAYS property of
each (named after the function), and the simulator, the in-memory cluster and ``vrref
check`` call ``check_state`` and ``check_step``. Each docstring names the rule of
spec/vr.md it protects. Reachability goals (SOMETIMES) live with the explorer's model,
since they need its notion of a trace.

A crashed replica has no state: the caller omits it, or passes it with status
"recovering" once it restarted (its log is then empty and proves nothing). A crashed replica
of a durable cluster keeps its disk: the caller passes it in ``ClusterState.disks``, which
only the invariants about what survives a crash read.

Logs are suffixes (checkpoints, VRR §5.1): a state's ``log`` holds the entries after
``log_start``, the op-number of its checkpoint, so the entry at op-number n is
``log[n - log_start - 1]`` (``entry_at``); an op at or below ``log_start`` is covered by
the checkpoint, whose service digest is ``checkpoint_digest``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol


class Entry(Protocol):
    @property
    def view(self) -> int: ...

    @property
    def request(self) -> Hashable: ...


class ReplicaState(Protocol):
    @property
    def replica(self) -> int: ...

    @property
    def status(self) -> str: ...

    @property
    def view(self) -> int: ...

    @property
    def last_normal_view(self) -> int: ...

    @property
    def op_number(self) -> int: ...

    @property
    def commit_number(self) -> int: ...

    @property
    def log_start(self) -> int: ...

    @property
    def log(self) -> Sequence[Entry]: ...

    @property
    def checkpoint_digest(self) -> str: ...

    @property
    def checkpoint(self) -> Hashable: ...

    @property
    def service_digest(self) -> str: ...


Violation = str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterState:
    """What the state invariants judge: every replica's state, and what clients were told.

    ``replicas`` holds one state per replica that has one (a crashed replica is omitted; a
    restarted one is passed with status "recovering"). ``acknowledged`` maps each request a
    client received a reply for to the op-number it committed at. ``digest_of`` is the
    service's digest after executing a sequence of log entries from the initial state, so
    that a replica's service can be compared with its committed prefix. Every driver that
    checks invariants (the explorer, the simulator, the in-memory cluster, ``vrref check``)
    builds one of these and calls ``check_state``; none assembles the list itself.
    """

    replicas: Sequence[ReplicaState]
    replica_count: int
    acknowledged: Mapping[Hashable, int]
    digest_of: StateDigest
    disks: Sequence[ReplicaState] = ()
    """The disks of crashed replicas of a durable cluster, as states (status "crashed")."""


StateInvariant = Callable[[ClusterState], Violation]
StateDigest = Callable[[Hashable, Sequence[Entry]], str]
"""The service digest after executing entries on the state of a checkpoint (a state's
``checkpoint``; None: the initial state)."""
StepInvariant = Callable[["ReplicaState", "ReplicaState"], Violation]


@dataclass(frozen=True, slots=True)
class Finding:
    """One invariant broken: its name (the function's) and what is wrong."""

    invariant: str
    message: str

    def __str__(self) -> str:
        return f"{self.invariant}: {self.message}"


def _live(states: Sequence[ReplicaState]) -> list[ReplicaState]:
    return [s for s in states if s.status != "recovering"]


def _span(s: ReplicaState, after: int, last: int) -> Sequence[Entry]:
    """The entries with op-numbers in (after, last], as far as ``s``'s log holds them
    (``after`` not before its checkpoint): a slice, so that spans compare at C speed."""
    return s.log[after - s.log_start : max(after, last) - s.log_start]


def _agree(a: ReplicaState, b: ReplicaState, last: int) -> bool:
    """Whether ``a`` and ``b`` hold the same entries from after both checkpoints to
    ``last`` (each as far as its log reaches: a shorter one disagrees)."""
    start = max(a.log_start, b.log_start)
    return tuple(_span(a, start, last)) == tuple(_span(b, start, last))


def entry_at(s: ReplicaState, op_number: int) -> Entry | None:
    """The entry at an absolute op-number, or None where the checkpoint covers it or the
    log does not reach."""
    if s.log_start < op_number <= s.log_start + len(s.log):
        return s.log[op_number - s.log_start - 1]
    return None


# ------------------------------------------------------------------ over a cluster state


def commit_number_within_log(cluster: ClusterState) -> Violation:
    """commit-number <= op-number = length of the log at every replica (VRR §4, Fig. 2).

    Rule: R2 (spec/vr.md)."""
    for s in cluster.replicas:
        if s.status == "recovering":
            continue
        if not 0 <= s.log_start <= s.commit_number <= s.op_number == s.log_start + len(s.log):
            return (
                f"replica {s.replica}: checkpoint at {s.log_start}, commit-number "
                f"{s.commit_number}, op-number {s.op_number}, log length {len(s.log)}"
            )
    return None


def no_committed_divergence(cluster: ClusterState) -> Violation:
    """The committed prefixes of any two replicas agree (VRR §4.1, §8 correctness).

    Rule: R12 (spec/vr.md), which R5, R6, R14 and R16 serve."""
    live = _live(cluster.replicas)
    for i, a in enumerate(live):
        for b in live[i + 1 :]:
            common = min(a.commit_number, b.commit_number)
            if _agree(a, b, common):
                continue
            for n in range(max(a.log_start, b.log_start) + 1, common + 1):
                x, y = entry_at(a, n), entry_at(b, n)
                if x != y:
                    return (
                        f"replicas {a.replica} and {b.replica} committed different ops at "
                        f"op-number {n}: {x!r} vs {y!r}"
                    )
    return None


def requests_execute_at_most_once(cluster: ClusterState) -> Violation:
    """No request appears twice in a committed prefix: at-most-once (VRR §4.1; trap 9 of
    spec/traps.md).

    Rule: R3 (spec/vr.md)."""
    for s in _live(cluster.replicas):
        seen: set[Hashable] = set()
        for entry in s.log[: s.commit_number - s.log_start]:
            if entry.request in seen:
                return f"replica {s.replica} committed {entry.request!r} twice"
            seen.add(entry.request)
    return None


def normal_logs_in_a_view_are_prefix_ordered(cluster: ClusterState) -> Violation:
    """Replicas normal in the same view hold prefixes of one log, their primary's (§4.1).

    Rule: R5 (spec/vr.md), with R14 for the log a view starts with."""
    live = [s for s in cluster.replicas if s.status == "normal"]
    for i, a in enumerate(live):
        for b in live[i + 1 :]:
            if a.view != b.view:
                continue
            if not _agree(a, b, min(a.op_number, b.op_number)):
                return (
                    f"replicas {a.replica} and {b.replica} are normal in view {a.view} "
                    "with forked logs"
                )
    return None


def acknowledged_ops_survive(cluster: ClusterState) -> Violation:
    """An op whose reply a client received stays in the logs of f+1 replicas, less those
    that lost their state, at the position it committed at, or under their checkpoints
    (VRR §4.2 correctness; §5.1). A crashed replica of a durable cluster has not lost its
    state: its disk counts, so there an acknowledged op survives any crash pattern.

    Rule: R6 (spec/vr.md), with R11 and R12 carrying it across a view change, and R20 and
    R21 across crashes in a durable cluster."""
    f = (cluster.replica_count - 1) // 2
    live = _live(cluster.replicas)
    kept = [*live, *cluster.disks]
    down = cluster.replica_count - len(kept)
    for request, position in cluster.acknowledged.items():
        holders = [s for s in kept if _holds(s, position, request)]
        if len(holders) < f + 1 - down:
            return (
                f"acknowledged request {request!r} (op-number {position}) is in the logs of "
                f"only {len(holders)} replicas that kept their state; {f + 1 - down} needed"
            )
        for s in live:
            entry = entry_at(s, position)
            if s.commit_number >= position and entry is not None and entry.request != request:
                return f"replica {s.replica} committed another op where {request!r} committed"
    return None


def _holds(s: ReplicaState, position: int, request: Hashable) -> bool:
    """Whether ``s`` holds ``request`` at ``position``: in its log, or under its checkpoint
    (which ``checkpoints_agree`` and ``service_matches_committed_prefix`` vouch for)."""
    if position <= s.log_start:
        return True
    entry = entry_at(s, position)
    return entry is not None and entry.request == request


def service_matches_committed_prefix(cluster: ClusterState) -> Violation:
    """Each replica's service state is the sequential execution of its committed prefix (§4).

    Rule: R7 (spec/vr.md)."""
    for s in _live(cluster.replicas):
        expected = cluster.digest_of(s.checkpoint, s.log[: s.commit_number - s.log_start])
        if s.service_digest != expected:
            return (
                f"replica {s.replica}: service state differs from its checkpoint at "
                f"{s.log_start} and the committed entries after it"
            )
    return None


def checkpoints_agree(cluster: ClusterState) -> Violation:
    """Checkpoints at the same op-number have the same service digest, on every replica and
    disk, and a checkpoint's digest is that of its service snapshot (VRR §5.1).

    Rule: R18 (spec/vr.md)."""
    seen: dict[int, tuple[int, str]] = {}
    for s in [*_live(cluster.replicas), *cluster.disks]:
        if s.log_start == 0:
            continue
        digest = cluster.digest_of(s.checkpoint, ())
        if digest != s.checkpoint_digest:
            return (
                f"replica {s.replica}: its checkpoint at {s.log_start} restores to a service "
                "with another digest than the one it records"
            )
        other = seen.setdefault(s.log_start, (s.replica, digest))
        if other[1] != digest:
            return (
                f"replicas {other[0]} and {s.replica} hold different checkpoints at "
                f"op-number {s.log_start}"
            )
    return None


# ------------------------------------------------------------------ over one step


def views_and_commits_never_decrease(before: ReplicaState, after: ReplicaState) -> Violation:
    """A replica's view-number and commit-number never decrease, and its committed prefix
    never changes, while it keeps its state (VRR §4; trap 8 of spec/traps.md).

    Rule: R14 (spec/vr.md), with R9 for views."""
    if after.status == "recovering" or before.status == "recovering":
        return None
    if after.view < before.view:
        return f"replica {after.replica}: view went from {before.view} to {after.view}"
    if after.commit_number < before.commit_number:
        return (
            f"replica {after.replica}: commit-number went from {before.commit_number} to "
            f"{after.commit_number}"
        )
    if not _agree(before, after, before.commit_number):
        return f"replica {after.replica}: its committed prefix changed"
    if after.log_start < before.log_start:
        return (
            f"replica {after.replica}: its checkpoint went from {before.log_start} back to "
            f"{after.log_start}"
        )
    return None


def logs_only_grow_within_a_view(before: ReplicaState, after: ReplicaState) -> Violation:
    """A replica normal in one view before and after a step keeps every entry it held: its
    op-number does not decrease and no entry after its checkpoint changes (VRR §4.1: a
    PREPAREOK promises the entries; a checkpoint covers only committed ones, §5.1).

    Rule: R18 (spec/vr.md), with R5 for the log of a view."""
    if before.status != "normal" or after.status != "normal" or before.view != after.view:
        return None
    if after.op_number < before.op_number:
        return (
            f"replica {after.replica}: op-number went from {before.op_number} to "
            f"{after.op_number} in view {after.view}"
        )
    if not _agree(before, after, before.op_number):
        return f"replica {after.replica}: an entry it held changed in view {after.view}"
    return None


# ------------------------------------------------------------------ the lists every driver uses

STATE_INVARIANTS: tuple[StateInvariant, ...] = (
    commit_number_within_log,
    no_committed_divergence,
    requests_execute_at_most_once,
    normal_logs_in_a_view_are_prefix_ordered,
    acknowledged_ops_survive,
    service_matches_committed_prefix,
    checkpoints_agree,
)
"""Every invariant over a cluster state, in the order they are checked and reported."""

STEP_INVARIANTS: tuple[StepInvariant, ...] = (
    views_and_commits_never_decrease,
    logs_only_grow_within_a_view,
)
"""Every invariant over one replica's state before and after one event."""

INVARIANT_NAMES: tuple[str, ...] = tuple(f.__name__ for f in (*STATE_INVARIANTS, *STEP_INVARIANTS))


def check_state(
    cluster: ClusterState, invariants: Sequence[StateInvariant] = STATE_INVARIANTS
) -> list[Finding]:
    """Every state invariant (or the given ones) over ``cluster``; the broken ones."""
    return [Finding(p.__name__, v) for p in invariants if (v := p(cluster)) is not None]


def check_step(before: ReplicaState, after: ReplicaState) -> list[Finding]:
    """Every step invariant over one replica's states before and after one event."""
    return [Finding(p.__name__, v) for p in STEP_INVARIANTS if (v := p(before, after)) is not None]
