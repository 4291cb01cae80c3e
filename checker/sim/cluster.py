"""A deterministic in-memory cluster: the unit tests' and the demo's driver of the core.

It holds 2f+1 replica cores, a few client proxies and a list of messages in flight, and it
counts ticks. Nothing happens unless a test says so: ``deliver`` one message, ``run`` until
the network is quiet, ``tick`` the clocks, ``crash`` or ``restart`` a replica, ``drop`` or
``duplicate`` messages, cut the network with ``partition``. So every scenario is a plain,
replayable sequence of events, and with ``check=True`` the safety invariants of
``spec.invariants`` run after every event and raise at the first violation.

This is the smallest of the drivers. The seeded simulator (checker/sim/simulate.py) and the
explorer (checker/explore/search.py) drive the same ``Replica`` and ``Client`` classes.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field

from spec import invariants
from vrref.core import durable
from vrref.core.client import Client, Completion
from vrref.core.durable import Durable
from vrref.core.messages import (
    Checkpoint,
    Commit,
    DoViewChange,
    GetState,
    LogEntry,
    Message,
    NewState,
    Prepare,
    PrepareOk,
    Recovery,
    RecoveryResponse,
    Reply,
    Request,
    StartView,
    StartViewChange,
    message_name,
)
from vrref.core.replica import (
    Config,
    Effect,
    Replica,
    Send,
    SendReply,
    Snapshot,
    Timer,
    disk_snapshot,
)
from vrref.core.statemachine import EchoLog, StateMachine

Address = tuple[str, int]  # ("replica", i) or ("client", client_id)


class InvariantViolation(AssertionError):
    """A safety property failed; the message names it and the event that broke it."""


@dataclass(frozen=True, slots=True)
class InFlight:
    src: Address
    dst: Address
    message: Message


def describe(message: Message) -> str:
    """A message in the paper's words, short enough for a trace line."""
    name = message_name(message)
    match message:
        case Request():
            detail = f"c={message.client_id} s={message.request_number} op={message.op}"
        case Prepare():
            detail = (
                f"v={message.view} n={message.op_number} k={message.commit_number} "
                f"entries={len(message.entries)}"
            )
        case PrepareOk():
            detail = f"v={message.view} n={message.op_number} i={message.replica}"
        case Commit():
            detail = f"v={message.view} k={message.commit_number}"
        case Reply():
            detail = (
                f"v={message.view} c={message.client_id} s={message.request_number} "
                f"x={message.result}"
            )
        case StartViewChange():
            detail = f"v={message.view} i={message.replica}"
        case DoViewChange():
            detail = (
                f"v={message.view} v'={message.last_normal_view} n={message.op_number} "
                f"k={message.commit_number} i={message.replica}"
            )
        case StartView():
            detail = f"v={message.view} n={message.op_number} k={message.commit_number}"
        case Recovery():
            detail = f"i={message.replica} x={message.nonce}"
        case RecoveryResponse():
            primary = " (primary)" if message.log is not None else ""
            detail = f"v={message.view} x={message.nonce} j={message.replica}{primary}"
        case GetState():
            detail = f"v={message.view} n'={message.op_number} i={message.replica}"
        case NewState():
            detail = (
                f"v={message.view} after={message.after_op_number} n={message.op_number} "
                f"k={message.commit_number}"
            )
    return f"{name}<{detail}>"


def _name(address: Address) -> str:
    return f"{'r' if address[0] == 'replica' else 'c'}{address[1]}"


@dataclass
class Cluster:
    """A cluster of ``config.replica_count`` replicas and some clients, all in memory."""

    config: Config
    service_factory: Callable[[], StateMachine] = EchoLog
    client_ids: Sequence[int] = (1,)
    check: bool = True
    seed: int | None = None
    """When set, ``run`` delivers messages in a seeded random order instead of FIFO."""
    replica_class: type[Replica] = Replica
    """The core to run: ``Replica``, or a mutant of it (checker/mutants.py)."""
    durable: bool = False
    """Replicas persist (R20): each has a disk built from its persist effects with
    ``vrref.core.durable.apply``; a crash keeps the disk and a restart resumes from it."""
    replicas: list[Replica | None] = field(init=False)
    disks: list[Durable] = field(init=False, default_factory=list)
    clients: dict[int, Client] = field(init=False)
    network: list[InFlight] = field(init=False, default_factory=list)
    completions: list[tuple[int, Completion]] = field(init=False, default_factory=list)
    acknowledged: dict[Hashable, int] = field(init=False, default_factory=dict)
    trace: list[str] = field(init=False, default_factory=list)
    ticks: int = field(init=False, default=0)
    blocked: set[frozenset[int]] = field(init=False, default_factory=set)
    _nonce: int = field(init=False, default=0)
    _digests: dict[tuple[object, tuple[invariants.Entry, ...]], str] = field(
        init=False, default_factory=dict, repr=False
    )
    _restored: dict[Checkpoint, StateMachine] = field(init=False, default_factory=dict, repr=False)
    _rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.replicas = [
            self.replica_class(self.config, i, self.service_factory)
            for i in range(self.config.replica_count)
        ]
        self.clients = {c: Client(c, self.config.replica_count) for c in self.client_ids}
        self._rng = random.Random(self.seed)
        if self.durable:
            self.disks = [durable.EMPTY for _ in self.replicas]

    # ------------------------------------------------------------------ inspection

    def replica(self, i: int) -> Replica:
        r = self.replicas[i]
        assert r is not None, f"replica {i} is crashed"
        return r

    def snapshots(self) -> list[Snapshot]:
        return [r.snapshot() for r in self.replicas if r is not None]

    def primary_normal(self) -> int | None:
        """The replica that is normal and primary in the highest view, if any."""
        best: Replica | None = None
        for r in self.replicas:
            normal_primary = r is not None and r.status.value == "normal" and r.is_primary
            if normal_primary and r is not None and (best is None or r.view > best.view):
                best = r
        return None if best is None else best.replica

    def log(self, line: str) -> None:
        self.trace.append(f"[t={self.ticks:>3}] {line}")

    # ------------------------------------------------------------------ client side

    def submit(self, client_id: int, op: str) -> None:
        sends = self.clients[client_id].submit(op)
        self.log(f"c{client_id} submits {op!r}")
        self._route(("client", client_id), sends)

    def result_of(self, client_id: int, request_number: int) -> str | None:
        for c, completion in self.completions:
            if c == client_id and completion.request_number == request_number:
                return completion.result
        return None

    # ------------------------------------------------------------------ events

    def deliver(self, index: int = 0, *, crash_after: int | None = None) -> None:
        """Delivers the message at ``index`` of the network (FIFO by default). With
        ``crash_after`` the receiver crashes after performing that many of the event's
        effects: a crash in the middle of a write, or between a write and its fsync, loses
        the persist effect being made and all that follows it (R20)."""
        item = self.network.pop(index)
        kind, dst = item.dst
        if frozenset((item.src, item.dst)) in self._blocked_pairs():
            self.log(f"{_name(item.src)} -x {_name(item.dst)} {describe(item.message)} (cut)")
            return
        if kind == "client":
            client = self.clients[dst]
            assert isinstance(item.message, Reply)
            completion = client.on_reply(item.message)
            if completion is not None:
                self.completions.append((dst, completion))
                self.log(f"c{dst} <- {describe(item.message)}: done")
            return
        replica = self.replicas[dst]
        if replica is None:
            self.log(f"{_name(item.src)} -> {_name(item.dst)} {describe(item.message)} (down)")
            return
        before = replica.snapshot() if self.check else None
        self.log(f"{_name(item.src)} -> {_name(item.dst)} {describe(item.message)}")
        effects = replica.on_message(item.message)
        if crash_after is not None and crash_after < len(effects):
            self._crash_during(dst, before, effects, crash_after)
            return
        self._after(dst, before, effects)

    def run(
        self, max_steps: int = 100_000, *, drop: Callable[[InFlight], bool] | None = None
    ) -> int:
        """Delivers messages until none is in flight; returns how many were delivered.
        Messages matching ``drop`` are lost as soon as they are sent."""
        steps = 0
        while self.network:
            if drop is not None:
                self.drop(drop)
                if not self.network:
                    break
            if steps >= max_steps:
                raise RuntimeError(f"network not quiet after {max_steps} deliveries")
            index = self._rng.randrange(len(self.network)) if self.seed is not None else 0
            self.deliver(index)
            steps += 1
        return steps

    def tick(self, count: int = 1, *, run: bool = True) -> None:
        """Advances every live replica's and client's clock, delivering in between."""
        for _ in range(count):
            self.ticks += 1
            for i, replica in enumerate(self.replicas):
                if replica is not None:
                    before = replica.snapshot() if self.check else None
                    self._after(i, before, replica.on_tick())
            for client_id, client in self.clients.items():
                self._route(("client", client_id), client.on_tick())
            if run:
                self.run()

    def run_until(self, condition: Callable[[], bool], ticks_max: int = 200) -> bool:
        """Runs and ticks until ``condition`` holds; False if it never did."""
        self.run()
        for _ in range(ticks_max):
            if condition():
                return True
            self.tick()
        return condition()

    def timeout(self, i: int, timer: Timer) -> None:
        """Fires one armed timer at replica i now."""
        replica = self.replica(i)
        before = replica.snapshot() if self.check else None
        self.log(f"r{i} {timer} timeout")
        self._after(i, before, replica.on_timeout(timer))

    def crash(self, i: int) -> None:
        """Replica i stops and loses all its state (VRR's model of a failure), but for its
        disk in a durable cluster."""
        self.replicas[i] = None
        self.log(f"r{i} CRASHES ({'disk kept' if self.durable else 'state lost'})")

    def restart(self, i: int) -> None:
        """Replica i restarts: from its disk in a durable cluster (``Replica.restarted``),
        else without state, recovering (§4.3) with a fresh nonce."""
        assert self.replicas[i] is None
        if self.durable:
            replica, effects = self.replica_class.restarted(
                self.config, i, self.service_factory, self.disks[i]
            )
            self.replicas[i] = replica
            self.log(f"r{i} restarts from its disk (view {replica.view}, op {replica.op_number})")
            self._after(i, None, effects)
            return
        self._nonce += 1
        replica, effects = self.replica_class.recovering(
            self.config, i, self.service_factory, nonce=1000 + self._nonce
        )
        self.replicas[i] = replica
        self.log(f"r{i} restarts and sends RECOVERY (nonce {1000 + self._nonce})")
        self._after(i, None, effects)

    def drop(self, predicate: Callable[[InFlight], bool]) -> int:
        """Drops every message in flight that matches; returns how many."""
        kept = [m for m in self.network if not predicate(m)]
        dropped = len(self.network) - len(kept)
        self.network = kept
        if dropped:
            self.log(f"network drops {dropped} message(s)")
        return dropped

    def duplicate(self, predicate: Callable[[InFlight], bool]) -> int:
        """Duplicates every message in flight that matches."""
        extra = [m for m in self.network if predicate(m)]
        self.network.extend(extra)
        return len(extra)

    def partition(self, *groups: Sequence[int]) -> None:
        """Cuts replica links between groups (clients reach everyone); heal() undoes it."""
        self.blocked = set()
        for i, a in enumerate(groups):
            for b in groups[i + 1 :]:
                for x in a:
                    for y in b:
                        self.blocked.add(frozenset((x, y)))
        self.log(f"network partitioned into {[list(g) for g in groups]}")

    def heal(self) -> None:
        self.blocked = set()
        self.log("network healed")

    # ------------------------------------------------------------------ internals

    def _blocked_pairs(self) -> set[frozenset[Address]]:
        return {frozenset((("replica", a), ("replica", b))) for a, b in map(sorted, self.blocked)}

    def _after(self, i: int, before: Snapshot | None, effects: list[Effect]) -> None:
        replica = self.replicas[i]
        assert replica is not None
        self._acknowledge(replica, before, effects)
        self._route(("replica", i), effects)
        if self.durable and replica.status.value != "recovering":
            assert self.disks[i] == replica.durable(), "the disk is not the durable state"
        if self.check:
            self.check_invariants(before, replica.snapshot())

    def _acknowledge(
        self, replica: Replica, before: Snapshot | None, effects: Sequence[Effect]
    ) -> None:
        """Records the op-number of each request a REPLY acknowledges (looked up in the log
        before the event too: a checkpoint may have covered it since)."""
        for effect in effects:
            if isinstance(effect, SendReply):
                request = (effect.reply.client_id, effect.reply.request_number)
                logs: list[tuple[int, Sequence[LogEntry]]] = [(replica.log_start, replica.log)]
                if before is not None:
                    logs.append((before.log_start, before.log))
                for start, log in logs:
                    found = next(
                        (
                            (position, entry)
                            for position, entry in enumerate(log, start=start + 1)
                            if (entry.request.client_id, entry.request.request_number) == request
                        ),
                        None,
                    )
                    if found is not None:
                        self.acknowledged.setdefault(found[1].request, found[0])
                        break

    def _crash_during(
        self, i: int, before: Snapshot | None, effects: list[Effect], done: int
    ) -> None:
        """Replica i performs the first ``done`` effects of an event, then crashes."""
        replica = self.replicas[i]
        assert replica is not None
        performed = effects[:done]
        self._acknowledge(replica, before, performed)
        self._route(("replica", i), performed)
        self.replicas[i] = None
        self.log(f"r{i} CRASHES after {done} of {len(effects)} effects")
        if self.check:
            self.check_invariants()

    def check_invariants(
        self, before: Snapshot | None = None, after: Snapshot | None = None
    ) -> None:
        cluster = invariants.ClusterState(
            replicas=self.snapshots(),
            replica_count=self.config.replica_count,
            acknowledged=self.acknowledged,
            digest_of=self._digest_of,
            disks=[
                disk_snapshot(i, disk)
                for i, disk in enumerate(self.disks)
                if self.replicas[i] is None
            ],
        )
        problems = [str(found) for found in invariants.check_state(cluster)]
        if before is not None and after is not None:
            problems += [str(found) for found in invariants.check_step(before, after)]
        if problems:
            raise InvariantViolation("; ".join(problems) + "\n" + "\n".join(self.trace[-30:]))

    def _digest_of(self, checkpoint: object, entries: Sequence[invariants.Entry]) -> str:
        """The digest after ``entries`` from ``checkpoint`` (memoized: the invariants ask
        after every event, and restoring a zone from its snapshot is slow)."""
        key = (checkpoint, tuple(entries))
        digest = self._digests.get(key)
        if digest is not None:
            return digest
        service = self.service_factory()
        if checkpoint is not None:
            assert isinstance(checkpoint, Checkpoint)
            restored = self._restored.get(checkpoint)
            if restored is None:
                restored = self._restored[checkpoint] = service.restore(checkpoint.service)
            service = restored.clone()
        for entry in entries:
            request = entry.request
            assert isinstance(request, Request)
            service.apply(request.op)
        digest = self._digests[key] = service.digest()
        return digest

    def _route(self, src: Address, effects: Sequence[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, SendReply):
                dst: Address = ("client", effect.reply.client_id)
                self.network.append(InFlight(src, dst, effect.reply))
            elif isinstance(effect, Send):
                self.network.append(InFlight(src, ("replica", effect.to), effect.message))
            elif self.durable:
                self.disks[src[1]] = durable.apply(self.disks[src[1]], effect)
