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
from vrref.core.client import Client, Completion
from vrref.core.messages import (
    Commit,
    DoViewChange,
    GetState,
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
from vrref.core.replica import Config, Effect, Replica, Send, SendReply, Snapshot, Timer
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
    replicas: list[Replica | None] = field(init=False)
    clients: dict[int, Client] = field(init=False)
    network: list[InFlight] = field(init=False, default_factory=list)
    completions: list[tuple[int, Completion]] = field(init=False, default_factory=list)
    acknowledged: dict[Hashable, int] = field(init=False, default_factory=dict)
    trace: list[str] = field(init=False, default_factory=list)
    ticks: int = field(init=False, default=0)
    blocked: set[frozenset[int]] = field(init=False, default_factory=set)
    _nonce: int = field(init=False, default=0)
    _rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.replicas = [
            self.replica_class(self.config, i, self.service_factory)
            for i in range(self.config.replica_count)
        ]
        self.clients = {c: Client(c, self.config.replica_count) for c in self.client_ids}
        self._rng = random.Random(self.seed)

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

    def deliver(self, index: int = 0) -> None:
        """Delivers the message at ``index`` of the network (FIFO by default)."""
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
        """Replica i stops and loses all its state (VRR's model of a failure)."""
        self.replicas[i] = None
        self.log(f"r{i} CRASHES (state lost)")

    def restart(self, i: int) -> None:
        """Replica i restarts without state and recovers (§4.3) with a fresh nonce."""
        assert self.replicas[i] is None
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
        for effect in effects:
            if isinstance(effect, SendReply):
                request = (effect.reply.client_id, effect.reply.request_number)
                for position, entry in enumerate(replica.log, start=1):
                    key = (entry.request.client_id, entry.request.request_number)
                    if key == request:
                        self.acknowledged.setdefault(entry.request, position)
                        break
        self._route(("replica", i), effects)
        if self.check:
            self.check_invariants(before, replica.snapshot())

    def check_invariants(
        self, before: Snapshot | None = None, after: Snapshot | None = None
    ) -> None:
        cluster = invariants.ClusterState(
            replicas=self.snapshots(),
            replica_count=self.config.replica_count,
            acknowledged=self.acknowledged,
            digest_of=self._digest_of,
        )
        problems = [str(found) for found in invariants.check_state(cluster)]
        if before is not None and after is not None:
            problems += [str(found) for found in invariants.check_step(before, after)]
        if problems:
            raise InvariantViolation("; ".join(problems) + "\n" + "\n".join(self.trace[-30:]))

    def _digest_of(self, entries: Sequence[invariants.Entry]) -> str:
        service = self.service_factory()
        for entry in entries:
            request = entry.request
            assert isinstance(request, Request)
            service.apply(request.op)
        return service.digest()

    def _route(self, src: Address, effects: Sequence[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, SendReply):
                dst: Address = ("client", effect.reply.client_id)
                self.network.append(InFlight(src, dst, effect.reply))
            else:
                assert isinstance(effect, Send)
                self.network.append(InFlight(src, ("replica", effect.to), effect.message))
