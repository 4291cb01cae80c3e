"""The replica's durable store: what ``open`` returns is what folding ``durable.apply`` over
the written effects gives, after damage and after real crashes (SIGKILL) too."""

from __future__ import annotations

import hashlib
import itertools
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vrref.core.durable import (
    EMPTY,
    Durable,
    DurableError,
    Persist,
    PersistCheckpoint,
    PersistLog,
    PersistVote,
    apply,
)
from vrref.core.messages import (
    OP_BYTES_MAX,
    Checkpoint,
    ClientRecord,
    CodecError,
    LogEntry,
    Request,
)
from vrref.runtime.storage import Damage, Storage, StorageError

ROOT = Path(__file__).resolve().parents[2]

# ---------------------------------------------------------------------------------------
# Realistic effects, generated from the disk they apply to (shared with the crash child)


def make_checkpoint(op: int) -> Checkpoint:
    service = (
        "$ORIGIN example.\n"
        f"@ 3600 IN SOA ns1 hostmaster {op} 7200 3600 1209600 300\n"
        "@ 3600 IN NS ns1\n"
        f"www 300 IN A 10.0.{op % 256}.1\n"
    )
    return Checkpoint(
        op_number=op,
        service=service,
        digest=hashlib.sha256(service.encode()).hexdigest(),
        client_table=(ClientRecord(client_id=7, request_number=op, result="NOERROR"),),
    )


def make_entries(
    rng: random.Random, view: int, first: int, count: int, width: int = 0
) -> tuple[LogEntry, ...]:
    entries = []
    for n in range(first, first + count):
        op = f'ADD w{n}.example. 300 IN TXT "{"x" * width}"'
        if rng.random() < 0.1:
            op += ' "caf\u00e9 \\n\n\U0001f600"'  # escaping: a raw newline, non-ASCII
        entries.append(LogEntry(view=view, request=Request(op=op, client_id=7, request_number=n)))
    return tuple(entries)


def gen_batch(rng: random.Random, disk: Durable) -> list[Persist]:
    """One batch of effects a replica could return from one event, valid on ``disk``."""
    effects: list[Persist] = []

    def emit(effect: Persist) -> None:
        nonlocal disk
        disk = apply(disk, effect)
        effects.append(effect)

    roll = rng.random()
    view = disk.view
    if roll < 0.5:  # a PREPARE: append a few entries
        emit(
            PersistLog(
                after=disk.op_number,
                entries=make_entries(rng, view, disk.op_number + 1, rng.randint(1, 5)),
            )
        )
    elif roll < 0.58:  # a large batch, several pages
        emit(
            PersistLog(
                after=disk.op_number, entries=make_entries(rng, view, disk.op_number + 1, 40, 150)
            )
        )
    elif roll < 0.70:  # a view change: vote, replace the log's tail, vote normal
        emit(
            PersistVote(view=view + 1, status="view-change", last_normal_view=disk.last_normal_view)
        )
        keep = rng.randint(disk.log_start, disk.op_number)
        emit(
            PersistLog(after=keep, entries=make_entries(rng, view + 1, keep + 1, rng.randint(0, 4)))
        )
        emit(PersistVote(view=view + 1, status="normal", last_normal_view=view + 1))
    elif roll < 0.82:  # a checkpoint within the log, then maybe an append
        emit(
            PersistCheckpoint(
                checkpoint=make_checkpoint(rng.randint(disk.log_start, disk.op_number))
            )
        )
        if rng.random() < 0.5:
            emit(
                PersistLog(
                    after=disk.op_number, entries=make_entries(rng, view, disk.op_number + 1, 2)
                )
            )
    elif roll < 0.86:  # state transfer: a checkpoint ahead of the log, and entries after it
        target = disk.op_number + rng.randint(1, 5)
        emit(PersistCheckpoint(checkpoint=make_checkpoint(target)))
        emit(PersistLog(after=target, entries=make_entries(rng, view, target + 1, 3)))
    elif roll < 0.90:  # an older checkpoint (ignored), and a rewrite starting below the log
        if disk.log_start > 0:
            emit(PersistCheckpoint(checkpoint=make_checkpoint(disk.log_start - 1)))
        after = max(0, disk.log_start - 2)
        emit(
            PersistLog(
                after=after, entries=make_entries(rng, view, after + 1, disk.op_number - after + 1)
            )
        )
    else:  # a vote alone
        emit(PersistVote(view=view, status=disk.status, last_normal_view=disk.last_normal_view))
    return effects


def fold(effects: list[Persist], disk: Durable = EMPTY) -> Durable:
    for effect in effects:
        disk = apply(disk, effect)
    return disk


def reopen(directory: Path) -> tuple[Durable, Damage | None]:
    store, disk, damage = Storage.open(directory)
    store.close()
    return disk, damage


def appends(count: int, first: int = 1, view: int = 0) -> list[Persist]:
    """Appends of one entry each, ops ``first`` on; the same entries for the same ops."""
    return [
        PersistLog(after=n - 1, entries=make_entries(random.Random(n), view, n, 1))
        for n in range(first, first + count)
    ]


def our_files(directory: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in directory.iterdir()}


# ---------------------------------------------------------------------------------------
# Round trips


def test_an_empty_or_missing_directory_is_an_empty_disk(tmp_path: Path) -> None:
    directory = tmp_path / "a" / "b"
    store, disk, damage = Storage.open(directory)
    assert (disk, damage) == (EMPTY, None)
    assert sorted(our_files(directory)) == ["wal-1.log"]
    store.close()
    assert reopen(directory) == (EMPTY, None)


def test_a_realistic_sequence_reads_back_as_the_fold_of_apply(tmp_path: Path) -> None:
    rng = random.Random(1)
    store, disk, _ = Storage.open(tmp_path)
    written: list[Persist] = []
    checkpoints = 0
    for step in range(400):
        batch = gen_batch(rng, store.disk)
        store.write(batch)
        written += batch
        checkpoints += sum(isinstance(e, PersistCheckpoint) for e in batch)
        assert store.disk == fold(written)
        if step % 37 == 0:  # a clean restart now and then
            store.close()
            store, disk, damage = Storage.open(tmp_path)
            assert (disk, damage) == (fold(written), None)
    store.close()
    expected = fold(written)
    assert reopen(tmp_path) == (expected, None)
    # The sequence had what it should: view changes, checkpoints that dropped entries.
    assert expected.view > 5 and checkpoints > 20 and expected.log_start > 0
    assert expected.log_start + len(expected.log) == expected.op_number
    zone = tmp_path / f"checkpoint-{expected.log_start}.zone"
    assert expected.checkpoint is not None
    assert zone.read_text() == expected.checkpoint.service


def test_replacements_after_a_view_change_and_log_truncation_by_checkpoints(tmp_path: Path) -> None:
    rng = random.Random(2)
    effects: list[Persist] = [
        PersistVote(view=0, status="normal", last_normal_view=0),
        PersistLog(after=0, entries=make_entries(rng, 0, 1, 10)),
        PersistVote(view=1, status="view-change", last_normal_view=0),
        PersistLog(after=6, entries=make_entries(rng, 1, 7, 2)),  # ops 7..10 replaced by 7..8
        PersistVote(view=1, status="normal", last_normal_view=1),
        PersistCheckpoint(checkpoint=make_checkpoint(4)),
        PersistLog(after=2, entries=make_entries(rng, 1, 3, 8)),  # starts below the checkpoint
        PersistCheckpoint(checkpoint=make_checkpoint(9)),
        PersistCheckpoint(checkpoint=make_checkpoint(3)),  # older: ignored
        PersistLog(after=10, entries=make_entries(rng, 1, 11, 3)),
    ]
    store, _, _ = Storage.open(tmp_path)
    store.write(effects[:5])
    store.write(effects[5:7])
    store.write(effects[7:])
    store.close()
    expected = fold(effects)
    assert expected.log_start == 9 and expected.op_number == 13 and expected.view == 1
    assert reopen(tmp_path) == (expected, None)
    assert sorted(our_files(tmp_path)) == ["checkpoint-9.json", "checkpoint-9.zone", "wal-10.log"]


def test_write_refuses_a_bad_batch_before_writing_anything(tmp_path: Path) -> None:
    store, _, _ = Storage.open(tmp_path)
    store.write(appends(3))
    before = our_files(tmp_path)
    too_long = LogEntry(
        view=0, request=Request(op="x" * (OP_BYTES_MAX + 1), client_id=1, request_number=1)
    )
    with pytest.raises(DurableError):  # a gap, after a valid effect in the same batch
        store.write([*appends(1, first=4), PersistLog(after=9, entries=())])
    with pytest.raises(DurableError):
        store.write([PersistVote(view=1, status="recovering", last_normal_view=0)])
    with pytest.raises(CodecError):  # could not be read back
        store.write([PersistLog(after=3, entries=(too_long,))])
    assert our_files(tmp_path) == before
    store.write(appends(1, first=4))  # the store is still usable
    store.close()
    assert reopen(tmp_path) == (fold(appends(4)), None)


def test_one_process_owns_a_directory(tmp_path: Path) -> None:
    store, _, _ = Storage.open(tmp_path)
    with pytest.raises(StorageError):
        Storage.open(tmp_path)
    store.close()
    store.close()
    with pytest.raises(StorageError):
        store.write(appends(1))
    with Storage.open(tmp_path)[0]:
        pass


def test_an_uncommitted_checkpoint_and_temporary_files_are_ignored_and_removed(
    tmp_path: Path,
) -> None:
    """A crash between the checkpoint file's rename and its segment's rename."""
    from vrref.runtime.storage import _checkpoint_file_bytes

    store, _, _ = Storage.open(tmp_path)
    store.write(appends(5))
    store.close()
    (tmp_path / "checkpoint-3.json").write_bytes(_checkpoint_file_bytes(make_checkpoint(3)))
    (tmp_path / "checkpoint-3.zone").write_text("orphan")
    (tmp_path / "wal-4.log.tmp").write_bytes(b"half a segment")
    assert reopen(tmp_path) == (fold(appends(5)), None)
    assert sorted(our_files(tmp_path)) == ["wal-1.log"]


# ---------------------------------------------------------------------------------------
# Damage


def record_offsets(path: Path) -> list[int]:
    data = path.read_bytes()
    offsets, offset = [], 0
    while offset < len(data):
        offsets.append(offset)
        offset = data.index(b"\n", offset) + 1
    return offsets


def test_a_torn_tail_is_truncated_and_later_writes_are_clean(tmp_path: Path) -> None:
    effects = appends(20)
    store, _, _ = Storage.open(tmp_path)
    for effect in effects:
        store.write([effect])
    store.close()
    wal = tmp_path / "wal-1.log"
    offsets = record_offsets(wal)  # 2 head records, then one per effect
    assert len(offsets) == 22
    size = wal.stat().st_size
    os.truncate(wal, size - 7)  # the last record, written half-way

    store, disk, damage = Storage.open(tmp_path)
    assert damage is not None and damage.kind == "torn-tail"
    assert (damage.file, damage.offset, damage.records_kept) == (wal, offsets[-1], 21)
    assert disk == fold(effects[:-1])
    assert wal.stat().st_size == offsets[-1]  # truncated where the torn record began
    store.write(appends(3, first=20))
    store.close()
    assert reopen(tmp_path) == (fold(appends(22)), None)


def test_a_record_cut_in_its_header_is_a_torn_tail(tmp_path: Path) -> None:
    store, _, _ = Storage.open(tmp_path)
    store.write(appends(4))
    store.close()
    wal = tmp_path / "wal-1.log"
    with wal.open("ab") as file:
        file.write(b"3fa9")  # a crash a few bytes into the next record
    disk, damage = reopen(tmp_path)
    assert disk == fold(appends(4))
    assert damage is not None and damage.kind == "torn-tail"


def test_a_flipped_byte_in_a_middle_record_is_corruption(tmp_path: Path) -> None:
    effects = appends(20)
    store, _, _ = Storage.open(tmp_path)
    for effect in effects:
        store.write([effect])
    store.close()
    wal = tmp_path / "wal-1.log"
    offsets = record_offsets(wal)
    data = bytearray(wal.read_bytes())
    bad = offsets[2 + 9]  # the record of effects[9]
    data[bad + 30] ^= 0x04  # inside its payload: the checksum no longer matches
    wal.write_bytes(bytes(data))

    store, disk, damage = Storage.open(tmp_path)
    store.close()
    assert damage is not None and damage.kind == "corrupt"
    assert (damage.file, damage.offset, damage.records_kept) == (wal, bad, 11)
    assert "valid records follow" in damage.detail
    assert disk == fold(effects[:9])
    assert wal.stat().st_size == bad
    assert reopen(tmp_path) == (fold(effects[:9]), None)


def test_a_damaged_segment_head_is_corruption_and_is_rewritten(tmp_path: Path) -> None:
    store, _, _ = Storage.open(tmp_path)
    store.write([PersistVote(view=3, status="normal", last_normal_view=3), *appends(2)])
    store.write([PersistCheckpoint(checkpoint=make_checkpoint(2))])
    store.close()
    wal = tmp_path / "wal-3.log"
    offsets = record_offsets(wal)
    assert len(offsets) == 2  # the head alone
    data = bytearray(wal.read_bytes())
    data[offsets[1] + 20] ^= 0x01  # the log record of the head: nothing valid follows it
    wal.write_bytes(bytes(data))
    disk, damage = reopen(tmp_path)
    assert damage is not None and damage.kind == "corrupt"
    assert disk == Durable(
        view=3, status="normal", last_normal_view=3, checkpoint=make_checkpoint(2)
    )
    assert reopen(tmp_path) == (disk, None)


def test_a_corrupt_newest_checkpoint_falls_back_to_an_older_generation(tmp_path: Path) -> None:
    rng = random.Random(3)
    store, _, _ = Storage.open(tmp_path)
    store.write(appends(8))
    store.write([PersistCheckpoint(checkpoint=make_checkpoint(5))])
    store.write([PersistVote(view=1, status="normal", last_normal_view=1)])
    older = store.disk
    saved = {name: (tmp_path / name).read_bytes() for name in our_files(tmp_path)}
    assert sorted(saved) == ["checkpoint-5.json", "checkpoint-5.zone", "wal-6.log"]
    store.write([PersistLog(after=8, entries=make_entries(rng, 1, 9, 4))])
    store.write([PersistCheckpoint(checkpoint=make_checkpoint(10))])
    newest = store.disk
    store.close()

    def crash_before_old_files_were_deleted() -> None:
        for name, data in saved.items():
            (tmp_path / name).write_bytes(data)

    crash_before_old_files_were_deleted()
    assert reopen(tmp_path) == (newest, None)  # the newest generation is complete: used
    assert "wal-6.log" not in our_files(tmp_path)

    crash_before_old_files_were_deleted()
    newest_checkpoint = tmp_path / "checkpoint-10.json"
    data = bytearray(newest_checkpoint.read_bytes())
    data[len(data) // 2] ^= 0x20
    newest_checkpoint.write_bytes(bytes(data))
    disk, damage = reopen(tmp_path)
    assert disk == older
    assert damage is not None and damage.kind == "corrupt"
    assert damage.file == newest_checkpoint
    assert "fell back to wal-6.log" in damage.detail
    assert {"checkpoint-10.json.damaged", "wal-11.log.damaged"} <= set(our_files(tmp_path))
    assert reopen(tmp_path) == (older, None)  # the disk is consistent again

    store, _, _ = Storage.open(tmp_path)  # the next checkpoint removes the damaged files
    store.write([PersistCheckpoint(checkpoint=make_checkpoint(7))])
    store.close()
    assert sorted(our_files(tmp_path)) == ["checkpoint-7.json", "checkpoint-7.zone", "wal-8.log"]


def test_a_corrupt_only_checkpoint_keeps_the_vote(tmp_path: Path) -> None:
    store, _, _ = Storage.open(tmp_path)
    store.write([*appends(6), PersistVote(view=4, status="view-change", last_normal_view=2)])
    store.write([PersistCheckpoint(checkpoint=make_checkpoint(6))])
    store.close()
    (tmp_path / "checkpoint-6.json").write_bytes(b"\x00" * 10)
    disk, damage = reopen(tmp_path)
    assert damage is not None and damage.kind == "corrupt"
    assert disk == Durable(view=4, status="view-change", last_normal_view=2)
    assert reopen(tmp_path) == (disk, None)


# ---------------------------------------------------------------------------------------
# Bounded disk use


def test_disk_use_is_bounded_by_the_checkpoint_and_the_log_after_it(tmp_path: Path) -> None:
    store, _, _ = Storage.open(tmp_path)
    rng = random.Random(4)
    largest = 0
    for round_ in range(80):
        for _ in range(10):
            n = store.disk.op_number
            store.write([PersistLog(after=n, entries=make_entries(rng, 0, n + 1, 3, 20))])
        store.write([PersistCheckpoint(checkpoint=make_checkpoint(store.disk.op_number - 3))])
        files = our_files(tmp_path)
        c = store.disk.log_start
        assert sorted(files) == sorted(
            [f"checkpoint-{c}.json", f"checkpoint-{c}.zone", f"wal-{c + 1}.log"]
        ), round_
        largest = max(largest, sum(files.values()))
    store.close()
    assert store.disk.op_number == 80 * 30
    assert largest < 3_000  # a checkpoint, its zone, three entries: not 2,400 entries
    assert reopen(tmp_path)[0] == store.disk


def test_a_segment_of_superseded_records_is_compacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without checkpoints, repeated replacements of the log's tail (view changes) would grow
    the segment without bound; it is rewritten to its head instead."""
    from vrref.runtime import storage

    monkeypatch.setattr(storage, "COMPACT_BYTES_MIN", 20_000)
    rng = random.Random(6)
    written: list[Persist] = list(appends(30))
    store, _, _ = Storage.open(tmp_path)
    store.write(written)
    wal = tmp_path / "wal-1.log"
    sizes = []
    for view in range(1, 200):
        batch: list[Persist] = [
            PersistVote(view=view, status="view-change", last_normal_view=view - 1),
            PersistLog(after=10, entries=make_entries(rng, view, 11, 20, 30)),
            PersistVote(view=view, status="normal", last_normal_view=view),
        ]
        store.write(batch)
        written += batch
        sizes.append(wal.stat().st_size)
    store.close()
    assert max(sizes) < 20_000 + 5_000  # the bound, and one batch over it
    assert sum(b < a for a, b in itertools.pairwise(sizes)) >= 5  # it was rewritten
    assert reopen(tmp_path) == (fold(written), None)


# ---------------------------------------------------------------------------------------
# Real crashes


def child_main(directory: str, seed: int) -> None:
    """Run in a subprocess: write generated batches until killed, printing each acked."""
    store, _, _ = Storage.open(Path(directory))
    rng = random.Random(seed)
    print("ready", flush=True)
    acked = 0
    while True:
        store.write(gen_batch(rng, store.disk))
        acked += 1
        print(acked, flush=True)


def test_sigkill_during_writes_leaves_a_prefix_of_the_effects(tmp_path: Path) -> None:
    directory = tmp_path / "replica"
    chooser = random.Random(5)
    total_acked = 0
    for round_ in range(12):
        start, damage = reopen(directory)
        code = f"from {__name__} import child_main; child_main({str(directory)!r}, {round_})"
        child = subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        assert child.stdout.readline() == "ready\n"
        time.sleep(chooser.uniform(0.0, 0.4))
        child.send_signal(signal.SIGKILL)
        child.wait()
        lines = child.stdout.read().split()
        child.stdout.close()
        acked = int(lines[-1]) if lines else 0
        total_acked += acked

        recovered, damage = reopen(directory)
        assert damage is None or damage.kind == "torn-tail", damage
        # The states after every prefix from the acked batches on (the child may have
        # finished one more batch before printing it, and started the next).
        rng = random.Random(round_)
        disk, candidates = start, []
        for batch_number in range(acked + 2):
            for effect in gen_batch(rng, disk):
                disk = apply(disk, effect)
                if batch_number >= acked:
                    candidates.append(disk)
            if batch_number == acked - 1:
                candidates = [disk]
        if acked == 0:
            candidates.insert(0, start)
        assert recovered in candidates, (round_, acked)
    assert total_acked > 10  # the rounds did write (few under a loaded machine)


def test_crash_helper_generates_the_same_batches_as_the_parent() -> None:
    one, two = random.Random(9), random.Random(9)
    disk = EMPTY
    for _ in range(50):
        batch = gen_batch(one, disk)
        assert batch == gen_batch(two, disk)
        disk = fold(batch, disk)
