"""Benchmark: query throughput of the DNS frontend (vrref.runtime.frontend) against Knot,
with dnsperf.

One replica's read rate in ``local`` mode is the frontend's rate: a UDP loop in one Python
thread that answers most queries from a cache of rendered replies (the request minus its ID
is the key; the ID is patched in). This runs dnsperf against, in the same run and on the
same zone (examples/example.com.zone) and query mix:

- vrref: the frontend over a backend that never changes (the cache stays warm), history off;
- vrref, history on: the same with a history callback that appends events to a list (the
  cost of recording two events a read, without the file writes of vrref.history);
- vrref, cache off: every query parsed and rendered by dnspython (the cost the cache saves);
- Knot (knotd, one UDP worker), the reference server,

and prints queries per second, dnsperf's average latency and the ratios to Knot. Figures only:
nothing passes or fails on a time. dnsperf and the servers share the machine's cores, as in
the benchmark figures of README.md. Linearizable reads order every query through VR and are
measured on a real cluster by the runtime's benchmark, not here.

    .venv/bin/python bench/bench_dns.py [--seconds 5] [--clients 4] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dns.message
import dns.name
import dns.query
import dns.rcode

from vrref.dns.keys import load_keyring
from vrref.dns.zone import Zone
from vrref.runtime import frontend as dnsfront
from vrref.runtime.frontend import DnsFrontend

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ZONE_FILE = EXAMPLES / "example.com.zone"
KEY_FILE = EXAMPLES / "update.key"
ORIGIN = dns.name.from_text("example.com.")
QUERIES = [
    "www.example.com A",
    "www.example.com AAAA",
    "example.com MX",
    "example.com NS",
    "example.com SOA",
    "web.example.com A",
    "mail.example.com A",
    "host.deep.ent.example.com A",
    "anything.wild.example.com A",
    "nope.example.com A",
    "www.example.com MX",
    "www.sub.example.com A",
]


class StaticBackend:
    """A committed zone that never changes: the read path alone."""

    read_mode = "local"

    def __init__(self, zone: Zone) -> None:
        self._zone = zone

    def zone(self) -> Zone:
        return self._zone

    def submit(self, op: str, done: Callable[[str | None], None]) -> None:
        done(self._zone.clone().apply(op))


def run_dnsperf(port: int, queries: Path, seconds: int, clients: int) -> tuple[float, float]:
    """(queries per second, average latency in ms) from one dnsperf run."""
    done = subprocess.run(
        [
            "dnsperf",
            *("-s", "127.0.0.1", "-p", str(port), "-d", str(queries)),
            *("-l", str(seconds), "-c", str(clients), "-q", "100"),
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    )
    qps = re.search(r"Queries per second:\s+([\d.]+)", done.stdout)
    latency = re.search(r"Average Latency \(s\):\s+([\d.]+)", done.stdout)
    lost = re.search(r"Queries lost:\s+(\d+)", done.stdout)
    if qps is None or latency is None:
        raise RuntimeError(f"unexpected dnsperf output:\n{done.stdout}\n{done.stderr}")
    if lost is not None and int(lost.group(1)) > 0:
        print(f"  (dnsperf lost {lost.group(1)} queries)", flush=True)
    return float(qps.group(1)), float(latency.group(1)) * 1000


@contextlib.contextmanager
def frontend(*, history: bool, cache: bool) -> Iterator[int]:
    events: list[dict[str, object]] = []
    saved = dnsfront.CACHE_QUERY_BYTES_MAX
    if not cache:
        dnsfront.CACHE_QUERY_BYTES_MAX = 0  # nothing is short enough to be cached
    front = DnsFrontend(
        StaticBackend(Zone.from_file(ZONE_FILE, ORIGIN)),
        host="127.0.0.1",
        port=0,
        keyring=load_keyring(KEY_FILE),
        origin=ORIGIN,
        history=events.append if history else None,
    )
    front.start()
    try:
        yield front.port
    finally:
        front.stop()
        dnsfront.CACHE_QUERY_BYTES_MAX = saved
        if history:
            print(f"  ({len(events)} history events recorded)", flush=True)


def _free_port() -> int:
    rng = random.Random()
    for _ in range(100):
        port = rng.randrange(20000, 60000)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
            try:
                udp.bind(("127.0.0.1", port))
                tcp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


@contextlib.contextmanager
def knot() -> Iterator[int]:
    """knotd with one UDP worker serving a copy of the zone (no updates: no key needed)."""
    with tempfile.TemporaryDirectory(prefix="vrref-bench-knot-") as tmp:
        directory = Path(tmp)
        (directory / "run").mkdir()
        (directory / "db").mkdir()
        shutil.copy(ZONE_FILE, directory / "example.com.zone")
        port = _free_port()
        (directory / "knot.conf").write_text(
            f"server:\n    listen: 127.0.0.1@{port}\n    rundir: {directory}/run\n"
            "    udp-workers: 1\n    tcp-workers: 1\n    background-workers: 1\n"
            f"database:\n    storage: {directory}/db\n"
            "log:\n  - target: stderr\n    any: warning\n"
            f"zone:\n  - domain: example.com.\n    file: {directory}/example.com.zone\n"
            "    zonefile-sync: -1\n    semantic-checks: off\n"
        )
        process = subprocess.Popen(
            ["knotd", "-c", str(directory / "knot.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                with contextlib.suppress(Exception):
                    reply = dns.query.udp(
                        dns.message.make_query("example.com.", "SOA"),
                        "127.0.0.1",
                        port=port,
                        timeout=0.5,
                    )
                    if reply.rcode() == dns.rcode.NOERROR:
                        break
                time.sleep(0.1)
            else:
                raise RuntimeError("knotd did not start")
            yield port
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=int, default=5, help="dnsperf run length (default 5)")
    parser.add_argument("--clients", type=int, default=4, help="dnsperf clients (default 4)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if shutil.which("dnsperf") is None:
        print("dnsperf is not installed: nothing to measure (apt-get install dnsperf)")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        queries = Path(tmp) / "queries.txt"
        queries.write_text("\n".join(QUERIES) + "\n")
        runs: list[tuple[str, Callable[[], contextlib.AbstractContextManager[int]]]] = [
            ("vrref", lambda: frontend(history=False, cache=True)),
            ("vrref, history on", lambda: frontend(history=True, cache=True)),
            ("vrref, cache off", lambda: frontend(history=False, cache=False)),
        ]
        if shutil.which("knotd") is not None:
            runs.append(("Knot 1 UDP worker", knot))
        else:
            print("knotd is not installed: no reference figure")
        figures: dict[str, dict[str, float]] = {}
        for label, server in runs:
            print(f"{label}: dnsperf -l {args.seconds} -c {args.clients} ...", flush=True)
            with server() as port:
                qps, latency_ms = run_dnsperf(port, queries, args.seconds, args.clients)
            figures[label] = {"queries_per_s": qps, "latency_ms_avg": latency_ms}
    knot_qps = figures.get("Knot 1 UDP worker", {}).get("queries_per_s")
    print(f"\n{'server':<22} {'queries/s':>10} {'avg ms':>8} {'vs Knot':>8}")
    for label, figure in figures.items():
        ratio = f"{figure['queries_per_s'] / knot_qps:.2f}" if knot_qps else "-"
        print(
            f"{label:<22} {figure['queries_per_s']:>10.0f} {figure['latency_ms_avg']:>8.3f}"
            f" {ratio:>8}"
        )
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
