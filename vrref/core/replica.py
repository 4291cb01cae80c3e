"""The sans-I/O replica of Viewstamped Replication Revisited.

This is the one protocol core of vrref. The threaded runtime, the deterministic simulator,
the explicit-state explorer and the unit tests all drive this very class; none of them has
its own copy of the protocol. So it does no I/O of any kind: no sockets, no threads, no
clock, no randomness. Events go in, effects come out as data:

- ``on_message(message)``: a decoded peer message or a client REQUEST;
- ``on_tick()``: one unit of time passed; armed timers count down and fire;
- ``on_timeout(timer)``: fire one armed ``Timer`` now (the explorer's way of saying "some
  time passed"; it treats every armed timer as able to fire);
- ``Replica.recovering(..., nonce=x)``: a replica restarted without its state; the driver
  supplies the nonce (VRR §4.3), so randomness stays outside.

Each call returns a list of effects (``Send`` to a replica, ``SendReply`` to a client) and
leaves the replica in its new state. The driver delivers the effects however it likes.

The handlers follow the paper (section numbers are VRR's) and one shape (TigerBeetle's):
guard clauses that say why a message is ignored and return, assertions restating what
survived the guards, then the state change. Ignored messages are counted by reason in
``ignored`` so that a driver can surface them.

Where the paper's text is unsafe or silent, the choices are those of ``spec/vr.md`` and the
traps in spec/traps.md, each with a test named after its number:

- State transfer (§5.2, trap 1): a replica that learns of a later view does NOT adopt the
  view or truncate its log when it sends GETSTATE; it keeps its log and its last normal view,
  so it can still take part safely in a later view change, and it replaces the uncommitted
  suffix of its log only when a NEWSTATE of that view arrives. In the same view a NEWSTATE
  only ever extends the log: entries a replica has acknowledged are never dropped.
- Stalled view changes are resent, and a view change that does not complete in time moves
  on to the next view (trap 2). DOVIEWCHANGEs count only for the view being changed to.
- Recovery retries with the same nonce and keeps each replica's newest response; it adopts
  state only from the primary of the highest view among f+1 responses (traps 3, 6).
- A recovering replica never votes, acknowledges or answers (trap 4).
- DOVIEWCHANGE, STARTVIEW, RECOVERYRESPONSE and NEWSTATE carry the log after a checkpoint
  (§5.3), never a partial log without the checkpoint it starts after (trap 7; R19);
  commit-number never decreases, e.g. when a deposed primary receives STARTVIEW (trap 8).
- At-most-once: the client-table holds, per client, the newest executed request and its
  result; it is derived from the committed log, never evicted, and consulted before a
  request enters the log (trap 9). Replies are sent only by a primary in status normal, so a
  client only ever learns of views that have started.

PREPAREOK is cumulative: PREPAREOK<v, n, i> says replica i holds the view-v log up to n,
which is what VRR's in-order acceptance guarantees anyway; so one acknowledgement covers a
batch, and a lost one is repaired by the next.

Checkpoints (§5.1, R18): every ``checkpoint_ops`` committed ops (at op-numbers that are
multiples of it, so that replicas can compare digests), a replica snapshots its service and
client-table and forgets the log up to there; ``log`` holds the entries after
``log_start``, and op-numbers stay absolute.

Durability (R20, vrref/core/durable.py): an event that changes the vote (view, status, last
normal view), the log or the checkpoint returns persist effects first, ahead of every send;
``Replica.restarted`` rejoins from what they made durable.
"""

from __future__ import annotations

import enum
import hashlib
import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import KW_ONLY, dataclass, fields, replace
from typing import Any, Final, Protocol, TypeAlias, assert_never

from vrref.core import durable
from vrref.core.durable import Durable, PersistCheckpoint, PersistLog, PersistVote
from vrref.core.messages import (
    PREPARE_ENTRIES_MAX,
    Checkpoint,
    ClientRecord,
    Commit,
    DoViewChange,
    GetState,
    Log,
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
    encode,
)
from vrref.core.statemachine import StateMachine


class Status(enum.Enum):
    NORMAL = "normal"
    VIEW_CHANGE = "view-change"
    RECOVERING = "recovering"

    def __repr__(self) -> str:
        # Short, and cheap: fingerprints hash the repr of every replica state.
        return f"Status.{self._name_}"


class Timer(enum.StrEnum):
    """A replica's timers. Each has a handler ``on_<value>_timeout`` (``Replica._fire``) and a
    duration, the Config field ``TIMERS[timer]``. The values are the names that histories,
    traces and JSON use; a member equals its value, and sorts by it."""

    HEARTBEAT = "heartbeat"
    PRIMARY = "primary"
    VIEW_CHANGE_RESEND = "view_change_resend"
    VIEW_CHANGE_STALLED = "view_change_stalled"
    RECOVERY = "recovery"
    STATE_TRANSFER = "state_transfer"

    def __repr__(self) -> str:
        return f"Timer.{self._name_}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """Cluster-wide settings; every replica of a cluster must have the same ones.

    Timeouts are in ticks; the driver decides how long a tick is.
    """

    replica_count: int
    heartbeat_ticks: int = 2
    primary_timeout_ticks: int = 8
    view_change_resend_ticks: int = 3
    view_change_stalled_ticks: int = 12
    recovery_resend_ticks: int = 3
    state_transfer_resend_ticks: int = 3
    pipeline_max: int = 1024
    """Uncommitted entries the primary accepts before it drops new requests."""
    prepare_entries_max: int = 256
    """Entries one PREPARE carries; larger batches and repairs are split."""
    checkpoint_ops: int = 1024
    """A checkpoint is taken at every op-number that is a multiple of this (§5.1); the log
    keeps only the entries after the newest one."""

    def __post_init__(self) -> None:
        if self.replica_count < 1 or self.replica_count % 2 == 0:
            raise ValueError("replica_count must be odd and positive (2f+1)")
        for name in (
            "heartbeat_ticks",
            "primary_timeout_ticks",
            "view_change_resend_ticks",
            "view_change_stalled_ticks",
            "recovery_resend_ticks",
            "state_transfer_resend_ticks",
            "pipeline_max",
            "prepare_entries_max",
            "checkpoint_ops",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.prepare_entries_max > PREPARE_ENTRIES_MAX:
            # The codec's bounds are checked against a PREPARE of this many entries.
            raise ValueError(
                f"prepare_entries_max must be at most {PREPARE_ENTRIES_MAX}"
                " (vrref/core/messages.py sizes the message bound for it)"
            )

    @property
    def f(self) -> int:
        """The number of failures tolerated."""
        return (self.replica_count - 1) // 2

    @property
    def quorum(self) -> int:
        """f + 1: the size of every quorum."""
        return self.f + 1

    def primary(self, view: int) -> int:
        """The primary of a view is replica view mod n (VRR §4)."""
        return view % self.replica_count

    def timer_ticks(self, timer: Timer) -> int:
        ticks: int = getattr(self, TIMERS[timer])
        return ticks


# Timer -> the Config field giving its duration.
TIMERS: Final[Mapping[Timer, str]] = {
    Timer.HEARTBEAT: "heartbeat_ticks",
    Timer.PRIMARY: "primary_timeout_ticks",
    Timer.VIEW_CHANGE_RESEND: "view_change_resend_ticks",
    Timer.VIEW_CHANGE_STALLED: "view_change_stalled_ticks",
    Timer.RECOVERY: "recovery_resend_ticks",
    Timer.STATE_TRANSFER: "state_transfer_resend_ticks",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Send:
    """Effect: send a peer message to replica ``to``."""

    to: int
    message: Message


@dataclass(frozen=True, slots=True, kw_only=True)
class SendReply:
    """Effect: deliver a REPLY to the client ``reply.client_id``."""

    reply: Reply


Effect: TypeAlias = Send | SendReply | durable.Persist


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """An immutable picture of a replica's protocol state, for invariants and histories."""

    replica: int
    status: str
    """One of "normal", "view-change", "recovering" (``Status.value``)."""
    view: int
    last_normal_view: int
    op_number: int
    commit_number: int
    log_start: int
    """The op-number of the checkpoint; ``log`` holds the entries after it."""
    log: Log
    checkpoint_digest: str
    """The checkpoint's service digest ("" without a checkpoint)."""
    checkpoint: Checkpoint | None
    service_digest: str


class ClientRenaming(Protocol):
    """A renaming of the clients (the explorer's client symmetry), as it applies to the
    values of the replica state: client-ids, the ops clients chose, and their results."""

    def client_id(self, client_id: int) -> int: ...

    def op(self, op: str) -> str: ...

    def result(self, result: str) -> str: ...

    def service_digest(self, digest: str) -> str:
        """The digest of the service that executed the renamed ops instead."""
        ...

    def service_snapshot(self, snapshot: str) -> str:
        """The snapshot of the service that executed the renamed ops instead."""
        ...


@dataclass(frozen=True, slots=True)
class ReplicaKey:
    """Everything that determines a replica's future behaviour: its protocol state, frozen.

    One field per entry of ``PROTOCOL_STATE``, in its order; ``Replica.state_key``,
    ``Replica.clone`` and ``Replica.snapshot`` are derived from that table, so a variable
    added there is covered by all three. Timer countdowns are abstracted to the set of armed
    timers (the explorer fires any armed timer at any time); the service is represented by
    its digest (the client-table and the digest are functions of the committed prefix of
    the log). Maps and sets are sorted, so equal states have equal keys, and the ``repr`` of
    the fields' values is the same in every process: the fingerprint hashes it.
    """

    replica: int
    status: Status
    view: int
    last_normal_view: int
    log_start: int
    log: Log
    checkpoint: Checkpoint | None
    commit_number: int
    client_table: tuple[tuple[int, tuple[int, str]], ...]
    acks: tuple[tuple[int, int], ...]
    start_view_change_votes: tuple[int, ...]
    do_view_changes: tuple[tuple[int, DoViewChange], ...]
    dvc_sent: bool
    nonce: int | None
    recovery_responses: tuple[tuple[int, RecoveryResponse], ...]
    state_transfer_view: int | None
    state_transfer_attempt: int
    armed_timers: tuple[Timer, ...]
    service_digest: str

    def relabel(self, rename: ClientRenaming) -> ReplicaKey:
        """This key with the clients renamed: the key of the replica that would have seen
        the renamed clients instead (used for the explorer's client symmetry)."""
        return ReplicaKey(
            *[
                getattr(self, v.key)
                if v.relabel is None
                else v.relabel(getattr(self, v.key), rename)
                for v in PROTOCOL_STATE
            ]
        )

    def snapshot(self) -> Snapshot:
        """The part of the key that spec/invariants.py and histories look at."""
        return _snapshot(_key_values(self))

    def fingerprint(self) -> int:
        """A 64-bit fingerprint of the key, stable across processes."""
        return _fingerprint(_key_values(self))


@dataclass(frozen=True, slots=True)
class StateVar:
    """One variable of the protocol state: a Replica attribute, and how ``clone``,
    ``state_key`` and ``ReplicaKey.relabel`` treat it."""

    attr: str
    _: KW_ONLY
    relabel: Callable[[Any, ClientRenaming], Any] | None
    """How the frozen value changes when the clients are renamed; None: it names none."""
    copy: Callable[[Any], Any] | None = None
    """How ``clone`` copies the value; None: it is immutable, and shared."""
    freeze: Callable[[Any], Any] | None = None
    """How ``state_key`` makes it an immutable, canonical value; None: it is one."""
    key: str = ""
    """Its ReplicaKey field; by default the attribute's name without a leading underscore."""

    def __post_init__(self) -> None:
        if not self.key:
            object.__setattr__(self, "key", self.attr.lstrip("_"))


def _sorted_items(mapping: Mapping[Any, Any]) -> tuple[tuple[Any, Any], ...]:
    return tuple(sorted(mapping.items()))


def _sorted(items: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(sorted(items))


def _relabel_log(log: Log, rename: ClientRenaming) -> Log:
    return tuple(
        LogEntry(
            view=entry.view,
            request=Request(
                op=rename.op(entry.request.op),
                client_id=rename.client_id(entry.request.client_id),
                request_number=entry.request.request_number,
            ),
        )
        for entry in log
    )


def _relabel_client_table(
    table: tuple[tuple[int, tuple[int, str]], ...], rename: ClientRenaming
) -> tuple[tuple[int, tuple[int, str]], ...]:
    return tuple(
        sorted(
            (rename.client_id(c), (number, rename.result(result))) for c, (number, result) in table
        )
    )


def _relabel_do_view_changes(
    kept: tuple[tuple[int, DoViewChange], ...], rename: ClientRenaming
) -> tuple[tuple[int, DoViewChange], ...]:
    return tuple(
        (
            i,
            replace(
                m,
                log=_relabel_log(m.log, rename),
                checkpoint=_relabel_checkpoint(m.checkpoint, rename),
            ),
        )
        for i, m in kept
    )


def _relabel_recovery_responses(
    kept: tuple[tuple[int, RecoveryResponse], ...], rename: ClientRenaming
) -> tuple[tuple[int, RecoveryResponse], ...]:
    return tuple(
        (
            i,
            m
            if m.log is None
            else replace(
                m,
                log=_relabel_log(m.log, rename),
                checkpoint=_relabel_checkpoint(m.checkpoint, rename),
            ),
        )
        for i, m in kept
    )


def _relabel_service_digest(digest: str, rename: ClientRenaming) -> str:
    return rename.service_digest(digest)


def _relabel_checkpoint(checkpoint: Checkpoint | None, rename: ClientRenaming) -> Checkpoint | None:
    if checkpoint is None:
        return None
    return Checkpoint(
        op_number=checkpoint.op_number,
        service=rename.service_snapshot(checkpoint.service),
        digest=rename.service_digest(checkpoint.digest),
        client_table=tuple(
            sorted(
                (
                    ClientRecord(
                        client_id=rename.client_id(r.client_id),
                        request_number=r.request_number,
                        result=rename.result(r.result),
                    )
                    for r in checkpoint.client_table
                ),
                key=_record_order,
            )
        ),
    )


relabel_checkpoint: Final = _relabel_checkpoint
"""A checkpoint with the clients renamed (the explorer's client symmetry)."""


def relabel_durable(disk: Durable, rename: ClientRenaming) -> Durable:
    """A disk with the clients renamed (the explorer's client symmetry)."""
    return replace(
        disk,
        checkpoint=_relabel_checkpoint(disk.checkpoint, rename),
        log=_relabel_log(disk.log, rename),
    )


def disk_snapshot(replica: int, disk: Durable) -> Snapshot:
    """A crashed replica's disk as the invariants see it (status "crashed"): its log and
    checkpoint, and the commit-number of its checkpoint, all it can know of."""
    checkpoint = disk.checkpoint
    return Snapshot(
        replica=replica,
        status="crashed",
        view=disk.view,
        last_normal_view=disk.last_normal_view,
        op_number=disk.op_number,
        commit_number=disk.log_start,
        log_start=disk.log_start,
        log=disk.log,
        checkpoint_digest="" if checkpoint is None else checkpoint.digest,
        checkpoint=checkpoint,
        service_digest="" if checkpoint is None else checkpoint.digest,
    )


def _record_order(record: ClientRecord) -> int:
    return record.client_id


def _relabel_message_checkpoint(message: Any, rename: ClientRenaming) -> Any:
    return replace(message, checkpoint=_relabel_checkpoint(message.checkpoint, rename))


# The protocol state of a replica (VRR Fig. 2 and what §4.2-§5.2 add), declared once: the
# Replica slots, ReplicaKey's fields (same order), clone, state_key and snapshot follow it.
PROTOCOL_STATE: Final[tuple[StateVar, ...]] = (
    StateVar("replica", relabel=None),
    StateVar("status", relabel=None),
    StateVar("view", relabel=None),
    StateVar("last_normal_view", relabel=None),
    # Checkpoints (§5.1): the log holds the entries after log_start, the checkpoint's op.
    StateVar("log_start", relabel=None),
    StateVar("log", copy=list, freeze=tuple, relabel=_relabel_log),
    StateVar("checkpoint", relabel=_relabel_checkpoint),
    StateVar("commit_number", relabel=None),
    # client-id -> (request-number, result) of the newest executed request (§4.1).
    StateVar("client_table", copy=dict, freeze=_sorted_items, relabel=_relabel_client_table),
    # Primary: replica -> highest op-number it acknowledged in this view.
    StateVar("acks", copy=dict, freeze=_sorted_items, relabel=None),
    # View change (§4.2): votes and DOVIEWCHANGEs for self.view, and whether ours is sent.
    StateVar("start_view_change_votes", copy=set, freeze=_sorted, relabel=None),
    StateVar("do_view_changes", copy=dict, freeze=_sorted_items, relabel=_relabel_do_view_changes),
    StateVar("_dvc_sent", relabel=None),
    # Recovery (§4.3).
    StateVar("nonce", relabel=None),
    StateVar(
        "recovery_responses",
        copy=dict,
        freeze=_sorted_items,
        relabel=_relabel_recovery_responses,
    ),
    # State transfer (§5.2): the view whose state we asked for, if any, and whom we asked.
    StateVar("state_transfer_view", relabel=None),
    StateVar("_state_transfer_attempt", relabel=None),
    # Timer -> ticks left; only armed timers are present. The key keeps which are armed.
    StateVar("timers", copy=dict, freeze=_sorted, key="armed_timers", relabel=None),
    StateVar(
        "service",
        copy=operator.methodcaller("clone"),
        freeze=operator.methodcaller("digest"),
        key="service_digest",
        relabel=_relabel_service_digest,
    ),
)
if tuple(v.key for v in PROTOCOL_STATE) != tuple(f.name for f in fields(ReplicaKey)):
    raise TypeError("PROTOCOL_STATE and ReplicaKey must name the same variables, in one order")

# The other attributes of a Replica, by kind (tests/core/test_replica_state.py requires every
# slot to be protocol state or one of these):
# - configuration: fixed at construction, shared by clones;
# - observation: counted for the driver, no influence on behaviour, so not in the key;
# - scratch: used within one event; between events empty, or a function of the state;
# - cache: derived from the protocol state, cleared by every event.
NON_PROTOCOL_SLOTS: Final[Mapping[str, str]] = {
    "config": "configuration",
    "_service_factory": "configuration",
    "ignored": "observation",
    "_effects": "scratch",
    "_prepare_from": "scratch",
    "_vote_dirty": "scratch",
    "_log_dirty_from": "scratch",
    "_checkpoint_dirty": "scratch",
    "_cached_key": "cache",
    "_cached_key_values": "cache",
    "_cached_snapshot": "cache",
    "_cached_fingerprint": "cache",
}


# The table read once, so that the two functions below, which the explorer runs for every
# state it makes, do no more than they must: all the variables fetched by one attrgetter,
# and a call only for those that are frozen into the key or copied by clone.
_ATTRS: Final[tuple[str, ...]] = tuple(v.attr for v in PROTOCOL_STATE)
_get_protocol_state: Final = operator.attrgetter(*_ATTRS)
_FREEZES: Final[tuple[tuple[int, Callable[[Any], Any]], ...]] = tuple(
    (i, v.freeze) for i, v in enumerate(PROTOCOL_STATE) if v.freeze is not None
)
_COPIES: Final[tuple[tuple[int, Callable[[Any], Any]], ...]] = tuple(
    (i, v.copy) for i, v in enumerate(PROTOCOL_STATE) if v.copy is not None
)


def _key_values_of(replica: Replica) -> tuple[Any, ...]:
    """The values of ``replica``'s ReplicaKey fields: each variable of PROTOCOL_STATE, frozen
    as the table says."""
    values = list(_get_protocol_state(replica))
    for i, freeze in _FREEZES:
        values[i] = freeze(values[i])
    return tuple(values)


def _copy_protocol_state(source: Replica, target: Replica) -> None:
    """Each variable of PROTOCOL_STATE copied from ``source`` to ``target`` as the table
    says (shared when it is immutable)."""
    values = list(_get_protocol_state(source))
    for i, copy in _COPIES:
        values[i] = copy(values[i])
    for attr, value in zip(_ATTRS, values, strict=True):
        setattr(target, attr, value)


# Fingerprint and snapshot work on the key's values (a tuple, in field order), cheaper to
# make than the ReplicaKey, which is made only when asked for.
_key_values: Final = operator.attrgetter(*(f.name for f in fields(ReplicaKey)))
_AT: Final = {f.name: i for i, f in enumerate(fields(ReplicaKey))}
_snapshot_values: Final = operator.itemgetter(
    _AT["replica"],
    _AT["status"],
    _AT["view"],
    _AT["last_normal_view"],
    _AT["log_start"],
    _AT["log"],
    _AT["checkpoint"],
    _AT["commit_number"],
    _AT["service_digest"],
)


def _snapshot(values: tuple[Any, ...]) -> Snapshot:
    """The Snapshot of a key, from its values."""
    (
        replica,
        status,
        view,
        last_normal_view,
        log_start,
        log,
        checkpoint,
        commit_number,
        digest,
    ) = _snapshot_values(values)
    return Snapshot(
        replica=replica,
        status=status.value,
        view=view,
        last_normal_view=last_normal_view,
        op_number=log_start + len(log),
        commit_number=commit_number,
        log_start=log_start,
        log=log,
        checkpoint_digest="" if checkpoint is None else checkpoint.digest,
        checkpoint=checkpoint,
        service_digest=digest,
    )


def _fingerprint(values: tuple[Any, ...]) -> int:
    """The fingerprint of a key, from its values: blake2b of their repr, which is the same in
    every process (never Python's salted ``hash``)."""
    digest = hashlib.blake2b(repr(values).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


class Replica:
    """One VR replica. Mutable for speed in the runtime; ``clone`` and ``fingerprint`` serve
    the explorer, which forks and deduplicates replica states."""

    __slots__ = (*(v.attr for v in PROTOCOL_STATE), *NON_PROTOCOL_SLOTS)

    def __init__(
        self,
        config: Config,
        replica: int,
        service_factory: Callable[[], StateMachine],
    ) -> None:
        assert 0 <= replica < config.replica_count
        self.config = config
        self._service_factory = service_factory
        # The protocol state (PROTOCOL_STATE says what each variable is), initially.
        self.replica = replica
        self.status = Status.NORMAL
        self.view = 0
        self.last_normal_view = 0
        self.log_start = 0
        self.log: list[LogEntry] = []
        self.checkpoint: Checkpoint | None = None
        self.commit_number = 0
        self.client_table: dict[int, tuple[int, str]] = {}
        self.acks: dict[int, int] = {}
        self.start_view_change_votes: set[int] = set()
        self.do_view_changes: dict[int, DoViewChange] = {}
        self._dvc_sent = False
        self.nonce: int | None = None
        self.recovery_responses: dict[int, RecoveryResponse] = {}
        self.state_transfer_view: int | None = None
        self._state_transfer_attempt = 0
        self.timers: dict[Timer, int] = {}
        self.service: StateMachine = service_factory()
        # Why messages were ignored, counted; not part of the protocol state.
        self.ignored: dict[str, int] = {}
        self._effects: list[Effect] = []
        self._prepare_from = 1  # first op-number not yet sent in a PREPARE
        # What this event changed that must be made durable (R20); see _persist_effects.
        self._vote_dirty = False
        self._log_dirty_from: int | None = None
        self._checkpoint_dirty = False
        # state_key, snapshot and fingerprint are cached until the next event: the explorer
        # shares an unchanged replica between states. Every entry point below clears them.
        self._cached_key: ReplicaKey | None = None
        self._cached_key_values: tuple[Any, ...] | None = None
        self._cached_snapshot: Snapshot | None = None
        self._cached_fingerprint: int | None = None
        if self.is_primary:
            self._arm(Timer.HEARTBEAT)
        else:
            self._arm(Timer.PRIMARY)

    @classmethod
    def recovering(
        cls,
        config: Config,
        replica: int,
        service_factory: Callable[[], StateMachine],
        *,
        nonce: int,
    ) -> tuple[Replica, list[Effect]]:
        """A replica restarted without its state (§4.3): it sends RECOVERY and waits."""
        self = cls(config, replica, service_factory)
        self.timers.clear()
        self.status = Status.RECOVERING
        self.nonce = nonce
        self._broadcast(Recovery(replica=replica, nonce=nonce))
        self._arm(Timer.RECOVERY)
        return self, self._take_effects()

    @classmethod
    def restarted(
        cls,
        config: Config,
        replica: int,
        service_factory: Callable[[], StateMachine],
        disk: Durable,
    ) -> tuple[Replica, list[Effect]]:
        """A replica restarted with what it made durable (R20): its vote, checkpoint and
        log. It resumes the view and status it persisted, with the commit-number of its
        checkpoint (commits are learnt again from the primary); a replica that was changing
        views takes up that view change again. Raises ValueError for a disk whose
        checkpoint the service cannot restore."""
        self = cls(config, replica, service_factory)
        self.timers.clear()
        self.view = disk.view
        self.last_normal_view = disk.last_normal_view
        if disk.checkpoint is not None:
            self._adopt_checkpoint(disk.checkpoint)
        self.log = list(disk.log)
        self._prepare_from = self.op_number + 1
        self._checkpoint_dirty = False  # it is on the disk it came from
        if disk.status == durable.VIEW_CHANGE:
            self.status = Status.VIEW_CHANGE
            self._arm(Timer.VIEW_CHANGE_RESEND)
            self._arm(Timer.VIEW_CHANGE_STALLED)
            self._broadcast(StartViewChange(view=self.view, replica=self.replica))
        elif self.is_primary:
            self._arm(Timer.HEARTBEAT)
        else:
            self._arm(Timer.PRIMARY)
        return self, self._take_effects()

    def durable(self) -> Durable:
        """What this replica's persist effects have made durable so far, if the driver did
        them all: the disk of a replica whose driver is correct."""
        return Durable(
            view=self.view,
            status=durable.VIEW_CHANGE if self.status is Status.VIEW_CHANGE else durable.NORMAL,
            last_normal_view=self.last_normal_view,
            checkpoint=self.checkpoint,
            log=tuple(self.log),
        )

    # -----------------------------------------------------------------------------------
    # Derived values

    @property
    def op_number(self) -> int:
        return self.log_start + len(self.log)

    def entry(self, op_number: int) -> LogEntry:
        """The log entry at an absolute op-number after the checkpoint."""
        assert self.log_start < op_number <= self.op_number
        return self.log[op_number - self.log_start - 1]

    def entries(self, after: int, last: int | None = None) -> tuple[LogEntry, ...]:
        """The entries with op-numbers in (after, last] (last: the op-number); ``after`` must
        not be before the checkpoint."""
        assert self.log_start <= after
        end = None if last is None else last - self.log_start
        return tuple(self.log[after - self.log_start : end])

    @property
    def primary(self) -> int:
        return self.config.primary(self.view)

    @property
    def is_primary(self) -> bool:
        return self.primary == self.replica

    def state_key(self) -> ReplicaKey:
        """Everything that determines this replica's future behaviour (cached): each
        variable of ``PROTOCOL_STATE``, frozen as it says. The ``ignored`` counters are
        observations, not state."""
        key = self._cached_key
        if key is None:
            key = self._cached_key = ReplicaKey(*self._key_values())
        return key

    def _key_values(self) -> tuple[Any, ...]:
        """The values of ``state_key``'s fields, in order (cached)."""
        values = self._cached_key_values
        if values is None:
            values = self._cached_key_values = _key_values_of(self)
        return values

    def snapshot(self) -> Snapshot:
        """The replica's state as the invariants see it: ``state_key().snapshot()`` (cached)."""
        snapshot = self._cached_snapshot
        if snapshot is None:
            snapshot = self._cached_snapshot = _snapshot(self._key_values())
        return snapshot

    def fingerprint(self) -> int:
        """``state_key().fingerprint()``: 64 bits, stable across processes (cached)."""
        fingerprint = self._cached_fingerprint
        if fingerprint is None:
            fingerprint = self._cached_fingerprint = _fingerprint(self._key_values())
        return fingerprint

    def clone(self) -> Replica:
        """An independent copy sharing only immutable values: each variable of
        ``PROTOCOL_STATE`` copied as it says, the configuration shared, the observations
        copied, no effects pending and nothing cached."""
        other = object.__new__(type(self))
        _copy_protocol_state(self, other)
        other.config = self.config
        other._service_factory = self._service_factory
        other.ignored = dict(self.ignored)
        other._effects = []
        other._prepare_from = self._prepare_from
        other._vote_dirty = False
        other._log_dirty_from = None
        other._checkpoint_dirty = False
        other._cached_key = None
        other._cached_key_values = None
        other._cached_snapshot = None
        other._cached_fingerprint = None
        return other

    def _invalidate(self) -> None:
        self._cached_key = None
        self._cached_key_values = None
        self._cached_snapshot = None
        self._cached_fingerprint = None

    def armed_timers(self) -> tuple[Timer, ...]:
        """The armed timers, in name order."""
        return tuple(sorted(self.timers))

    # -----------------------------------------------------------------------------------
    # Entry points

    def on_message(self, message: Message) -> list[Effect]:
        """Handles one message; returns the effects."""
        self._invalidate()
        self._dispatch(message)
        self._flush_prepare()
        return self._take_effects()

    def on_messages(self, messages: Iterable[Message]) -> list[Effect]:
        """Handles several messages, then sends one PREPARE for all requests they added:
        this is how a driver batches (VRR §6)."""
        self._invalidate()
        for message in messages:
            self._dispatch(message)
        self._flush_prepare()
        return self._take_effects()

    def on_tick(self) -> list[Effect]:
        """One tick passed: armed timers count down; those reaching zero fire, in name
        order."""
        self._invalidate()
        expired = []
        for timer in sorted(self.timers):
            self.timers[timer] -= 1
            if self.timers[timer] <= 0:
                expired.append(timer)
        for timer in expired:
            if timer in self.timers and self.timers[timer] <= 0:
                self._fire(timer)
        self._flush_prepare()
        return self._take_effects()

    def on_timeout(self, timer: Timer | str) -> list[Effect]:
        """Fires an armed timer now (the explorer's time step). A timer's name is accepted
        too (``Timer(name)``); an unknown name is a ValueError, like a timer not armed."""
        timer = Timer(timer)
        self._invalidate()
        if timer not in self.timers:
            raise ValueError(f"timer {timer.value!r} is not armed at replica {self.replica}")
        self._fire(timer)
        self._flush_prepare()
        return self._take_effects()

    def _dispatch(self, message: Message) -> None:
        match message:
            case Request():
                self.on_request(message)
            case Prepare():
                self.on_prepare(message)
            case PrepareOk():
                self.on_prepare_ok(message)
            case Commit():
                self.on_commit(message)
            case StartViewChange():
                self.on_start_view_change(message)
            case DoViewChange():
                self.on_do_view_change(message)
            case StartView():
                self.on_start_view(message)
            case Recovery():
                self.on_recovery(message)
            case RecoveryResponse():
                self.on_recovery_response(message)
            case GetState():
                self.on_get_state(message)
            case NewState():
                self.on_new_state(message)
            case Reply():
                self._ignore("reply sent to a replica")
            case _:
                assert_never(message)

    def _fire(self, timer: Timer) -> None:
        del self.timers[timer]
        match timer:
            case Timer.HEARTBEAT:
                self.on_heartbeat_timeout()
            case Timer.PRIMARY:
                self.on_primary_timeout()
            case Timer.VIEW_CHANGE_RESEND:
                self.on_view_change_resend_timeout()
            case Timer.VIEW_CHANGE_STALLED:
                self.on_view_change_stalled_timeout()
            case Timer.RECOVERY:
                self.on_recovery_timeout()
            case Timer.STATE_TRANSFER:
                self.on_state_transfer_timeout()
            case _:
                assert_never(timer)

    # -----------------------------------------------------------------------------------
    # §4.1 Normal operation

    def on_request(self, message: Request) -> None:
        if self.status is not Status.NORMAL:
            return self._ignore("request while not normal")
        if not self.is_primary:
            return self._ignore("request at a backup")
        executed = self.client_table.get(message.client_id)
        if executed is not None:
            executed_number, result = executed
            if message.request_number < executed_number:
                return self._ignore("request older than the client-table entry")
            if message.request_number == executed_number:
                # The reply may have been lost: send it again (§4.1 step 2).
                self._reply(message.client_id, executed_number, result)
                return None
        pending = self._pending_request_number(message.client_id)
        if pending is not None and message.request_number <= pending:
            return self._ignore("request already in the log")
        if self.op_number - self.commit_number >= self.config.pipeline_max:
            return self._ignore("pipeline full")

        self._log_changed_from(self.op_number + 1)
        self.log.append(LogEntry(view=self.view, request=message))
        assert self.op_number > self.commit_number
        if self.config.replica_count == 1:
            self._commit_up_to(self.op_number)

    def on_prepare(self, message: Prepare) -> None:
        if self.status is Status.RECOVERING:
            return self._ignore("prepare while recovering")
        if message.view < self.view:
            return self._ignore("prepare from an older view")
        if message.view > self.view or self.status is Status.VIEW_CHANGE:
            # A view we have not seen start: we missed its STARTVIEW (§4.1 step 6).
            return self._request_state(message.view)
        if self.is_primary:
            return self._ignore("prepare at the primary")
        first = message.op_number - len(message.entries) + 1
        if first < 1 or message.commit_number > message.op_number:
            return self._ignore("malformed prepare")
        assert self.status is Status.NORMAL and message.view == self.view

        self._arm(Timer.PRIMARY)
        if first > self.op_number + 1:
            return self._on_prepare_gap(message)
        if message.op_number > self.op_number:
            self._log_changed_from(self.op_number + 1)
            self.log.extend(message.entries[self.op_number - first + 1 :])
        assert self.op_number >= message.op_number
        self._commit_up_to(min(message.commit_number, self.op_number))
        self._send(
            self.primary, PrepareOk(view=self.view, op_number=self.op_number, replica=self.replica)
        )

    def _on_prepare_gap(self, message: Prepare) -> None:
        """Earlier PREPAREs were lost: accept nothing out of order; fetch the missing
        entries by state transfer (§4.1 step 3, §5.2)."""
        del message
        self._request_state(self.view)

    def on_prepare_ok(self, message: PrepareOk) -> None:
        if self.status is not Status.NORMAL:
            return self._ignore("prepareok while not normal")
        if message.view != self.view:
            return self._ignore("prepareok from another view")
        if not self.is_primary:
            return self._ignore("prepareok at a backup")
        if message.op_number > self.op_number or message.replica == self.replica:
            return self._ignore("prepareok beyond the log")
        assert 0 <= message.replica < self.config.replica_count

        if message.op_number > self.acks.get(message.replica, 0):
            self.acks[message.replica] = message.op_number
        self._commit_up_to(self._quorum_op_number())

    def on_commit(self, message: Commit) -> None:
        if self.status is Status.RECOVERING:
            return self._ignore("commit while recovering")
        if message.view < self.view:
            return self._ignore("commit from an older view")
        if message.view > self.view or self.status is Status.VIEW_CHANGE:
            return self._request_state(message.view)
        if self.is_primary:
            return self._ignore("commit at the primary")
        assert self.status is Status.NORMAL and message.view == self.view

        self._arm(Timer.PRIMARY)
        if message.commit_number > self.op_number:
            self._request_state(self.view)
        self._commit_up_to(min(message.commit_number, self.op_number))

    def on_heartbeat_timeout(self) -> None:
        """The primary, idle or with unacknowledged entries: COMMIT to backups that are up to
        date, PREPARE (again) the entries the others have not acknowledged (§4.1 step 5)."""
        assert self.status is Status.NORMAL and self.is_primary
        for backup in self._others():
            acked = self.acks.get(backup, 0)
            # Resend at most one PREPARE's worth, and nothing the checkpoint covers; a
            # backup missing more sees the gap, or a commit-number beyond its log, and
            # pulls exactly what it lacks by state transfer.
            window = self.op_number - self.config.prepare_entries_max + 1
            first = max(acked + 1, window, self.log_start + 1)
            if acked < self.op_number and first <= self.op_number:
                self._send_prepare(backup, first)
            else:
                self._send(backup, Commit(view=self.view, commit_number=self.commit_number))
        self._arm(Timer.HEARTBEAT)

    def on_primary_timeout(self) -> None:
        """A backup heard nothing from its primary in time: start a view change (§4.2)."""
        assert self.status is Status.NORMAL and not self.is_primary
        self._start_view_change(self.view + 1)

    # -----------------------------------------------------------------------------------
    # §4.2 View change

    def on_start_view_change(self, message: StartViewChange) -> None:
        if not self._may_vote():
            return self._ignore("startviewchange while recovering")
        if message.view < self.view:
            return self._ignore("startviewchange for an older view")
        if message.view == self.view and self.status is Status.NORMAL:
            return self._ignore("startviewchange for a view that has started")
        if message.replica == self.replica:
            return self._ignore("startviewchange from itself")
        if message.view > self.view:
            self._start_view_change(message.view)
        assert self.status is Status.VIEW_CHANGE and message.view == self.view

        self.start_view_change_votes.add(message.replica)
        self._maybe_send_do_view_change()

    def on_do_view_change(self, message: DoViewChange) -> None:
        if not self._may_vote():
            return self._ignore("doviewchange while recovering")
        if message.view < self.view:
            return self._ignore("doviewchange for an older view")
        if self.config.primary(message.view) != self.replica:
            return self._ignore("doviewchange at a replica that is not its primary")
        if message.view == self.view and self.status is Status.NORMAL:
            # The view started already; this sender missed the STARTVIEW.
            behind = message.commit_number < self.log_start
            self._send(message.replica, self._start_view_message(with_checkpoint=behind))
            return None
        if (
            message.commit_number > message.op_number
            or message.op_number != message.log_start + len(message.log)
            or message.commit_number < message.log_start
            or not _checkpoint_fits(message.checkpoint, message.log_start, required=True)
        ):
            return self._ignore("malformed doviewchange")
        if message.view > self.view:
            self._start_view_change(message.view)
        assert self.status is Status.VIEW_CHANGE and message.view == self.view

        self.do_view_changes[message.replica] = message
        self._maybe_start_view()

    def on_start_view(self, message: StartView) -> None:
        if self.status is Status.RECOVERING:
            return self._ignore("startview while recovering")
        if message.view < self.view:
            return self._ignore("startview for an older view")
        if message.view == self.view and self.status is Status.NORMAL:
            return self._ignore("startview for a view that has started")
        if self.config.primary(message.view) == self.replica:
            return self._ignore("startview at its own primary")
        if (
            message.op_number != message.log_start + len(message.log)
            or message.commit_number > message.op_number
            or message.commit_number < message.log_start
            or not _checkpoint_fits(message.checkpoint, message.log_start, required=False)
        ):
            return self._ignore("malformed startview")
        # The new log extends everything committed: it must hold our committed prefix.
        assert self.commit_number <= message.op_number, "startview log misses committed ops"
        if message.log_start > self.commit_number and message.checkpoint is None:
            # It starts after what we know is committed, and we lack its checkpoint.
            return self._request_state(message.view)

        self._enter_view(
            message.view,
            message.log_start,
            message.log,
            message.checkpoint,
            message.commit_number,
        )
        if self.op_number > self.commit_number:
            self._send(
                self.primary,
                PrepareOk(view=self.view, op_number=self.op_number, replica=self.replica),
            )

    def on_view_change_resend_timeout(self) -> None:
        """A stalled view change is resent, in case its messages were lost (trap 2)."""
        assert self.status is Status.VIEW_CHANGE
        self._broadcast(StartViewChange(view=self.view, replica=self.replica))
        if self._dvc_sent and self.primary != self.replica:
            self._send(self.primary, self._do_view_change_message())
        self._arm(Timer.VIEW_CHANGE_RESEND)

    def on_view_change_stalled_timeout(self) -> None:
        """The view change did not complete in time (its primary may be down): try the next
        view, whose primary is the next replica."""
        assert self.status is Status.VIEW_CHANGE
        self._start_view_change(self.view + 1)

    def _may_vote(self) -> bool:
        """A replica that lost its state takes no part in view changes (§4.3, trap 4)."""
        return self.status is not Status.RECOVERING

    def _start_view_change(self, view: int) -> None:
        assert view > self.view and self._may_vote()
        if self.status is Status.NORMAL:
            self.last_normal_view = self.view
        self.view = view
        self.status = Status.VIEW_CHANGE
        self._vote_dirty = True
        self.start_view_change_votes = set()
        self.do_view_changes = {}
        self._dvc_sent = False
        self.acks = {}
        if self.state_transfer_view is not None and self.state_transfer_view <= view:
            self._cancel_state_transfer()
        self.timers.pop(Timer.HEARTBEAT, None)
        self.timers.pop(Timer.PRIMARY, None)
        self._arm(Timer.VIEW_CHANGE_RESEND)
        self._arm(Timer.VIEW_CHANGE_STALLED)
        self._broadcast(StartViewChange(view=view, replica=self.replica))
        self._maybe_send_do_view_change()

    def _maybe_send_do_view_change(self) -> None:
        """With STARTVIEWCHANGE from f others, send DOVIEWCHANGE to the new primary."""
        if self._dvc_sent or len(self.start_view_change_votes) < self.config.f:
            return
        self._dvc_sent = True
        message = self._do_view_change_message()
        if self.primary == self.replica:
            self.do_view_changes[self.replica] = message
            self._maybe_start_view()
        else:
            self._send(self.primary, message)

    def _do_view_change_message(self) -> DoViewChange:
        return DoViewChange(
            view=self.view,
            log_start=self.log_start,
            log=tuple(self.log),
            checkpoint=self.checkpoint,
            last_normal_view=self.last_normal_view,
            op_number=self.op_number,
            commit_number=self.commit_number,
            replica=self.replica,
        )

    def _maybe_start_view(self) -> None:
        """The new primary, with f+1 DOVIEWCHANGEs, starts the view (§4.2 step 3)."""
        if self.status is not Status.VIEW_CHANGE or len(self.do_view_changes) < self.config.quorum:
            return
        assert self.is_primary
        assert all(m.view == self.view for m in self.do_view_changes.values())
        received = dict(self.do_view_changes)
        chosen = self.choose_log(list(received.values()))
        commit_number = self._new_view_commit_number(list(received.values()))
        assert commit_number <= chosen.op_number, "a committed op is missing from the new log"
        self._enter_view(self.view, chosen.log_start, chosen.log, chosen.checkpoint, commit_number)
        for backup in self._others():
            # The checkpoint goes only to a replica that may be behind it (R19).
            sent = received.get(backup)
            behind = sent is None or sent.commit_number < self.log_start
            self._send(backup, self._start_view_message(with_checkpoint=behind))

    def _new_view_commit_number(self, messages: list[DoViewChange]) -> int:
        """The largest commit-number received, or ours if larger (§4.2 step 3; trap 8)."""
        return max(self.commit_number, *(m.commit_number for m in messages))

    @staticmethod
    def choose_log(messages: list[DoViewChange]) -> DoViewChange:
        """The DOVIEWCHANGE with the largest v', ties broken by the largest op-number."""
        return max(messages, key=lambda m: (m.last_normal_view, m.op_number, -m.replica))

    def _start_view_message(self, *, with_checkpoint: bool) -> StartView:
        return StartView(
            view=self.view,
            log_start=self.log_start,
            log=tuple(self.log),
            checkpoint=self.checkpoint if with_checkpoint else None,
            op_number=self.op_number,
            commit_number=self.commit_number,
        )

    def _install_log(self, log_start: int, log: Log, checkpoint: Checkpoint | None) -> None:
        """Replace the log by the one a message describes: the entries after ``log_start``,
        which follow ``checkpoint`` (R19). Where the new log starts after what this replica
        knows is committed, it adopts the checkpoint (application state transfer); where it
        starts at or before, the replica keeps its own checkpoint and committed entries,
        which the new log must agree with."""
        if log_start > self.commit_number:
            assert checkpoint is not None and checkpoint.op_number == log_start
            self._adopt_checkpoint(checkpoint)
            self.log = list(log)
            self._log_changed_from(log_start + 1)
            return
        if log_start < self.log_start:
            assert log_start + len(log) >= self.log_start, "the new log misses committed ops"
            log = log[self.log_start - log_start :]
            log_start = self.log_start
        # Our entries up to log_start are committed, so they are the new log's too.
        new = self.log[: log_start - self.log_start] + list(log)
        overlap = min(self.commit_number, log_start + len(log)) - self.log_start
        assert self.log[:overlap] == new[:overlap], "the new log changes committed ops"
        first_change = next(
            (i for i, (a, b) in enumerate(zip(self.log, new, strict=False)) if a != b),
            min(len(self.log), len(new)),
        )
        if first_change < len(self.log) or len(new) > len(self.log):
            self._log_changed_from(self.log_start + first_change + 1)
        self.log = new

    def _adopt_checkpoint(self, checkpoint: Checkpoint) -> None:
        """The service and client-table become the checkpoint's; the log starts after it."""
        service = self._service_factory().restore(checkpoint.service)
        self.service = service
        self.client_table = {
            r.client_id: (r.request_number, r.result) for r in checkpoint.client_table
        }
        self.checkpoint = checkpoint
        self.log_start = checkpoint.op_number
        self.commit_number = checkpoint.op_number
        self.log = []
        self._checkpoint_dirty = True

    def _enter_view(
        self,
        view: int,
        log_start: int,
        log: Log,
        checkpoint: Checkpoint | None,
        commit_number: int,
    ) -> None:
        """Status normal in ``view`` with the log a message described; commit-number never
        goes back (trap 8)."""
        assert view >= self.view
        self._install_log(log_start, log, checkpoint)
        self.view = view
        self.status = Status.NORMAL
        self.last_normal_view = view
        self._vote_dirty = True
        self._prepare_from = self.op_number + 1
        self.start_view_change_votes = set()
        self.do_view_changes = {}
        self._dvc_sent = False
        self.acks = {}
        if self.state_transfer_view is not None and self.state_transfer_view <= view:
            self._cancel_state_transfer()
        self.timers.pop(Timer.VIEW_CHANGE_RESEND, None)
        self.timers.pop(Timer.VIEW_CHANGE_STALLED, None)
        self._commit_up_to(max(self.commit_number, commit_number))
        if self.is_primary:
            self.timers.pop(Timer.PRIMARY, None)
            self._arm(Timer.HEARTBEAT)
        else:
            self.timers.pop(Timer.HEARTBEAT, None)
            self._arm(Timer.PRIMARY)

    # -----------------------------------------------------------------------------------
    # §4.3 Recovery

    def on_recovery(self, message: Recovery) -> None:
        if self.status is not Status.NORMAL:
            return self._ignore("recovery while not normal")
        if message.replica == self.replica:
            return self._ignore("recovery from itself")
        primary = self.is_primary
        self._send(
            message.replica,
            RecoveryResponse(
                view=self.view,
                nonce=message.nonce,
                log_start=self.log_start if primary else None,
                log=tuple(self.log) if primary else None,
                checkpoint=self.checkpoint if primary else None,
                op_number=self.op_number if primary else None,
                commit_number=self.commit_number if primary else None,
                replica=self.replica,
            ),
        )

    def on_recovery_response(self, message: RecoveryResponse) -> None:
        if self.status is not Status.RECOVERING:
            return self._ignore("recoveryresponse while not recovering")
        if not self._nonce_matches(message):
            return self._ignore("recoveryresponse with another nonce")
        if message.replica == self.replica:
            return self._ignore("recoveryresponse from itself")
        from_primary = message.log is not None
        if from_primary != (self.config.primary(message.view) == message.replica):
            return self._ignore("malformed recoveryresponse")
        if from_primary and (
            message.log_start is None
            or message.op_number != message.log_start + len(message.log or ())
            or message.commit_number is None
            or not message.log_start <= message.commit_number <= message.op_number
            or not _checkpoint_fits(message.checkpoint, message.log_start, required=True)
        ):
            return self._ignore("malformed recoveryresponse")
        if not from_primary and (message.log_start is not None or message.checkpoint is not None):
            return self._ignore("malformed recoveryresponse")
        previous = self.recovery_responses.get(message.replica)
        if previous is not None and previous.view > message.view:
            return self._ignore("recoveryresponse older than one already received")

        self.recovery_responses[message.replica] = message
        self._maybe_finish_recovery()

    def _nonce_matches(self, message: RecoveryResponse) -> bool:
        """Only answers to this recovery count: the nonce is unique per recovery (trap 6)."""
        return message.nonce == self.nonce

    def _maybe_finish_recovery(self) -> None:
        """With f+1 responses, adopt the state of the primary of the highest view among
        them, and only that one (trap 3)."""
        if len(self.recovery_responses) < self.config.quorum:
            return
        view = max(m.view for m in self.recovery_responses.values())
        primary_response = self.recovery_responses.get(self.config.primary(view))
        if primary_response is None or primary_response.view != view:
            return  # keep waiting; the recovery timer asks again
        assert primary_response.log is not None and primary_response.commit_number is not None
        assert primary_response.log_start is not None
        assert self.status is Status.RECOVERING

        self.service = self._service_factory()
        self.client_table = {}
        self.log_start = 0
        self.log = []
        self.checkpoint = None
        self.commit_number = 0
        self.nonce = None
        self.recovery_responses = {}
        self.timers.pop(Timer.RECOVERY, None)
        self.view = view
        # Everything it has is new: all of it is made durable (R20).
        self._checkpoint_dirty = True
        self._log_changed_from(1)
        self._enter_view(
            view,
            primary_response.log_start,
            primary_response.log,
            primary_response.checkpoint,
            primary_response.commit_number,
        )
        if self.op_number > self.commit_number:
            self._send(
                self.primary,
                PrepareOk(view=self.view, op_number=self.op_number, replica=self.replica),
            )

    def on_recovery_timeout(self) -> None:
        """Recovery retries until it hears from the primary of the latest view (trap 3)."""
        assert self.status is Status.RECOVERING and self.nonce is not None
        self._broadcast(Recovery(replica=self.replica, nonce=self.nonce))
        self._arm(Timer.RECOVERY)

    # -----------------------------------------------------------------------------------
    # §5.2 State transfer, in its safe variant (trap 1)

    def _request_state(self, view: int) -> None:
        """Ask for the log of ``view``. The view is NOT adopted and nothing is truncated
        until the NEWSTATE arrives (trap 1)."""
        if self.state_transfer_view is not None and self.state_transfer_view >= view:
            return  # already asked; the state_transfer timer retries
        self.state_transfer_view = view
        self._state_transfer_attempt = 0
        self._send_get_state()

    def _send_get_state(self) -> None:
        view = self.state_transfer_view
        assert view is not None
        # In the same view our whole log is valid; for a later view only the committed part.
        same_view = view == self.view and self.status is Status.NORMAL
        after = self.op_number if same_view else self.commit_number
        others = [r for r in range(self.config.replica_count) if r != self.replica]
        primary = self.config.primary(view)
        # Ask the primary first, then each other replica in turn.
        order = sorted(others, key=lambda r: (r != primary, (r - primary) % len(others)))
        target = order[self._state_transfer_attempt % len(order)]
        self._send(target, GetState(view=view, op_number=after, replica=self.replica))
        self._arm(Timer.STATE_TRANSFER)

    def on_state_transfer_timeout(self) -> None:
        assert self.state_transfer_view is not None
        # Cyclic, so the state stays finite for the explorer: the target rotates anyway.
        self._state_transfer_attempt = (self._state_transfer_attempt + 1) % (
            self.config.replica_count - 1
        )
        self._send_get_state()

    def _cancel_state_transfer(self) -> None:
        self.state_transfer_view = None
        self._state_transfer_attempt = 0
        self.timers.pop(Timer.STATE_TRANSFER, None)

    def on_get_state(self, message: GetState) -> None:
        if self.status is not Status.NORMAL:
            return self._ignore("getstate while not normal")
        if message.view != self.view:
            return self._ignore("getstate for another view")
        if message.replica == self.replica or message.op_number > self.op_number:
            return self._ignore("getstate beyond the log")
        if message.op_number < self.log_start:
            # We no longer hold what it lacks: send our checkpoint and the log after it.
            assert self.checkpoint is not None
            after, checkpoint = self.log_start, self.checkpoint
        else:
            after, checkpoint = message.op_number, None
        self._send(
            message.replica,
            NewState(
                view=self.view,
                after_op_number=after,
                entries=self.entries(after),
                checkpoint=checkpoint,
                op_number=self.op_number,
                commit_number=self.commit_number,
            ),
        )

    def on_new_state(self, message: NewState) -> None:
        if self.status is Status.RECOVERING:
            return self._ignore("newstate while recovering")
        if self.state_transfer_view is None or message.view != self.state_transfer_view:
            return self._ignore("newstate not asked for")
        if message.view < self.view:
            return self._ignore("newstate for an older view")
        if (
            message.after_op_number + len(message.entries) != message.op_number
            or message.commit_number > message.op_number
            or not _checkpoint_fits(message.checkpoint, message.after_op_number, required=False)
            or (message.checkpoint is not None and message.commit_number < message.after_op_number)
        ):
            return self._ignore("malformed newstate")
        after = message.after_op_number
        same_view = message.view == self.view and self.status is Status.NORMAL
        if same_view:
            assert not self.is_primary
            if after > self.op_number:
                if message.checkpoint is None:
                    return self._ignore("newstate leaves a gap")
                # Everything we hold is covered by the checkpoint: adopt it.
                self._install_log(after, message.entries, message.checkpoint)
            elif message.op_number > self.op_number:
                # Only extend: entries this replica acknowledged are never dropped.
                self._log_changed_from(self.op_number + 1)
                self.log.extend(message.entries[self.op_number - after :])
            self._cancel_state_transfer()
            self._arm(Timer.PRIMARY)
            self._commit_up_to(min(message.commit_number, self.op_number))
        else:
            if after > self.commit_number and message.checkpoint is None:
                return self._ignore("newstate starts after our commit-number")
            if message.op_number < self.commit_number:
                return self._ignore("newstate shorter than our committed log")
            checkpoint = message.checkpoint if after > self.commit_number else None
            # Our log up to ``after`` is committed; the rest is replaced (trap 1).
            self._enter_view(
                message.view,
                after,
                message.entries,
                checkpoint,
                min(message.commit_number, message.op_number),
            )
        if self.op_number > self.commit_number:
            self._send(
                self.primary,
                PrepareOk(view=self.view, op_number=self.op_number, replica=self.replica),
            )

    # -----------------------------------------------------------------------------------
    # Commit and execution

    def _quorum_op_number(self) -> int:
        """The highest op-number held by f backups besides the primary."""
        acked = sorted(self.acks.values(), reverse=True)
        if len(acked) < self.config.f:
            return self.commit_number
        return acked[self.config.f - 1] if self.config.f > 0 else self.op_number

    def _commit_up_to(self, commit_number: int) -> None:
        """Executes committed ops in order; the primary replies to their clients."""
        assert commit_number <= self.op_number
        while self.commit_number < commit_number:
            entry = self.log[self.commit_number - self.log_start]
            self.commit_number += 1
            request = entry.request
            result = self.service.apply(request.op)
            executed = self.client_table.get(request.client_id)
            if executed is None or executed[0] < request.request_number:
                self.client_table[request.client_id] = (request.request_number, result)
            if self.is_primary and self.status is Status.NORMAL:
                self._reply(request.client_id, request.request_number, result)
            if self.commit_number % self.config.checkpoint_ops == 0:
                self._take_checkpoint()

    def _take_checkpoint(self) -> None:
        """A checkpoint at the commit-number (§5.1, R18): the service's snapshot and the
        client-table; the log keeps only the entries after it."""
        op_number = self.commit_number
        assert self.log_start < op_number <= self.op_number
        self.checkpoint = Checkpoint(
            op_number=op_number,
            service=self.service.snapshot(),
            digest=self.service.digest(),
            client_table=tuple(
                ClientRecord(client_id=c, request_number=n, result=r)
                for c, (n, r) in sorted(self.client_table.items())
            ),
        )
        del self.log[: op_number - self.log_start]
        self.log_start = op_number
        self._checkpoint_dirty = True

    def _pending_request_number(self, client_id: int) -> int | None:
        """The newest request of a client in the uncommitted part of the log."""
        for entry in reversed(self.log[self.commit_number - self.log_start :]):
            if entry.request.client_id == client_id:
                return entry.request.request_number
        return None

    # -----------------------------------------------------------------------------------
    # Effects

    def _flush_prepare(self) -> None:
        """Sends the entries appended since the last PREPARE, batched (VRR §6)."""
        if not (self.status is Status.NORMAL and self.is_primary):
            self._prepare_from = self.op_number + 1
            return
        if self._prepare_from > self.op_number:
            return
        for backup in self._others():
            self._send_prepare(backup, self._prepare_from)
        self._prepare_from = self.op_number + 1
        self._arm(Timer.HEARTBEAT)

    def _send_prepare(self, backup: int, first: int) -> None:
        assert 1 <= first <= self.op_number
        last = self.op_number
        step = self.config.prepare_entries_max
        for start in range(first, last + 1, step):
            end = min(start + step - 1, last)
            self._send(
                backup,
                Prepare(
                    view=self.view,
                    entries=self.entries(start - 1, end),
                    op_number=end,
                    commit_number=self.commit_number,
                ),
            )

    def _reply(self, client_id: int, request_number: int, result: str) -> None:
        assert self.status is Status.NORMAL and self.is_primary
        self._effects.append(
            SendReply(
                reply=Reply(
                    view=self.view,
                    client_id=client_id,
                    request_number=request_number,
                    result=result,
                )
            )
        )

    def _send(self, to: int, message: Message) -> None:
        assert to != self.replica
        self._effects.append(Send(to=to, message=message))

    def _broadcast(self, message: Message) -> None:
        for other in self._others():
            self._send(other, message)

    def _others(self) -> list[int]:
        return [r for r in range(self.config.replica_count) if r != self.replica]

    def _arm(self, timer: Timer) -> None:
        self.timers[timer] = self.config.timer_ticks(timer)

    def _ignore(self, reason: str) -> None:
        self.ignored[reason] = self.ignored.get(reason, 0) + 1

    def _log_changed_from(self, op_number: int) -> None:
        """The log changed from ``op_number`` on: it must be made durable again (R20)."""
        if self._log_dirty_from is None or op_number < self._log_dirty_from:
            self._log_dirty_from = op_number

    def _persist_effects(self) -> list[Effect]:
        """The persist effects for what this event changed (R20): the vote, the checkpoint
        and the log from its first change. A recovering replica persists nothing: what it
        has is not yet state it may vote with."""
        effects: list[Effect] = []
        if self.status is not Status.RECOVERING:
            if self._vote_dirty:
                effects.append(
                    PersistVote(
                        view=self.view,
                        status=durable.VIEW_CHANGE
                        if self.status is Status.VIEW_CHANGE
                        else durable.NORMAL,
                        last_normal_view=self.last_normal_view,
                    )
                )
            if self._checkpoint_dirty and self.checkpoint is not None:
                effects.append(PersistCheckpoint(checkpoint=self.checkpoint))
            if self._log_dirty_from is not None:
                after = max(self._log_dirty_from - 1, self.log_start)
                if after <= self.op_number:
                    effects.append(PersistLog(after=after, entries=self.entries(after)))
        self._vote_dirty = False
        self._log_dirty_from = None
        self._checkpoint_dirty = False
        return effects

    def _take_effects(self) -> list[Effect]:
        """This event's effects: the persist effects first, then the rest (R20)."""
        effects, self._effects = self._effects, []
        persist = self._persist_effects()
        return persist + effects if persist else effects


def _checkpoint_fits(checkpoint: Checkpoint | None, log_start: int, *, required: bool) -> bool:
    """Whether a message's checkpoint is the one its log starts after: present when
    ``required`` and the log does not start at 0, and at ``log_start`` when present."""
    if checkpoint is None:
        return not (required and log_start > 0)
    return checkpoint.op_number == log_start and log_start > 0


def encoded_size(message: Message) -> int:
    """Bytes of a message on the wire (for bounds and benchmarks)."""
    return len(encode(message))
