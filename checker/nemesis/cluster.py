"""The cluster under test: three real replica processes on 127.0.0.11, .12 and .13.

One loopback address a replica, so that the traffic between two replicas is identifiable
by its source and destination addresses (the peer transport binds its outgoing connections
to the replica's own host, vrref/runtime/transport.py) and a partition is two iptables
rules a direction (checker/nemesis/partition.py). Each replica is ``vrref replica`` (or,
with a mutant, ``python -m checker.nemesis.serve --mutant NAME`` with the same arguments),
its stdout and stderr appended to DIR/replica-<i>.log, its history to
DIR/history/replica-<i>.jsonl and its disk in DIR/state.

Who is primary is read from the replicas' own announcements on stdout ("replica i: in view
v, primary p, op-number n"): the highest view any log announces names the primary the
cluster last agreed on.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final

import dns.message
import dns.query
import dns.rcode

from checker.nemesis.dnsclient import Signer
from vrref import EXAMPLES_DIR
from vrref.core.replica import Config
from vrref.runtime.launcher import replica_command
from vrref.runtime.node import ClusterConfig, ReplicaAddress

HOSTS: Final = ("127.0.0.11", "127.0.0.12", "127.0.0.13")
ZONE: Final = EXAMPLES_DIR / "example.com.zone"
KEY: Final = EXAMPLES_DIR / "update.key"
ORIGIN: Final = "example.com."
TICK_MS: Final = 50
PEER_PORT_OFFSET: Final = 100
PORT_LOW: Final = 20000
PORT_SPAN: Final = 12000  # base + PEER_PORT_OFFSET + 2 stays below 32768 (the ephemeral range)
STOP_WAIT_S: Final = 15.0
ROOT: Final = Path(__file__).resolve().parents[2]

_ANNOUNCE = re.compile(r"^replica (\d+): in view (\d+), primary (\d+), op-number (\d+)", re.M)


def _bindable(host: str, port: int, kinds: tuple[socket.SocketKind, ...]) -> bool:
    for kind in kinds:
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


def free_base_port(hosts: tuple[str, ...] = HOSTS) -> int:
    """A base port P with P+i (DNS, UDP and TCP) and P+100+i (peers) free on host i, all
    below the ephemeral range (so a peer's port is never an outgoing connection's)."""
    for _ in range(400):
        base = PORT_LOW + int.from_bytes(os.urandom(2), "big") % PORT_SPAN
        if all(
            _bindable(h, base + i, (socket.SOCK_STREAM, socket.SOCK_DGRAM))
            and _bindable(h, base + PEER_PORT_OFFSET + i, (socket.SOCK_STREAM,))
            for i, h in enumerate(hosts)
        ):
            return base
    raise RuntimeError(f"no free ports on {', '.join(hosts)}")


def soa_serial(
    host: str, port: int, timeout: float = 0.5, signer: Signer | None = None
) -> int | None:
    """The SOA serial a replica answers, None when it does not answer NOERROR in time.

    With ``signer``, asked as a TSIG-signed IXFR over UDP, which a replica answers with its
    SOA alone from its committed state and, being a zone transfer, neither orders through
    VR nor records as a client operation: so the nemesis's own probes (is it up? has it
    settled?) leave the histories as the workload made them. (A plain SOA query is a read
    that every update conflicts with: in linearizable read mode it would join every
    operation of the servers' history into one partition of the search.)"""
    if signer is None:
        query = dns.message.make_query(ORIGIN, "SOA")
    else:
        query = dns.message.make_query(ORIGIN, "IXFR")
        query.use_tsig(signer.key, keyname=signer.name)
    try:
        reply = dns.query.udp(query, host, port=port, timeout=timeout)
    except Exception:  # timeout, refused, garbage: not answering
        return None
    if reply.rcode() != dns.rcode.NOERROR or not reply.answer:
        return None
    return int(reply.answer[0][0].serial)


@dataclass
class Cluster:
    """Three replica processes and their files; every method is safe from one thread (the
    nemesis's), ``primary`` and ``addresses`` from any."""

    directory: Path
    diskless: bool = False
    mutant: str | None = None
    read_mode: str = "local"
    protocol: Config = field(default_factory=lambda: Config(replica_count=3))
    hosts: tuple[str, ...] = HOSTS
    base_port: int = 0
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    paused: set[int] = field(default_factory=set)
    starts: dict[int, int] = field(default_factory=dict)
    signer: Signer = field(default_factory=lambda: Signer.from_file(KEY))
    _key: bytes = field(default_factory=lambda: os.urandom(32))
    _logs: dict[int, IO[bytes]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.history_dir.mkdir(exist_ok=True)
        self.state_dir.mkdir(exist_ok=True)
        if not self.base_port:
            self.base_port = free_base_port(self.hosts)
        self.write_config()

    # ------------------------------------------------------------------ files

    @property
    def config_path(self) -> Path:
        return self.directory / "cluster.toml"

    @property
    def history_dir(self) -> Path:
        return self.directory / "history"

    @property
    def state_dir(self) -> Path:
        return self.directory / "state"

    def log_path(self, i: int) -> Path:
        return self.directory / f"replica-{i}.log"

    def dns_port(self, i: int) -> int:
        return self.base_port + i

    def peer_port(self, i: int) -> int:
        return self.base_port + PEER_PORT_OFFSET + i

    def address(self, i: int) -> tuple[str, int]:
        return self.hosts[i], self.dns_port(i)

    def config(self) -> ClusterConfig:
        return ClusterConfig(
            replicas=tuple(
                ReplicaAddress(host=h, peer_port=self.peer_port(i), dns_port=self.dns_port(i))
                for i, h in enumerate(self.hosts)
            ),
            key=self._key,
            zone_file=ZONE.resolve(),
            origin=ORIGIN,
            tsig_key_file=KEY.resolve(),
            tick_ms=TICK_MS,
            read_mode=self.read_mode,
            protocol=self.protocol,
        )

    def write_config(self) -> None:
        """cluster.toml for the current ``read_mode`` (read by a replica when it starts)."""
        self.config_path.write_text(self.config().dump())

    # ------------------------------------------------------------------ processes

    def command(self, i: int) -> list[str]:
        command = replica_command(
            self.config_path, i, self.state_dir, self.history_dir, diskless=self.diskless
        )
        if self.mutant is None:
            return command
        assert command[1:4] == ["-m", "vrref.cli", "replica"], command
        return [
            sys.executable,
            "-m",
            "checker.nemesis.serve",
            "--mutant",
            self.mutant,
            *command[4:],
        ]

    def start(self, i: int) -> None:
        assert i not in self.processes, f"replica {i} is running"
        log = self._logs.get(i)
        if log is None:
            log = self._logs[i] = self.log_path(i).open("ab")
        with self._lock:
            self.processes[i] = subprocess.Popen(
                self.command(i),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=ROOT,
            )
            self.starts[i] = self.starts.get(i, 0) + 1

    def running(self, i: int) -> bool:
        process = self.processes.get(i)
        return process is not None and process.poll() is None

    def exited(self) -> dict[int, int]:
        """Replicas whose process ended by itself (not by our signal): their exit codes."""
        return {
            i: code
            for i, p in self.processes.items()
            if (code := p.poll()) is not None and code != -signal.SIGKILL
        }

    def kill(self, i: int) -> None:
        process = self.processes.pop(i, None)
        self.paused.discard(i)
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGKILL)
        process.wait(timeout=STOP_WAIT_S)

    def pause(self, i: int) -> None:
        process = self.processes.get(i)
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGSTOP)
            self.paused.add(i)

    def resume(self, i: int) -> None:
        process = self.processes.get(i)
        self.paused.discard(i)
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGCONT)

    def resume_all(self) -> None:
        for i in list(self.paused):
            self.resume(i)

    def stop(self) -> dict[int, int | None]:
        """SIGTERM to every replica (a clean stop: each records its final state), then
        SIGKILL to any that has not ended within STOP_WAIT_S; the exit codes."""
        self.resume_all()
        codes: dict[int, int | None] = {}
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        for i, process in self.processes.items():
            try:
                codes[i] = process.wait(timeout=STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                codes[i] = None
        self.processes.clear()
        return codes

    def kill_all(self) -> None:
        """SIGKILL to every replica process we started (cleanup)."""
        for i in list(self.processes):
            with contextlib.suppress(Exception):
                self.kill(i)
        for log in self._logs.values():
            log.close()
        self._logs.clear()

    def close_logs(self) -> None:
        for log in self._logs.values():
            log.close()
        self._logs.clear()

    # ------------------------------------------------------------------ observation

    def serial(self, i: int, timeout: float = 0.5) -> int | None:
        host, port = self.address(i)
        return soa_serial(host, port, timeout, self.signer)

    def wait_answering(self, replicas: list[int], timeout: float) -> bool:
        """Waits until each of ``replicas`` answers (``serial``); False if the time ran out."""
        deadline = time.monotonic() + timeout
        waiting = list(replicas)
        while waiting:
            waiting = [i for i in waiting if self.serial(i, 0.3) is None]
            if not waiting:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def _announced(self) -> tuple[int, int] | None:
        """(view, primary) of the highest view any replica announced (None: none yet)."""
        best: tuple[int, int] | None = None
        for i in range(len(self.hosts)):
            try:
                text = self.log_path(i).read_text(errors="replace")
            except OSError:
                continue
            for match in _ANNOUNCE.finditer(text):
                view, primary = int(match.group(2)), int(match.group(3))
                if best is None or view > best[0]:
                    best = (view, primary)
        return best

    def primary(self) -> int | None:
        """The primary of the highest view any replica announced (None: none announced)."""
        best = self._announced()
        return None if best is None else best[1]

    def view(self) -> int | None:
        best = self._announced()
        return None if best is None else best[0]
