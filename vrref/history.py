"""The history format: one JSON object a line, the contract between runs and checkers.

Everything that runs the protocol (the threaded runtime, the simulator, the explorer) writes
a history with ``HistoryWriter``, and everything that judges a run (``vrref check``, ``vrref
view``, ``vrref replay``) reads one with ``read_history`` (or ``parse_event``, a line at a
time). The format is deliberately dull: JSON Lines, so a history can be appended to by a
process that may be killed at any moment, read by ``jq`` and ``grep``, and merged from
several files.

**The header.** The first line is an object with ``"schema": "vrref-history"`` and an
integer ``"version"`` (1, the only version so far); any other key is metadata: ``"model"``
(which sequential specification the client operations obey), ``"initial"`` (the model's
initial state) and whatever a writer finds useful. The runtime adds, for the checker that
rebuilds its core: ``"replica"``, ``"replica_count"``, ``"origin"``, ``"read_mode"`` and
``"protocol"``, the core's settings: every field of vrref.core.replica.Config
(``protocol_to_json``; ``protocol_from_json`` reads them back and requires them all, so a
setting the writer stopped recording is an error, not a default)::

    {"schema":"vrref-history","version":1,"replica":0,"replica_count":3,
     "origin":"example.com.","model":"dns","initial":{"records":[
      ["example.com.","SOA",3600,"ns1.example.com. admin.example.com. 1 3600 600 86400 300"],
      ["example.com.","NS",3600,"ns1.example.com."]]},"read_mode":"local",
     "protocol":{"replica_count":3,"heartbeat_ticks":2,"primary_timeout_ticks":8,
      "view_change_resend_ticks":3,"view_change_stalled_ticks":12,"recovery_resend_ticks":3,
      "state_transfer_resend_ticks":3,"pipeline_max":1024,"prepare_entries_max":256,
      "checkpoint_ops":1024}}

(shown on several lines here, one line in a file).

**Events.** Every later line is one event with a ``"type"``; each type is a frozen
dataclass here with ``to_json`` and ``from_json``. ``"time"``, on any event, is an optional
integer in nanoseconds (the simulator: the event's position), informational only: the order
of the lines is the real-time order (a merged set of files is ordered by ``time``).

Client operations (``ClientEvent``, one class for the four types) are shaped like Jepsen's:
an ``invoke`` names the process (an integer or a string, unique per client; a process has at
most one operation outstanding), the function ``f`` and the operation's ``value``; the
completion repeats process and ``f`` and carries the result in ``value``::

    {"type":"invoke","process":3,"f":"update","value":"{...op...}","time":1200}
    {"type":"ok","process":3,"f":"update","value":"{\\"rcode\\":\\"NOERROR\\",\\"serial\\":7}","time":1900}
    {"type":"fail","process":4,"f":"update","value":null,"time":2100}
    {"type":"info","process":5,"f":"read","value":null,"time":2500}
    {"type":"ok","process":6,"f":"read","value":"{...result...}","time":2600,"mode":"local"}

``ok``: the operation took effect and ``value`` is what the client saw. ``fail``: it
certainly did not take effect (the checker asks the model whether a failure is definite;
a timed-out read, for one, is not). ``info``: unknown; it may take effect at any later time
or never. An invocation without a completion is as good as ``info``. ``mode`` says how a DNS
read was served: ``"linearizable"`` (through the primary or the log) or ``"local"`` (a
replica's own committed state, possibly stale); checkers judge each by its own standard.
Values are any JSON; the DNS service uses its canonical operation and result texts. Keys a
client event does not define are ignored (Jepsen's histories carry more).

Replica events, each with who writes it (R: the runtime, vrref/runtime/node.py; S: the
simulator, checker/sim/simulate.py; E: the explorer's counterexamples,
checker/explore/counterexamples.py)::

    {"type":"boot","replica":0,"time":10}                          Boot: a fresh core (R)
    {"type":"restart","replica":0,"nonce":12345,"time":11}         Restart: recovering (R S E)
    {"type":"reopen","replica":0,"disk":{...},"time":11}           Reopen: restarted from its
                                                                   disk (R S E)
    {"type":"crash","replica":1,"error":"AssertionError('x')"}     Crash: the core raised (R)
    {"type":"crash","replica":1}                                   or it lost its state (S E)
    {"type":"deliver","replica":1,"messages":[{...}],"time":14}    Deliver: on_messages (R)
    {"type":"deliver","client":100,"message":{...}}                or one message to a
                                                                   replica or a client (E)
    {"type":"drop","replica":2,"message":{...}}                    Drop: lost (E)
    {"type":"duplicate","replica":2,"message":{...}}               Duplicate: delivered and
                                                                   kept in flight (E)
    {"type":"send","replica":0,"to":1,"message":{...},"time":13}   Send: the core's (R)
    {"type":"tick","replica":2,"time":15}                          Tick: on_tick (R)
    {"type":"timeout","replica":2,"timer":"primary"}               Timeout: a timer fired (E)
    {"type":"timeout","client":100}                                or a client resent (E)
    {"type":"state","replica":0,"status":"normal","view":0,"last_normal_view":0,
     "op_number":3,"commit_number":3,"service_digest":"5d0c...","time":17}
                                                                   State: after an input (R)
    {"type":"state","replica":0,"status":"normal","view":0,"last_normal_view":0,
     "op_number":1,"commit_number":1,"service_digest":"c0.1","log":["c0.1"]}
                                                                   or after a step (E)
    {"type":"state","replica":1,"status":"crashed"}                a crashed replica (E)
    {"type":"partition","groups":[[0],[1,2]],"time":40}            Partition: cut (S)
    {"type":"partition","oneway":[0,1],"time":41}                  0's messages to 1 lost (S)
    {"type":"heal","time":42}                                      Heal: all links back (S)
    {"type":"note","violation":"...","explain":"..."}              Note: the last line (E)
    {"type":"final","replica":0,"since":90,"commit_number":12,
     "records":[["example.com.","NS",3600,"ns1.example.com."]],"time":95}
                                                                   Final: a replica's zone
                                                                   at the end (R, nemesis)

``message`` and ``messages`` hold the messages as vrref.core.messages.to_json writes them
(decoding them is the reader's business). A ``state`` records ``STATE_FIELDS``: the fields
of vrref.core.replica.Snapshot but ``replica`` (the event's own) and ``log`` (unbounded;
``service_digest`` stands for its committed part), each as the snapshot holds it.
``replica_state`` is the one function that records them (the runtime after every input,
the explorer after every step that changes a replica); a state may add ``"log"``, the ops
of the log's entries (the explorer, whose logs are short). The reader accepts a state with
fields missing (counterexamples written before the explorer recorded ``last_normal_view``
and ``service_digest`` have neither) and ``State.missing`` names them: trace validation
(checker/trace.py) fails on any, and ``vrref replay`` on any but those two.

The rule for types and fields is closed: a client type (``invoke``, ``ok``, ``fail``,
``info``) is validated; a replica type is parsed into its dataclass, every field checked and
a field it does not define an error; anything else is an error naming the file and line. So
a typo (``"tpye"``, ``"okay"``, ``"comit_number"``) never silently drops an operation or a
field from a check, and a new event or field is added by adding it here.

This module imports nothing from the checker, and vrref.core does not import it: the
runtime writes histories with it.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import typing
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Final, Literal, Self, TypeAlias

from vrref.core import durable
from vrref.core.durable import Durable
from vrref.core.messages import LogEntry
from vrref.core.replica import Config, Replica, Snapshot

SCHEMA: Final = "vrref-history"
VERSION: Final = 1

CLIENT_EVENT_TYPES: Final = frozenset({"invoke", "ok", "fail", "info"})
COMPLETION_TYPES: Final = frozenset({"ok", "fail", "info"})
READ_MODES: Final = frozenset({"linearizable", "local"})
LINE_BYTES_MAX: Final = 16 << 20  # a longer line is not a history line (nor memory we spend)

Kind = Literal["invoke", "ok", "fail", "info"]
Process = int | str
MessageJson: TypeAlias = dict[str, Any]
"""A message as vrref.core.messages.to_json writes it."""


class HistoryError(ValueError):
    """A history file that does not follow this format: names the file and the line."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path = path
        self.line = line
        self.message = message
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {message}")

    def __reduce__(self) -> tuple[type[HistoryError], tuple[str, int | None, str]]:
        """Pickles by its fields (a worker process's error reaches its pool intact, where
        the default, by the message alone, cannot be rebuilt and hangs the pool)."""
        return type(self), (self.path, self.line, self.message)


# ---------------------------------------------------------------------------- fields


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _time(obj: dict[str, Any], path: str, line: int) -> int | None:
    time = obj.get("time")
    if time is None:
        return None
    if not _is_int(time):
        raise HistoryError(path, line, '"time" must be an integer (nanoseconds)')
    return int(time)


class _Fields:
    """An event object's fields, taken one at a time and checked (an error names the file,
    the line and the field); ``done`` rejects the fields nobody took."""

    __slots__ = ("_kind", "_line", "_obj", "_path", "_taken")

    def __init__(self, obj: dict[str, Any], path: str, line: int) -> None:
        self._obj = obj
        self._path = path
        self._line = line
        self._kind = obj.get("type")
        self._taken = {"type", "time"}

    def error(self, message: str) -> HistoryError:
        return HistoryError(self._path, self._line, message)

    def _take(self, key: str) -> Any:
        self._taken.add(key)
        return self._obj.get(key)

    def time(self) -> int | None:
        return _time(self._obj, self._path, self._line)

    def opt_integer(self, key: str) -> int | None:
        value = self._take(key)
        if value is None:
            return None
        if not _is_int(value):
            raise self.error(f'"{key}" must be an integer')
        return int(value)

    def integer(self, key: str) -> int:
        value = self.opt_integer(key)
        if value is None:
            raise self.error(f'a {self._kind} event needs an integer "{key}"')
        return value

    def opt_text(self, key: str) -> str | None:
        value = self._take(key)
        if value is not None and not isinstance(value, str):
            raise self.error(f'"{key}" must be a string')
        return value

    def opt_message(self, key: str) -> MessageJson | None:
        value = self._take(key)
        if value is not None and not isinstance(value, dict):
            raise self.error(f'"{key}" must be a message (a JSON object)')
        return value

    def message(self, key: str) -> MessageJson:
        value = self.opt_message(key)
        if value is None:
            raise self.error(f'a {self._kind} event needs a "{key}" (a JSON object)')
        return value

    def opt_messages(self, key: str) -> tuple[MessageJson, ...] | None:
        value = self._take(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(m, dict) for m in value):
            raise self.error(f'"{key}" must be a list of messages (JSON objects)')
        return tuple(value)

    def opt_integers(self, key: str) -> tuple[int, ...] | None:
        value = self._take(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(_is_int(v) for v in value):
            raise self.error(f'"{key}" must be a list of integers')
        return tuple(value)

    def opt_groups(self, key: str) -> tuple[tuple[int, ...], ...] | None:
        value = self._take(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(
            isinstance(g, list) and all(_is_int(v) for v in g) for g in value
        ):
            raise self.error(f'"{key}" must be a list of lists of integers')
        return tuple(tuple(g) for g in value)

    def typed(self, key: str, hint: object) -> Any:
        """An optional field whose type is a dataclass field's (int or str, say)."""
        value = self._take(key)
        if value is None or _has_type(value, hint):
            return value
        name = getattr(hint, "__name__", str(hint))
        raise self.error(f'"{key}" must be of type {name}, got {value!r}')

    def done(self) -> None:
        extra = sorted(set(self._obj) - self._taken)
        if extra:
            raise self.error(f"a {self._kind} event has no field {extra[0]!r}")


def _has_type(value: object, hint: object) -> bool:
    if hint is int:
        return _is_int(value)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True  # a hint isinstance cannot test (none today: tests/checker/test_history.py)


def _exactly_one(what: str, **options: object) -> None:
    given = [name for name, value in options.items() if value is not None]
    if len(given) != 1:
        names = " or ".join(f'"{name}"' for name in options)
        raise ValueError(f"{what} needs exactly one of {names}")


# ---------------------------------------------------------------------------- client events


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientEvent:
    """One invocation or completion of a client operation (``invoke``, ``ok``, ``fail`` or
    ``info``: one class, since they share their fields)."""

    type: Kind
    process: Process
    f: str
    value: Any
    time: int | None = None
    mode: str | None = None
    line: int = 0  # 1-based line in its file; 0 when not read from a file

    def to_json(self) -> dict[str, Any]:
        event: dict[str, Any] = {
            "type": self.type,
            "process": self.process,
            "f": self.f,
            "value": self.value,
        }
        if self.time is not None:
            event["time"] = self.time
        if self.mode is not None:
            event["mode"] = self.mode
        return event

    @classmethod
    def from_json(cls, obj: dict[str, Any], path: str = "", line: int = 0) -> ClientEvent:
        kind = obj.get("type")
        if kind not in CLIENT_EVENT_TYPES:
            raise HistoryError(path, line, f"not a client event type: {kind!r}")
        time = _time(obj, path, line)
        process = obj.get("process")
        if not isinstance(process, (int, str)) or isinstance(process, bool):
            raise HistoryError(path, line, '"process" must be an integer or a string')
        f = obj.get("f")
        if not isinstance(f, str):
            raise HistoryError(path, line, '"f" must be a string')
        if "value" not in obj:
            raise HistoryError(path, line, 'a client event needs a "value" (null if none)')
        mode = obj.get("mode")
        if mode is not None:
            if kind == "invoke":
                raise HistoryError(path, line, '"mode" belongs on the completion, not the invoke')
            if mode not in READ_MODES:
                raise HistoryError(path, line, f"unknown read mode {mode!r}")
        return cls(
            type=kind,
            process=process,
            f=f,
            value=obj["value"],
            time=time,
            mode=mode,
            line=line,
        )


# ---------------------------------------------------------------------------- replica events


@dataclass(frozen=True, slots=True, kw_only=True)
class _ReplicaOnly:
    """What Boot and Tick share: an input to one replica that carries nothing else."""

    type: ClassVar[str]
    replica: int
    time: int | None = None

    def to_json(self) -> dict[str, Any]:
        return _with_time({"type": self.type, "replica": self.replica}, self.time)

    @classmethod
    def from_json(cls, obj: dict[str, Any], path: str = "", line: int = 0) -> Self:
        f = _Fields(obj, path, line)
        event = cls(replica=f.integer("replica"), time=f.time())
        f.done()
        return event


@dataclass(frozen=True, slots=True, kw_only=True)
class Boot(_ReplicaOnly):
    """A replica process started for the first time: a fresh core."""

    type: ClassVar[Literal["boot"]] = "boot"


@dataclass(frozen=True, slots=True, kw_only=True)
class Restart:
    """A replica restarted without its state: a core recovering with ``nonce`` (none in
    histories the simulator wrote before it recorded the nonce)."""

    type: ClassVar[Literal["restart"]] = "restart"
    replica: int
    nonce: int | None = None
    time: int | None = None

    def to_json(self) -> dict[str, Any]:
        event: dict[str, Any] = {"type": self.type, "replica": self.replica}
        if self.nonce is not None:
            event["nonce"] = self.nonce
        return _with_time(event, self.time)

    @classmethod
    def from_json(cls, obj: dict[str, Any], path: str = "", line: int = 0) -> Restart:
        f = _Fields(obj, path, line)
        event = cls(replica=f.integer("replica"), nonce=f.opt_integer("nonce"), time=f.time())
        f.done()
        return event


@dataclass(frozen=True, slots=True, kw_only=True)
class Reopen:
    """A replica restarted with what it had made durable: a core ``Replica.restarted``
    from ``disk`` (vrref/core/durable.py's ``to_json`` of what the process loaded)."""

    type: ClassVar[Literal["reopen"]] = "reopen"
    replica: int
    disk: Mapping[str, Any]
    time: int | None = None

    def to_json(self) -> dict[str, Any]:
        return _with_time(
            {"type": self.type, "replica": self.replica, "disk": dict(self.disk)}, self.time
        )

    @classmethod
    def from_json(cls, obj: dict[str, Any], path: str = "", line: int = 0) -> Reopen:
        f = _Fields(obj, path, line)
        replica = f.integer("replica")
        disk = f._take("disk")
        if not isinstance(disk, dict):
            raise f.error('"disk" must be an object (vrref/core/durable.py to_json)')
        event = cls(replica=replica, disk=disk, time=f.time())
        f.done()
        return event

    def durable(self) -> Durable:
        """The disk; raises CodecError when it is not one."""
        return durable.from_json(dict(self.disk))


@dataclass(frozen=True, slots=True, kw_only=True)
class Crash:
    """The replica's core raised (``error``: its repr, the runtime) or the replica lost its
    state (no error: the simulator's and the explorer's failure)."""

    type: ClassVar[Literal["crash"]] = "crash"
    replica: int
    error: str | None = None
    time: int | None = None

    def to_json(self) -> dict[str, Any]:
        event: dict[str, Any] = {"type": self.type, "replica": self.replica}
        if self.error is not None:
            event["error"] = self.error
        return _with_time(event, self.time)

    @classmethod
    def from_json(cls, obj: dict[str, Any], path: str = "", line: int = 0) -> Crash:
        f = _Fields(obj, path, line)
        event = cls(replica=f.integer("replica"), error=f.opt_text("error"), time=f.time())
        f.done()
        return event


def _address(event: dict[str, Any], replica: int | None, client: int | None) -> None:
    if replica is not None:
        event["replica"] = replica
    if client is not None:
        event["client"] = client


@dataclass(frozen=True, slots=True, kw_only=True)
class Deliver:
    """Messages delivered: a batch given to a replica's ``on_messages`` (``messages``, the
    runtime), or one message delivered to a replica or a client (``message``, the explorer).
    Exactly one of ``replica`` and ``client``, and of ``messages`` and ``message``."""

    type: ClassVar[Literal["deliver"]] = "deliver"
    replica: int | None = None
    client: int | None = None
    messages: tuple[MessageJson, ...] | None = None
    message: MessageJson | None = None
    time: int | None = None

    def __post_init__(self) -> None:
        _exactly_one("a deliver", replica=self.replica, client=self.client)
        _exactly_one("a deliver", messages=self.messages, message=self.message)

    def to_json(self) -> dict[str, Any]:
        event: dict[str, Any] = {"type": self.type}
        _address(event, self.replica, self.client)
        if self.messages is not None:
            event["messages"] = list(self.messages)
        else:
            event["message"] = self.message
        return _with_time(event, self.time)

    @classmethod
    def from_json(cls, obj: dict[str, Any], path: str = "", line: int = 0) -> Deliver:
        f = _Fields(obj, path, line)
        replica, client = f.opt_integer("replica"), f.opt_integer("client")
        messages, message = f.opt_messages("messages"), f.opt_message("message")
        f.done()
        try:
            return cls(
                replica=replica, client=client, messages=messages, message=message, time=f.time()
            )
        except ValueError as error:  # __post_init__'s: which fields go together
            raise f.error(str(error)) from None


@dataclass(frozen=True, slots=True, kw_only=True)
class _InFlight:
    """What Drop and Duplicate share: one message in flight to a replica or a client."""

    type: ClassVar[str]
    replica: int | None = None
    client: int | None = None
    message: MessageJson
    time: int | None = None

    def __post_init__(self) -> None:
        _exactly_one(f"a {self.type}", replica=self.replica, client=self.client)

    def to_json(self) -> dict[str, Any]:
        event: dict[str, Any] = {"type": self.type}
        _address(event, self.replica, self.client)
        event["message"] = self.message
        return _with_time(event, self.time)

    @classmethod
    def from_json(cls, obj: dict[str, Any], path: str = "", line: int = 0) -> Self:
        f = _Fields(obj, path, line)
        replica, client, message = (
            f.opt_integer("replica"),
            f.opt_integer("client"),
            f.message("message"),
        )
        f.done()
        try:
            return cls(replica=replica, client=client, message=message, time=f.time())
        except ValueError as error:  # __post_init__'s: which fields go together
            raise f.error(str(error)) from None


@dataclass(frozen=True, slots=True, kw_only=True)
class Drop(_InFlight):
    """A message in flight to a replica or a client was lost."""

    type: ClassVar[Literal["drop"]] = "drop"


@dataclass(frozen=True, slots=True, kw_only=True)
class Duplicate(_InFlight):
    """A message in flight to a replica or a client was delivered and kept in flight."""

    type: ClassVar[Literal["duplicate"]] = "duplicate"


@dataclass(frozen=True, slots=True, kw_only=True)
class Send:
    """A message the replica's core sent to replica ``to`` (in the order the core sent)."""

    type: ClassVar[Literal["send"]] = "send"
    replica: int
    to: int
    message: MessageJson
    time: int | None = None

    def to_json(self) -> dict[str, Any]:
        event = {"type": self.type, "replica": self.replica, "to": self.to, "message": self.message}
        return _with_time(event, self.time)

    @classmethod
    def from_json(cls, obj: dict[str, Any], path: str = "", line: int = 0) -> Send:
        f = _Fields(obj, path, line)
        event = cls(
            replica=f.integer("replica"),
            to=f.integer("to"),
            message=f.message("message"),
            time=f.time(),
        )
        f.done()
        return event


@dataclass(frozen=True, slots=True, kw_only=True)
class Tick(_ReplicaOnly):
    """The replica's core was given ``on_tick``."""

    type: ClassVar[Literal["tick"]] = "tick"


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeout:
    """A timer fired: ``timer`` at ``replica``, or the resend timer of ``client``."""

    type: ClassVar[Literal["timeout"]] = "timeout"
    replica: int | None = None
    timer: str | None = None
    client: int | None = None
    time: int | None = None

    def __post_init__(self) -> None:
        at_replica = self.replica is not None and self.timer is not None and self.client is None
        at_client = self.client is not None and self.replica is None and self.timer is None
        if not (at_replica or at_client):
            raise ValueError('a timeout needs "replica" and "timer", or "client" alone')

    def to_json(self) -> dict[str, Any]:
        event: dict[str, Any] = {"type": self.type}
        if self.client is not None:
            event["client"] = self.client
        else:
            event["replica"] = self.replica
            event["timer"] = self.timer
        return _with_time(event, self.time)

    @classmethod
    def from_json(cls, obj: dict[str, Any], path: str = "", line: int = 0) -> Timeout:
        f = _Fields(obj, path, line)
        replica, timer, client = (
            f.opt_integer("replica"),
            f.opt_text("timer"),
            f.opt_integer("client"),
        )
        f.done()
        try:
            return cls(replica=replica, timer=timer, client=client, time=f.time())
        except ValueError as error:  # __post_init__'s: which fields go together
            raise f.error(str(error)) from None


# ---------------------------------------------------------------------------- replica states

STATE_UNRECORDED: Final[Mapping[str, str]] = {
    "replica": "the state event's own replica",
    "log": "unbounded; service_digest stands for its committed part",
    "checkpoint": "its service snapshot is as large as the zone; checkpoint_digest stands for it",
}
"""The fields of Snapshot that a recorded state does not hold, and why."""

STATE_FIELDS: Final[tuple[str, ...]] = tuple(
    f.name for f in dataclasses.fields(Snapshot) if f.name not in STATE_UNRECORDED
)
"""What every recorded replica state holds: Snapshot's fields but STATE_UNRECORDED, in
Snapshot's order, each as the snapshot holds it."""

_STATE_TYPES: Final[Mapping[str, object]] = {
    name: hint for name, hint in typing.get_type_hints(Snapshot).items() if name in STATE_FIELDS
}

STATE_LOG: Final = "log"
"""The optional field of a state with the ops of the log's entries (the explorer's)."""

CRASHED: Final = "crashed"
"""The status of a state recorded for a replica that has crashed (no other field)."""

_STATE_READERS: Final[Mapping[str, Callable[[Replica], Any]]] = {
    "status": lambda core: core.status.value,
    "service_digest": lambda core: core.service.digest(),
    "checkpoint_digest": lambda core: "" if core.checkpoint is None else core.checkpoint.digest,
}
"""How replica_state reads the STATE_FIELDS that are not the core's attribute of that name
(as Replica.snapshot does; tests/checker/test_history.py checks they agree)."""


def replica_state(core: Replica, *, log: bool = False) -> dict[str, Any]:
    """What a ``state`` event records of ``core``: each of STATE_FIELDS as its Snapshot holds
    it, read from the core directly (a snapshot copies the whole log), and with ``log`` the
    ops of the log's entries. The one function every writer records states with."""
    readers = _STATE_READERS
    state = {
        name: readers[name](core) if name in readers else getattr(core, name)
        for name in STATE_FIELDS
    }
    if log:
        state[STATE_LOG] = log_ops(core.log)
    return state


def log_ops(log: Iterable[LogEntry]) -> list[str]:
    """A log as a state's ``"log"`` records it: its entries' ops."""
    return [entry.request.op for entry in log]


@dataclass(frozen=True, slots=True, kw_only=True)
class State:
    """A replica's state after an input or a step: ``values`` holds the recorded fields,
    STATE_FIELDS and optionally ``"log"`` (a crashed replica's: ``{"status": "crashed"}``)."""

    type: ClassVar[Literal["state"]] = "state"
    replica: int
    values: Mapping[str, Any]
    time: int | None = None

    def __post_init__(self) -> None:
        unknown = [k for k in self.values if k not in _STATE_TYPES and k != STATE_LOG]
        if unknown:
            raise ValueError(f"a state has no field {unknown[0]!r}")

    @classmethod
    def of(cls, core: Replica, *, log: bool = False, time: int | None = None) -> State:
        """The state event of ``core`` now (``replica_state``)."""
        return cls(replica=core.replica, values=replica_state(core, log=log), time=time)

    @property
    def crashed(self) -> bool:
        return self.values.get("status") == CRASHED

    def missing(self) -> tuple[str, ...]:
        """The STATE_FIELDS this state lacks (none for a crashed replica's)."""
        if self.crashed:
            return ()
        return tuple(name for name in STATE_FIELDS if name not in self.values)

    def to_json(self) -> dict[str, Any]:
        return _with_time({"type": self.type, "replica": self.replica, **self.values}, self.time)

    @classmethod
    def from_json(cls, obj: dict[str, Any], path: str = "", line: int = 0) -> State:
        f = _Fields(obj, path, line)
        replica = f.integer("replica")
        values: dict[str, Any] = {}
        for name, hint in _STATE_TYPES.items():
            value = f.typed(name, hint)
            if value is not None:
                values[name] = value
        ops = f.typed(STATE_LOG, list)
        if ops is not None:
            if not all(isinstance(op, str) for op in ops):
                raise f.error(f'"{STATE_LOG}" must be a list of ops (strings)')
            values[STATE_LOG] = ops
        event = cls(replica=replica, values=values, time=f.time())
        f.done()
        return event


# ---------------------------------------------------------------------------- faults and notes


@dataclass(frozen=True, slots=True, kw_only=True)
class Partition:
    """The network was cut: into ``groups`` (links between groups lost; a replica in no group
    is cut from the ones listed), or one way, ``oneway`` = [a, b]: a's messages to b lost."""

    type: ClassVar[Literal["partition"]] = "partition"
    groups: tuple[tuple[int, ...], ...] | None = None
    oneway: tuple[int, ...] | None = None
    time: int | None = None

    def __post_init__(self) -> None:
        _exactly_one("a partition", groups=self.groups, oneway=self.oneway)
        if self.oneway is not None and len(self.oneway) != 2:
            raise ValueError('"oneway" must be two replicas [from, to]')

    def to_json(self) -> dict[str, Any]:
        event: dict[str, Any] = {"type": self.type}
        if self.groups is not None:
            event["groups"] = [list(g) for g in self.groups]
        else:
            event["oneway"] = list(self.oneway or ())
        return _with_time(event, self.time)

    @classmethod
    def from_json(cls, obj: dict[str, Any], path: str = "", line: int = 0) -> Partition:
        f = _Fields(obj, path, line)
        groups, oneway = f.opt_groups("groups"), f.opt_integers("oneway")
        f.done()
        try:
            return cls(groups=groups, oneway=oneway, time=f.time())
        except ValueError as error:  # __post_init__'s: which fields go together
            raise f.error(str(error)) from None


@dataclass(frozen=True, slots=True, kw_only=True)
class Heal:
    """Every link of the network is back."""

    type: ClassVar[Literal["heal"]] = "heal"
    time: int | None = None

    def to_json(self) -> dict[str, Any]:
        return _with_time({"type": self.type}, self.time)

    @classmethod
    def from_json(cls, obj: dict[str, Any], path: str = "", line: int = 0) -> Heal:
        f = _Fields(obj, path, line)
        event = cls(time=f.time())
        f.done()
        return event


@dataclass(frozen=True, slots=True, kw_only=True)
class Note:
    """What a trace shows: the property it breaks (``violation``) and why (``explain``)."""

    type: ClassVar[Literal["note"]] = "note"
    violation: str | None = None
    explain: str | None = None
    time: int | None = None

    def to_json(self) -> dict[str, Any]:
        event: dict[str, Any] = {"type": self.type}
        if self.violation is not None:
            event["violation"] = self.violation
        if self.explain is not None:
            event["explain"] = self.explain
        return _with_time(event, self.time)

    @classmethod
    def from_json(cls, obj: dict[str, Any], path: str = "", line: int = 0) -> Note:
        f = _Fields(obj, path, line)
        event = cls(violation=f.opt_text("violation"), explain=f.opt_text("explain"), time=f.time())
        f.done()
        return event


FinalRecord: TypeAlias = tuple[str, str, int, str]
"""One record of a final state: owner name, type, TTL, rdata (as the header's "initial")."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FinalZone:
    """A replica's committed state at the end of a run: its zone's ``records``, read no
    earlier than ``since`` (nanoseconds, the clock of ``time``) and no later than ``time``.

    The runtime writes one when a replica stops cleanly (``since``: when it stopped taking
    client operations; it then lets the cluster's commits reach it before it reads its
    zone), and the nemesis one per replica from an AXFR at the end of its run (``since``:
    when it sent the transfer). ``vrref check`` holds each one to the standard of a
    linearizable read of the whole zone over [since, time]: a replica that serves state
    older than an update acknowledged before ``since`` fails, with the names that differ
    (checker/lin/finals.py).
    """

    type: ClassVar[Literal["final"]] = "final"
    replica: int
    records: tuple[FinalRecord, ...]
    since: int
    commit_number: int | None = None
    time: int | None = None

    def __post_init__(self) -> None:
        if self.time is not None and self.time < self.since:
            raise ValueError('a final state\'s "time" precedes its "since"')

    def to_json(self) -> dict[str, Any]:
        event: dict[str, Any] = {
            "type": self.type,
            "replica": self.replica,
            "since": self.since,
            "records": [list(r) for r in self.records],
        }
        if self.commit_number is not None:
            event["commit_number"] = self.commit_number
        return _with_time(event, self.time)

    @classmethod
    def from_json(cls, obj: dict[str, Any], path: str = "", line: int = 0) -> FinalZone:
        f = _Fields(obj, path, line)
        replica = f.integer("replica")
        since = f.integer("since")
        commit_number = f.opt_integer("commit_number")
        raw = f._take("records")
        if not isinstance(raw, list) or not all(_is_final_record(r) for r in raw):
            raise f.error('"records" must be a list of [name, type, ttl, rdata]')
        f.done()
        try:
            return cls(
                replica=replica,
                records=tuple((r[0], r[1], int(r[2]), r[3]) for r in raw),
                since=since,
                commit_number=commit_number,
                time=f.time(),
            )
        except ValueError as error:
            raise f.error(str(error)) from None


def _is_final_record(value: object) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 4
        and isinstance(value[0], str)
        and isinstance(value[1], str)
        and _is_int(value[2])
        and isinstance(value[3], str)
    )


def _with_time(event: dict[str, Any], time: int | None) -> dict[str, Any]:
    if time is not None:
        event["time"] = time
    return event


ReplicaRecord: TypeAlias = (
    Boot
    | Restart
    | Reopen
    | Crash
    | Deliver
    | Drop
    | Duplicate
    | Send
    | Tick
    | Timeout
    | State
    | Partition
    | Heal
    | Note
    | FinalZone
)
"""The typed events other than client operations (replicas', the network's, notes)."""

_RECORD_CLASSES: Final[tuple[type[ReplicaRecord], ...]] = (
    Boot,
    Restart,
    Reopen,
    Crash,
    Deliver,
    Drop,
    Duplicate,
    Send,
    Tick,
    Timeout,
    State,
    Partition,
    Heal,
    Note,
    FinalZone,
)
REPLICA_RECORDS: Final[Mapping[str, type[ReplicaRecord]]] = {c.type: c for c in _RECORD_CLASSES}
"""Each replica event type's dataclass, by its "type"."""
REPLICA_EVENT_TYPES: Final = frozenset(REPLICA_RECORDS)

Record: TypeAlias = ClientEvent | ReplicaRecord
"""What a writer writes."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplicaEvent:
    """A replica (or network, or note) event as read from a file: the typed event and its
    line."""

    record: ReplicaRecord
    line: int = 0  # 1-based line in its file; 0 when not read from a file

    @property
    def type(self) -> str:
        return self.record.type

    @property
    def time(self) -> int | None:
        return self.record.time

    @property
    def fields(self) -> dict[str, Any]:
        """The event as JSON, with its "type": what its line holds (in canonical order)."""
        return self.record.to_json()


Event: TypeAlias = ClientEvent | ReplicaEvent
"""What a reader reads."""


@dataclass(frozen=True, slots=True, kw_only=True)
class History:
    path: str
    header: dict[str, Any]
    events: tuple[Event, ...]

    @property
    def client_events(self) -> tuple[ClientEvent, ...]:
        return tuple(e for e in self.events if isinstance(e, ClientEvent))


# ---------------------------------------------------------------------------- the header


def header(**meta: Any) -> dict[str, Any]:
    """The first line of a history, with ``meta`` (model, initial state, replica, ...)."""
    for key in ("schema", "version"):
        if key in meta:
            raise ValueError(f"{key!r} is set by the format, not by the writer")
    return {"schema": SCHEMA, "version": VERSION, **meta}


def protocol_to_json(config: Config) -> dict[str, Any]:
    """The header's ``"protocol"``: every field of ``config``, so a checker can rebuild the
    core that ran."""
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(Config)}


def protocol_from_json(protocol: object) -> Config:
    """The Config of a header's ``"protocol"``; ValueError naming a setting that is missing
    (a writer that stopped recording it: not replaced by the default), unknown or not of its
    field's type, or that Config rejects."""
    if not isinstance(protocol, dict):
        raise ValueError('"protocol" must be an object of the core\'s settings')
    hints = typing.get_type_hints(Config)
    names = [f.name for f in dataclasses.fields(Config)]
    missing = [name for name in names if name not in protocol]
    if missing:
        raise ValueError(f'"protocol" lacks the setting {missing[0]!r}')
    unknown = sorted(set(protocol) - set(names))
    if unknown:
        raise ValueError(f'"protocol" has an unknown setting {unknown[0]!r}')
    for name in names:
        if not _has_type(protocol[name], hints[name]):
            raise ValueError(f'"protocol" setting {name!r} is {protocol[name]!r}')
    return Config(**protocol)


def parse_header(obj: object, path: str, line: int) -> dict[str, Any]:
    if not isinstance(obj, dict) or obj.get("schema") != SCHEMA:
        raise HistoryError(path, line, f'the first line must be a {{"schema":"{SCHEMA}",...}}')
    version = obj.get("version")
    if version != VERSION:
        raise HistoryError(path, line, f"unsupported history version {version!r}")
    return obj


# ---------------------------------------------------------------------------- reading


def parse_event(obj: object, path: str, line: int) -> Event:
    """Validates one event object (not the header) into its typed event."""
    if not isinstance(obj, dict):
        raise HistoryError(path, line, "an event must be a JSON object")
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise HistoryError(path, line, 'an event needs a string "type"')
    record = REPLICA_RECORDS.get(kind)
    if record is not None:
        return ReplicaEvent(record=record.from_json(obj, path, line), line=line)
    if kind not in CLIENT_EVENT_TYPES:
        raise HistoryError(path, line, f"unknown event type {kind!r}")
    return ClientEvent.from_json(obj, path, line)


def iter_lines(path: str | Path) -> Generator[tuple[int, object], None, None]:
    """(line number, decoded JSON) for every non-blank line; a bad line raises HistoryError."""
    name = str(path)
    try:
        with open(path, encoding="utf-8") as file:
            for number, text in enumerate(file, start=1):
                if len(text) > LINE_BYTES_MAX:
                    raise HistoryError(name, number, "line too long")
                if not text.strip():
                    continue
                try:
                    yield number, json.loads(text)
                except json.JSONDecodeError as error:
                    raise HistoryError(name, number, f"not JSON: {error.msg}") from None
    except OSError as error:
        raise HistoryError(name, None, error.strerror or str(error)) from None
    except UnicodeDecodeError:
        raise HistoryError(name, None, "not UTF-8 text") from None


def read_header(path: str | Path) -> dict[str, Any]:
    """The header of a history file, without reading its events."""
    lines = iter_lines(path)
    try:
        for number, obj in lines:
            return parse_header(obj, str(path), number)
    finally:
        lines.close()
    raise HistoryError(str(path), None, "empty history: no header line")


def stream_history(path: str | Path) -> tuple[dict[str, Any], Iterator[Event]]:
    """The header, and the events one at a time, each validated as it is read: for a
    reader that need not hold a long history in memory (trace validation)."""
    name = str(path)
    lines = iter_lines(path)
    for number, obj in lines:
        head = parse_header(obj, name, number)
        break
    else:
        raise HistoryError(name, None, "empty history: no header line")
    return head, (parse_event(obj, name, number) for number, obj in lines)


def read_history(path: str | Path) -> History:
    """Reads and validates a whole history file."""
    head, events = stream_history(path)
    return History(path=str(path), header=head, events=tuple(events))


# ---------------------------------------------------------------------------- writing


_ENCODE: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
"""One line's JSON (an encoder made once: json.dumps with options makes one a call)."""


def _run(actions: list[Callable[[], None]]) -> None:
    """Runs each action in order; one that raises does not stop the others."""
    error: BaseException | None = None
    for action in actions:
        try:
            action()
        except Exception as failure:
            error = error or failure
    if error is not None:
        raise error


class HistoryWriter:
    """Appends events to a history file: thread-safe, header written once, whole lines only.

    Opening an existing non-empty file appends to it (its header stays; ``meta`` is then
    ignored). Lines are kept here and handed to the OS, whole, by ``flush`` or once
    ``buffer_bytes`` of them are waiting; ``close`` flushes and closes. So a process killed
    with SIGKILL loses the lines since its last flush and leaves no torn line behind (unless
    it dies inside the write call itself, which the reader then names), and a restarted
    process appends after whole lines.

    **Write-ahead.** ``then(action)`` runs ``action`` once every line written so far has
    been handed to the OS (at once when none is waiting, else right after the flush that
    writes them, on the flushing thread). The runtime records a client operation's
    completion, then sends the reply with ``then``, and flushes once per batch of events:
    so a reply never leaves before its completion is in the file, at the cost of one write
    per batch, not one per reply. (Handed to the OS is what survives SIGKILL, the fault
    the history is for; it is not fsynced, so a power cut may lose lines that a client saw
    answered.)
    """

    def __init__(self, path: str | Path, *, buffer_bytes: int = 1 << 16, **meta: Any) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._buffer_bytes = buffer_bytes
        self._lines: list[str] = []
        self._waiting = 0  # characters in _lines
        self._actions: list[Callable[[], None]] = []  # run once _lines reach the OS
        self._file = self.path.open("ab", buffering=0)
        self._closed = False
        if self.path.stat().st_size == 0:
            self._write_line(header(**meta))
            self.flush()

    def _write_line(self, obj: dict[str, Any]) -> None:
        line = _ENCODE(obj) + "\n"
        due: list[Callable[[], None]] = []
        with self._lock:
            if self._closed:
                raise ValueError(f"{self.path}: the history writer is closed")
            self._lines.append(line)
            self._waiting += len(line)
            if self._waiting >= self._buffer_bytes:
                due = self._flush_locked()
        _run(due)

    def write(self, event: Record | dict[str, Any]) -> None:
        """Appends one event: a typed event, or an event's JSON object, which is parsed into
        its typed event first (one that is not an event raises ValueError) and then written
        as given (the runtime's DNS frontend hands its client events over so, and the
        dataclass would only be built to be turned back into the same object)."""
        if isinstance(event, dict):
            try:
                parse_event(event, str(self.path), 0)
            except HistoryError as error:
                raise ValueError(f"not a history event: {error.message}") from None
            self._write_line(event)
        else:
            self._write_line(event.to_json())

    def invoke(self, process: Process, f: str, value: Any, *, time: int | None = None) -> None:
        self.write(ClientEvent(type="invoke", process=process, f=f, value=value, time=time))

    def complete(
        self,
        kind: Literal["ok", "fail", "info"],
        process: Process,
        f: str,
        value: Any,
        *,
        time: int | None = None,
        mode: str | None = None,
    ) -> None:
        if kind not in COMPLETION_TYPES:
            raise ValueError(f"not a completion: {kind!r}")
        if mode is not None and mode not in READ_MODES:
            raise ValueError(f"unknown read mode {mode!r}")
        event = ClientEvent(type=kind, process=process, f=f, value=value, time=time, mode=mode)
        self.write(event)

    def _flush_locked(self) -> list[Callable[[], None]]:
        """Writes the waiting lines; returns the actions now due (run them unlocked)."""
        due, self._actions = self._actions, []
        if not self._lines:
            return due
        data = memoryview("".join(self._lines).encode("utf-8"))
        self._lines.clear()
        self._waiting = 0
        while data:
            written = self._file.write(data)
            data = data[written or 0 :]
        return due

    def flush(self) -> None:
        """Hands every waiting line to the OS (whole lines, in one write where it can), then
        runs the actions ``then`` was waiting to run."""
        with self._lock:
            due = [] if self._closed else self._flush_locked()
        _run(due)

    def then(self, action: Callable[[], None]) -> None:
        """Runs ``action`` once every line written so far has reached the OS: now, when
        none is waiting (or the writer is closed), else after the next flush."""
        with self._lock:
            if self._lines and not self._closed:
                self._actions.append(action)
                return
        action()

    def close(self) -> None:
        due: list[Callable[[], None]] = []
        with self._lock:
            if self._closed:
                return
            try:
                due = self._flush_locked()
            finally:
                self._closed = True
                self._file.close()
        _run(due)

    def __enter__(self) -> HistoryWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
