"""Safety properties of Viewstamped Replication, over a global cluster state.

Each invariant is a function named as a claim, with a one-sentence docstring citing VRR, over
the replicas' snapshots (any objects with the attributes of ``ReplicaState``; this package
imports neither vrref nor checker, so it stays the plain statement of correctness). A
property returns ``None`` when it holds and a sentence saying what is wrong when it does not,
so a failing check explains itself.

ALWAYS properties must hold in every reachable state; transition properties compare a
replica's state before and after one event. Reachability goals (SOMETIMES) live with the
explorer's model, since they need its notion of a trace.

A crashed replica has no state: the caller omits it, or passes it with status
"recovering" once it restarted (its log is then empty and proves nothing).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
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


def _live(states: Sequence[ReplicaState]) -> list[ReplicaState]:
    return [s for s in states if s.status != "recovering"]


def commit_number_within_log(states: Sequence[ReplicaState]) -> Violation:
    """commit-number <= op-number = length of the log at every replica (VRR §4, Fig. 2)."""
    for s in states:
        if not 0 <= s.commit_number <= s.op_number == len(s.log):
            return (
                f"replica {s.replica}: commit-number {s.commit_number}, op-number "
                f"{s.op_number}, log length {len(s.log)}"
            )
    return None


def no_committed_divergence(states: Sequence[ReplicaState]) -> Violation:
    """The committed prefixes of any two replicas agree (VRR §4.1, §8 correctness)."""
    live = _live(states)
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


def requests_execute_at_most_once(states: Sequence[ReplicaState]) -> Violation:
    """No request appears twice in a committed prefix: at-most-once (VRR §4.1, trap 9)."""
    for s in _live(states):
        seen: set[Hashable] = set()
        for entry in s.log[: s.commit_number]:
            if entry.request in seen:
                return f"replica {s.replica} committed {entry.request!r} twice"
            seen.add(entry.request)
    return None


def normal_logs_in_a_view_are_prefix_ordered(states: Sequence[ReplicaState]) -> Violation:
    """Replicas normal in the same view hold prefixes of one log, their primary's (§4.1)."""
    live = [s for s in states if s.status == "normal"]
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


def acknowledged_ops_survive(
    states: Sequence[ReplicaState], acknowledged: Mapping[Hashable, int], replica_count: int
) -> Violation:
    """An op whose reply a client received stays in the logs of f+1 replicas, less those
    that lost their state, at the position it committed at (VRR §4.2 correctness)."""
    f = (replica_count - 1) // 2
    live = _live(states)
    down = replica_count - len(live)
    for request, position in acknowledged.items():
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


def service_matches_committed_prefix(
    states: Sequence[ReplicaState], digest_of: Callable[[Sequence[Entry]], str]
) -> Violation:
    """Each replica's service state is the sequential execution of its committed prefix (§4)."""
    for s in _live(states):
        expected = digest_of(s.log[: s.commit_number])
        if s.service_digest != expected:
            return f"replica {s.replica}: service state differs from its committed prefix"
    return None


def views_and_commits_never_decrease(before: ReplicaState, after: ReplicaState) -> Violation:
    """A replica's view-number and commit-number never decrease while it keeps its state
    (VRR §4; trap 8)."""
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


ALWAYS: tuple[Callable[[Sequence[ReplicaState]], Violation], ...] = (
    commit_number_within_log,
    no_committed_divergence,
    requests_execute_at_most_once,
    normal_logs_in_a_view_are_prefix_ordered,
)


def check_always(states: Sequence[ReplicaState]) -> list[str]:
    """Runs the ALWAYS properties that need nothing but the states; returns violations."""
    return [f"{p.__name__}: {v}" for p in ALWAYS if (v := p(states)) is not None]
