"""Benchmark: a 3-replica vrref cluster on 127.0.0.1 against Knot, in the same run.

Updates: C client processes (1 and 16) each send RFC 2136 updates signed with the TSIG key
of examples/update.key (one new A record each, UDP, waiting for each answer), spread over
the replicas, for a fixed time; it prints updates per second and the p50 and p99 latency,
for the cluster with its history recording on (as in production) and off, and for Knot
(knotd, one UDP worker, the same zone and key). Queries: dnsperf against one replica in
each read mode (``local``: from the replica's committed state; ``linearizable``: ordered
through the log) and against Knot. Every figure is printed with its ratio to Knot's.
Figures only: nothing passes or fails on a time. Knot writes each update to its journal
on disk; vrref's replicas are durable (each fsyncs its write-ahead log before it
acknowledges, spec/vr.md R20), and a diskless cluster (``--diskless``, VRR's model: state in
memory, durability by replication) is measured beside them as the cost of the disk.

    .venv/bin/python bench/bench_cluster.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.tsigkeyring
import dns.update

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_dns import QUERIES, run_dnsperf

from vrref.runtime.launcher import key_line, replica_command, write_cluster_config

ROOT = Path(__file__).resolve().parent.parent
ZONE = ROOT / "examples" / "example.com.zone"
KEY = ROOT / "examples" / "update.key"


def free_base_port() -> int:
    import socket

    for _ in range(200):
        base = 20000 + int.from_bytes(os.urandom(2), "big") % 12000  # peers below 32768
        try:
            for port in [base + i for i in range(3)] + [base + 100 + i for i in range(3)]:
                for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                    with socket.socket(socket.AF_INET, kind) as s:
                        s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no free ports")


def ready(port: int) -> bool:
    with contextlib.suppress(Exception):
        reply = dns.query.udp(
            dns.message.make_query("example.com.", "SOA"), "127.0.0.1", port=port, timeout=0.5
        )
        return reply.rcode() == dns.rcode.NOERROR
    return False


def wait_ready(ports: list[int]) -> None:
    deadline = time.monotonic() + 30
    while not all(ready(p) for p in ports):
        if time.monotonic() > deadline:
            raise RuntimeError(f"servers on {ports} did not come up")
        time.sleep(0.1)


@contextlib.contextmanager
def cluster(*, read_mode: str, history: bool, diskless: bool = False) -> Iterator[list[int]]:
    with tempfile.TemporaryDirectory(prefix="vrref-bench-cluster-") as tmp:
        work = Path(tmp)
        base = free_base_port()
        config = write_cluster_config(
            work,
            replicas=3,
            base_port=base,
            zone=ZONE,
            origin="example.com.",
            key_file=KEY,
            read_mode=read_mode,
        )
        (work / "history").mkdir()
        processes = [
            subprocess.Popen(
                replica_command(
                    config,
                    i,
                    work / "state",
                    work / "history" if history else None,
                    diskless=diskless,
                ),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for i in range(3)
        ]
        try:
            ports = [base + i for i in range(3)]
            wait_ready(ports)
            yield ports
        finally:
            for process in processes:
                process.send_signal(signal.SIGTERM)
            for process in processes:
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
            if history:
                size = sum(f.stat().st_size for f in (work / "history").glob("*.jsonl"))
                print(f"    (history written: {size / 1e6:.1f} MB)", flush=True)


@contextlib.contextmanager
def knot() -> Iterator[list[int]]:
    algorithm, name, secret = key_line(KEY).split(":")
    with tempfile.TemporaryDirectory(prefix="vrref-bench-knot-") as tmp:
        directory = Path(tmp)
        (directory / "run").mkdir()
        (directory / "db").mkdir()
        shutil.copy(ZONE, directory / "example.com.zone")
        port = free_base_port()
        (directory / "knot.conf").write_text(
            f"server:\n    listen: 127.0.0.1@{port}\n    rundir: {directory}/run\n"
            "    udp-workers: 1\n    tcp-workers: 1\n    background-workers: 1\n"
            f"database:\n    storage: {directory}/db\n"
            "log:\n  - target: stderr\n    any: warning\n"
            f"key:\n  - id: {name}\n    algorithm: {algorithm}\n    secret: {secret}\n"
            f"acl:\n  - id: update\n    key: {name}\n    action: update\n"
            f"zone:\n  - domain: example.com.\n    file: {directory}/example.com.zone\n"
            "    zonefile-sync: -1\n    semantic-checks: off\n    acl: update\n"
        )
        process = subprocess.Popen(
            ["knotd", "-c", str(directory / "knot.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_ready([port])
            yield [port]
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def _client(args: tuple[int, list[int], float]) -> tuple[list[float], int]:
    """One client process: updates for ``seconds``; (latencies in s, non-NOERROR count)."""
    index, ports, seconds = args
    algorithm, name, secret = key_line(KEY).split(":")
    keyring = dns.tsigkeyring.from_text({name: secret})
    latencies: list[float] = []
    errors = 0
    n = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        message = dns.update.UpdateMessage("example.com.", keyring=keyring, keyalgorithm=algorithm)
        message.add(f"b{os.getpid()}-{index}-{n}.example.com.", 300, "A", "192.0.2.1")
        port = ports[(index + n) % len(ports)]
        n += 1
        started = time.monotonic()
        try:
            reply = dns.query.udp(message, "127.0.0.1", port=port, timeout=5)
        except Exception:  # a timeout: counted as an error, the run goes on
            errors += 1
            continue
        latencies.append(time.monotonic() - started)
        if reply.rcode() != dns.rcode.NOERROR:
            errors += 1
    return latencies, errors


def updates(ports: list[int], clients: int, seconds: float) -> dict[str, float]:
    with multiprocessing.get_context("spawn").Pool(clients) as pool:
        results = pool.map(_client, [(i, ports, seconds) for i in range(clients)])
    latencies = sorted(x for lat, _ in results for x in lat)
    errors = sum(e for _, e in results)
    if not latencies:
        return {"ups": 0.0, "p50": float("nan"), "p99": float("nan"), "errors": errors}

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000

    return {
        "ups": len(latencies) / seconds,
        "p50": pct(0.50),
        "p99": pct(0.99),
        "errors": errors,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement (5)")
    args = parser.parse_args(argv)
    if shutil.which("knotd") is None or shutil.which("dnsperf") is None:
        print("bench_cluster: knotd and dnsperf are needed (make tools); skipped")
        return 0
    seconds = args.seconds
    print(f"3-replica vrref cluster vs Knot (1 UDP worker); {os.cpu_count()} CPUs shared by")
    print(f"servers and clients; {seconds:g} s a measurement; updates over UDP with TSIG\n")
    rows: list[tuple[str, dict[str, float]]] = []
    for clients in (1, 16):
        with knot() as ports:
            reference = updates(ports, clients, seconds)
        rows.append((f"Knot, {clients} client(s)", reference))
        for history, diskless in ((True, False), (False, False), (False, True)):
            with cluster(read_mode="local", history=history, diskless=diskless) as ports:
                measured = updates(ports, clients, seconds)
            label = f"vrref, {clients} client(s), history {'on' if history else 'off'}"
            label += ", diskless" if diskless else ""
            rows.append((label, measured | {"ratio": measured["ups"] / reference["ups"]}))
    print(f"{'updates':<40} {'per s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'vs Knot':>8}")
    for label, row in rows:
        ratio = f"{row['ratio']:.3f}" if "ratio" in row else "1"
        print(
            f"{label:<40} {row['ups']:>9.0f} {row['p50']:>8.2f} {row['p99']:>8.2f} "
            f"{int(row['errors']):>7} {ratio:>8}"
        )

    with tempfile.TemporaryDirectory() as tmp:
        queries = Path(tmp) / "queries.txt"
        queries.write_text("\n".join(QUERIES) + "\n")
        with knot() as ports:
            knot_qps, knot_ms = run_dnsperf(ports[0], queries, int(seconds), 4)
        title = "queries (dnsperf, 4 clients, replica 1)"
        print(f"\n{title:<40} {'qps':>9} {'avg ms':>8} {'vs Knot':>8}")
        print(f"{'Knot':<40} {knot_qps:>9.0f} {knot_ms:>8.2f} {1:>8}")
        for mode in ("local", "linearizable"):
            with cluster(read_mode=mode, history=True) as ports:
                qps, ms = run_dnsperf(ports[1], queries, int(seconds), 4)
            print(
                f"{'vrref, ' + mode + ' reads':<40} {qps:>9.0f} {ms:>8.2f} {qps / knot_qps:>8.3f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
