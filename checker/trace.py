"""Checking a run recorded by the threaded runtime: trace validation and invariants.

A recorded run is one history file per replica process (vrref/runtime/node.py writes them; a
restarted process appends to its file). Each file's header carries what the core needs to
be rebuilt: the replica id, the protocol settings (``"protocol"``) and the initial zone
(``"initial"``). The events that enter the core are all recorded: ``boot`` (a fresh core),
``restart`` (a core recovering with the recorded ``nonce``), ``deliver`` (a batch of
messages, given to ``on_messages``) and ``tick`` (``on_tick``); what the core did is
recorded after them: each ``send`` (a message to a replica, in order) and a ``state`` after
each input (vrref/history.py's STATE_FIELDS: status, view, v', op-number, commit-number, and
the digest of the zone). The events are read as vrref/history.py's typed events.

**Trace validation** feeds each file's inputs, in order, to a fresh real core and requires
every recorded ``send`` and ``state`` to be exactly what the core now produces, each state
field compared with the core's ``Snapshot``: the runtime is then shown to be a faithful
driver of the core (nothing else changed the core's state, no message was invented or lost
between the core and the wire), and the states the invariants are checked over are the
core's own. A state that lacks one of STATE_FIELDS is a difference too (a field the writer
stopped recording is not silently left unchecked), and so is an event of another replica
or of a type the runtime does not write. The first difference is reported with its file,
line and field.

**Invariants** are those of spec/invariants.py, called, not re-coded: after every recorded
state, the step invariants over the core's state before and after the input (within one
process's life: a restart starts a new life) and the state invariants that one replica's
state can break (``PER_REPLICA``); at the end, every state invariant over the final
states of all the replicas together (``ACROSS_REPLICAS``: their states are from different
moments, which these invariants allow, since each compares committed prefixes or logs of
one view, and neither ever shrinks). ``acknowledged_ops_survive`` is not judged here: a
replica's history does not say which request a client's reply answered (it is judged by
the simulator and the explorer, which see both). A ``crash`` event (the core raised) is a
violation.

A life may end inside an input: a replica SIGKILLed after an input's line reached the file
and before its sends and state did. The next life's first line (``boot``, ``restart``,
``reopen``) then forgives what the last input of the previous life did not record (counted:
``cut_short``); within a life, every input's sends and state must be there.

``vrref check`` runs this on any history with replica events, beside linearizability.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spec import invariants
from vrref import history as hist
from vrref.core.messages import Checkpoint, CodecError, LogEntry, Request, from_json, to_json
from vrref.core.replica import Config, Effect, Replica, Send, Snapshot, Status
from vrref.core.statemachine import StateMachine
from vrref.history import STATE_FIELDS, ClientEvent, HistoryError, read_header

PER_REPLICA: tuple[invariants.StateInvariant, ...] = (
    invariants.commit_number_within_log,
    invariants.requests_execute_at_most_once,
    invariants.service_matches_committed_prefix,
)
"""The state invariants one replica's own state can break, checked after every state."""

ACROSS_REPLICAS: tuple[invariants.StateInvariant, ...] = tuple(
    p for p in invariants.STATE_INVARIANTS if p is not invariants.acknowledged_ops_survive
)
"""Every state invariant but acknowledged_ops_survive (see the module docstring), over the
final states of all the replicas."""


@dataclass
class ReplicaRun:
    """What validating one replica's file found."""

    path: str
    replica: int
    inputs: int = 0
    sends: int = 0
    states: int = 0
    lives: int = 0
    cut_short: int = 0
    """Lives that ended inside an input (killed before its sends were recorded)."""
    problems: list[str] = field(default_factory=list)
    committed: list[LogEntry] = field(default_factory=list)
    """The committed prefix of the core at the end of the file."""
    final: Snapshot | None = None
    """The core's state at the end of the file, unless it was recovering (for the
    invariants across replicas)."""
    config: Config | None = None
    digest_of: invariants.StateDigest | None = field(default=None, repr=False)
    commits: dict[int, tuple[str, str]] = field(default_factory=dict, repr=False)
    """What the replayed core executed, by op-number: (op, result), over every life."""
    commit_times: list[tuple[int, int]] = field(default_factory=list, repr=False)
    """(time, commit-number) of every recorded state with a time, in file order."""
    finals: int = 0
    """Final states recorded (each checked against the replayed core)."""


@dataclass
class RunReport:
    replicas: list[ReplicaRun]
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems and all(not r.problems for r in self.replicas)

    @property
    def events(self) -> int:
        return sum(r.inputs + r.sends + r.states for r in self.replicas)

    def commit_order(self) -> CommitOrder | None:
        """The order the cluster committed in, from every replica's replay: op-numbers 1..n
        with each op and its result, when the replicas together executed a contiguous
        prefix from the initial state and agree on it (None otherwise: a replica that
        started from a checkpoint whose ops no file shows, or a disagreement, which the
        invariants report)."""
        merged: dict[int, tuple[str, str]] = {}
        for run in self.replicas:
            for n, executed in run.commits.items():
                if merged.setdefault(n, executed) != executed:
                    return None
        if not merged or sorted(merged) != list(range(1, len(merged) + 1)):
            return None
        times = sorted(t for run in self.replicas for t in run.commit_times)
        return CommitOrder(
            ops=tuple(merged[n] for n in range(1, len(merged) + 1)), commit_times=tuple(times)
        )


@dataclass(frozen=True, slots=True)
class CommitOrder:
    """The cluster's committed operations in order, and when they were known committed."""

    ops: tuple[tuple[str, str], ...]
    """(op, result) of op-numbers 1, 2, ...: what the replicas executed."""
    commit_times: tuple[tuple[int, int], ...]
    """(time, commit-number) of every replica state recorded, sorted by time."""

    _times: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _highest: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_times", tuple(at for at, _ in self.commit_times))
        running = itertools.accumulate((n for _, n in self.commit_times), max)
        object.__setattr__(self, "_highest", tuple(running))

    def committed_by(self, time: int) -> int:
        """The highest commit-number any replica had recorded by ``time`` (0: none): a
        binary search over the running maximum (it is asked for every read of a run)."""
        k = bisect.bisect_right(self._times, time)
        return self._highest[k - 1] if k else 0


class _Executed:
    """Where the replayed cores' services report what they execute."""

    def __init__(self) -> None:
        self.applied: list[tuple[str, str]] = []

    def take(self) -> list[tuple[str, str]]:
        taken, self.applied = self.applied, []
        return taken


class _Recording:
    """A StateMachine that runs another and reports each op it executes, with its result,
    to an ``_Executed`` (so trace validation learns the commit order without the core
    saying more than it does: the service is the core's own up-call). A fresh or restored
    service starts the report over: what it executes next follows its initial state or
    the checkpoint."""

    __slots__ = ("_inner", "_sink")

    def __init__(self, inner: StateMachine, sink: _Executed) -> None:
        self._inner = inner
        self._sink = sink

    def apply(self, op: str) -> str:
        result = self._inner.apply(op)
        self._sink.applied.append((op, result))
        return result

    def clone(self) -> _Recording:
        return _Recording(self._inner.clone(), self._sink)

    def digest(self) -> str:
        return self._inner.digest()

    def snapshot(self) -> str:
        return self._inner.snapshot()

    def restore(self, snapshot: str) -> _Recording:
        restored = _Recording(self._inner.restore(snapshot), self._sink)
        self._sink.applied.clear()
        return restored

    def records(self) -> Any:
        return self._inner.records()  # type: ignore[attr-defined]


def _zone_factory(header: dict[str, Any]) -> Any:
    from vrref.dns.zone import Zone

    initial = header.get("initial")
    records = initial.get("records") if isinstance(initial, dict) else initial
    origin = header.get("origin")
    if not isinstance(records, list) or not isinstance(origin, str):
        raise ValueError('the header needs "origin" and "initial" records to rebuild the zone')
    base = Zone.from_records(origin, [tuple(r) for r in records])
    return base.clone


class _PrefixDigest:
    """The service digest of a checkpoint (None: the initial state) and committed entries
    after it, computed incrementally: committed prefixes only grow, so each call applies only
    the new entries (and starts over from the checkpoint if the prefix asked for does not
    extend the last one, or starts from another checkpoint)."""

    def __init__(self, factory: Any) -> None:
        self._factory = factory
        self._service: StateMachine = factory()
        self._base: object = None
        self._applied: list[Any] = []

    def __call__(self, checkpoint: object, entries: Sequence[invariants.Entry]) -> str:
        count = len(self._applied)
        if (
            checkpoint != self._base
            or len(entries) < count
            or list(entries[:count]) != self._applied
        ):
            service: StateMachine = self._factory()
            if checkpoint is not None:
                assert isinstance(checkpoint, Checkpoint)
                service = service.restore(checkpoint.service)
            self._service, self._base, self._applied, count = service, checkpoint, [], 0
        for entry in entries[count:]:
            request = entry.request
            assert isinstance(request, Request)
            self._service.apply(request.op)
            self._applied.append(entry)
        return self._service.digest()


def validate_replica(path: str | Path) -> ReplicaRun:
    """Trace validation of one replica's history file (see the module docstring)."""
    head, events = hist.stream_history(path)  # a long run's file is not held in memory
    name = str(path)
    replica_id = head.get("replica")
    protocol = head.get("protocol")
    if not isinstance(replica_id, int) or not isinstance(protocol, dict):
        raise HistoryError(name, 1, 'a replica history header needs "replica" and "protocol"')
    try:
        config = hist.protocol_from_json(protocol)
        factory = _zone_factory(head)
    except (TypeError, ValueError) as error:
        raise HistoryError(name, 1, f"cannot rebuild the core: {error}") from None
    digest_of = _PrefixDigest(factory)
    run = ReplicaRun(name, replica_id, config=config, digest_of=digest_of)
    executed = _Executed()

    def recording_factory() -> _Recording:
        executed.applied.clear()  # a fresh service: what follows starts at op 1
        return _Recording(factory(), executed)

    def note_commits() -> None:
        """Numbers what the core executed in its last input: the ops that end at its
        commit-number."""
        assert core is not None
        done = executed.take()
        first = core.commit_number - len(done) + 1
        for k, item in enumerate(done):
            run.commits[first + k] = item

    core: Replica | None = None
    expected: list[Send] = []
    before: Snapshot | None = None

    def fail(line: int, message: str) -> None:
        if not run.problems:  # the first difference; what follows would only echo it
            run.problems.append(f"{name}:{line}: {message}")

    def unsent(line: int) -> None:
        if expected:
            fail(line, f"the core sent {_show(expected[0])} and the history has no such send")

    for event in events:
        if run.problems:
            break
        if isinstance(event, ClientEvent):
            continue
        record, line = event.record, event.line
        owner = getattr(record, "replica", None)
        if owner is not None and owner != replica_id:
            fail(line, f"a {record.type} of replica {owner} in replica {replica_id}'s history")
            break
        match record:
            case hist.Boot() | hist.Restart() | hist.Reopen():
                # The previous life may have ended inside an input: a SIGKILL after its
                # line reached the file (a flush for a reply, from another thread) and
                # before its sends and state did. What it did not record is not a
                # difference; within a life, every input's sends and state must be there.
                run.cut_short += bool(expected)
                expected = []
                run.lives += 1
                before = None
                effects: list[Effect] = []
                if isinstance(record, hist.Boot):
                    core = Replica(config, replica_id, recording_factory)
                elif isinstance(record, hist.Reopen):
                    try:
                        core, effects = Replica.restarted(
                            config, replica_id, recording_factory, record.durable()
                        )
                    except ValueError as error:  # CodecError, or a snapshot that won't load
                        fail(line, f"the recorded disk does not load: {error}")
                        break
                else:
                    if record.nonce is None:
                        fail(line, "a restart needs its integer nonce")
                        break
                    core, effects = Replica.recovering(
                        config, replica_id, recording_factory, nonce=record.nonce
                    )
                executed.take()  # a restarted service's replay of its disk is not news
                expected = _sends(effects)
                run.inputs += 1
            case hist.Deliver() | hist.Tick():
                if core is None:
                    fail(line, f"a {record.type} before the replica booted")
                    break
                unsent(line)
                try:
                    if isinstance(record, hist.Deliver):
                        if record.messages is None:
                            fail(line, 'a deliver needs a "messages" list')
                            break
                        effects = core.on_messages([from_json(m) for m in record.messages])
                    else:
                        effects = core.on_tick()
                except CodecError as error:
                    fail(line, f"a recorded message does not decode: {error}")
                    break
                except AssertionError as error:
                    fail(line, f"the core raised on this input: {error}")
                    break
                expected = _sends(effects)
                note_commits()
                run.inputs += 1
            case hist.Send():
                run.sends += 1
                if not expected:
                    fail(line, "a send the core did not produce")
                    break
                want = expected.pop(0)
                got = (record.to, record.message)
                if got != (want.to, to_json(want.message)):
                    fail(line, f"sent {_show_recorded(got)}, the core sends {_show(want)}")
            case hist.State():
                run.states += 1
                if core is None:
                    fail(line, "a state before the replica booted")
                    break
                snapshot = core.snapshot()
                missing = record.missing()
                if missing:
                    fail(line, f"the recorded state has no {', '.join(missing)}")
                for key, value in _snapshot_state(snapshot, record).items():
                    recorded = record.values.get(key)
                    if key in record.values and recorded != value:
                        fail(line, f"{key} is {recorded!r} in the history, {value!r} in the core")
                        break
                found = [] if before is None else invariants.check_step(before, snapshot)
                alone = invariants.ClusterState(
                    replicas=[snapshot],
                    replica_count=config.replica_count,
                    acknowledged={},
                    digest_of=digest_of,
                )
                found += invariants.check_state(alone, PER_REPLICA)
                if found:
                    fail(line, f"invariant {found[0]}")
                before = snapshot
                if record.time is not None:
                    run.commit_times.append((record.time, snapshot.commit_number))
            case hist.FinalZone():
                run.finals += 1
                if core is None:
                    fail(line, "a final state before the replica booted")
                    break
                if record.commit_number is not None and record.commit_number != core.commit_number:
                    fail(
                        line,
                        f"the final state is at commit-number {record.commit_number},"
                        f" the core at {core.commit_number}",
                    )
                    break
                zone = core.service
                if tuple(record.records) != tuple(zone.records()):  # type: ignore[attr-defined]
                    fail(line, "the final state's records are not the core's committed zone")
            case hist.Crash():
                fail(line, f"the replica's core raised: {record.error or '?'}")
            case _:
                fail(line, f"a {record.type} event, which the runtime does not write")
    if core is not None and not run.problems and core.status is not Status.RECOVERING:
        run.committed = list(core.entries(core.log_start, core.commit_number))
        run.final = core.snapshot()
    return run


def _snapshot_state(snapshot: Snapshot, recorded: hist.State) -> dict[str, Any]:
    """What ``recorded`` should hold: each of STATE_FIELDS as the core's snapshot holds it
    (and the log's ops, if the state records them)."""
    state = {name: getattr(snapshot, name) for name in STATE_FIELDS}
    if hist.STATE_LOG in recorded.values:
        state[hist.STATE_LOG] = hist.log_ops(snapshot.log)
    return state


def _sends(effects: Sequence[Effect]) -> list[Send]:
    return [e for e in effects if isinstance(e, Send)]


def _show(send: Send) -> str:
    return f"{type(send.message).__name__} to r{send.to}"


def _show_recorded(got: tuple[Any, Any]) -> str:
    to, message = got
    kind = message.get("type") if isinstance(message, dict) else "?"
    return f"{kind} to r{to}"


def check_run(paths: Sequence[str | Path]) -> RunReport:
    """Validates every replica file and the cross-replica invariants."""
    runs: list[ReplicaRun] = []
    problems: list[str] = []
    for path in paths:
        try:
            head = read_header(path)
        except HistoryError as error:
            problems.append(str(error))
            continue
        if "replica" not in head:
            continue  # a client-only history
        runs.append(validate_replica(path))
    finals = [r for r in runs if r.final is not None]
    if finals:
        config, digest_of = finals[0].config, finals[0].digest_of
        assert config is not None and digest_of is not None
        together = invariants.ClusterState(
            replicas=[r.final for r in finals if r.final is not None],
            replica_count=config.replica_count,
            acknowledged={},
            digest_of=digest_of,
        )
        problems += [str(f) for f in invariants.check_state(together, ACROSS_REPLICAS)]
    return RunReport(runs, problems)


def has_replica_events(paths: Sequence[str | Path]) -> bool:
    for path in paths:
        try:
            head = read_header(path)
        except HistoryError:
            continue
        if isinstance(head.get("replica"), int) and isinstance(head.get("protocol"), dict):
            return True
    return False


def report_lines(report: RunReport) -> list[str]:
    lines = []
    for run in report.replicas:
        verdict = "ok" if not run.problems else "FAILED"
        lines.append(
            f"trace validation: replica {run.replica} ({Path(run.path).name}): {verdict}: "
            f"{run.inputs} inputs replayed, {run.sends} sends and {run.states} states "
            f"matched, {run.lives} life(s), {len(run.committed)} ops committed"
            + (f", {run.cut_short} life(s) ended inside an input" if run.cut_short else "")
        )
        lines.extend(f"  {p}" for p in run.problems)
    if report.problems:
        lines.extend(f"invariants: VIOLATED: {p}" for p in report.problems)
    else:
        judged = [p.__name__ for p in (*invariants.STEP_INVARIANTS, *ACROSS_REPLICAS)]
        lines.append(
            f"invariants: ok ({', '.join(judged)}; acknowledged_ops_survive not judged: "
            "a replica history does not link replies to requests)"
        )
    return lines
