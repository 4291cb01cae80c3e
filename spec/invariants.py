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
"recovering" once it restarted (its log is then empty and proves nothing).
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
    def log(self) -> Sequence[Entry]: ...

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


StateInvariant = Callable[[ClusterState], Violation]
StateDigest = Callable[[Sequence[Entry]], str]
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


# ------------------------------------------------------------------ over a cluster state


def commit_number_within_log(cluster: ClusterState) -> Violation:
    """commit-number <= op-number = length of the log at every replica (VRR §4, Fig. 2).

    Rule: R2 (spec/vr.md)."""
    for s in cluster.replicas:
        if not 0 <= s.commit_number <= s.op_number == len(s.log):
            return (
                f"replica {s.replica}: commit-number {s.commit_number}, op-number "
                f"{s.op_number}, log length {len(s.log)}"
            )
    return None


def no_committed_divergence(cluster: ClusterState) -> Violation:
    """The committed prefixes of any two replicas agree (VRR §4.1, §8 correctness).

    Rule: R12 (spec/vr.md), which R5, R6, R14 and R16 serve."""
    live = _live(cluster.replicas)
    for i, a in enumerate(live):
        for b in live[i + 1 :]:
            common = min(a.commit_number, b.commit_number)
            for n in range(common):
                if a.log[n] != b.log[n]:
                    return (
                        f"replicas {a.replica} and {b.replica} committed different ops at "
                        f"op-number {n + 1}: {a.log[n]!r} vs {b.log[n]!r}"
                    )
    return None


def requests_execute_at_most_once(cluster: ClusterState) -> Violation:
    """No request appears twice in a committed prefix: at-most-once (VRR §4.1; trap 9 of
    spec/traps.md).

    Rule: R3 (spec/vr.md)."""
    for s in _live(cluster.replicas):
        seen: set[Hashable] = set()
        for entry in s.log[: s.commit_number]:
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
            common = min(a.op_number, b.op_number)
            if list(a.log[:common]) != list(b.log[:common]):
                return (
                    f"replicas {a.replica} and {b.replica} are normal in view {a.view} "
                    "with forked logs"
                )
    return None


def acknowledged_ops_survive(cluster: ClusterState) -> Violation:
    """An op whose reply a client received stays in the logs of f+1 replicas, less those
    that lost their state, at the position it committed at (VRR §4.2 correctness).

    Rule: R6 (spec/vr.md), with R11 and R12 carrying it across a view change."""
    f = (cluster.replica_count - 1) // 2
    live = _live(cluster.replicas)
    down = cluster.replica_count - len(live)
    for request, position in cluster.acknowledged.items():
        holders = [
            s for s in live if len(s.log) >= position and s.log[position - 1].request == request
        ]
        if len(holders) < f + 1 - down:
            return (
                f"acknowledged request {request!r} (op-number {position}) is in the logs of "
                f"only {len(holders)} live replicas; {f + 1 - down} needed"
            )
        for s in live:
            if s.commit_number >= position and s.log[position - 1].request != request:
                return f"replica {s.replica} committed another op where {request!r} committed"
    return None


def service_matches_committed_prefix(cluster: ClusterState) -> Violation:
    """Each replica's service state is the sequential execution of its committed prefix (§4).

    Rule: R7 (spec/vr.md)."""
    for s in _live(cluster.replicas):
        expected = cluster.digest_of(s.log[: s.commit_number])
        if s.service_digest != expected:
            return f"replica {s.replica}: service state differs from its committed prefix"
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
    if list(after.log[: before.commit_number]) != list(before.log[: before.commit_number]):
        return f"replica {after.replica}: its committed prefix changed"
    return None


# ------------------------------------------------------------------ the lists every driver uses

STATE_INVARIANTS: tuple[StateInvariant, ...] = (
    commit_number_within_log,
    no_committed_divergence,
    requests_execute_at_most_once,
    normal_logs_in_a_view_are_prefix_ordered,
    acknowledged_ops_survive,
    service_matches_committed_prefix,
)
"""Every invariant over a cluster state, in the order they are checked and reported."""

STEP_INVARIANTS: tuple[StepInvariant, ...] = (views_and_commits_never_decrease,)
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
