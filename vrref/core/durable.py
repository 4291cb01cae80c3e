"""What a replica keeps on disk, as data: the persist effects and the state they build.

The core stays sans-I/O (vrref/core/replica.py): when an event changes something a vote or
an acknowledgement depends on, the replica returns persist effects ahead of every other
effect of that event, and a driver must make them durable, in order, before it performs
any effect that follows them (spec/vr.md R20). There are three:

- ``PersistVote``: the view-number, the status and the last normal view, which every
  STARTVIEWCHANGE, DOVIEWCHANGE and PREPAREOK depends on;
- ``PersistLog``: the log from ``after + 1`` on is replaced by ``entries`` (an append is a
  replacement at the end);
- ``PersistCheckpoint``: a checkpoint; the entries it covers may be forgotten.

``Durable`` is what those effects leave on a disk, and ``apply`` the one definition of how
each changes it. The runtime's write-ahead log (vrref/runtime/storage.py) writes one record
per effect and replays them with ``apply``; the explorer and the simulator keep a ``Durable``
per replica with the same function; ``Replica.restarted`` starts a replica from one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, TypeAlias

from vrref.core.messages import (
    Checkpoint,
    CodecError,
    Log,
    checkpoint_from_json,
    checkpoint_to_json,
    log_from_json,
    log_to_json,
)

NORMAL: Final = "normal"
VIEW_CHANGE: Final = "view-change"
DURABLE_STATUSES: Final = (NORMAL, VIEW_CHANGE)
"""The statuses a disk can hold: a recovering replica persists nothing."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PersistVote:
    """Effect: make the view-number, status and last normal view durable."""

    view: int
    status: str
    last_normal_view: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PersistLog:
    """Effect: keep the durable log up to op ``after``, then ``entries`` (ops after+1...)."""

    after: int
    entries: Log


@dataclass(frozen=True, slots=True, kw_only=True)
class PersistCheckpoint:
    """Effect: make ``checkpoint`` durable; the log entries up to it may be dropped."""

    checkpoint: Checkpoint


Persist: TypeAlias = PersistVote | PersistLog | PersistCheckpoint


@dataclass(frozen=True, slots=True, kw_only=True)
class Durable:
    """A replica's disk: the last vote, the newest checkpoint, and the log after it.

    ``log`` holds the entries ``log_start + 1 .. log_start + len(log)``, where ``log_start``
    is the checkpoint's op-number (0 without one).
    """

    view: int = 0
    status: str = NORMAL
    last_normal_view: int = 0
    checkpoint: Checkpoint | None = None
    log: Log = ()

    @property
    def log_start(self) -> int:
        return 0 if self.checkpoint is None else self.checkpoint.op_number

    @property
    def op_number(self) -> int:
        return self.log_start + len(self.log)


EMPTY: Final = Durable()
"""A disk nothing was written to: a replica starting for the first time."""


class DurableError(ValueError):
    """A persist effect that does not fit the disk it is applied to (a driver's bug, or a
    damaged record the storage reader must reject)."""


def apply(disk: Durable, effect: Persist) -> Durable:
    """The disk after ``effect``: the one definition every driver uses."""
    match effect:
        case PersistVote(view=view, status=status, last_normal_view=last_normal_view):
            if status not in DURABLE_STATUSES or last_normal_view > view:
                raise DurableError(f"not a durable vote: {effect!r:.200}")
            return Durable(
                view=view,
                status=status,
                last_normal_view=last_normal_view,
                checkpoint=disk.checkpoint,
                log=disk.log,
            )
        case PersistLog(after=after, entries=entries):
            start = disk.log_start
            if after > disk.op_number:
                raise DurableError(f"log write after op {after} leaves a gap at {disk.op_number}")
            if after < start:
                # Entries the checkpoint covers are not rewritten: skip them.
                entries = entries[start - after :]
                after = start
            return Durable(
                view=disk.view,
                status=disk.status,
                last_normal_view=disk.last_normal_view,
                checkpoint=disk.checkpoint,
                log=disk.log[: after - start] + entries,
            )
        case PersistCheckpoint(checkpoint=checkpoint):
            start = disk.log_start
            if checkpoint.op_number < start:
                return disk  # older than the one on disk: nothing to keep
            keep = checkpoint.op_number - start
            log = disk.log[keep:] if keep <= len(disk.log) else ()
            return Durable(
                view=disk.view,
                status=disk.status,
                last_normal_view=disk.last_normal_view,
                checkpoint=checkpoint,
                log=log,
            )
    raise DurableError(f"not a persist effect: {effect!r:.200}")


def apply_all(disk: Durable, effects: object) -> Durable:
    """``disk`` after every persist effect among ``effects``, in order (others skipped)."""
    assert isinstance(effects, list | tuple)
    for effect in effects:
        if isinstance(effect, PersistVote | PersistLog | PersistCheckpoint):
            disk = apply(disk, effect)
    return disk


def effect_to_json(effect: Persist) -> dict[str, Any]:
    """A persist effect as JSON (a write-ahead-log record's payload)."""
    match effect:
        case PersistVote():
            return {
                "kind": "vote",
                "view": effect.view,
                "status": effect.status,
                "last_normal_view": effect.last_normal_view,
            }
        case PersistLog():
            return {"kind": "log", "after": effect.after, "entries": log_to_json(effect.entries)}
        case PersistCheckpoint():
            return {"kind": "checkpoint", "checkpoint": checkpoint_to_json(effect.checkpoint)}
    raise TypeError(f"not a persist effect: {effect!r:.80}")


def _integer(obj: dict[str, Any], name: str) -> int:
    value = obj.get(name)
    if type(value) is not int or value < 0:
        raise CodecError(f"{name!r} must be a non-negative integer")
    return value


def effect_from_json(obj: object) -> Persist:
    """A persist effect from untrusted JSON, every field checked; raises CodecError."""
    if not isinstance(obj, dict):
        raise CodecError("a persist record must be a JSON object")
    kind = obj.get("kind")
    expected = {
        "vote": {"kind", "view", "status", "last_normal_view"},
        "log": {"kind", "after", "entries"},
        "checkpoint": {"kind", "checkpoint"},
    }.get(kind if isinstance(kind, str) else "")
    if expected is None or set(obj) != expected:
        raise CodecError(f"not a persist record: kind {kind!r:.20}, fields {sorted(obj)[:6]}")
    match kind:
        case "vote":
            status = obj["status"]
            if status not in DURABLE_STATUSES:
                raise CodecError(f"status must be one of {DURABLE_STATUSES}")
            return PersistVote(
                view=_integer(obj, "view"),
                status=status,
                last_normal_view=_integer(obj, "last_normal_view"),
            )
        case "log":
            return PersistLog(after=_integer(obj, "after"), entries=log_from_json(obj["entries"]))
        case _:
            return PersistCheckpoint(checkpoint=checkpoint_from_json(obj["checkpoint"]))


def to_json(disk: Durable) -> dict[str, Any]:
    """A whole disk as JSON (a history's ``reopen`` event records what a replica loaded)."""
    return {
        "view": disk.view,
        "status": disk.status,
        "last_normal_view": disk.last_normal_view,
        "checkpoint": None if disk.checkpoint is None else checkpoint_to_json(disk.checkpoint),
        "log": log_to_json(disk.log),
    }


def from_json(obj: object) -> Durable:
    """A disk from untrusted JSON, checked as ``apply`` checks its effects; raises
    CodecError."""
    if not isinstance(obj, dict) or set(obj) != {
        "view",
        "status",
        "last_normal_view",
        "checkpoint",
        "log",
    }:
        raise CodecError(
            "a disk must be an object with view, status, last_normal_view, checkpoint, log"
        )
    try:
        disk = apply(
            EMPTY,
            PersistVote(
                view=_integer(obj, "view"),
                status=obj["status"] if obj["status"] in DURABLE_STATUSES else "?",
                last_normal_view=_integer(obj, "last_normal_view"),
            ),
        )
        if obj["checkpoint"] is not None:
            disk = apply(
                disk, PersistCheckpoint(checkpoint=checkpoint_from_json(obj["checkpoint"]))
            )
        return apply(disk, PersistLog(after=disk.log_start, entries=log_from_json(obj["log"])))
    except DurableError as error:
        raise CodecError(str(error)) from None
