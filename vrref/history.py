"""The history format: one JSON object a line, the contract between runs and checkers.

Everything that runs the protocol (the threaded runtime, the simulator, the explorer) writes
a history, and everything that judges a run (``vrref check``, ``vrref view``) reads one. The
format is deliberately dull: JSON Lines, so a history can be appended to by a process that
may be killed at any moment (at worst the last line is torn, and the reader names it), read
by ``jq`` and ``grep``, and merged from several files.

The first line is a header object with ``"schema": "vrref-history"`` and an integer
``"version"``; any other key is metadata (``"model"``: which sequential specification the
client operations obey, ``"initial"``: the model's initial state, and whatever a writer
finds useful: replica id, replica count, origin)::

    {"schema":"vrref-history","version":1,"model":"dns","initial":{"records":[
      ["example.com.","SOA",3600,"ns1.example.com. admin.example.com. 1 3600 600 86400 300"],
      ["example.com.","NS",3600,"ns1.example.com."]]}}

(shown on three lines here, one line in a file).

Every later line is one event with a ``"type"``. Client operations are shaped like Jepsen's:
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
or never. An invocation without a completion is as good as ``info``. ``time`` is an optional
integer in nanoseconds, informational only: the order of the lines is the real-time order
(a merged set of files is ordered by ``time``). ``mode`` says how a DNS read was served:
``"linearizable"`` (through the primary or the log) or ``"local"`` (a replica's own
committed state, possibly stale); checkers judge each by its own standard. Values are any
JSON; the DNS service uses its canonical operation and result texts.

Replica events belong to the replicas' owners, who define their fields; this module only
reserves their type names (``REPLICA_EVENT_TYPES``) and hands them through untouched, e.g.::

    {"type":"boot","replica":0,"time":10}
    {"type":"restart","replica":0,"nonce":12345,"time":11}
    {"type":"crash","replica":1,"error":"...","time":12}
    {"type":"send","replica":0,"to":1,"message":{...},"time":13}
    {"type":"deliver","replica":1,"messages":[{...}],"time":14}
    {"type":"tick","replica":2,"time":15}
    {"type":"timeout","replica":2,"timer":"view_change","time":16}
    {"type":"state","replica":0,"status":"normal","view":0,"op_number":3,"time":17}

The rule for types is closed: a client type (``invoke``, ``ok``, ``fail``, ``info``) is
validated; a reserved replica type is passed through as a ``ReplicaEvent``; anything else is
an error naming the file and line. So a typo (``"tpye"``, ``"okay"``) never silently drops an
operation from a check, and a new replica event is added by adding its name here.

This module imports nothing from the checker: the runtime writes histories with it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final, Literal

SCHEMA: Final = "vrref-history"
VERSION: Final = 1

CLIENT_EVENT_TYPES: Final = frozenset({"invoke", "ok", "fail", "info"})
COMPLETION_TYPES: Final = frozenset({"ok", "fail", "info"})
READ_MODES: Final = frozenset({"linearizable", "local"})
# Replica events: defined by the replicas' owners; the reader passes them through untouched.
REPLICA_EVENT_TYPES: Final = frozenset(
    {
        "boot",
        "restart",
        "recover",
        "crash",
        "send",
        "deliver",
        "drop",
        "duplicate",
        "tick",
        "timeout",
        "state",
        "partition",
        "heal",
        "commit",
        "view_change",
        "note",
    }
)
LINE_BYTES_MAX: Final = 16 << 20  # a longer line is not a history line (nor memory we spend)

Kind = Literal["invoke", "ok", "fail", "info"]
Process = int | str


class HistoryError(ValueError):
    """A history file that does not follow this format: names the file and the line."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path = path
        self.line = line
        self.message = message
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientEvent:
    """One invocation or completion of a client operation."""

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


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplicaEvent:
    """A replica event, passed through: its fields are its owner's business."""

    type: str
    fields: dict[str, Any] = field(default_factory=dict)
    time: int | None = None
    line: int = 0


Event = ClientEvent | ReplicaEvent


@dataclass(frozen=True, slots=True, kw_only=True)
class History:
    path: str
    header: dict[str, Any]
    events: tuple[Event, ...]

    @property
    def client_events(self) -> tuple[ClientEvent, ...]:
        return tuple(e for e in self.events if isinstance(e, ClientEvent))


def header(**meta: Any) -> dict[str, Any]:
    """The first line of a history, with ``meta`` (model, initial state, replica, ...)."""
    for key in ("schema", "version"):
        if key in meta:
            raise ValueError(f"{key!r} is set by the format, not by the writer")
    return {"schema": SCHEMA, "version": VERSION, **meta}


def parse_header(obj: object, path: str, line: int) -> dict[str, Any]:
    if not isinstance(obj, dict) or obj.get("schema") != SCHEMA:
        raise HistoryError(path, line, f'the first line must be a {{"schema":"{SCHEMA}",...}}')
    version = obj.get("version")
    if version != VERSION:
        raise HistoryError(path, line, f"unsupported history version {version!r}")
    return obj


def parse_event(obj: object, path: str, line: int) -> Event:
    """Validates one event object (not the header)."""
    if not isinstance(obj, dict):
        raise HistoryError(path, line, "an event must be a JSON object")
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise HistoryError(path, line, 'an event needs a string "type"')
    time = obj.get("time")
    if time is not None and (not isinstance(time, int) or isinstance(time, bool)):
        raise HistoryError(path, line, '"time" must be an integer (nanoseconds)')
    if kind in REPLICA_EVENT_TYPES:
        return ReplicaEvent(type=kind, fields=obj, time=time, line=line)
    if kind not in CLIENT_EVENT_TYPES:
        raise HistoryError(path, line, f"unknown event type {kind!r}")
    process = obj.get("process")
    if not isinstance(process, int | str) or isinstance(process, bool):
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
    return ClientEvent(
        type=kind,  # type: ignore[arg-type]  # checked against CLIENT_EVENT_TYPES above
        process=process,
        f=f,
        value=obj["value"],
        time=time,
        mode=mode,
        line=line,
    )


def iter_lines(path: str | Path) -> Iterator[tuple[int, object]]:
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


def read_history(path: str | Path) -> History:
    """Reads and validates a whole history file."""
    name = str(path)
    head: dict[str, Any] | None = None
    events: list[Event] = []
    for number, obj in iter_lines(path):
        if head is None:
            head = parse_header(obj, name, number)
        else:
            events.append(parse_event(obj, name, number))
    if head is None:
        raise HistoryError(name, None, "empty history: no header line")
    return History(path=name, header=head, events=tuple(events))


class HistoryWriter:
    """Appends events to a history file: buffered, thread-safe, header written once.

    Opening an existing non-empty file appends to it (its header stays; ``meta`` is then
    ignored). ``flush`` pushes buffered lines to the OS; ``close`` flushes and closes.
    """

    def __init__(self, path: str | Path, *, buffer_bytes: int = 1 << 16, **meta: Any) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._file: IO[str] = self.path.open("a", encoding="utf-8", buffering=buffer_bytes)
        if self.path.stat().st_size == 0:
            self._write_line(header(**meta))

    def _write_line(self, obj: dict[str, Any]) -> None:
        line = json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n"
        with self._lock:
            self._file.write(line)

    def write(self, event: ClientEvent | dict[str, Any]) -> None:
        """Appends one event: a ClientEvent, or a replica event's dict (with its "type")."""
        if isinstance(event, ClientEvent):
            self._write_line(event.to_json())
            return
        kind = event.get("type")
        if kind not in REPLICA_EVENT_TYPES and kind not in CLIENT_EVENT_TYPES:
            raise ValueError(f"unknown event type {kind!r}")
        self._write_line(event)

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

    def flush(self) -> None:
        with self._lock:
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.close()

    def __enter__(self) -> HistoryWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
