"""The messages of Viewstamped Replication Revisited, and their wire codec.

Every message of VRR §4 (REQUEST, PREPARE, PREPAREOK, COMMIT, REPLY, STARTVIEWCHANGE,
DOVIEWCHANGE, STARTVIEW, RECOVERY, RECOVERYRESPONSE) and of §5.2 (GETSTATE, NEWSTATE) is a
frozen dataclass whose fields carry the paper's names spelled out: ``v`` is ``view``, ``n``
is ``op_number``, ``k`` is ``commit_number``, ``i`` is ``replica``, ``x`` is ``nonce``,
``c`` and ``s`` are ``client_id`` and ``request_number``.

Values are immutable and hashable (logs are tuples of ``LogEntry``), so the explorer can
keep messages in a multiset of messages in flight and fingerprint it.

Two deliberate departures from the paper's text, both recorded in the field names:

- PREPARE carries a tuple of entries rather than one operation, so the primary can batch
  several requests in one round (VRR §6); the entries end at ``op_number``.
- NEWSTATE carries ``after_op_number`` (the ``n'`` of the GETSTATE it answers), so the
  receiver knows where the suffix it receives begins without trusting its own memory of the
  request.

The codec is JSON with explicit bounds, never pickle: peer messages come from the network.
``decode`` checks every field's type and range and raises ``CodecError`` naming the problem;
no input makes it raise anything else.

Bounds. Each quantity has one bound, defined here, in the unit the codec checks, and the
relations between them are checked when this module is imported:

- ``OP_BYTES_MAX``: a string field (an op, a REPLY's result), in the bytes it takes inside an
  encoded message (``op_wire_bytes``: its JSON escaping, quotes excluded; one character is 1
  to ``ESCAPED_CHAR_BYTES_MAX`` bytes). The DNS service refuses to make a longer op
  (``vrref.dns.ops`` and ``vrref.dns.update``), so nothing it orders can be refused by the
  peers that must carry it.
- ``MESSAGE_BYTES_MAX``: one encoded message. It holds a REQUEST, a REPLY or a one-entry
  PREPARE with an op at the bound, and a PREPARE of ``PREPARE_ENTRIES_MAX`` such entries
  (``PREPARE_BYTES_MAX``), whatever the integers.
- ``PREPARE_ENTRIES_MAX``: the largest ``Config.prepare_entries_max`` this codec is sized for.
- ``LOG_ENTRIES_MAX`` and ``LOG_BYTES_MAX``: the longest log a DOVIEWCHANGE, STARTVIEW,
  RECOVERYRESPONSE or NEWSTATE can carry, in entries and in encoded bytes. The core's log
  is bounded by its checkpoints (``Config.log_entries_max`` in vrref/core/replica.py, at
  most ``LOG_ENTRIES_MAX``), so these messages carry a bounded suffix.
- ``SNAPSHOT_BYTES_MAX`` and ``CLIENT_TABLE_MAX``: a checkpoint's service snapshot and
  client-table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any, Final, TypeAlias

INT_MAX: Final = 2**63 - 1
OP_BYTES_MAX: Final = 64 * 1024
"""The longest string field, in encoded bytes (``op_wire_bytes``)."""
MESSAGE_BYTES_MAX: Final = 64 * 1024 * 1024
"""The longest encoded message."""
PREPARE_ENTRIES_MAX: Final = 512
"""The most entries one PREPARE may carry (``Config.prepare_entries_max`` at most this)."""
LOG_ENTRIES_MAX: Final = 1_000_000
"""The most entries a log field may carry."""
SNAPSHOT_BYTES_MAX: Final = 32 * 1024 * 1024
"""The longest service snapshot a checkpoint may carry, in encoded bytes."""
CLIENT_TABLE_MAX: Final = 1 << 20
"""The most client-table records a checkpoint may carry."""
ESCAPED_CHAR_BYTES_MAX: Final = 12
"""The most bytes one character takes in ``encode``'s ASCII-only JSON: a character beyond the
Basic Multilingual Plane becomes two ``\\uXXXX`` escapes."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """REQUEST<op, c, s>: a client's operation with its client-id and request-number."""

    op: str
    client_id: int
    request_number: int


@dataclass(frozen=True, slots=True, kw_only=True)
class LogEntry:
    """One log slot: the request, and the view in which a primary first assigned it.

    The view makes each entry a viewstamp (view, op-number); the op-number is the entry's
    1-based position in the log.
    """

    view: int
    request: Request


Log: TypeAlias = tuple[LogEntry, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientRecord:
    """One client-table entry: a client's newest executed request and its result (§4.1)."""

    client_id: int
    request_number: int
    result: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Checkpoint:
    """The state after executing ops 1..``op_number`` (VRR §5.1): the service's snapshot
    (``StateMachine.snapshot``), its digest, and the client-table at that point.

    A log that starts after a checkpoint holds the entries from ``op_number + 1``; the
    checkpoint stands for every entry up to it. Op-numbers stay absolute.
    """

    op_number: int
    service: str
    digest: str
    client_table: tuple[ClientRecord, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Prepare:
    """PREPARE<v, m, n, k>: entries ending at op-number n, and the primary's commit-number."""

    view: int
    entries: Log
    op_number: int
    commit_number: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PrepareOk:
    """PREPAREOK<v, n, i>: replica i holds the view-v log up to and including op n."""

    view: int
    op_number: int
    replica: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Commit:
    """COMMIT<v, k>: the primary's commit-number; sent when idle, doubling as heartbeat."""

    view: int
    commit_number: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """REPLY<v, s, x>: the result of request s of a client, sent by the primary of view v."""

    view: int
    client_id: int
    request_number: int
    result: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StartViewChange:
    """STARTVIEWCHANGE<v, i>."""

    view: int
    replica: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DoViewChange:
    """DOVIEWCHANGE<v, l, v', n, k, i>: v' is the latest view in which i was normal.

    The log is the suffix after ``log_start``, the sender's checkpoint (§5.3), which
    ``checkpoint`` carries when ``log_start`` is not 0: the sender cannot know whether the
    new primary is behind it (spec/vr.md R19)."""

    view: int
    log_start: int
    log: Log
    checkpoint: Checkpoint | None
    last_normal_view: int
    op_number: int
    commit_number: int
    replica: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StartView:
    """STARTVIEW<v, l, n, k>: the log after ``log_start``, with the primary's checkpoint at
    ``log_start`` only for a receiver that may be behind it (spec/vr.md R19)."""

    view: int
    log_start: int
    log: Log
    checkpoint: Checkpoint | None
    op_number: int
    commit_number: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Recovery:
    """RECOVERY<i, x>: x is a nonce unique to this recovery."""

    replica: int
    nonce: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RecoveryResponse:
    """RECOVERYRESPONSE<v, x, l, n, k, j>: l, n, k are present only from the primary of v,
    the log after ``log_start`` with the checkpoint at ``log_start`` (when not 0)."""

    view: int
    nonce: int
    log_start: int | None
    log: Log | None
    checkpoint: Checkpoint | None
    op_number: int | None
    commit_number: int | None
    replica: int


@dataclass(frozen=True, slots=True, kw_only=True)
class GetState:
    """GETSTATE<v, n', i>: replica i asks for the view-v log after op n'."""

    view: int
    op_number: int
    replica: int


@dataclass(frozen=True, slots=True, kw_only=True)
class NewState:
    """NEWSTATE<v, l, n, k>: the view-v log after ``after_op_number``, up to n. When the
    GETSTATE asked for entries the sender no longer holds, ``checkpoint`` is the sender's
    and ``after_op_number`` its op-number (application state transfer, §5.2-5.3)."""

    view: int
    after_op_number: int
    entries: Log
    checkpoint: Checkpoint | None
    op_number: int
    commit_number: int


PeerMessage: TypeAlias = (
    Prepare
    | PrepareOk
    | Commit
    | StartViewChange
    | DoViewChange
    | StartView
    | Recovery
    | RecoveryResponse
    | GetState
    | NewState
)
Message: TypeAlias = Request | Reply | PeerMessage

# Wire names are the paper's.
WIRE_NAMES: Final[dict[type, str]] = {
    Request: "REQUEST",
    Prepare: "PREPARE",
    PrepareOk: "PREPAREOK",
    Commit: "COMMIT",
    Reply: "REPLY",
    StartViewChange: "STARTVIEWCHANGE",
    DoViewChange: "DOVIEWCHANGE",
    StartView: "STARTVIEW",
    Recovery: "RECOVERY",
    RecoveryResponse: "RECOVERYRESPONSE",
    GetState: "GETSTATE",
    NewState: "NEWSTATE",
}
_BY_WIRE_NAME: Final = {name: cls for cls, name in WIRE_NAMES.items()}


class CodecError(ValueError):
    """A message could not be decoded: the sender's fault, never a reason to crash."""


def message_name(message: Message) -> str:
    """The paper's name of a message, e.g. ``PREPAREOK``."""
    return WIRE_NAMES[type(message)]


# ---------------------------------------------------------------------------------------
# Encoding: dataclass -> plain JSON values


def _request_to_json(r: Request) -> list[Any]:
    return [r.op, r.client_id, r.request_number]


def _log_to_json(log: Log) -> list[Any]:
    return [[e.view, *_request_to_json(e.request)] for e in log]


def log_to_json(log: Log) -> list[Any]:
    """A log as JSON: a list of [view, op, client_id, request_number]."""
    return _log_to_json(log)


def log_from_json(value: object, name: str = "log") -> Log:
    """A log from untrusted JSON, every entry checked; raises CodecError."""
    return _log(value, name)


def checkpoint_to_json(checkpoint: Checkpoint) -> dict[str, Any]:
    """A checkpoint as JSON: its fields, the client-table as [client, number, result]s."""
    return {
        "op_number": checkpoint.op_number,
        "service": checkpoint.service,
        "digest": checkpoint.digest,
        "client_table": [
            [r.client_id, r.request_number, r.result] for r in checkpoint.client_table
        ],
    }


def to_json(message: Message) -> dict[str, Any]:
    """The message as a JSON-ready dict; logs become lists of [view, op, client, number]."""
    out: dict[str, Any] = {"type": WIRE_NAMES[type(message)]}
    for f in fields(message):
        value = getattr(message, f.name)
        if isinstance(value, tuple):
            value = _log_to_json(value)
        elif isinstance(value, Checkpoint):
            value = checkpoint_to_json(value)
        out[f.name] = value
    return out


def encode(message: Message) -> bytes:
    """Canonical JSON bytes of a message (sorted keys, no spaces)."""
    return json.dumps(to_json(message), separators=(",", ":"), sort_keys=True).encode()


def op_wire_bytes(op: str) -> int:
    """The bytes ``op`` takes inside an encoded message, its quotes excluded: the unit of
    ``OP_BYTES_MAX``."""
    return len(json.dumps(op)) - 2


def op_fits(op: str) -> bool:
    """Whether ``op`` is within ``OP_BYTES_MAX``: the check the codec makes of every string
    field, and the one the service makes of the ops it builds. Only a string that might be
    too long is measured."""
    length = len(op)
    if length > OP_BYTES_MAX:  # every character takes at least one byte
        return False
    return length * ESCAPED_CHAR_BYTES_MAX <= OP_BYTES_MAX or op_wire_bytes(op) <= OP_BYTES_MAX


# ---------------------------------------------------------------------------------------
# Decoding: untrusted JSON -> dataclass, every field checked


def _int(value: object, name: str) -> int:
    if type(value) is not int or not 0 <= value <= INT_MAX:
        raise CodecError(f"field {name!r} must be an integer in [0, 2^63), got {value!r:.40}")
    return value


def _str(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise CodecError(f"field {name!r} must be a string, got {type(value).__name__}")
    if not op_fits(value):
        raise CodecError(f"field {name!r} is longer than {OP_BYTES_MAX} bytes encoded")
    return value


def _request_from(items: list[Any], name: str) -> Request:
    op, client_id, request_number = items
    return Request(
        op=_str(op, name + ".op"),
        client_id=_int(client_id, name + ".client_id"),
        request_number=_int(request_number, name + ".request_number"),
    )


def _log(value: object, name: str) -> Log:
    if not isinstance(value, list):
        raise CodecError(f"field {name!r} must be a list of log entries")
    if len(value) > LOG_ENTRIES_MAX:
        raise CodecError(f"field {name!r} has more than {LOG_ENTRIES_MAX} entries")
    entries = []
    for index, item in enumerate(value):
        if not isinstance(item, list) or len(item) != 4:
            raise CodecError(f"{name}[{index}] must be [view, op, client_id, request_number]")
        view = _int(item[0], f"{name}[{index}].view")
        entries.append(LogEntry(view=view, request=_request_from(item[1:], f"{name}[{index}]")))
    return tuple(entries)


def checkpoint_from_json(value: object, name: str = "checkpoint") -> Checkpoint:
    """A checkpoint from untrusted JSON, every field checked; raises CodecError."""
    if not isinstance(value, dict) or set(value) != {
        "op_number",
        "service",
        "digest",
        "client_table",
    }:
        raise CodecError(
            f"field {name!r} must be an object with op_number, service, digest, client_table"
        )
    service = value["service"]
    if not isinstance(service, str) or len(service) > SNAPSHOT_BYTES_MAX:
        raise CodecError(f"field {name}.service must be a string of at most the snapshot bound")
    table = value["client_table"]
    if not isinstance(table, list) or len(table) > CLIENT_TABLE_MAX:
        raise CodecError(f"field {name}.client_table must be a list of at most {CLIENT_TABLE_MAX}")
    records = []
    for index, item in enumerate(table):
        where = f"{name}.client_table[{index}]"
        if not isinstance(item, list) or len(item) != 3:
            raise CodecError(f"{where} must be [client_id, request_number, result]")
        records.append(
            ClientRecord(
                client_id=_int(item[0], where + ".client_id"),
                request_number=_int(item[1], where + ".request_number"),
                result=_str(item[2], where + ".result"),
            )
        )
    return Checkpoint(
        op_number=_int(value["op_number"], name + ".op_number"),
        service=service,
        digest=_str(value["digest"], name + ".digest"),
        client_table=tuple(records),
    )


# The type annotations, as strings (from __future__ import annotations), name the checks.
_CHECKS: Final = {
    "int": _int,
    "str": _str,
    "Log": _log,
    "Checkpoint": checkpoint_from_json,
}


def from_json(obj: object) -> Message:
    """Builds a message from decoded JSON, checking every field; raises CodecError."""
    if not isinstance(obj, dict):
        raise CodecError("a message must be a JSON object")
    kind = obj.get("type")
    cls = _BY_WIRE_NAME.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise CodecError(f"unknown message type {kind!r:.40}")
    expected = {f.name for f in fields(cls)} | {"type"}
    if set(obj) != expected:
        missing, extra = sorted(expected - set(obj)), sorted(set(obj) - expected)
        raise CodecError(f"{kind}: missing fields {missing}, unexpected fields {extra[:5]}")
    values: dict[str, Any] = {}
    for f in fields(cls):
        raw = obj[f.name]
        annotation = str(f.type)
        optional = annotation.endswith(" | None")
        if optional and raw is None:
            values[f.name] = None
            continue
        check = _CHECKS[annotation.removesuffix(" | None")]
        values[f.name] = check(raw, f.name)
    message: Message = cls(**values)
    return message


def decode(data: bytes, *, bytes_max: int = MESSAGE_BYTES_MAX) -> Message:
    """Decodes wire bytes into a message; raises CodecError on anything malformed."""
    if len(data) > bytes_max:
        raise CodecError(f"message of {len(data)} bytes exceeds the bound of {bytes_max}")
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise CodecError(f"not JSON: {error}") from None
    return from_json(obj)


# ---------------------------------------------------------------------------------------
# The bounds fit together (see the module docstring); checked at import, even under -O


def _largest_prepare_bytes(entries: int, op_bytes_max: int) -> int:
    """The encoded size of a PREPARE of ``entries`` entries with every integer at INT_MAX and
    every op taking ``op_bytes_max`` bytes: an op adds exactly its wire bytes to an empty one."""
    entry = LogEntry(
        view=INT_MAX, request=Request(op="", client_id=INT_MAX, request_number=INT_MAX)
    )
    prepare = Prepare(
        view=INT_MAX, entries=(entry,) * entries, op_number=INT_MAX, commit_number=INT_MAX
    )
    return len(encode(prepare)) + entries * op_bytes_max


def _whole_log_envelope_bytes() -> int:
    """The encoded size of the largest whole-log message with an empty log."""
    big = INT_MAX
    empty: tuple[Message, ...] = (
        DoViewChange(
            view=big,
            log_start=big,
            log=(),
            checkpoint=None,
            last_normal_view=big,
            op_number=big,
            commit_number=big,
            replica=big,
        ),
        StartView(
            view=big, log_start=big, log=(), checkpoint=None, op_number=big, commit_number=big
        ),
        RecoveryResponse(
            view=big,
            nonce=big,
            log_start=big,
            log=(),
            checkpoint=None,
            op_number=big,
            commit_number=big,
            replica=big,
        ),
        NewState(
            view=big,
            after_op_number=big,
            entries=(),
            checkpoint=None,
            op_number=big,
            commit_number=big,
        ),
    )
    return max(len(encode(m)) for m in empty)


def bound_problems(
    *,
    op_bytes_max: int = OP_BYTES_MAX,
    message_bytes_max: int = MESSAGE_BYTES_MAX,
    prepare_entries_max: int = PREPARE_ENTRIES_MAX,
    log_entries_max: int = LOG_ENTRIES_MAX,
) -> list[str]:
    """What is wrong with these bounds (by default this module's); empty when they fit."""
    problems: list[str] = []
    widest = max(len(json.dumps(chr(c))) - 2 for c in (0, 0x22, 0xD800, 0xFFFF, 0x10FFFF))
    if widest != ESCAPED_CHAR_BYTES_MAX:
        problems.append(f"a character encodes to {widest} bytes, not {ESCAPED_CHAR_BYTES_MAX}")
    big = INT_MAX
    one_string: tuple[Message, ...] = (
        Request(op="", client_id=big, request_number=big),
        Reply(view=big, client_id=big, request_number=big, result=""),
    )
    for message in one_string:
        needed = len(encode(message)) + op_bytes_max
        if needed > message_bytes_max:
            problems.append(
                f"a {message_name(message)} with a string at the bound takes {needed} bytes,"
                f" over the message bound of {message_bytes_max}"
            )
    for entries in (1, prepare_entries_max):
        needed = _largest_prepare_bytes(entries, op_bytes_max)
        if needed > message_bytes_max:
            problems.append(
                f"a PREPARE of {entries} entries with ops at the bound takes {needed} bytes,"
                f" over the message bound of {message_bytes_max}"
            )
    if prepare_entries_max > log_entries_max:
        problems.append(
            f"a PREPARE of {prepare_entries_max} entries is over the log bound of"
            f" {log_entries_max} entries"
        )
    return problems


PREPARE_BYTES_MAX: Final = _largest_prepare_bytes(PREPARE_ENTRIES_MAX, OP_BYTES_MAX)
"""The longest PREPARE the core may build: PREPARE_ENTRIES_MAX entries, ops at the bound."""
LOG_BYTES_MAX: Final = MESSAGE_BYTES_MAX - _whole_log_envelope_bytes()
"""The encoded size (entries and the commas between them) of the longest log that fits in a
DOVIEWCHANGE, STARTVIEW, RECOVERYRESPONSE or NEWSTATE."""

_problems = bound_problems()
if _problems:
    raise AssertionError("vrref.core.messages bounds: " + "; ".join(_problems))
