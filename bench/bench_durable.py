"""Benchmark: memory and failover of a durable 3-replica cluster as updates accumulate.

One cluster (3 ``vrref replica`` processes on 127.0.0.1, durable, history off, the default
``checkpoint_ops``) takes RFC 2136 updates from 64 client processes (TSIG-signed, UDP, each
waiting for its answer, spread over the replicas). Each update replaces the A record of one
of ``--names`` names, so the zone stays the same size while the number of updates grows:
what grows is only what the protocol keeps. At 1,000, 10,000 and 100,000 acknowledged
updates (``--points``) it prints each replica's resident memory (VmRSS) and the updates per
second of the last leg; at the first and the last point it then measures failover
``--failovers`` times: SIGKILL the primary, time until an update sent to a surviving replica
is acknowledged, restart the killed replica (it reopens from its disk) and wait until it
serves the latest serial. The ratios printed are against the first point, side by side in
the same run. Figures only: nothing passes or fails on a time.

    .venv/bin/python bench/bench_durable.py [--points 1000,10000,100000] [--failovers 3]
"""

from __future__ import annotations

import argparse
import multiprocessing
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsigkeyring
import dns.update

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cluster import free_base_port

from vrref.core.replica import Config
from vrref.runtime.launcher import key_line, replica_command, write_cluster_config

ROOT = Path(__file__).resolve().parent.parent
ZONE = ROOT / "examples" / "example.com.zone"
KEY = ROOT / "examples" / "update.key"
CLIENTS = 64


def soa_serial(port: int, timeout: float = 1.0) -> int | None:
    query = dns.message.make_query("example.com.", "SOA")
    try:
        reply = dns.query.udp(query, "127.0.0.1", port=port, timeout=timeout)
    except Exception:
        return None
    for rrset in reply.answer:
        if rrset.rdtype == dns.rdatatype.SOA:
            return int(rrset[0].serial)
    return None


def _update(port: int, name: str, address: str, timeout: float) -> bool:
    algorithm, key_name, secret = key_line(KEY).split(":")
    keyring = dns.tsigkeyring.from_text({key_name: secret})
    message = dns.update.UpdateMessage("example.com.", keyring=keyring, keyalgorithm=algorithm)
    message.replace(name, 300, "A", address)
    try:
        reply = dns.query.udp(message, "127.0.0.1", port=port, timeout=timeout)
    except Exception:
        return False
    return reply.rcode() == dns.rcode.NOERROR


def _client(args: tuple[int, list[int], int, int]) -> int:
    """One client process: ``count`` acknowledged updates; returns the failures seen."""
    index, ports, count, names = args
    failures = done = n = 0
    while done < count:
        port = ports[(index + n) % len(ports)]
        name = f"n{(index * 7919 + n) % names}.example.com."
        address = f"192.0.2.{n % 250 + 1}"
        n += 1
        if _update(port, name, address, timeout=5):
            done += 1
        else:
            failures += 1
    return failures


def load(ports: list[int], count: int, names: int) -> tuple[float, int]:
    """``count`` acknowledged updates from CLIENTS processes: (seconds, failures)."""
    share = [count // CLIENTS + (1 if i < count % CLIENTS else 0) for i in range(CLIENTS)]
    started = time.monotonic()
    with multiprocessing.get_context("spawn").Pool(CLIENTS) as pool:
        failures = sum(pool.map(_client, [(i, ports, share[i], names) for i in range(CLIENTS)]))
    return time.monotonic() - started, failures


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Cluster:
    def __init__(self, work: Path, checkpoint_ops: int | None, *, diskless: bool = False) -> None:
        self.work = work
        self.diskless = diskless
        self.base = free_base_port()
        protocol = (
            Config(replica_count=3)
            if checkpoint_ops is None
            else Config(replica_count=3, checkpoint_ops=checkpoint_ops)
        )
        self.config = write_cluster_config(
            work,
            replicas=3,
            base_port=self.base,
            zone=ZONE,
            origin="example.com.",
            key_file=KEY,
            protocol=protocol,
        )
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        for i in range(3):
            self.start(i)

    @property
    def ports(self) -> list[int]:
        return [self.base + i for i in range(3)]

    def log(self, i: int) -> Path:
        return self.work / f"replica-{i}.out"

    def start(self, i: int) -> None:
        out = self.log(i).open("ab")
        self.processes[i] = subprocess.Popen(
            replica_command(self.config, i, self.work / "state", None, diskless=self.diskless),
            stdout=out,
            stderr=out,
        )
        deadline = time.monotonic() + 60
        while soa_serial(self.base + i) is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"replica {i} did not answer")
            time.sleep(0.05)

    def primary(self) -> int:
        """The primary of the highest view any replica announced (``vrref replica`` prints
        a line when a view starts)."""
        best = (-1, 0)
        for i in range(3):
            for line in self.log(i).read_text(errors="replace").splitlines():
                if ": in view " in line:
                    view = int(line.split(": in view ")[1].split(",")[0])
                    primary = int(line.split("primary ")[1].split(",")[0])
                    best = max(best, (view, primary))
        return best[1]

    def failover(self) -> tuple[float, float]:
        """SIGKILL the primary; (seconds until an update through a survivor is acknowledged,
        seconds until the restarted replica serves the latest serial)."""
        victim = self.primary()
        survivor = self.base + (victim + 1) % 3
        self.processes.pop(victim).send_signal(signal.SIGKILL)
        killed = time.monotonic()
        n = 0
        while not _update(survivor, f"failover{n}.example.com.", "192.0.2.250", timeout=0.05):
            n += 1
        took = time.monotonic() - killed
        latest = soa_serial(survivor, timeout=2)
        restarted = time.monotonic()
        self.start(victim)
        while True:
            serial = soa_serial(self.base + victim)
            if serial is not None and latest is not None and serial >= latest:
                break
            time.sleep(0.02)
        return took, time.monotonic() - restarted

    def rss(self) -> list[float]:
        return [rss_mib(self.processes[i].pid) for i in sorted(self.processes)]

    def stop(self) -> None:
        for process in self.processes.values():
            process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", default="1000,10000,100000")
    parser.add_argument("--failovers", type=int, default=3)
    parser.add_argument("--names", type=int, default=1000, help="names the updates replace")
    parser.add_argument("--checkpoint-ops", type=int, default=None)
    parser.add_argument(
        "--diskless", action="store_true", help="the replicas keep nothing on disk (VRR's model)"
    )
    args = parser.parse_args(argv)
    points = [int(p) for p in args.points.split(",")]
    if points != sorted(points) or points[0] < 1 or args.failovers < 1:
        parser.error("--points must be increasing and positive, --failovers positive")
    with tempfile.TemporaryDirectory(prefix="vrref-bench-durable-") as tmp:
        work = Path(tmp)
        cluster = Cluster(work, args.checkpoint_ops, diskless=args.diskless)
        results: dict[int, dict[str, Any]] = {}
        try:
            done = 0
            for point in points:
                seconds, failures = load(cluster.ports, point - done, args.names)
                rate = (point - done) / seconds
                done = point
                rss = cluster.rss()
                disk = sum(f.stat().st_size for f in (work / "state").rglob("*") if f.is_file())
                print(
                    f"{point:>7} updates: RSS {' '.join(f'{r:6.1f}' for r in rss)} MiB,"
                    f" state on disk {disk / 1e6:6.2f} MB, {rate:6.0f} updates/s"
                    f" ({failures} retried)",
                    flush=True,
                )
                results[point] = {"rss": max(rss), "failover": [], "rejoin": []}
                if point in (points[0], points[-1]):
                    for _ in range(args.failovers):
                        took, rejoin = cluster.failover()
                        results[point]["failover"].append(took)
                        results[point]["rejoin"].append(rejoin)
                    print(
                        f"          failover after {point} updates: "
                        + ", ".join(f"{t * 1000:.0f}" for t in results[point]["failover"])
                        + " ms; killed replica back at the latest serial after "
                        + ", ".join(f"{t * 1000:.0f}" for t in results[point]["rejoin"])
                        + " ms",
                        flush=True,
                    )
        finally:
            cluster.stop()
    first, last = results[points[0]], results[points[-1]]
    print("\nratios against the first point (same run):")
    for point in points[1:]:
        print(f"  max RSS at {point}: {results[point]['rss'] / first['rss']:.2f}x")
    f0, f1 = statistics.median(first["failover"]), statistics.median(last["failover"])
    r0, r1 = statistics.median(first["rejoin"]), statistics.median(last["rejoin"])
    print(
        f"  failover, median: {f1 * 1000:.0f} ms after {points[-1]} vs {f0 * 1000:.0f} ms"
        f" after {points[0]}: {f1 / f0:.2f}x"
    )
    print(
        f"  rejoin of the restarted replica, median: {r1 * 1000:.0f} ms vs {r0 * 1000:.0f} ms:"
        f" {r1 / r0:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
