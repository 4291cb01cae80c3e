"""The VR model for the explorer: the real replica and client cores on a model network.

A global state is the replicas (``Replica`` objects, or None for a crashed one), the client
proxies, the messages in flight, and a few counters that the bounds need. Actions are the
events of the real system, named as in the paper and the history format, one dataclass
each (``Action`` is their union): ``Deliver`` a message, ``Drop`` one (loss), ``Duplicate``
one (deliver it and keep it in flight), ``Timeout`` an armed timer at a replica, ``Crash`` a
replica (it loses its state), ``Restart`` it into recovery, ``ClientRequest`` a new client
operation, and ``ClientTimeout``.

Next states are computed by cloning the one replica or client that the action touches and
calling its real handler: the protocol code explored is the code that ships. States are
treated as immutable values: nothing reachable from a state is mutated after it is made.

The network is a set, not a multiset: sending a message identical to one already in flight
changes nothing. Duplication is the explicit, bounded ``duplicate`` action instead, which
keeps the state space finite (a heartbeat timer that fires forever does not grow it).
Timers fire nondeterministically whenever armed; their durations are abstracted away.

The service is ``EchoLog``, whose results name the position an op executed at, so the
client-observed results can be checked against the committed log: for a log-structured
service that is linearizability (each completed op takes effect at its log position, and an
op invoked after another completed is appended after it).
"""

from __future__ import annotations

import functools
import hashlib
import operator
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields, is_dataclass, replace
from typing import Any, ClassVar, Final, TypeAlias, assert_never, cast

from checker.explore.vr import reductions
from spec import invariants
from vrref.core import durable
from vrref.core.client import Client, ClientKey
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
    RecoveryResponse,
    Reply,
    Request,
    StartView,
    StartViewChange,
)
from vrref.core.replica import (
    Config,
    Effect,
    Replica,
    Send,
    SendReply,
    Status,
    Timer,
    disk_snapshot,
    relabel_checkpoint,
    relabel_durable,
)
from vrref.core.statemachine import EchoLog

Address = tuple[str, int]  # ("replica", i) or ("client", client_id)
InFlight = tuple[Address, Message]


@dataclass(frozen=True, slots=True, kw_only=True)
class Bounds:
    """The explorer's limits for the VR model, in one place."""

    replica_count: int = 3
    client_count: int = 1
    ops_per_client: int = 2
    view_number_max: int = 1
    crash_count_max: int = 0
    drop_count_max: int = 1
    duplicate_count_max: int = 1
    client_timeouts: bool = False
    """Whether a client may time out and resend to every replica."""
    crash_replicas: tuple[int, ...] | None = None
    """The replicas that may crash (None: any). Like every bound, a restriction: a
    violation found within it is a real one; its absence proves nothing outside it."""
    view_change_replicas: tuple[int, ...] | None = None
    """The replicas whose own timers may start or restart a view change (None: any);
    others still join a view change when they hear of one."""
    resend_count_max: int = 1
    """How often, in all, the resending timers (heartbeat, view_change_resend,
    state_transfer, recovery) may fire. Timers that change the protocol state on their own
    (a backup's primary timeout, a stalled view change) are bounded by view_number_max."""
    checkpoint_ops: int | None = None
    """``Config.checkpoint_ops`` (None: the Config default, which these bounds never reach);
    1 or 2 makes every op or every other one a checkpoint (§5.1)."""
    durable: bool = False
    """Replicas persist (R20): a crash keeps what the persist effects made durable, a
    restart resumes from it (``Replica.restarted``), and any number of replicas may be down
    at once (whole-cluster crashes), within crash_count_max."""


CLIENT_ID_BASE: Final = 100
"""Client c of the model (its index in ``VRState.clients``) has client-id 100 + c."""

VIEW_CHANGE_TIMERS: Final = frozenset({Timer.PRIMARY, Timer.VIEW_CHANGE_STALLED})
"""The timers that start a view change on their own, bounded by ``view_number_max``; the
others resend, bounded by ``resend_count_max``."""


@dataclass(frozen=True, slots=True)
class _InFlightAction:
    """An action on one message in flight: ``to`` the address it is sent to."""

    verb: ClassVar[str]
    """The action's name, and its history event's type."""
    to: Address
    message: Message

    @property
    def item(self) -> InFlight:
        return (self.to, self.message)

    def __str__(self) -> str:
        from checker.sim.cluster import describe

        kind, index = self.to
        return f"{self.verb} {describe(self.message)} to {'r' if kind == 'replica' else 'c'}{index}"


@dataclass(frozen=True, slots=True)
class Deliver(_InFlightAction):
    """The message arrives; it leaves the network."""

    verb: ClassVar[str] = "deliver"


@dataclass(frozen=True, slots=True)
class Drop(_InFlightAction):
    """The message is lost."""

    verb: ClassVar[str] = "drop"


@dataclass(frozen=True, slots=True)
class Duplicate(_InFlightAction):
    """The message arrives and a copy stays in flight."""

    verb: ClassVar[str] = "duplicate"


@dataclass(frozen=True, slots=True)
class Timeout:
    """An armed timer fires at a replica."""

    replica: int
    timer: Timer

    def __str__(self) -> str:
        return f"r{self.replica} {self.timer} timeout"


@dataclass(frozen=True, slots=True)
class Crash:
    """A replica crashes: it loses its state, but for its disk when the cluster is durable."""

    replica: int

    def __str__(self) -> str:
        return f"crash r{self.replica}"


@dataclass(frozen=True, slots=True)
class Restart:
    """A crashed replica restarts: in recovery, or from its disk when the cluster is
    durable."""

    replica: int

    def __str__(self) -> str:
        return f"restart r{self.replica}"


@dataclass(frozen=True, slots=True)
class ClientRequest:
    """Client ``client`` (an index in ``VRState.clients``) invokes a new operation."""

    client: int
    op: str

    def __str__(self) -> str:
        return f"c{self.client} request {self.op!r}"


@dataclass(frozen=True, slots=True)
class ClientTimeout:
    """Client ``client`` (an index in ``VRState.clients``) resends to every replica."""

    client: int

    def __str__(self) -> str:
        return f"client_timeout c{self.client}"


Action: TypeAlias = (
    Deliver | Drop | Duplicate | Timeout | Crash | Restart | ClientRequest | ClientTimeout
)


@dataclass(frozen=True, slots=True, kw_only=True)
class VRState:
    replicas: tuple[Replica | None, ...]
    clients: tuple[Client, ...]
    network: frozenset[InFlight]
    completions: tuple[tuple[int, int, str], ...] = ()
    """(client-id, request-number, result) of every completed request, in order."""
    client_events: tuple[tuple[str, int, str], ...] = ()
    """The clients' history: ("invoke", client-id, op) and ("ok", client-id, result)."""
    disks: tuple[Durable, ...] = ()
    """Each replica's disk when the cluster is durable (built by applying its persist
    effects with vrref/core/durable.py's ``apply``), else empty."""
    ops_submitted: tuple[int, ...] = ()
    crashes: int = 0
    drops: int = 0
    duplicates: int = 0
    resends: int = 0
    recovered: bool = False
    view_changed: bool = False
    committed_in_later_view: bool = False
    violation: str | None = None
    """A transition invariant broken, or an exception raised by the core, on the way here."""
    symmetric: bool = field(default=False, compare=False, repr=False)
    """Set by ``VRModel.canonical``: fingerprint this state up to client permutation."""
    _key: tuple[object, ...] | None = field(default=None, compare=False, repr=False)

    def key(self) -> tuple[object, ...]:
        """The canonical, hashable content of the state (the network as a frozenset)."""
        if self._key is None:
            key = (
                tuple(None if r is None else r.state_key() for r in self.replicas),
                tuple(c.state_key() for c in self.clients),
                self.network,
                self.completions,
                self.client_events,
                self.disks,
                self.ops_submitted,
                counters(self),
            )
            object.__setattr__(self, "_key", key)
            return key
        return self._key


# VRState's fields as client symmetry (``_relabeled_text``) treats them: the replicas, the
# clients, the network and the clients' history name clients, and are relabeled; these
# name none, and are compared as they are. Every field that counts for equality is one or
# the other, so a field added to VRState must be placed here.
_NAMING_NO_CLIENT: Final = (
    "crashes",
    "drops",
    "duplicates",
    "resends",
    "recovered",
    "view_changed",
    "committed_in_later_view",
    "violation",
)
_NAMING_CLIENTS: Final = (
    "replicas",
    "clients",
    "network",
    "completions",
    "client_events",
    "disks",
    "ops_submitted",
)
if {f.name for f in fields(VRState) if f.compare} != {*_NAMING_NO_CLIENT, *_NAMING_CLIENTS}:
    raise TypeError("a field of VRState is missing from _NAMING_NO_CLIENT or _NAMING_CLIENTS")
counters: Final[Callable[[VRState], tuple[object, ...]]] = operator.attrgetter(*_NAMING_NO_CLIENT)
"""The counters and flags of a state: its fields that name no client."""
_client_key_values: Final = operator.attrgetter(*(f.name for f in fields(ClientKey)))


class VRModel:
    """The VR cluster as an explorer model (checker/explore/search.py's Model interface)."""

    def __init__(
        self,
        bounds: Bounds,
        replica_class: type[Replica] = Replica,
        *,
        mutant: str | None = None,
        collect_garbage: bool | None = None,
        check_reductions: bool = False,
    ) -> None:
        self.bounds = bounds
        self.replica_class = replica_class
        self.collect_garbage = True if collect_garbage is None else collect_garbage
        self.check_reductions = check_reductions and self.collect_garbage
        """Deliver every collected message to a clone of its receiver first and require it
        to be ignored (checker/explore/vr/reductions.py): an ALWAYS property of its own."""
        """Remove messages that the receiver can only ignore (``_obsolete``). Each rule is a
        fact about a handler of the real core, and applies only to a receiver whose class
        runs that very handler: a mutant that overrides it keeps its messages, so the
        reduction never hides the bug it looks for."""
        self.mutant = mutant
        """The bug-zoo name of replica_class, if it is one (recorded in histories)."""
        self.config = (
            Config(replica_count=bounds.replica_count)
            if bounds.checkpoint_ops is None
            else Config(replica_count=bounds.replica_count, checkpoint_ops=bounds.checkpoint_ops)
        )
        self._message_digests: dict[InFlight, int] = {}
        self._linearizable: dict[tuple[tuple[str, int, str], ...], bool] = {}
        self._cluster_cache: tuple[VRState, invariants.ClusterState] | None = None
        self._broken_cache: tuple[VRState, frozenset[str]] | None = None

    # ------------------------------------------------------------------ the interface

    def init_states(self) -> list[VRState]:
        replicas = tuple(
            self.replica_class(self.config, i, EchoLog) for i in range(self.bounds.replica_count)
        )
        clients = tuple(
            Client(CLIENT_ID_BASE + c, self.bounds.replica_count)
            for c in range(self.bounds.client_count)
        )
        return [
            VRState(
                replicas=replicas,
                clients=clients,
                network=frozenset(),
                ops_submitted=(0,) * len(clients),
                disks=tuple(r.durable() for r in replicas) if self.bounds.durable else (),
            )
        ]

    def actions(self, state: VRState) -> Iterator[Action]:
        if state.violation is not None:
            return  # a broken state is a dead end: the property reports it
        b = self.bounds
        for to, message in sorted(state.network, key=repr):
            yield Deliver(to, message)
            if state.drops < b.drop_count_max:
                yield Drop(to, message)
            if state.duplicates < b.duplicate_count_max:
                yield Duplicate(to, message)
        for i, r in enumerate(state.replicas):
            if r is None:
                yield Restart(i)
                continue
            for timer in r.armed_timers():
                if timer in VIEW_CHANGE_TIMERS:
                    if r.view >= b.view_number_max:
                        continue  # would start a view beyond the bound
                    if b.view_change_replicas is not None and i not in b.view_change_replicas:
                        continue
                elif state.resends >= b.resend_count_max:
                    continue
                yield Timeout(i, timer)
            down = sum(1 for x in state.replicas if x is None or x.status is Status.RECOVERING)
            may_crash = b.crash_replicas is None or i in b.crash_replicas
            # A durable cluster survives any crash pattern; a diskless one at most f down.
            room = b.durable or down < self.config.f
            if state.crashes < b.crash_count_max and room and may_crash:
                yield Crash(i)
        for c, client in enumerate(state.clients):
            if client.outstanding is None and state.ops_submitted[c] < b.ops_per_client:
                yield ClientRequest(c, f"c{c}.{state.ops_submitted[c] + 1}")
            elif client.outstanding is not None and b.client_timeouts:
                yield ClientTimeout(c)

    def next_state(self, state: VRState, action: Action) -> VRState | None:
        try:
            return self._next(state, action)
        except AssertionError as error:  # the core's own assertions are properties too
            return replace(state, violation=f"{ASSERTION_PREFIX}{error}", _key=None)
        except Exception as error:  # any other exception is a crash of the replica
            crash = f"{ASSERTION_PREFIX}{type(error).__name__}: {error}"
            return replace(state, violation=crash, _key=None)

    def canonical(self, state: VRState) -> VRState:
        """The explorer's symmetry hook. Clients are interchangeable: they differ only in
        their ids and the names of their ops, which the core treats as opaque keys and
        values. The canonical form is taken at the level of the state's content: the
        fingerprint of a state marked here is the least, over every permutation of the
        clients, of the fingerprint of its content with ids and op names relabeled (so two
        states get one fingerprint exactly when one is a relabeling of the other)."""
        if self.bounds.client_count < 2:
            return state
        return replace(state, symmetric=True)

    def fingerprint(self, state: VRState) -> int:
        if state.symmetric:
            return _digest(
                min(_relabeled_text(state, p) for p in self._permutations(len(state.clients)))
            )
        return self._fingerprint(state)

    def _permutations(self, n: int) -> list[tuple[int, ...]]:
        import itertools

        return list(itertools.permutations(range(n)))

    def _fingerprint(self, state: VRState) -> int:
        """A 64-bit fingerprint of the state, stable across processes (blake2b throughout,
        never Python's salted ``hash``; CPython's frozenset hash also collides far too often
        on sets of small tuples). Replicas cache theirs until their next event, messages are
        digested once each, and the network's digest is the sum of its messages' digests,
        so a successor costs little beyond the one replica its action touched."""
        network = 0
        cache = self._message_digests
        for item in state.network:
            digest = cache.get(item)
            if digest is None:
                digest = _digest(repr(item))
                cache[item] = digest
            network += digest
        summary = (
            tuple(0 if r is None else r.fingerprint() for r in state.replicas),
            tuple(_client_key_values(c.state_key()) for c in state.clients),
            network & _MASK,
            state.completions,
            state.client_events,
            self._disks_digest(state),
            state.ops_submitted,
            counters(state),
        )
        return _digest(repr(summary))

    def _disks_digest(self, state: VRState) -> int:
        """The disks' digest: a live replica's disk is what its own persist effects made,
        which ``persist_effects_match_state`` requires to be ``Replica.durable()``, a
        function of the replica's state; so only the disks of crashed replicas, and disks
        that differ from their replica's, are digested."""
        if not state.disks:
            return 0
        parts: list[Durable | None] = []
        for r, disk in zip(state.replicas, state.disks, strict=True):
            if r is not None and r.status is not Status.RECOVERING and disk == r.durable():
                parts.append(None)
            else:
                parts.append(disk)
        return _digest(repr(parts))

    def goals(self) -> dict[str, Callable[[VRState], bool]]:
        """Named search goals for chained searches (``checker.explore.search.chain``): situations
        that a protocol rule exists for, reached first so that a second search can start
        from them."""
        return {
            "two-ops-at-one-replica-only": _two_ops_at_one_replica_only,
            "stale-log-outgrows-newer-view": _stale_log_outgrows_newer_view,
        }

    def explain(self, state: VRState) -> str:
        """Why a state breaks an ALWAYS property, in one line per problem."""
        problems = [state.violation] if state.violation is not None else []
        problems += self.violations(state)
        if not self.linearizable(state):
            problems.append(
                "the client operations are not linearizable: "
                + ", ".join(f"{k} c{c} {t!r}" for k, c, t in state.client_events)
            )
        return "\n".join(problems) if problems else "no property is broken here"

    def describe(self, state: VRState) -> str:
        """The explorer's trace hook: the state in the paper's terms."""
        return describe_state(state)

    def properties(self) -> list[tuple[str, str, Callable[[VRState], bool]]]:
        """(name, "always" | "sometimes", predicate): one ALWAYS property per invariant of
        spec/invariants.py, named after it, then linearizability and the reachability
        goals that show the search is not vacuous."""
        always: list[tuple[str, str, Callable[[VRState], bool]]] = [
            (CORE_RAISES_NOTHING, "always", lambda s: not _is_assertion(s.violation)),
        ]
        if self.check_reductions:
            prop = reductions.PROPERTY
            always.append((prop, "always", functools.partial(_step_holds, prop)))
        for step_invariant in invariants.STEP_INVARIANTS:
            name = step_invariant.__name__
            always.append((name, "always", functools.partial(_step_holds, name)))
        if self.bounds.durable:
            for name in (PERSIST_BEFORE_SENDS, PERSIST_MATCHES_STATE):
                always.append((name, "always", functools.partial(_step_holds, name)))
        for state_invariant in invariants.STATE_INVARIANTS:
            always.append(
                (
                    state_invariant.__name__,
                    "always",
                    functools.partial(self._state_holds, state_invariant),
                )
            )
        return (
            always
            + [
                (
                    "the client operations are linearizable (checker/lin/wgl.py)",
                    "always",
                    self.linearizable,
                ),
            ]
            + (
                [
                    ("a view change completes", "sometimes", lambda s: s.view_changed),
                    (
                        "an op commits in a view later than the one it was prepared in",
                        "sometimes",
                        lambda s: s.committed_in_later_view,
                    ),
                ]
                if self.bounds.view_number_max > 0
                else []
            )
            + [
                (
                    "every client request completes",
                    "sometimes",
                    lambda s: (
                        len(s.completions) == self.bounds.client_count * self.bounds.ops_per_client
                    ),
                ),
            ]
            + (
                [("a recovery completes", "sometimes", lambda s: s.recovered)]
                if self.bounds.crash_count_max > 0
                else []
            )
        )

    # ------------------------------------------------------------------ invariants

    def linearizable(self, state: VRState) -> bool:
        """The linearizability checker's verdict on the clients' history so far, against
        the sequential EchoLog (memoized: few distinct client histories exist)."""
        events = state.client_events
        verdict = self._linearizable.get(events)
        if verdict is None:
            from checker.lin import wgl as lin
            from checker.lin.models import EchoLogSpec

            verdict = isinstance(
                lin.check(EchoLogSpec(), client_operations(events), timeout_s=None), lin.Ok
            )
            self._linearizable[events] = verdict
        return verdict

    def cluster_state(self, state: VRState) -> invariants.ClusterState:
        """The global state as spec/invariants.py judges it (the last one is memoized: the
        explorer asks every property about the same state in turn)."""
        cached = self._cluster_cache
        if cached is not None and cached[0] is state:
            return cached[1]
        acknowledged: dict[object, int] = {}
        for client_id, number, result in state.completions:
            position, _, op = result.partition(":")
            request = Request(op=op, client_id=client_id, request_number=number)
            acknowledged[request] = int(position)
        disks = [
            disk_snapshot(i, disk)
            for i, disk in enumerate(state.disks)
            if state.replicas[i] is None
        ]
        cluster = invariants.ClusterState(
            replicas=[r.snapshot() for r in state.replicas if r is not None],
            replica_count=self.bounds.replica_count,
            acknowledged=acknowledged,
            digest_of=_echo_digest,
            disks=disks,
        )
        self._cluster_cache = (state, cluster)
        return cluster

    def _state_holds(self, invariant: invariants.StateInvariant, state: VRState) -> bool:
        """Whether ``invariant`` holds in ``state``: every state invariant is evaluated once
        per state, in one pass, and each property looks up its own verdict."""
        cached = self._broken_cache
        if cached is None or cached[0] is not state:
            broken = {f.invariant for f in invariants.check_state(self.cluster_state(state))}
            cached = self._broken_cache = (state, frozenset(broken))
        return invariant.__name__ not in cached[1]

    def violations(self, state: VRState) -> list[str]:
        """Every state invariant of spec/invariants.py broken in this global state."""
        return [str(found) for found in invariants.check_state(self.cluster_state(state))]

    # ------------------------------------------------------------------ transitions

    def _next(self, state: VRState, action: Action) -> VRState | None:
        replicas = list(state.replicas)
        clients = list(state.clients)
        network = set(state.network)
        changes: dict[str, Any] = {}
        effects: list[tuple[Address, Sequence[Effect]]] = []
        touched: int | None = None

        match action:
            case Deliver() | Duplicate():
                item = action.item
                if item not in network:
                    return None
                if isinstance(action, Deliver):
                    network.discard(item)
                else:
                    changes["duplicates"] = state.duplicates + 1
                (kind, dst), message = action.to, action.message
                if kind == "client":
                    c = next(i for i, cl in enumerate(clients) if cl.client_id == dst)
                    client = clients[c].clone()
                    assert isinstance(message, Reply)
                    completion = client.on_reply(message)
                    clients[c] = client
                    if completion is not None:
                        changes["completions"] = (
                            *state.completions,
                            (client.client_id, completion.request_number, completion.result),
                        )
                        changes["client_events"] = (
                            *state.client_events,
                            ("ok", client.client_id, completion.result),
                        )
                else:
                    replica = replicas[dst]
                    if replica is not None:
                        touched = dst
                        replica = replica.clone()
                        effects.append((("replica", dst), replica.on_message(message)))
                        replicas[dst] = replica
            case Drop():
                if action.item not in network:
                    return None
                network.discard(action.item)
                changes["drops"] = state.drops + 1
            case Timeout(replica=i, timer=timer):
                replica = replicas[i]
                if replica is None or timer not in replica.timers:
                    return None
                touched = i
                if timer not in VIEW_CHANGE_TIMERS:
                    changes["resends"] = state.resends + 1
                replica = replica.clone()
                effects.append((("replica", i), replica.on_timeout(timer)))
                replicas[i] = replica
            case Crash(replica=i):
                replicas[i] = None
                changes["crashes"] = state.crashes + 1
            case Restart(replica=i):
                if replicas[i] is not None:
                    return None
                if self.bounds.durable:
                    replica, resumed = self.replica_class.restarted(
                        self.config, i, EchoLog, state.disks[i]
                    )
                    changes["recovered"] = True
                else:
                    replica, resumed = self.replica_class.recovering(
                        self.config, i, EchoLog, nonce=1000 + state.crashes
                    )
                replicas[i] = replica
                touched = i
                effects.append((("replica", i), resumed))
            case ClientRequest(client=c, op=op):
                client = clients[c].clone()
                effects.append((("client", client.client_id), client.submit(op)))
                clients[c] = client
                submitted = list(state.ops_submitted)
                submitted[c] += 1
                changes["ops_submitted"] = tuple(submitted)
                changes["client_events"] = (
                    *state.client_events,
                    ("invoke", client.client_id, op),
                )
            case ClientTimeout(client=c):
                client = clients[c].clone()
                effects.append((("client", client.client_id), client.on_timeout()))
                clients[c] = client
            case _:
                assert_never(action)

        sent: list[InFlight] = []
        disks = list(state.disks)
        for (src_kind, src), produced in effects:
            sending = False
            for effect in produced:
                if isinstance(effect, SendReply):
                    sent.append((("client", effect.reply.client_id), effect.reply))
                    sending = True
                elif isinstance(effect, Send):
                    sent.append((("replica", effect.to), effect.message))
                    sending = True
                elif disks:
                    assert src_kind == "replica"
                    if sending:
                        changes.setdefault(
                            "violation",
                            f"{PERSIST_BEFORE_SENDS}: r{src} sent a message before {effect!r:.80}",
                        )
                    disks[src] = durable.apply(disks[src], effect)
        if disks:
            changes["disks"] = tuple(disks)
            if touched is not None:
                after_replica = replicas[touched]
                assert after_replica is not None
                if after_replica.status is not Status.RECOVERING and (
                    disks[touched] != after_replica.durable()
                ):
                    changes.setdefault(
                        "violation",
                        f"{PERSIST_MATCHES_STATE}: r{touched}'s disk is not its durable state",
                    )
        network.update(sent)
        if self.collect_garbage:
            # Whether a message is obsolete depends on its receiver's state alone, and no
            # message in the parent state was: only new ones and those to a receiver this
            # action changed need a look.
            changed: set[Address] = {dst for dst, _ in sent}
            if touched is not None:
                changed.add(("replica", touched))
            match action:
                case ClientRequest(client=c) | ClientTimeout(client=c):
                    changed.add(("client", clients[c].client_id))
                case Deliver(to=to) | Duplicate(to=to) if to[0] == "client":
                    changed.add(to)
                case Deliver() | Duplicate() | Drop() | Timeout() | Crash() | Restart():
                    pass  # a replica's change is ``touched``
                case _:
                    assert_never(action)
            stale = [m for m in network if m[0] in changed and _obsolete(m, replicas, clients)]
            if self.check_reductions:
                for item in stale:
                    problem = reductions.collected_but_not_ignored(item, replicas, clients)
                    if problem is not None:
                        changes["violation"] = f"{reductions.PROPERTY}: {problem}"
                        break
            network.difference_update(stale)

        if touched is not None:
            before, after = state.replicas[touched], replicas[touched]
            assert after is not None
            if before is not None:
                found = invariants.check_step(before.snapshot(), after.snapshot())
                if found:
                    changes.setdefault("violation", str(found[0]))
                newly = after.entries(
                    max(before.commit_number, after.log_start), after.commit_number
                )
                primary_in_view = all(
                    r.status is Status.NORMAL and r.is_primary and r.view == after.view
                    for r in (before, after)
                )
                if primary_in_view and any(e.view < after.view for e in newly):
                    changes["committed_in_later_view"] = True
                if before.status is Status.RECOVERING and after.status is Status.NORMAL:
                    changes["recovered"] = True
            if after.status is Status.NORMAL and after.view > 0:
                changes["view_changed"] = True
        for flag in ("recovered", "view_changed", "committed_in_later_view"):
            if getattr(state, flag) and flag in changes:
                del changes[flag]
        return replace(
            state,
            replicas=tuple(replicas),
            clients=tuple(clients),
            network=frozenset(network),
            _key=None,
            **changes,
        )


CORE_RAISES_NOTHING = "the core raises no assertion"
PERSIST_BEFORE_SENDS = "persist effects precede the messages of their event"
"""R20 (spec/vr.md): the driver contract, checked on every event of a durable cluster."""
PERSIST_MATCHES_STATE = "persist_effects_match_state"
"""R20: a replica's persist effects make durable exactly ``Replica.durable()``."""
ASSERTION_PREFIX = "assertion in the core: "


def _is_assertion(violation: str | None) -> bool:
    return violation is not None and violation.startswith(ASSERTION_PREFIX)


def _step_holds(name: str, state: VRState) -> bool:
    """A step invariant broken on the way to ``state`` is recorded in its ``violation``."""
    return state.violation is None or not state.violation.startswith(f"{name}: ")


_MASK = 0xFFFF_FFFF_FFFF_FFFF


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


# Messages that every handler ignores once the receiver is in a later view.
_VIEW_SCOPED = (
    Prepare,
    PrepareOk,
    Commit,
    StartViewChange,
    DoViewChange,
    StartView,
    GetState,
    NewState,
)


# The handlers (and the decisions they delegate to) that each garbage-collection rule of
# ``_obsolete`` rests on.
_RULE_HANDLERS: dict[type, tuple[str, ...]] = {
    Prepare: ("on_prepare",),
    PrepareOk: ("on_prepare_ok",),
    Commit: ("on_commit",),
    StartViewChange: ("on_start_view_change",),
    DoViewChange: ("on_do_view_change",),
    StartView: ("on_start_view",),
    GetState: ("on_get_state",),
    NewState: ("on_new_state",),
    RecoveryResponse: ("on_recovery_response", "_nonce_matches"),
}
_real_cache: dict[tuple[type, type], bool] = {}


def _real_handlers(kind: type[Replica], message: type) -> bool:
    """Whether ``kind`` handles ``message`` with the real core's code (not a mutant's)."""
    key = (kind, message)
    verdict = _real_cache.get(key)
    if verdict is None:
        names = (*_RULE_HANDLERS.get(message, ()), "_dispatch", "on_message")
        verdict = all(getattr(kind, n) is getattr(Replica, n) for n in names)
        _real_cache[key] = verdict
    return verdict


def _obsolete(
    item: InFlight, replicas: Sequence[Replica | None], clients: Sequence[Client]
) -> bool:
    """True when delivering the message could only be ignored, now and forever, so removing
    it is equivalent to delivering it (the explorer's garbage collection: a reduction, not a
    change of behaviour). Each rule rests on a monotonicity of the receiver's state while it
    keeps it: views never decrease, acks and commit-numbers never decrease within a view,
    a recovery nonce is never reused, a client's request-number only grows. A crashed or
    recovering receiver is left out: its state starts over."""
    (kind, dst), message = item
    if kind == "client":
        client = next(c for c in clients if c.client_id == dst)
        assert isinstance(message, Reply)
        outstanding = client.outstanding
        return message.request_number < client.request_number or (
            outstanding is None and message.request_number == client.request_number
        )
    receiver = replicas[dst]
    if receiver is None or receiver.status is Status.RECOVERING:
        return False
    if not _real_handlers(type(receiver), type(message)):
        return False
    if isinstance(message, RecoveryResponse):
        return True  # only a recovering replica listens, with a nonce never used before
    if not isinstance(message, _VIEW_SCOPED):
        return False
    if message.view < receiver.view:
        return True
    normal_in_view = receiver.status is Status.NORMAL and message.view == receiver.view
    match message:
        case StartViewChange() | StartView():
            return normal_in_view
        case PrepareOk():
            return (
                normal_in_view
                and receiver.is_primary
                and receiver.acks.get(message.replica, 0) >= message.op_number
            )
        case Commit():
            return (
                normal_in_view
                and not receiver.is_primary
                and receiver.commit_number >= message.commit_number
            )
        case _:
            return False


def _echo_digest(checkpoint: object, entries: Sequence[invariants.Entry]) -> str:
    service = EchoLog()
    if checkpoint is not None:
        assert isinstance(checkpoint, Checkpoint)
        service = service.restore(checkpoint.service)
    for entry in entries:
        request = entry.request
        assert isinstance(request, Request)
        service.apply(request.op)
    return service.digest()


def _two_ops_at_one_replica_only(state: VRState) -> bool:
    """One replica has prepared two ops that no other replica has heard of."""
    ops = sorted(r.op_number for r in state.replicas if r is not None)
    return len(ops) == len(state.replicas) and ops[-1] >= 2 and ops[-2] == 0


# ---------------------------------------------------------------------- client symmetry

_OP = re.compile(r"^c(\d+)\.(\d+)$")


@dataclass(frozen=True, slots=True)
class ClientPermutation:
    """Client c renamed perm[c]: its client-id ``CLIENT_ID_BASE + c`` and the names of its
    ops "c<c>.<k>" alike, and so the results "<position>:<op>" of its ops (the core's
    ``ClientRenaming``). Other client-ids and ops are left as they are."""

    perm: tuple[int, ...]

    def client_id(self, client_id: int) -> int:
        c = client_id - CLIENT_ID_BASE
        return CLIENT_ID_BASE + self.perm[c] if 0 <= c < len(self.perm) else client_id

    def op(self, op: str) -> str:
        match = _OP.match(op)
        if match is None:
            return op
        return f"c{self.perm[int(match.group(1))]}.{match.group(2)}"

    def result(self, result: str) -> str:
        position, sep, rest = result.partition(":")
        return f"{position}{sep}{self.op(rest)}" if sep else self.op(result)

    def service_digest(self, digest: str) -> str:
        # The model's service is EchoLog, whose digest is its ops joined by "|" (the
        # model's ops, "c<c>.<k>", contain none).
        return "|".join(self.op(op) for op in digest.split("|"))

    def service_snapshot(self, snapshot: str) -> str:
        # EchoLog's snapshot is its digest.
        return self.service_digest(snapshot)

    def message(self, v: object) -> object:
        """A message in flight (or any value in one), renamed."""
        match v:
            case Request():
                return Request(
                    op=self.op(v.op),
                    client_id=self.client_id(v.client_id),
                    request_number=v.request_number,
                )
            case Reply():
                return replace(
                    v, client_id=self.client_id(v.client_id), result=self.result(v.result)
                )
            case LogEntry():
                return LogEntry(view=v.view, request=cast(Request, self.message(v.request)))
            case Checkpoint():
                return relabel_checkpoint(v, self)
            case tuple():
                return tuple(self.message(x) for x in v)
            case _ if is_dataclass(v) and not isinstance(v, type):
                return replace(v, **{f.name: self.message(getattr(v, f.name)) for f in fields(v)})
            case _:
                return v


def _relabeled_text(state: VRState, perm: Sequence[int]) -> str:
    """The content of ``state`` with client c renamed perm[c] (``ClientPermutation``), as
    canonical text."""
    rename = ClientPermutation(tuple(perm))
    clients: list[object] = [None] * len(state.clients)
    for c, client in enumerate(state.clients):
        clients[perm[c]] = client.state_key().relabel(rename)
    network = sorted(
        repr(((kind, rename.client_id(dst) if kind == "client" else dst), rename.message(message)))
        for (kind, dst), message in state.network
    )
    submitted: list[int] = [0] * len(state.ops_submitted)
    for c, count in enumerate(state.ops_submitted):
        submitted[perm[c]] = count
    content = (
        tuple(None if r is None else r.state_key().relabel(rename) for r in state.replicas),
        tuple(clients),
        tuple(network),
        tuple((rename.client_id(c), n, rename.result(x)) for c, n, x in state.completions),
        tuple(
            (kind, rename.client_id(c), rename.op(x) if kind == "invoke" else rename.result(x))
            for kind, c, x in state.client_events
        ),
        tuple(
            None
            if r is not None and r.status is not Status.RECOVERING and disk == r.durable()
            else relabel_durable(disk, rename)
            for r, disk in zip(state.replicas, state.disks, strict=False)
        ),
        tuple(submitted),
        counters(state),
    )
    return repr(content)


def _stale_log_outgrows_newer_view(state: VRState) -> bool:
    """A replica still in an older view holds a longer log than a replica of a newer view
    that has committed, at some position, an op the older log has not: the situation in
    which a new primary must prefer v' to op-number (VRR §4.2 step 3)."""
    live = [r for r in state.replicas if r is not None and r.status is not Status.RECOVERING]
    for old in live:
        for new in live:
            if new.last_normal_view <= old.last_normal_view or new.commit_number == 0:
                continue
            if old.op_number <= new.op_number:
                continue
            a, b = old.snapshot(), new.snapshot()
            start = max(a.log_start, b.log_start)
            if any(
                invariants.entry_at(a, n) != invariants.entry_at(b, n)
                for n in range(start + 1, new.commit_number + 1)
            ):
                return True
    return False


def client_operations(events: Sequence[tuple[str, int, str]]) -> list[Any]:
    """The clients' history as the linearizability checker's operations: an invocation
    without a completion is indeterminate (it may take effect later, or never)."""
    from checker.lin.wgl import UNKNOWN, Operation

    ops: list[Operation] = []
    open_: dict[int, int] = {}
    for position, (kind, client_id, text) in enumerate(events):
        if kind == "invoke":
            open_[client_id] = len(ops)
            ops.append(
                Operation(
                    id=len(ops),
                    process=client_id,
                    input=("append", text),
                    output=UNKNOWN,
                    call=position,
                    ret=None,
                )
            )
        else:
            index = open_.pop(client_id)
            ops[index] = replace(ops[index], output=text, ret=position)
    return ops


def describe_state(state: VRState) -> str:
    """One line per replica, in the paper's terms, for counterexample traces."""
    lines = []
    for i, r in enumerate(state.replicas):
        if r is None:
            lines.append(f"  r{i}: crashed")
            continue
        ops = ",".join(e.request.op for e in r.log)
        lines.append(
            f"  r{i}: {r.status.value:<11} view={r.view} v'={r.last_normal_view} "
            f"n={r.op_number} k={r.commit_number} log=[{ops}]"
        )
    return "\n".join(lines)
