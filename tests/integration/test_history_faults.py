"""The history and the checker under real faults (issue 11's regressions), on real replica
processes on 127.0.0.1:

- SIGKILL a replica the instant its last reply arrives: every update it answered is in its
  history with its completion (the history is written ahead of the wire), and after a
  restart on the same history file the whole run, both lives of that replica included,
  passes ``vrref check`` (processes are named per life).
- SIGSTOP a backup for a few seconds and SIGCONT it: no view change anywhere (the ticker
  does not replay the ticks it missed).
- A cluster that loses its zone (diskless, its state removed, every replica started again
  from the zone file: what a whole-cluster restart did before replicas were durable):
  ``vrref check`` fails on the replicas' final states and names the updates that are
  missing. The durable case, where nothing is lost, is in test_durable.py.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.tsig
import dns.update
import pytest

from tests.integration.test_cluster_tools import (
    KEY,
    ROOT,
    LocalCluster,
    dig,
    start_cluster,
    wait_until,
)
from vrref.dns.keys import load_keyring

pytestmark = pytest.mark.skipif(
    shutil.which("dig") is None,
    reason="dig is needed (Debian bind9-dnsutils; make test installs it)",
)


def serving(cluster: LocalCluster) -> None:
    for i in cluster.processes:
        wait_until(lambda i=i: dig(cluster.port(i), "example.com.", "SOA").status == "NOERROR")


def update(port: int, name: str, address: str) -> int:
    """One signed update (dnspython, so that the reply's arrival is the instant we act on);
    the rcode."""
    keyring = load_keyring(KEY)
    key_name = next(iter(keyring))
    message = dns.update.UpdateMessage("example.com.", keyring=keyring, keyname=key_name)
    message.add(name, 300, "A", address)
    reply = dns.query.udp(message, "127.0.0.1", port=port, timeout=5)
    return int(reply.rcode())


def check(cluster: LocalCluster) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vrref.cli", "check", str(cluster.history_dir)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )


def answered_updates(path: Path) -> set[str]:
    """The owner names of the updates the file records as answered (ok)."""
    invoked: dict[object, str] = {}
    names: set[str] = set()
    for line in path.read_text().splitlines()[1:]:
        event = json.loads(line)
        if event.get("f") != "update":
            continue
        if event["type"] == "invoke":
            op = json.loads(event["value"])
            invoked[event["process"]] = " ".join(str(u[1]) for u in op["update"])
        elif event["type"] == "ok":
            names.add(invoked[event["process"]])
    return names


def views_announced(cluster: LocalCluster) -> set[int]:
    views: set[int] = set()
    for i in range(3):
        log = (cluster.history_dir.parent / f"replica-{i}.log").read_text(errors="replace")
        views |= {int(v) for v in re.findall(r"in view (\d+)", log)}
    return views


def test_sigkill_at_the_reply_keeps_every_answered_update_and_the_restart_checks(
    tmp_path: Path,
) -> None:
    cluster = start_cluster(tmp_path)
    try:
        names = [f"kill{n}.example.com." for n in range(15)]
        for n, name in enumerate(names):
            assert update(cluster.port(1), name, f"192.0.2.{n + 1}") == dns.rcode.NOERROR
        cluster.kill(1)  # within a millisecond of the last reply
        recorded = answered_updates(cluster.history_dir / "replica-1.jsonl")
        assert set(names) <= recorded, sorted(set(names) - recorded)
        cluster.start(1)
        serving(cluster)
        assert update(cluster.port(1), "after.example.com.", "192.0.2.99") == dns.rcode.NOERROR
    finally:
        cluster.stop()
    result = check(cluster)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "trace validation: replica 1 (replica-1.jsonl): ok" in result.stdout
    assert "2 life(s)" in result.stdout
    assert "final states: 3 judged (a linearizable read): ok" in result.stdout, result.stdout


def test_sigstop_then_sigcont_of_a_backup_causes_no_view_change(tmp_path: Path) -> None:
    cluster = start_cluster(tmp_path)
    try:
        assert update(cluster.port(0), "before.example.com.", "192.0.2.1") == dns.rcode.NOERROR
        backup = cluster.processes[2]
        backup.send_signal(signal.SIGSTOP)
        try:
            for n in range(5):  # the cluster goes on without it
                assert update(cluster.port(0), f"p{n}.example.com.", "192.0.2.2") == 0
            time.sleep(3)
        finally:
            backup.send_signal(signal.SIGCONT)
        wait_until(lambda: dig(cluster.port(2), "p4.example.com.", "A").status == "NOERROR")
        time.sleep(2)  # what a burst of replayed ticks would have done, it has done by now
        assert update(cluster.port(2), "after.example.com.", "192.0.2.3") == dns.rcode.NOERROR
    finally:
        cluster.stop()
    assert views_announced(cluster) == {0}
    result = check(cluster)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_cluster_that_lost_its_zone_fails_the_final_state_check_naming_what_is_missing(
    tmp_path: Path,
) -> None:
    cluster = start_cluster(tmp_path, diskless=True)
    try:
        lost = [f"lost{n}.example.com." for n in range(3)]
        for n, name in enumerate(lost):
            assert update(cluster.port(n), name, f"192.0.2.{n + 1}") == dns.rcode.NOERROR
        for i in list(cluster.processes):
            cluster.kill(i)
        shutil.rmtree(cluster.state_dir)  # nothing says the replicas ever ran
        for i in range(3):
            cluster.start(i)
        serving(cluster)
        assert dig(cluster.port(0), lost[0], "A").status == "NXDOMAIN"  # the loss, served
    finally:
        cluster.stop()
    result = check(cluster)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "final states: 3 judged (a linearizable read): 3 STALE" in result.stdout, result.stdout
    for name in lost:
        assert name in result.stdout
    assert re.search(r"missing [^\n]*lost0\.example\.com\.", result.stdout), result.stdout
