"""Network partitions between replicas, with iptables, on loopback only.

The nemesis owns one chain, ``VRREF-NEM-<pid>``, jumped to from OUTPUT for packets leaving
on ``lo`` (loopback packets traverse OUTPUT once, on their way to INPUT). Isolating replica
i drops the TCP segments between i's address and each other replica's on the cluster's peer
connections (to or from a peer port), both ways; the DNS clients (UDP and TCP from
127.0.0.1), another cluster on the same addresses with other ports, and everything else
on the machine are untouched: only the cluster's 127.0.0.0/8 addresses are ever named.
``heal`` flushes the chain; ``close`` removes the jump and the chain, and runs at exit too
(``atexit``), so an aborted run leaves no rule.

``Partitioner.open`` tells why partitions cannot be made (no iptables binary, not
permitted): the nemesis then skips the fault and says so.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import os
import shutil
import subprocess
import threading
from collections.abc import Sequence

IPTABLES_TIMEOUT_S = 20.0


class PartitionError(RuntimeError):
    """iptables is missing, not permitted, or refused a rule."""


def _loopback(address: str) -> str:
    if not ipaddress.ip_address(address).is_loopback:
        raise ValueError(f"{address} is not a loopback address: the nemesis cuts loopback only")
    return address


class Partitioner:
    """One iptables chain of this process's, and the partitions made in it."""

    def __init__(self, iptables: str, chain: str) -> None:
        self.iptables = iptables
        self.chain = chain
        self.isolated: int | None = None
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def open(cls, chain: str | None = None) -> Partitioner:
        """Creates the chain and its jump; raises PartitionError saying why it cannot."""
        binary = shutil.which("iptables") or (
            "/usr/sbin/iptables" if os.path.exists("/usr/sbin/iptables") else None
        )
        if binary is None:
            raise PartitionError("iptables is not installed")
        self = cls(binary, chain or f"VRREF-NEM-{os.getpid()}")
        self._run("-N", self.chain)
        try:
            self._run("-I", "OUTPUT", "-o", "lo", "-j", self.chain)
        except PartitionError:
            self._quiet("-X", self.chain)
            raise
        atexit.register(self.close)
        return self

    def _run(self, *args: str) -> None:
        try:
            done = subprocess.run(
                [self.iptables, "-w", *args],
                capture_output=True,
                text=True,
                timeout=IPTABLES_TIMEOUT_S,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise PartitionError(f"iptables {' '.join(args)}: {error}") from None
        if done.returncode != 0:
            message = (done.stderr or done.stdout).strip().splitlines()
            raise PartitionError(
                f"iptables {' '.join(args)}: {message[-1] if message else done.returncode}"
            )

    def _quiet(self, *args: str) -> None:
        with contextlib.suppress(PartitionError):
            self._run(*args)

    def isolate(self, replica: int, hosts: Sequence[str], peer_ports: Sequence[int]) -> None:
        """Drops the TCP traffic between ``hosts[replica]`` and every other host, both ways,
        of this cluster's peer connections only (those to or from a ``peer_ports`` port), so
        that another cluster on the same addresses is not cut too."""
        me = _loopback(hosts[replica])
        rules: list[tuple[str, str, str, int]] = []  # (source, destination, port match, port)
        for i, other in enumerate(hosts):
            if i == replica:
                continue
            other = _loopback(other)
            for a, b, port in ((me, other, peer_ports[i]), (other, me, peer_ports[replica])):
                rules.append((a, b, "--dport", port))  # a's connection to b's listener
                rules.append((b, a, "--sport", port))  # and b's side of it
        with self._lock:
            if self._closed:
                raise PartitionError("the partitioner is closed")
            self._run("-F", self.chain)
            for source, destination, match, port in rules:
                self._run(
                    "-A",
                    self.chain,
                    "-p",
                    "tcp",
                    "-s",
                    source,
                    "-d",
                    destination,
                    match,
                    str(port),
                    "-j",
                    "DROP",
                )
            self.isolated = replica

    def heal(self) -> None:
        with self._lock:
            if not self._closed:
                self._run("-F", self.chain)
            self.isolated = None

    def rules(self) -> str:
        """The chain's rules as ``iptables -S`` lists them (for the log)."""
        done = subprocess.run(
            [self.iptables, "-w", "-S", self.chain],
            capture_output=True,
            text=True,
            timeout=IPTABLES_TIMEOUT_S,
        )
        return done.stdout

    def close(self) -> None:
        """Removes every rule, the jump and the chain (idempotent, never raises)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self.isolated = None
            self._quiet("-F", self.chain)
            for _ in range(8):  # every jump we may have inserted
                try:
                    self._run("-D", "OUTPUT", "-o", "lo", "-j", self.chain)
                except PartitionError:
                    break
            self._quiet("-X", self.chain)
        with contextlib.suppress(Exception):
            atexit.unregister(self.close)


def chain_exists(chain: str) -> bool:
    """Whether iptables lists ``chain`` (for the tests' cleanup checks)."""
    binary = shutil.which("iptables") or "/usr/sbin/iptables"
    try:
        done = subprocess.run(
            [binary, "-w", "-S", chain], capture_output=True, text=True, timeout=IPTABLES_TIMEOUT_S
        )
    except OSError:
        return False
    return done.returncode == 0
