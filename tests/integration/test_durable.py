"""Durable replicas as an operator meets them: real processes on 127.0.0.1, real nsupdate
and dig, real SIGKILLs (spec/vr.md R20, R21).

- The whole cluster SIGKILLed at once after acknowledged updates, then started again: every
  acknowledged update is served by every replica, updates go on, the checkpoint on disk is
  a zone file ``named-checkzone`` accepts, and the recorded history (with each replica's
  ``reopen`` from its disk) passes ``vrref check``'s trace validation.
- ``vrref cluster --state-dir DIR``, launcher and replicas SIGKILLed as one process group and
  started again on the same DIR: it serves every update it acknowledged.
- A torn last record of one replica's write-ahead log is truncated and the replica catches
  up; a corrupt record in the middle makes it move its disk aside and recover from its
  peers; nothing acknowledged is lost either way.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.test_cluster_tools import (
    ROOT,
    LocalCluster,
    dig,
    free_base_port,
    nsupdate,
    serial,
    start_cluster,
    wait_until,
)
from vrref.core.replica import Config

CHECKPOINT_OPS = 4
"""Small, so that a few updates make several checkpoints and truncate the log."""

pytestmark = pytest.mark.skipif(
    shutil.which("dig") is None or shutil.which("nsupdate") is None,
    reason="dig and nsupdate are needed (Debian bind9-dnsutils; make test installs them)",
)


def durable_cluster(tmp: Path) -> LocalCluster:
    return start_cluster(tmp, Config(replica_count=3, checkpoint_ops=CHECKPOINT_OPS))


def start_all(cluster: LocalCluster) -> None:
    for i in range(3):
        cluster.start(i)
    for i in range(3):
        wait_until(lambda i=i: dig(cluster.port(i), "example.com.", "SOA").status == "NOERROR")


def add(cluster: LocalCluster, names: list[str], count: int, prefix: str) -> None:
    """``count`` updates through every replica in turn; each acknowledged name is appended."""
    for n in range(count):
        name = f"{prefix}{n}.example.com."
        done = nsupdate(cluster.port(n % 3), f"update add {name} 300 A 192.0.2.{n % 250 + 1}")
        assert done.returncode == 0, done.stdout + done.stderr
        names.append(name)


def served_everywhere(cluster: LocalCluster, names: list[str]) -> None:
    for i in range(3):
        for name in names:
            wait_until(lambda i=i, name=name: dig(cluster.port(i), name, "A").status == "NOERROR")


def kill_all(cluster: LocalCluster) -> None:
    for i in list(cluster.processes):
        cluster.processes[i].send_signal(signal.SIGKILL)
    for i in list(cluster.processes):
        cluster.processes.pop(i).wait(timeout=10)


def replica_log(cluster: LocalCluster, i: int) -> str:
    return (cluster.history_dir.parent / f"replica-{i}.log").read_text(errors="replace")


def test_whole_cluster_sigkilled_and_restarted_keeps_every_acknowledged_update(
    tmp_path: Path,
) -> None:
    cluster = durable_cluster(tmp_path)
    acknowledged: list[str] = []
    try:
        add(cluster, acknowledged, 3 * CHECKPOINT_OPS + 1, "before")
        latest = serial(cluster.port(0))
        kill_all(cluster)  # a power cut: nothing runs, nothing was shut down
        start_all(cluster)
        for i in range(3):
            assert "reopened at view" in replica_log(cluster, i), replica_log(cluster, i)
        served_everywhere(cluster, acknowledged)
        for i in range(3):
            wait_until(lambda i=i: serial(cluster.port(i)) >= latest)
        add(cluster, acknowledged, 3, "after")  # and the cluster takes updates again
        served_everywhere(cluster, acknowledged)
    finally:
        cluster.stop()
    # The checkpoint an operator can read: a zone file that BIND's checker accepts.
    zones = sorted((cluster.state_dir / "replica-0").glob("checkpoint-*.zone"))
    assert zones, list((cluster.state_dir / "replica-0").iterdir())
    text = zones[-1].read_text()
    assert "before0.example.com." in text
    if shutil.which("named-checkzone") is not None:
        checked = subprocess.run(
            ["named-checkzone", "-i", "local", "example.com.", str(zones[-1])],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
    check = subprocess.run(
        [sys.executable, "-m", "vrref.cli", "check", str(cluster.history_dir)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    for i in range(3):
        assert f"trace validation: replica {i} (replica-{i}.jsonl): ok" in check.stdout
    assert "2 life(s)" in check.stdout
    # Each replica's zone at the clean stop holds every acknowledged update.
    assert "final states: 3 judged (a linearizable read): ok" in check.stdout, check.stdout


def test_vrref_cluster_sigkilled_whole_and_started_again_on_its_state_dir(
    tmp_path: Path,
) -> None:
    base = free_base_port()
    state = tmp_path / "state"
    command = [
        sys.executable,
        "-m",
        "vrref.cli",
        "cluster",
        "--state-dir",
        str(state),
        "--base-port",
        str(base),
    ]

    def launch() -> subprocess.Popen[bytes]:
        log = (tmp_path / "cluster.log").open("ab")
        launcher = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
        )
        for i in range(3):
            wait_until(lambda i=i: dig(base + i, "example.com.", "SOA").status == "NOERROR")
        return launcher

    launcher = launch()
    acknowledged: list[str] = []
    try:
        for n in range(6):
            name = f"kept{n}.example.com."
            done = nsupdate(base + n % 3, f"update add {name} 300 A 192.0.2.{n + 1}")
            assert done.returncode == 0, done.stdout + done.stderr
            acknowledged.append(name)
        os.killpg(launcher.pid, signal.SIGKILL)  # the launcher and every replica at once
        launcher.wait(timeout=10)
        time.sleep(0.5)
        launcher = launch()
        for i in range(3):
            for name in acknowledged:
                wait_until(lambda i=i, name=name: dig(base + i, name, "A").status == "NOERROR")
    finally:
        with_group = launcher.poll() is None
        if with_group:
            os.killpg(launcher.pid, signal.SIGTERM)
            try:
                launcher.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(launcher.pid, signal.SIGKILL)
                launcher.wait()


def _wal(cluster: LocalCluster, i: int) -> Path:
    segments = sorted((cluster.state_dir / f"replica-{i}").glob("wal-*.log"))
    assert len(segments) == 1, segments
    return segments[0]


@pytest.mark.parametrize("damage", ["torn-tail", "corrupt"])
def test_a_damaged_log_is_truncated_or_set_aside_and_repaired_from_the_peers(
    tmp_path: Path, damage: str
) -> None:
    cluster = durable_cluster(tmp_path)
    acknowledged: list[str] = []
    try:
        add(cluster, acknowledged, CHECKPOINT_OPS + 2, "first")
        victim = 2  # a backup of view 0
        cluster.kill(victim)
        wal = _wal(cluster, victim)
        data = wal.read_bytes()
        lines = data.splitlines(keepends=True)
        assert len(lines) >= 3, lines
        if damage == "torn-tail":
            wal.write_bytes(data[: len(data) - len(lines[-1]) // 2])  # half the last record
        else:
            middle = len(lines[0]) + len(lines[1]) // 2  # inside the second record
            wal.write_bytes(data[:middle] + bytes([data[middle] ^ 0x20]) + data[middle + 1 :])
        add(cluster, acknowledged, 2, "while-down")
        cluster.start(victim)
        wait_until(lambda: dig(cluster.port(victim), "example.com.", "SOA").status == "NOERROR")
        text = replica_log(cluster, victim)
        assert f"{damage}" in text, text
        if damage == "corrupt":
            aside = list(cluster.state_dir.glob(f"replica-{victim}.damaged-*"))
            assert aside, "the corrupt disk is kept for the operator"
            assert "recovering" in text
        latest = serial(cluster.port(0))
        wait_until(lambda: serial(cluster.port(victim)) == latest)
        served_everywhere(cluster, acknowledged)
        # The repaired replica can carry the cluster: stop the other backup, update.
        cluster.kill(1)
        add(cluster, acknowledged, 1, "after-repair")
        for name in acknowledged:
            wait_until(lambda name=name: dig(cluster.port(victim), name, "A").status == "NOERROR")
    finally:
        cluster.stop()
