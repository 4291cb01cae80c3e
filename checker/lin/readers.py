"""Reading client histories: vrref JSON Lines, Jepsen EDN, Porcupine's etcd logs and kv EDN.

Every reader produces the same thing: a ``ClientHistory``, the list of client operations
each joined from its invocation and its completion (``ClientOp``), with real-time positions
(the index of each event in the merged order of events), the source lines for messages and
reports, and whatever the file says about the model. Turning raw values into a model's
inputs and outputs is the model's job (checker/lin/models.py), so readers know nothing of
registers or DNS.

The formats:

* ``vrref``: vrref/history.py's JSON Lines, read through its typed events (every line is
  validated, replica events included; only the client events are kept). Several files (one
  per replica) are merged by their ``time`` fields; within one file the line order is the
  real-time order.
* ``jepsen-edn``: Knossos' fixtures, ``{:process 0, :type :invoke, :f :cas, :value [1 2]}``,
  either one vector of such maps or one map a line. Keys other than :process, :type, :f,
  :value and :key are ignored (:time, :index, ...); operations of a non-integer process
  (Jepsen's :nemesis) are not client operations and are skipped.
* ``porcupine-kv``: the same EDN, with a :key per operation (Porcupine's kv corpus).
* ``porcupine-log``: Jepsen's log lines ``INFO  jepsen.util - 3\\t:invoke\\t:write\\t4``
  (tabs or runs of spaces); other log lines are skipped.

The EDN reader is a small recursive-descent parser for the subset these files use: maps,
vectors, lists, keywords, strings, integers, floats, nil, true and false, with commas as
whitespace and ``;`` comments. Anything else (sets, tagged literals, symbols) is an error.

Bad input raises ``ReadError`` naming the file and the line, never a traceback: the CLI
prints it and exits 2. Pairing is strict: a process invoking while its previous operation
is outstanding, or a completion nobody invoked, is an error rather than a guess. The one
exception is a restart: where a replica process's own vrref file (its header names the
``replica``) records that the process started again (``boot``, ``restart``, ``reopen``), the
operations its previous life left outstanding end
without a completion (as good as ``info``) and their process names are free again.

A vrref file may also record the replicas' zones at the end of a run (``final``): they
come with the history as ``FinalState`` records placed in real time among the operations (their
``since`` and ``time`` take positions of their own), for checker/lin/finals.py.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from vrref.history import (
    Boot,
    ClientEvent,
    FinalZone,
    HistoryError,
    Reopen,
    Restart,
    iter_lines,
    parse_event,
    parse_header,
)

FORMATS: Final = ("vrref", "jepsen-edn", "porcupine-log", "porcupine-kv")
FILE_BYTES_MAX: Final = 1 << 30

Outcome = Literal["ok", "fail", "info"]


class ReadError(ValueError):
    """Input that cannot be read as a history: names the file and (when known) the line."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path = path
        self.line = line
        self.message = message
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {message}")

    def __reduce__(self) -> tuple[type[ReadError], tuple[str, int | None, str]]:
        """Pickles by its fields (a worker process's error reaches its pool intact, where
        the default, by the message alone, cannot be rebuilt and hangs the pool)."""
        return type(self), (self.path, self.line, self.message)


@dataclass(frozen=True, slots=True)
class Keyword:
    """An EDN keyword such as ``:timed-out`` (distinct from the string "timed-out")."""

    name: str

    def __str__(self) -> str:
        return ":" + self.name


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientOp:
    """One client operation: an invocation and its completion, if any.

    ``call`` and ``ret`` are positions in the real-time order of all events of the history
    (``ret`` is None when no completion was seen); ``outcome`` is None then too.
    """

    index: int
    process: int | str
    f: str
    value: Any  # the invocation's value
    outcome: Outcome | None
    result: Any  # the completion's value (None without a completion)
    call: int
    ret: int | None
    key: Any = None  # Porcupine's kv :key, when the format has one
    mode: str | None = None
    call_line: int = 0
    ret_line: int | None = None
    call_time: int | None = None
    ret_time: int | None = None
    path: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class FinalState:
    """A replica's final state (vrref/history.py's ``final``), placed in real time like a
    client operation: ``call`` is the position of its ``since``, ``ret`` of its ``time``
    (positions shared with the client operations' events)."""

    replica: int
    records: tuple[tuple[str, str, int, str], ...]
    commit_number: int | None
    call: int
    ret: int
    path: str
    line: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientHistory:
    path: str
    format: str
    ops: tuple[ClientOp, ...]
    header: dict[str, Any] = field(default_factory=dict)
    events: int = 0  # client events read (invocations and completions)
    finals: tuple[FinalState, ...] = ()


# ---------------------------------------------------------------------------- EDN


_EDN_DELIMITERS: Final = set(' \t\r\n,;()[]{}"')
_INT = re.compile(r"[-+]?\d+N?\Z")
_FLOAT = re.compile(r"[-+]?\d+(\.\d*)?([eE][-+]?\d+)?M?\Z")
_STRING_ESCAPES: Final = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    '"': '"',
    "\\": "\\",
    "b": "\b",
    "f": "\f",
}
EDN_DEPTH_MAX: Final = 64


class EdnError(ValueError):
    def __init__(self, position: int, message: str) -> None:
        self.position = position
        super().__init__(message)


class EdnParser:
    """EDN subset: maps (dict), vectors and lists (tuple), keywords (Keyword), strings,
    integers, floats, nil (None), true, false."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self._newlines = [i for i, c in enumerate(text) if c == "\n"]

    def line_of(self, position: int) -> int:
        return bisect.bisect_left(self._newlines, position) + 1

    def skip_space(self) -> None:
        text, pos = self.text, self.pos
        while pos < len(text):
            c = text[pos]
            if c in " \t\r\n,":
                pos += 1
            elif c == ";":
                end = text.find("\n", pos)
                pos = len(text) if end < 0 else end + 1
            else:
                break
        self.pos = pos

    def at_end(self) -> bool:
        self.skip_space()
        return self.pos >= len(self.text)

    def peek(self) -> str:
        self.skip_space()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def value(self, depth: int = 0) -> Any:
        if depth > EDN_DEPTH_MAX:
            raise EdnError(self.pos, "nested too deeply")
        self.skip_space()
        text = self.text
        if self.pos >= len(text):
            raise EdnError(self.pos, "unexpected end of input")
        c = text[self.pos]
        if c == "{":
            return self._map(depth)
        if c in "[(":
            return self._sequence("]" if c == "[" else ")", depth)
        if c == '"':
            return self._string()
        if c in ")]}":
            raise EdnError(self.pos, f"unexpected {c!r}")
        if c == "#":
            raise EdnError(self.pos, "sets and tagged literals are not supported")
        return self._atom()

    def _map(self, depth: int) -> dict[Any, Any]:
        start = self.pos
        self.pos += 1
        result: dict[Any, Any] = {}
        while True:
            if self.peek() == "}":
                self.pos += 1
                return result
            if self.pos >= len(self.text):
                raise EdnError(start, "unterminated map")
            key = self.value(depth + 1)
            if self.peek() == "}":
                raise EdnError(self.pos, "map with an odd number of forms")
            try:
                result[key] = self.value(depth + 1)
            except TypeError:
                raise EdnError(start, "unhashable map key") from None

    def _sequence(self, close: str, depth: int) -> tuple[Any, ...]:
        start = self.pos
        self.pos += 1
        items: list[Any] = []
        while True:
            if self.peek() == close:
                self.pos += 1
                return tuple(items)
            if self.pos >= len(self.text):
                raise EdnError(start, "unterminated vector or list")
            items.append(self.value(depth + 1))

    def _string(self) -> str:
        start = self.pos
        text = self.text
        pos = start + 1
        out: list[str] = []
        while pos < len(text):
            c = text[pos]
            if c == '"':
                self.pos = pos + 1
                return "".join(out)
            if c == "\\":
                pos += 1
                if pos >= len(text):
                    break
                e = text[pos]
                if e == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", text[pos + 1 : pos + 5]):
                    out.append(chr(int(text[pos + 1 : pos + 5], 16)))
                    pos += 5
                    continue
                if e not in _STRING_ESCAPES:
                    raise EdnError(pos, f"unknown string escape \\{e}")
                out.append(_STRING_ESCAPES[e])
            else:
                out.append(c)
            pos += 1
        raise EdnError(start, "unterminated string")

    def _atom(self) -> Any:
        start = self.pos
        text = self.text
        end = start
        while end < len(text) and text[end] not in _EDN_DELIMITERS:
            end += 1
        token = text[start:end]
        self.pos = end
        if token.startswith(":") and len(token) > 1:
            return Keyword(token[1:])
        if token == "nil":
            return None
        if token == "true":
            return True
        if token == "false":
            return False
        if _INT.match(token):
            return int(token.rstrip("N"))
        if _FLOAT.match(token):
            return float(token.rstrip("M"))
        raise EdnError(start, f"unsupported EDN token {token!r}")


def parse_edn(text: str) -> Any:
    """One EDN value (the whole text)."""
    parser = EdnParser(text)
    value = parser.value()
    if not parser.at_end():
        raise EdnError(parser.pos, "trailing data after the value")
    return value


def _edn_maps(path: str, text: str) -> list[tuple[int, dict[Any, Any]]]:
    """(line, map) for a vector of maps or a sequence of top-level maps."""
    parser = EdnParser(text)
    maps: list[tuple[int, dict[Any, Any]]] = []
    try:
        if parser.peek() in "[(":
            close = "]" if parser.peek() == "[" else ")"
            parser.pos += 1
            while parser.peek() != close:
                if parser.at_end():
                    raise EdnError(parser.pos, "unterminated vector of operations")
                maps.append(_one_map(parser, path))
            parser.pos += 1
            if not parser.at_end():
                raise EdnError(parser.pos, "trailing data after the vector of operations")
        else:
            while not parser.at_end():
                maps.append(_one_map(parser, path))
    except EdnError as error:
        raise ReadError(path, parser.line_of(error.position), f"EDN: {error}") from None
    return maps


def _one_map(parser: EdnParser, path: str) -> tuple[int, dict[Any, Any]]:
    parser.skip_space()
    start = parser.pos
    value = parser.value()
    if not isinstance(value, dict):
        raise ReadError(path, parser.line_of(start), "expected an operation map {:process ...}")
    return parser.line_of(start), value


# ---------------------------------------------------------------------------- pairing


@dataclass(slots=True)
class _Open:
    index: int
    f: str
    value: Any
    key: Any
    call: int
    line: int
    time: int | None
    path: str


@dataclass(slots=True)
class _Pairer:
    """Joins invocations and completions per process, strictly."""

    path: str
    ops: list[ClientOp | None] = field(default_factory=list)
    open: dict[int | str, _Open] = field(default_factory=dict)
    position: int = 0

    def invoke(
        self,
        process: int | str,
        f: str,
        value: Any,
        *,
        line: int,
        key: Any = None,
        time: int | None = None,
        path: str | None = None,
    ) -> None:
        where = path or self.path
        if process in self.open:
            previous = self.open[process]
            raise ReadError(
                where,
                line,
                f"process {process} invokes while its operation of line {previous.line} "
                "is outstanding",
            )
        self.open[process] = _Open(len(self.ops), f, value, key, self.position, line, time, where)
        self.ops.append(None)
        self.position += 1

    def complete(
        self,
        process: int | str,
        outcome: Outcome,
        f: str,
        value: Any,
        *,
        line: int,
        mode: str | None = None,
        time: int | None = None,
        path: str | None = None,
    ) -> None:
        where = path or self.path
        pending = self.open.pop(process, None)
        if pending is None:
            raise ReadError(where, line, f"process {process} completes an operation never invoked")
        if f != pending.f:
            raise ReadError(
                where, line, f"completion :f {f} does not match the invocation's {pending.f}"
            )
        self.ops[pending.index] = ClientOp(
            index=pending.index,
            process=process,
            f=f,
            value=pending.value,
            outcome=outcome,
            result=value,
            call=pending.call,
            ret=self.position,
            key=pending.key,
            mode=mode,
            call_line=pending.line,
            ret_line=line,
            call_time=pending.time,
            ret_time=time,
            path=where,
        )
        self.position += 1

    def mark(self) -> int:
        """A position of its own, between the events paired so far and the next."""
        self.position += 1
        return self.position - 1

    def end_life(self, path: str) -> None:
        """The process that wrote ``path`` restarted: what it left outstanding will never
        complete (it stays in the history without a completion, as good as ``info``), and
        its names may be used again."""
        ended = [process for process, pending in self.open.items() if pending.path == path]
        for process in ended:
            self._unfinished(process, self.open.pop(process))

    def finish(self) -> tuple[ClientOp, ...]:
        for process, pending in self.open.items():
            self._unfinished(process, pending)
        self.open.clear()
        result = tuple(op for op in self.ops if op is not None)
        assert len(result) == len(self.ops)
        return result

    def _unfinished(self, process: int | str, pending: _Open) -> None:
        self.ops[pending.index] = ClientOp(
            index=pending.index,
            process=process,
            f=pending.f,
            value=pending.value,
            outcome=None,
            result=None,
            call=pending.call,
            ret=None,
            key=pending.key,
            call_line=pending.line,
            call_time=pending.time,
            path=pending.path,
        )


# ---------------------------------------------------------------------------- readers


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read(FILE_BYTES_MAX + 1)
    except OSError as error:
        raise ReadError(path, None, error.strerror or str(error)) from None
    except UnicodeDecodeError:
        raise ReadError(path, None, "not UTF-8 text") from None
    if len(text) > FILE_BYTES_MAX:
        raise ReadError(path, None, "file too large")
    return text


def _keyword_name(value: Any, path: str, line: int, what: str) -> str:
    if isinstance(value, Keyword):
        return value.name
    if isinstance(value, str):
        return value
    raise ReadError(path, line, f"{what} must be a keyword, got {value!r}")


def read_jepsen_edn(
    path: str, text: str | None = None, *, fmt: str = "jepsen-edn"
) -> ClientHistory:
    """Knossos-style EDN: a vector of operation maps, or one map a line."""
    text = _read_text(path) if text is None else text
    pairer = _Pairer(path)
    events = 0
    for line, op in _edn_maps(path, text):
        process = op.get(Keyword("process"))
        if not isinstance(process, int) or isinstance(process, bool):
            continue  # :nemesis and friends are not clients
        kind = _keyword_name(op.get(Keyword("type")), path, line, ":type")
        f = _keyword_name(op.get(Keyword("f")), path, line, ":f")
        value = op.get(Keyword("value"))
        key = op.get(Keyword("key"))
        events += 1
        if kind == "invoke":
            pairer.invoke(process, f, value, line=line, key=key)
        elif kind in ("ok", "fail", "info"):
            pairer.complete(process, kind, f, value, line=line)  # type: ignore[arg-type]
        else:
            raise ReadError(path, line, f"unknown :type :{kind}")
    return ClientHistory(path=path, format=fmt, ops=pairer.finish(), events=events)


_LOG_LINE = re.compile(r"^.*?jepsen\.util\s+-\s+(\S+)\s+:(\S+)\s+:(\S+)(?:\s+(.*?))?\s*$")


def read_porcupine_log(path: str, text: str | None = None) -> ClientHistory:
    """Jepsen's etcd test log as in Porcupine's corpus (other log lines are skipped)."""
    text = _read_text(path) if text is None else text
    pairer = _Pairer(path)
    events = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if "jepsen.util" not in line:
            continue
        match = _LOG_LINE.match(line)
        if match is None:
            raise ReadError(path, number, "not a jepsen.util operation line")
        process_text, kind, f, value_text = match.groups()
        if not re.fullmatch(r"\d+", process_text):
            continue  # :nemesis
        try:
            value = parse_edn(value_text) if value_text else None
        except EdnError as error:
            raise ReadError(path, number, f"EDN value: {error}") from None
        events += 1
        process = int(process_text)
        if kind == "invoke":
            pairer.invoke(process, f, value, line=number)
        elif kind in ("ok", "fail", "info"):
            pairer.complete(process, kind, f, value, line=number)  # type: ignore[arg-type]
        else:
            raise ReadError(path, number, f"unknown operation type :{kind}")
    return ClientHistory(path=path, format="porcupine-log", ops=pairer.finish(), events=events)


def read_vrref(paths: Sequence[str]) -> ClientHistory:
    """One or more vrref history files; several are merged by ``time``.

    The header of the first file is the history's header; the others must agree on
    ``model`` and ``initial`` when they state them.
    """
    assert paths
    header: dict[str, Any] = {}
    streams: list[list[ClientEvent | _NewLife]] = []
    finals: list[tuple[FinalZone, int, str]] = []  # (event, line, path)
    for k, path in enumerate(paths):
        try:
            head, client, file_finals = _vrref_events(path)
        except HistoryError as error:
            raise ReadError(error.path, error.line, error.message) from None
        for final, line in file_finals:
            if final.time is None:
                raise ReadError(path, line, 'a final state needs its "time"')
            finals.append((final, line, path))
        if k == 0:
            header = head
        else:
            for key in ("model", "initial"):
                if key in head and key in header and head[key] != header[key]:
                    raise ReadError(path, 1, f"header {key!r} differs from {paths[0]}'s")
        streams.append(client)
    merged: Iterable[tuple[ClientEvent | _NewLife, str]]
    if len(streams) == 1 and not finals:
        merged = ((event, paths[0]) for event in streams[0])
    else:  # by time: final states are placed among the operations by their times
        keyed: list[tuple[int, int, int, ClientEvent | _NewLife]] = []
        for k, (stream, path) in enumerate(zip(streams, paths, strict=True)):
            for event in stream:
                if event.time is None:
                    raise ReadError(path, event.line, 'merging files needs "time" on every event')
                keyed.append((event.time, k, event.line, event))
        keyed.sort(key=lambda item: item[:3])
        merged = ((event, paths[k]) for _, k, _, event in keyed)
    pairer = _Pairer(paths[0])
    events = 0
    # A final state's since and time take positions of their own among the events: each
    # goes just before the first event later than it.
    marks = sorted(
        [(final.since, 0, n) for n, (final, _, _) in enumerate(finals)]
        + [(final.time or 0, 1, n) for n, (final, _, _) in enumerate(finals)]
    )
    placed: dict[tuple[int, int], int] = {}
    next_mark = 0
    for event, path in merged:
        while (
            next_mark < len(marks) and event.time is not None and marks[next_mark][0] < event.time
        ):
            _, end, n = marks[next_mark]
            placed[(n, end)] = pairer.mark()
            next_mark += 1
        if isinstance(event, _NewLife):
            pairer.end_life(path)
            continue
        events += 1
        if event.type == "invoke":
            pairer.invoke(
                event.process, event.f, event.value, line=event.line, time=event.time, path=path
            )
        else:
            pairer.complete(
                event.process,
                event.type,
                event.f,
                event.value,
                line=event.line,
                mode=event.mode,
                time=event.time,
                path=path,
            )
    for _, end, n in marks[next_mark:]:
        placed[(n, end)] = pairer.mark()
    name = paths[0] if len(paths) == 1 else f"{paths[0]} (+{len(paths) - 1} more)"
    return ClientHistory(
        path=name,
        format="vrref",
        ops=pairer.finish(),
        header=header,
        events=events,
        finals=tuple(
            FinalState(
                replica=final.replica,
                records=final.records,
                commit_number=final.commit_number,
                call=placed[(n, 0)],
                ret=placed[(n, 1)],
                path=path,
                line=line,
            )
            for n, (final, line, path) in enumerate(finals)
        ),
    )


@dataclass(frozen=True, slots=True)
class _NewLife:
    """A replica process (re)started in this file (boot, restart or reopen): the client
    operations its previous life left outstanding end here."""

    line: int
    time: int | None


def _vrref_events(
    path: str,
) -> tuple[dict[str, Any], list[ClientEvent | _NewLife], list[tuple[FinalZone, int]]]:
    """The header, the client events (and where a new life of the process began) and the
    final states of one file, every line parsed into its typed event (a malformed replica
    event is an error here as anywhere), only those kept (a replica's file is mostly
    replica events)."""
    head: dict[str, Any] | None = None
    client: list[ClientEvent | _NewLife] = []
    finals: list[tuple[FinalZone, int]] = []
    for number, obj in iter_lines(path):
        if head is None:
            head = parse_header(obj, path, number)
            continue
        event = parse_event(obj, path, number)
        if isinstance(event, ClientEvent):
            client.append(event)
        elif isinstance(event.record, FinalZone):
            finals.append((event.record, number))
        elif (
            isinstance(event.record, (Boot, Restart, Reopen))
            and isinstance(head.get("replica"), int)
            and event.record.replica == head["replica"]
        ):
            # Only in a replica process's own file (its header names it), whose client
            # operations are that process's; a simulator's file records every replica.
            client.append(_NewLife(number, event.record.time))
    if head is None:
        raise HistoryError(path, None, "empty history: no header line")
    return head, client, finals


def detect_format(path: str, text: str | None = None) -> str:
    """Guesses the format from the first non-blank line; ReadError when it cannot."""
    text = _read_text(path) if text is None else text
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith(";"):
            continue
        if "jepsen.util" in stripped:
            return "porcupine-log"
        if stripped.startswith("{:") or stripped.startswith("[{") or stripped.startswith("["):
            return "porcupine-kv" if ":key" in text[:100_000] else "jepsen-edn"
        if stripped.startswith("{"):
            try:
                first = json.loads(stripped)
            except json.JSONDecodeError:
                break
            if isinstance(first, dict) and first.get("schema") == "vrref-history":
                return "vrref"
        break
    raise ReadError(path, None, "cannot tell the format; pass --format")


def read(paths: Sequence[str], fmt: str | None = None) -> ClientHistory:
    """Reads one history (several files only for the vrref format)."""
    if not paths:
        raise ReadError("-", None, "no history file given")
    if fmt is None:
        fmt = detect_format(paths[0])
    if fmt not in FORMATS:
        raise ReadError(paths[0], None, f"unknown format {fmt!r}")
    if fmt == "vrref":
        return read_vrref(paths)
    if len(paths) > 1:
        raise ReadError(paths[1], None, f"only vrref histories can be merged, not {fmt}")
    if fmt == "porcupine-log":
        return read_porcupine_log(paths[0])
    return read_jepsen_edn(paths[0], fmt=fmt)


def read_path(path: str | Path, fmt: str | None = None) -> ClientHistory:
    return read([str(path)], fmt)
