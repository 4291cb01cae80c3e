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
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any, Final, TypeAlias

INT_MAX: Final = 2**63 - 1
OP_BYTES_MAX: Final = 64 * 1024
MESSAGE_BYTES_MAX: Final = 64 * 1024 * 1024
LOG_ENTRIES_MAX: Final = 1_000_000


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
    """DOVIEWCHANGE<v, l, v', n, k, i>: v' is the latest view in which i was normal."""

    view: int
    log: Log
    last_normal_view: int
    op_number: int
    commit_number: int
    replica: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StartView:
    """STARTVIEW<v, l, n, k>."""

    view: int
    log: Log
    op_number: int
    commit_number: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Recovery:
    """RECOVERY<i, x>: x is a nonce unique to this recovery."""

    replica: int
    nonce: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RecoveryResponse:
    """RECOVERYRESPONSE<v, x, l, n, k, j>: l, n, k are present only from the primary of v."""

    view: int
    nonce: int
    log: Log | None
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
    """NEWSTATE<v, l, n, k>: the view-v log after ``after_op_number``, up to n."""

    view: int
    after_op_number: int
    entries: Log
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


def to_json(message: Message) -> dict[str, Any]:
    """The message as a JSON-ready dict; logs become lists of [view, op, client, number]."""
    out: dict[str, Any] = {"type": WIRE_NAMES[type(message)]}
    for f in fields(message):
        value = getattr(message, f.name)
        if isinstance(value, tuple):
            value = _log_to_json(value)
        out[f.name] = value
    return out


def encode(message: Message) -> bytes:
    """Canonical JSON bytes of a message (sorted keys, no spaces)."""
    return json.dumps(to_json(message), separators=(",", ":"), sort_keys=True).encode()


# ---------------------------------------------------------------------------------------
# Decoding: untrusted JSON -> dataclass, every field checked


def _int(value: object, name: str) -> int:
    if type(value) is not int or not 0 <= value <= INT_MAX:
        raise CodecError(f"field {name!r} must be an integer in [0, 2^63), got {value!r:.40}")
    return value


def _str(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise CodecError(f"field {name!r} must be a string, got {type(value).__name__}")
    if len(value) > OP_BYTES_MAX:
        raise CodecError(f"field {name!r} is longer than {OP_BYTES_MAX} characters")
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


# The type annotations, as strings (from __future__ import annotations), name the checks.
_CHECKS: Final = {
    "int": _int,
    "str": _str,
    "Log": _log,
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
