"""A real 3-replica cluster (one process a replica, 127.0.0.1 only) driven by the real
tools, dig and nsupdate, on every replica; and the fault test: SIGKILL the primary, an
update succeeds within three view-change timeouts, the killed replica restarts, recovers
and answers the latest serial, no acknowledged update is missing anywhere, and the
recorded history passes ``vrref check``.

Skipped (with the reason) only when dig or nsupdate is missing; ``make test`` installs
them (bind9-dnsutils).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from vrref.core.replica import Config
from vrref.runtime.launcher import key_line, replica_command, write_cluster_config

ROOT = Path(__file__).resolve().parents[2]
ZONE = ROOT / "examples" / "example.com.zone"
KEY = ROOT / "examples" / "update.key"
TICK_MS = 50
VIEW_CHANGE_TIMEOUT_S = Config(replica_count=3).primary_timeout_ticks * TICK_MS / 1000

pytestmark = pytest.mark.skipif(
    shutil.which("dig") is None or shutil.which("nsupdate") is None,
    reason="dig and nsupdate are needed (Debian bind9-dnsutils; make test installs them)",
)


def free_base_port() -> int:
    """A base port P with P..P+2 (DNS, UDP and TCP) and P+100..P+102 (peers) free, the
    peer ports below the ephemeral range (32768)."""
    for _ in range(200):
        base = 20000 + int.from_bytes(os.urandom(2), "big") % 12000
        ports = [base + i for i in range(3)] + [base + 100 + i for i in range(3)]
        try:
            for port in ports:
                for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                    with socket.socket(socket.AF_INET, kind) as s:
                        s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no free ports on 127.0.0.1")


@dataclass
class LocalCluster:
    base: int
    config: Path
    state_dir: Path
    history_dir: Path
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    diskless: bool = False

    def port(self, i: int) -> int:
        return self.base + i

    def start(self, i: int) -> None:
        log = (self.history_dir.parent / f"replica-{i}.log").open("ab")
        self.processes[i] = subprocess.Popen(
            replica_command(
                self.config, i, self.state_dir, self.history_dir, diskless=self.diskless
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )

    def kill(self, i: int) -> None:
        process = self.processes.pop(i)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def stop(self) -> None:
        for process in self.processes.values():
            process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()


def start_cluster(
    tmp: Path, protocol: Config | None = None, *, diskless: bool = False
) -> LocalCluster:
    base = free_base_port()
    config = write_cluster_config(
        tmp,
        replicas=3,
        base_port=base,
        zone=ZONE,
        origin="example.com.",
        key_file=KEY,
        tick_ms=TICK_MS,
        protocol=protocol,
    )
    history = tmp / "history"
    history.mkdir()
    cluster = LocalCluster(base, config, tmp / "state", history, diskless=diskless)
    for i in range(3):
        cluster.start(i)
    for i in range(3):
        wait_until(lambda i=i: dig(cluster.port(i), "example.com.", "SOA").status == "NOERROR")
    return cluster


@dataclass(frozen=True)
class Answer:
    status: str
    answer: list[tuple[str, str, str]]  # (owner, type, rdata)
    authority: list[tuple[str, str, str]]


def _records(text: str, section: str) -> list[tuple[str, str, str]]:
    match = re.search(rf";; {section} SECTION:\n(.*?)(?:\n\n|\Z)", text, re.S)
    if match is None:
        return []
    rows = []
    for line in match.group(1).splitlines():
        parts = line.split(None, 4)
        if len(parts) == 5:
            rows.append((parts[0].lower(), parts[3], parts[4]))
    return rows


def dig(port: int, name: str, rdtype: str, *extra: str) -> Answer:
    out = subprocess.run(
        [
            "dig",
            "@127.0.0.1",
            "-p",
            str(port),
            name,
            rdtype,
            "+norec",
            "+time=2",
            "+tries=2",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    status = re.search(r"status: ([A-Z]+)", out)
    return Answer(
        status.group(1) if status else "TIMEOUT",
        _records(out, "ANSWER"),
        _records(out, "AUTHORITY"),
    )


def nsupdate(port: int, commands: str, key: str | None = None) -> subprocess.CompletedProcess[str]:
    script = f"server 127.0.0.1 {port}\nzone example.com.\n{commands}\nsend\n"
    return subprocess.run(
        ["nsupdate", "-v", "-t", "20", "-y", key or key_line(KEY)],
        input=script,
        capture_output=True,
        text=True,
        timeout=60,
    )


def wait_until(predicate: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():  # type: ignore[operator]
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached within the time allowed")
        time.sleep(0.05)


def serial(port: int) -> int:
    answer = dig(port, "example.com.", "SOA")
    return int(answer.answer[0][2].split()[2])


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = start_cluster(tmp_path_factory.mktemp("cluster"))
    yield cluster
    cluster.stop()


@pytest.mark.parametrize("replica", [0, 1, 2])
def test_dig_answers_on_every_replica(running: LocalCluster, replica: int) -> None:
    port = running.port(replica)
    a = dig(port, "www.example.com.", "A")
    assert a.status == "NOERROR" and a.answer == [("www.example.com.", "A", "192.0.2.10")]
    aaaa = dig(port, "www.example.com.", "AAAA")
    assert aaaa.answer == [("www.example.com.", "AAAA", "2001:db8::10")]
    mx = dig(port, "example.com.", "MX")
    assert mx.answer == [("example.com.", "MX", "10 mail.example.com.")]
    cname = dig(port, "web.example.com.", "A")
    assert [r[1] for r in cname.answer] == ["CNAME", "CNAME", "A"]
    assert cname.answer[-1] == ("www.example.com.", "A", "192.0.2.10")
    nx = dig(port, "nope.example.com.", "A")
    assert nx.status == "NXDOMAIN" and nx.answer == [] and nx.authority[0][1] == "SOA"
    nodata = dig(port, "www.example.com.", "MX")
    assert nodata.status == "NOERROR" and nodata.answer == []
    assert nodata.authority[0][1] == "SOA"


def test_axfr_returns_the_whole_zone(running: LocalCluster) -> None:
    command = ["dig", "@127.0.0.1", "-p", str(running.port(2)), "example.com.", "AXFR", "+time=5"]
    unsigned = subprocess.run(command, capture_output=True, text=True, timeout=30).stdout
    assert "Transfer failed" in unsigned  # zone transfers need the TSIG key
    out = subprocess.run(
        [*command, "-y", key_line(KEY)], capture_output=True, text=True, timeout=30
    ).stdout
    records = [line.split(None, 4) for line in out.splitlines() if line and line[0] != ";"]
    types = [r[3] for r in records if len(r) == 5 and r[3] != "TSIG"]
    assert types[0] == "SOA" and types[-1] == "SOA"
    from vrref.dns.zone import Zone

    expected = len(Zone.from_file(ZONE).records())
    assert len(types) - 1 >= expected  # every record once, the SOA twice (updates may add)
    assert "www.example.com." in {r[0] for r in records}


def test_tsig_update_sent_to_a_backup_is_visible_everywhere(running: LocalCluster) -> None:
    done = nsupdate(running.port(1), "update add tools1.example.com. 300 A 192.0.2.77")
    assert done.returncode == 0, done.stderr
    for i in range(3):
        wait_until(
            lambda i=i: (
                dig(running.port(i), "tools1.example.com.", "A").answer
                == [("tools1.example.com.", "A", "192.0.2.77")]
            )
        )


def test_wrong_key_gets_notauth_and_changes_nothing(running: LocalCluster) -> None:
    before = serial(running.port(0))
    bad = "hmac-sha256:update.example.com:" + "A" * 43 + "="
    done = nsupdate(running.port(2), "update add evil.example.com. 300 A 192.0.2.66", key=bad)
    assert done.returncode != 0
    assert "NOTAUTH" in done.stdout + done.stderr
    assert dig(running.port(0), "evil.example.com.", "A").status == "NXDOMAIN"
    assert serial(running.port(0)) == before


@pytest.mark.parametrize(
    ("prerequisite", "rcode"),
    [
        ("prereq yxrrset www.example.com. A 192.0.2.99", "NXRRSET"),
        ("prereq nxdomain www.example.com.", "YXDOMAIN"),
    ],
)
def test_failed_prerequisite_changes_nothing(
    running: LocalCluster, prerequisite: str, rcode: str
) -> None:
    before = serial(running.port(0))
    done = nsupdate(
        running.port(1), f"{prerequisite}\nupdate add prereq.example.com. 300 A 192.0.2.55"
    )
    assert done.returncode != 0
    assert rcode in done.stdout + done.stderr
    assert dig(running.port(1), "prereq.example.com.", "A").status == "NXDOMAIN"
    assert serial(running.port(0)) == before


def test_sigkill_primary_update_continues_restart_recovers_history_checks(
    tmp_path: Path,
) -> None:
    cluster = start_cluster(tmp_path)
    try:
        acknowledged: list[str] = []
        for n in range(3):
            name = f"before{n}.example.com."
            assert (
                nsupdate(
                    cluster.port(1 + n % 2), f"update add {name} 300 A 192.0.2.{n + 1}"
                ).returncode
                == 0
            )
            acknowledged.append(name)
        cluster.kill(0)  # the primary of view 0
        killed_at = time.monotonic()
        done = nsupdate(cluster.port(1), "update add after.example.com. 300 A 192.0.2.200")
        took = time.monotonic() - killed_at
        assert done.returncode == 0, done.stdout + done.stderr
        acknowledged.append("after.example.com.")
        print(f"update acknowledged {took:.2f}s after SIGKILL of the primary")
        # The protocol's bound: a backup's primary timeout, then a view change (messages
        # only), then the client proxy's retry: within three view-change timeouts.
        assert took <= 3 * VIEW_CHANGE_TIMEOUT_S + 1.0, f"{took:.2f}s after the kill"
        for n in range(3):
            name = f"later{n}.example.com."
            assert (
                nsupdate(
                    cluster.port(2 - n % 2), f"update add {name} 300 A 192.0.2.{n + 50}"
                ).returncode
                == 0
            )
            acknowledged.append(name)
        latest = serial(cluster.port(1))
        cluster.start(0)  # its state directory says it ran before: it recovers (VRR §4.3)
        wait_until(lambda: dig(cluster.port(0), "example.com.", "SOA").status == "NOERROR")
        wait_until(lambda: serial(cluster.port(0)) == latest)
        for i in range(3):
            for name in acknowledged:
                wait_until(
                    lambda i=i, name=name: dig(cluster.port(i), name, "A").status == "NOERROR"
                )
    finally:
        cluster.stop()
    check = subprocess.run(
        [sys.executable, "-m", "vrref.cli", "check", str(cluster.history_dir)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "LINEARIZABLE" in check.stdout
    for i in range(3):
        assert f"trace validation: replica {i} (replica-{i}.jsonl): ok" in check.stdout
    assert "2 life(s)" in check.stdout  # the killed replica's second life replayed too
    assert "invariants: ok" in check.stdout
