"""A replica's durable store: a checkpoint file and a write-ahead log, in one directory.

The core returns persist effects (vrref/core/durable.py) and a replica process hands them to
``Storage.write``, which makes them durable before it returns; only then may the process send
the messages that followed them (spec/vr.md R20). ``Storage.open`` rebuilds the ``Durable``
disk state by replaying the records with ``vrref.core.durable.apply``, the one definition of
what each effect does.

Files (``<c>`` is the op-number of the checkpoint a generation starts from, 0 without one):

- ``checkpoint-<c>.json``: one record (the format below) of kind ``checkpoint``, whose
  ``checkpoint`` field is ``checkpoint_to_json`` of it;
- ``checkpoint-<c>.zone``: the checkpoint's service snapshot alone, for an operator to read
  (a zone file for the DNS service); informational, never loaded;
- ``wal-<c + 1>.log``: the write-ahead log of the generation, the entries from op ``c + 1``
  on. It begins with a head of two records, the vote and the log after ``c`` (``after`` =
  ``c``), written at once with the segment, then one record per vote or log effect.

A record is one line: ``<crc32 of payload, 8 hex> <payload length> <payload>\\n``, the payload
ASCII JSON (so it holds no newline) with a ``kind`` of ``vote``, ``log`` or ``checkpoint``::

    4810a5c7 63 {"kind":"vote","last_normal_view":2,"status":"normal","view":2}
    f5c8affd 68 {"after":7,"entries":[[2,"ADD a. 300 A 10.0.0.1",1,4]],"kind":"log"}

Writing. ``write`` appends one record per vote or log effect and syncs the file once per call.
A ``PersistCheckpoint`` starts a new generation: the records before it in the batch are
synced to the current segment; the checkpoint file is written under a temporary name,
synced, renamed and the directory synced; then the new segment is written the same way,
holding the head made from the state in memory (``Storage.disk``); only then are the older
files deleted. The rename of the new segment is the commit point: ``open`` uses the newest
segment whose checkpoint file is valid, so a checkpoint file without its segment (a crash
between the two renames) is ignored and removed. Disk use is the newest checkpoint, its zone
file, and the segment after it; a segment that superseded records (replaced log suffixes, old
votes) make larger than ``COMPACT_BYTES_MIN`` and than twice its head is rewritten to its head,
under the same name.

Damage. ``open`` reads a segment's records in order and stops at the first one that is
incomplete, fails its checksum or its decoding (``CodecError``), or that ``apply`` rejects
(``DurableError``); it truncates the file there (or, in a segment's head, rewrites the
segment from what was read) and reports a ``Damage``:

- ``torn-tail``: no valid record follows. Records are appended and then synced, so this is a
  write a crash interrupted, never acknowledged: nothing acknowledged is lost.
- ``corrupt``: a valid, checksum-correct record follows the bad one, or the bad record is in a
  segment's head (written whole and synced before its rename), or a checkpoint file the
  newest segment needs is unreadable. Data that was synced is gone: the caller must not trust
  this disk and repairs from its peers. The ``Durable`` returned is the best that is left: the
  older generation if a crash left one, else the newest vote with no checkpoint and no log.
  Unusable files are renamed to ``<name>.damaged`` (removed at the next checkpoint).

A crash loses at most the records of the ``write`` it interrupts, from some record on; on a
power failure that writes pages out of order, an unsynced batch of several pages may leave a
valid record after a torn one, which is reported ``corrupt``: the conservative reading.

One process owns a directory at a time (an exclusive ``flock`` on it). A ``Storage`` is not
thread-safe, and after an ``OSError`` from ``write`` it refuses further writes: what reached
the disk is unknown until the next ``open``, so the replica process must stop.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, TypeAlias

from vrref.core.durable import (
    EMPTY,
    Durable,
    DurableError,
    Persist,
    PersistCheckpoint,
    PersistLog,
    PersistVote,
    apply,
    effect_from_json,
    effect_to_json,
)
from vrref.core.messages import (
    Checkpoint,
    CodecError,
    checkpoint_from_json,
    checkpoint_to_json,
)

HEAD_RECORDS: Final = 2
"""Records at the start of every segment: the vote, and the log after its checkpoint."""
COMPACT_BYTES_MIN: Final = 4 * 1024 * 1024
"""A segment larger than this and than twice the head it would be rewritten to is rewritten
(superseded records dropped); read at each call, so a test can lower it."""
TMP_SUFFIX: Final = ".tmp"
DAMAGED_SUFFIX: Final = ".damaged"
_SEGMENT: Final = re.compile(r"wal-(\d{1,19})\.log")
_CHECKPOINT: Final = re.compile(r"checkpoint-(\d{1,19})\.(json|zone)")
_HEADER: Final = re.compile(rb"([0-9a-f]{8}) (0|[1-9][0-9]{0,19}) ")
_HEADER_BYTES_MAX: Final = 8 + 1 + 20 + 1

DamageKind: TypeAlias = Literal["torn-tail", "corrupt"]


class StorageError(RuntimeError):
    """The store cannot be used: held by another process, closed, or failed in a write."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Damage:
    """What ``open`` found wrong: the file, the offset of the first bad record (where the
    file was truncated; 0 for a checkpoint file), how many records of that file were kept,
    and why."""

    kind: DamageKind
    file: Path
    offset: int
    records_kept: int
    detail: str


def segment_name(checkpoint_op: int) -> str:
    """The segment of the generation that starts from the checkpoint at ``checkpoint_op``."""
    return f"wal-{checkpoint_op + 1}.log"


def checkpoint_name(op: int, suffix: str = "json") -> str:
    return f"checkpoint-{op}.{suffix}"


# ---------------------------------------------------------------------------------------
# Records


class _BadRecord(ValueError):
    pass


def _record(payload: dict[str, Any]) -> bytes:
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode("ascii")
    return b"%08x %d " % (zlib.crc32(body), len(body)) + body + b"\n"


def _read_record(data: bytes, offset: int) -> tuple[Any, int]:
    """The decoded JSON payload of the record at ``offset`` and the offset after it."""
    header = _HEADER.match(data, offset, offset + _HEADER_BYTES_MAX)
    if header is None:
        raise _BadRecord("malformed or incomplete record header")
    start = header.end()
    end = start + int(header[2])
    if end >= len(data):
        raise _BadRecord("incomplete record")
    body = data[start:end]
    if data[end] != 0x0A:
        raise _BadRecord("record does not end where its length says")
    if zlib.crc32(body) != int(header[1], 16):
        raise _BadRecord("checksum mismatch")
    try:
        return json.loads(body), end + 1
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise _BadRecord(f"payload is not JSON: {error}") from None


def _effect_to_json(effect: PersistVote | PersistLog) -> dict[str, Any]:
    return effect_to_json(effect)


def _effect_from_json(value: Any) -> PersistVote | PersistLog:
    """A vote or log effect from a record's payload (vrref/core/durable.py's codec; a
    checkpoint lives in its own file, never in a segment); raises CodecError."""
    effect = effect_from_json(value)
    if isinstance(effect, PersistCheckpoint):
        raise CodecError("a checkpoint record in a write-ahead-log segment")
    return effect


def _checkpoint_file_bytes(checkpoint: Checkpoint) -> bytes:
    return _record({"kind": "checkpoint", "checkpoint": checkpoint_to_json(checkpoint)})


def _load_checkpoint(path: Path, op: int) -> Checkpoint:
    """The checkpoint in ``path``; raises OSError or _BadRecord or CodecError."""
    data = path.read_bytes()
    value, end = _read_record(data, 0)
    if end != len(data):
        raise _BadRecord("bytes after the checkpoint record")
    if not isinstance(value, dict) or set(value) != {"kind", "checkpoint"}:
        raise CodecError("not a checkpoint record")
    if value["kind"] != "checkpoint":
        raise CodecError("not a checkpoint record")
    checkpoint = checkpoint_from_json(value["checkpoint"])
    if checkpoint.op_number != op:
        raise CodecError(f"checkpoint at op {checkpoint.op_number} in the file named for {op}")
    return checkpoint


def _head(disk: Durable) -> bytes:
    """A segment's first records: they alone give ``disk`` from its checkpoint."""
    vote = PersistVote(view=disk.view, status=disk.status, last_normal_view=disk.last_normal_view)
    log = PersistLog(after=disk.log_start, entries=disk.log)
    return _record(_effect_to_json(vote)) + _record(_effect_to_json(log))


@dataclass(slots=True)
class _Replay:
    disk: Durable
    records: int  # records applied
    end: int  # offset after the last record applied
    bad: str | None  # why the record at ``end`` was rejected (None: the file ended there)
    valid_after: bool  # a checksum-correct record follows the bad one


def _replay(data: bytes, base: Durable, checkpoint_op: int) -> _Replay:
    disk, offset, records = base, 0, 0
    while offset < len(data):
        try:
            value, following = _read_record(data, offset)
            effect = _effect_from_json(value)
            if records == 0 and not isinstance(effect, PersistVote):
                raise CodecError("a segment must begin with a vote")
            if records == 1 and not (
                isinstance(effect, PersistLog) and effect.after == checkpoint_op
            ):
                raise CodecError(
                    f"a segment's second record must be the log after op {checkpoint_op}"
                )
            disk = apply(disk, effect)
        except (_BadRecord, CodecError, DurableError) as error:
            return _Replay(disk, records, offset, str(error), _valid_record_after(data, offset))
        offset, records = following, records + 1
    return _Replay(disk, records, offset, None, False)


def _valid_record_after(data: bytes, offset: int) -> bool:
    """Whether a checksum-correct record starts at a line after ``offset``."""
    newline = data.find(b"\n", offset)
    while newline != -1 and newline + 1 < len(data):
        with contextlib.suppress(_BadRecord):
            _read_record(data, newline + 1)
            return True
        newline = data.find(b"\n", newline + 1)
    return False


def _last_vote(data: bytes) -> Durable:
    """The newest vote among a segment's readable records, with no checkpoint and no log."""
    disk, offset = EMPTY, 0
    with contextlib.suppress(_BadRecord, CodecError, DurableError):
        while offset < len(data):
            value, offset = _read_record(data, offset)
            effect = _effect_from_json(value)
            if isinstance(effect, PersistVote):
                disk = apply(disk, effect)
    return disk


# ---------------------------------------------------------------------------------------
# Files


def _sync(fd: int) -> None:
    if hasattr(os, "fdatasync"):
        os.fdatasync(fd)
    else:  # pragma: no cover - macOS
        os.fsync(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _write_synced(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        _write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(slots=True)
class _Listing:
    segments: dict[int, Path]  # checkpoint op -> segment
    checkpoints: dict[int, Path]  # op -> checkpoint-<op>.json
    others: list[Path]  # our other files: zone, temporary, damaged


def _list(directory: Path) -> _Listing:
    listing = _Listing({}, {}, [])
    for path in directory.iterdir():
        name = path.name
        if (match := _SEGMENT.fullmatch(name)) and int(match[1]) > 0:
            listing.segments[int(match[1]) - 1] = path
        elif (match := _CHECKPOINT.fullmatch(name)) and match[2] == "json":
            listing.checkpoints[int(match[1])] = path
        elif match or name.endswith((TMP_SUFFIX, DAMAGED_SUFFIX)):
            listing.others.append(path)
    return listing


class Storage:
    """The durable store of one replica, in one directory (see the module docstring).

    ``disk`` is the state the files hold, as ``apply`` defines it.
    """

    def __init__(self, directory: Path, dir_fd: int, disk: Durable) -> None:
        self.directory = directory
        self.disk = disk
        self._dir_fd: int | None = dir_fd
        self._fd: int | None = None
        self._failed: BaseException | None = None
        self._segment_bytes = 0  # the size of the open segment
        self._head_bytes = 0  # the size of the head it was, or would be, rewritten to

    # -- opening

    @classmethod
    def open(cls, directory: Path) -> tuple[Storage, Durable, Damage | None]:
        """The store in ``directory`` (created if missing), the state it holds, and the
        damage found (None when clean). The store is ready for ``write``."""
        directory = Path(directory)
        if not directory.is_dir():
            directory.mkdir(parents=True, exist_ok=True)
            _sync_directory(directory.parent)
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(dir_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(dir_fd)
            raise StorageError(f"{directory} is in use by another process") from None
        store = cls(directory, dir_fd, EMPTY)
        try:
            damage = store._recover()
        except BaseException:
            store.close()
            raise
        return store, store.disk, damage

    def _recover(self) -> Damage | None:
        listing = _list(self.directory)
        for path in listing.others:
            if path.name.endswith(TMP_SUFFIX):
                path.unlink()
        corrupt: Damage | None = None
        broken: list[Path] = []
        chosen: int | None = None
        base = EMPTY
        for op in sorted(listing.segments, reverse=True):
            found = listing.checkpoints.get(op)
            if found is None and op == 0:
                chosen, base = op, EMPTY
                break
            if found is None:
                path, problem = self.directory / checkpoint_name(op), "missing"
            else:
                path = found
                try:
                    chosen, base = op, Durable(checkpoint=_load_checkpoint(path, op))
                    break
                except (OSError, _BadRecord, CodecError) as error:
                    problem = str(error)
                broken.append(path)
            broken.append(listing.segments[op])
            corrupt = corrupt or Damage(
                kind="corrupt",
                file=path,
                offset=0,
                records_kept=0,
                detail=f"checkpoint {problem}, needed by {segment_name(op)}",
            )
        if not listing.segments and listing.checkpoints:
            broken.extend(listing.checkpoints.values())
            corrupt = Damage(
                kind="corrupt",
                file=listing.checkpoints[max(listing.checkpoints)],
                offset=0,
                records_kept=0,
                detail="checkpoint files but no write-ahead log",
            )
        for path in broken:
            path.replace(path.with_name(path.name + DAMAGED_SUFFIX))

        damage: Damage | None
        if chosen is None:
            # Nothing usable: keep the newest vote, if a segment holds one.
            if listing.segments:
                newest = listing.segments[max(listing.segments)]
                data = newest.with_name(newest.name + DAMAGED_SUFFIX).read_bytes()
                self.disk = _last_vote(data)
            self._start_segment()
            damage = corrupt
        else:
            damage = self._replay_segment(listing.segments[chosen], base, chosen)
            if corrupt is not None:
                also = f"; then {damage.kind}: {damage.detail}" if damage else ""
                damage = replace(
                    corrupt, detail=f"{corrupt.detail}; fell back to {segment_name(chosen)}{also}"
                )
        self._remove_stale(keep=chosen or 0, damaged=True)
        _sync_directory(self.directory)
        return damage

    def _replay_segment(self, path: Path, base: Durable, op: int) -> Damage | None:
        """Replays the segment into ``self.disk`` and opens it for appending."""
        data = path.read_bytes()
        replay = _replay(data, base, op)
        self.disk = replay.disk
        in_head = replay.records < HEAD_RECORDS
        if replay.end == len(data) and not in_head:
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND)
            self._segment_bytes = len(data)
            return None
        bad = replay.bad or "end of file"
        damage = Damage(
            kind="corrupt" if replay.valid_after or in_head else "torn-tail",
            file=path,
            offset=replay.end,
            records_kept=replay.records,
            detail=f"{bad} at offset {replay.end} of {len(data)} bytes"
            + ("; valid records follow" if replay.valid_after else "")
            + ("; in the segment head" if in_head else ""),
        )
        if in_head:  # the head is rewritten whole, from what was read
            path.replace(path.with_name(path.name + DAMAGED_SUFFIX))
            self._start_segment()
            return damage
        with open(path, "r+b") as file:
            file.truncate(replay.end)
            os.fsync(file.fileno())
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        self._segment_bytes = replay.end
        return damage

    # -- writing

    def write(self, effects: Sequence[Persist]) -> None:
        """Makes ``effects`` durable, in order, before returning (one sync per call, more
        when a checkpoint starts a new segment). Raises DurableError or CodecError, before
        writing anything, on an effect that does not fit the disk or cannot be read back."""
        if self._fd is None:
            raise StorageError("the store is closed")
        if self._failed is not None:
            raise StorageError("an earlier write failed; reopen the store") from self._failed
        plan: list[tuple[Persist, Durable, bytes]] = []
        disk = self.disk
        for effect in effects:
            after = apply(disk, effect)
            if isinstance(effect, PersistCheckpoint):
                checkpoint = effect.checkpoint
                if after is disk or checkpoint == disk.checkpoint:
                    continue  # older than the one on disk, or the same: nothing changes
                checkpoint_from_json(checkpoint_to_json(checkpoint))  # it can be read back
                plan.append((effect, after, b""))
            else:
                payload = _effect_to_json(effect)
                _effect_from_json(payload)  # what is written can be read back
                plan.append((effect, after, _record(payload)))
            disk = after
        try:
            pending: list[bytes] = []
            for effect, after, record in plan:
                if isinstance(effect, PersistCheckpoint):
                    self._append(pending)  # the old segment holds all before the checkpoint
                    pending = []
                    self.disk = after
                    self._write_checkpoint(effect.checkpoint)
                else:
                    pending.append(record)
                    self.disk = after
            self._append(pending)
            self._compact_if_large()
        except BaseException as error:
            self._failed = error
            raise

    def _append(self, records: list[bytes]) -> None:
        if records:
            assert self._fd is not None
            data = b"".join(records)
            _write_all(self._fd, data)
            _sync(self._fd)
            self._segment_bytes += len(data)

    def _compact_if_large(self) -> None:
        """Rewrites the segment from ``self.disk`` when superseded records (replaced log
        suffixes, old votes) make it more than twice as large as that: the same name, so the
        rename is atomic and either file gives the same disk."""
        if self._segment_bytes <= max(COMPACT_BYTES_MIN, 2 * self._head_bytes):
            return
        head = _head(self.disk)
        if 2 * len(head) < self._segment_bytes:
            self._start_segment(head)
        else:
            self._head_bytes = len(head)

    def _write_checkpoint(self, checkpoint: Checkpoint) -> None:
        op = checkpoint.op_number
        json_name, zone_name = checkpoint_name(op), checkpoint_name(op, "zone")
        self._write_files(
            {
                zone_name: checkpoint.service.encode("utf-8", "surrogatepass"),
                json_name: _checkpoint_file_bytes(checkpoint),
            }
        )
        self._start_segment()
        self._remove_stale(keep=op)

    def _start_segment(self, head: bytes | None = None) -> None:
        """Writes the segment of ``self.disk``'s checkpoint from it (``head``, if computed
        already) and opens it: the commit point of a checkpoint."""
        name = segment_name(self.disk.log_start)
        head = _head(self.disk) if head is None else head
        self._write_files({name: head})
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._fd = os.open(self.directory / name, os.O_WRONLY | os.O_APPEND)
        self._segment_bytes = self._head_bytes = len(head)

    def _write_files(self, files: dict[str, bytes]) -> None:
        """Each file written under a temporary name and synced, then all renamed in order,
        then the directory synced."""
        for name, data in files.items():
            _write_synced(self.directory / (name + TMP_SUFFIX), data)
        for name in files:
            (self.directory / (name + TMP_SUFFIX)).replace(self.directory / name)
        assert self._dir_fd is not None
        os.fsync(self._dir_fd)

    def _remove_stale(self, *, keep: int, damaged: bool = False) -> None:
        """Deletes every file of ours but the generation of the checkpoint at ``keep`` (and
        the damaged files, if ``damaged``). Not synced: a file that comes back after a crash
        belongs to an older generation, which ``open`` ignores."""
        keep_names = {segment_name(keep), checkpoint_name(keep), checkpoint_name(keep, "zone")}
        listing = _list(self.directory)
        for path in [*listing.segments.values(), *listing.checkpoints.values(), *listing.others]:
            if path.name in keep_names or (damaged and path.name.endswith(DAMAGED_SUFFIX)):
                continue
            path.unlink(missing_ok=True)

    # -- closing

    def close(self) -> None:
        """Closes the files and releases the directory. Idempotent."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._dir_fd is not None:
            os.close(self._dir_fd)  # releases the flock
            self._dir_fd = None

    def __enter__(self) -> Storage:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
