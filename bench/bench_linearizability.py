"""Figures for the linearizability checker: Porcupine's corpus and a large DNS history.

Prints, for each workload, the operations checked, the wall time and operations per
second, and the verdict (which must be the expected one: a fast wrong answer is no figure).
Figures only, no thresholds: run it before and after a change and compare.

* Porcupine's etcd histories (102 cas-register logs) and kv files (6), read from
  ../shared/corpora/porcupine beside the repository (skipped when absent).
* A synthetic DNS history: 100,000 operations over 1,000 names by 16 clients, written as a
  vrref history file and checked through the same path as ``vrref check`` (read, convert,
  search). It is linearizable by construction: a sequential run of spec/dns_model.py gives
  every operation its linearization point and its result, and the invocation and completion
  are placed around that point without overlapping the client's other operations. A
  quarter of the operations are updates (adds, deletes, and compare-and-set through an
  exact-RRset prerequisite); the rest are queries. Names are independent (no CNAME or
  wildcard joins them), so the search runs one partition per name.

Usage: ``python bench/bench_linearizability.py [--ops N] [--names N] [--clients N] [--seed N]``
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from checker.cli import check as cli_check
from checker.lin import wgl as lin
from spec import dns_model

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpora" / "porcupine"
ORIGIN = "example.com."
SOA = ("example.com.", "SOA", 3600, "ns1.example.com. admin.example.com. 1 3600 600 86400 300")


def _line(name: str, ops: int, seconds: float, verdicts: str) -> None:
    rate = ops / seconds if seconds > 0 else float("inf")
    print(f"{name:<28} {ops:>8} ops {seconds:>8.2f} s {rate:>10,.0f} ops/s   {verdicts}")


def bench_corpus() -> None:
    if not CORPUS.is_dir():
        print(f"(corpus not found at {CORPUS}: skipped)")
        return
    expected = dict(
        line.split("\t") for line in (CORPUS / "EXPECTED.tsv").read_text().splitlines()[1:]
    )
    groups = {"etcd (102 histories)": "jepsen/", "kv (6 histories)": "kv/"}
    for title, prefix in groups.items():
        ops = 0
        seconds = 0.0
        right = 0
        names = sorted(n for n in expected if n.startswith(prefix))
        for name in names:
            loaded = cli_check.load([str(CORPUS / name)])
            started = time.perf_counter()
            result = cli_check.run(loaded, timeout_s=120.0, witness=False)
            seconds += time.perf_counter() - started
            ops += len(loaded.ops)
            want = lin.Ok if expected[name] == "true" else lin.Illegal
            right += isinstance(result, want)
            if prefix == "kv/":
                _line(f"  {name}", len(loaded.ops), time.perf_counter() - started, result.verdict)
        _line(title, ops, seconds, f"{right}/{len(names)} verdicts as expected")


def synthetic_dns(path: Path, *, ops: int, names: int, clients: int, seed: int) -> None:
    """Writes a linearizable vrref DNS history (see the module docstring)."""
    rng = random.Random(seed)
    owners = [f"n{i}.example.com." for i in range(names)]
    zone = [
        SOA,
        ("example.com.", "NS", 3600, "ns1.example.com."),
        ("ns1.example.com.", "A", 3600, "192.0.2.1"),
    ] + [(n, "A", 300, f"10.0.{i // 250}.{i % 250}") for i, n in enumerate(owners)]
    # Each name evolves independently; its own little zone (SOA + its records) gives the
    # same answers as the whole zone, except for serials, which are patched in globally.
    local = {n: dns_model.initial_state([SOA, r]) for n, r in zip(owners, zone[3:], strict=True)}
    serial = 1
    free_at = [0] * clients  # when each client's previous operation completed
    events: list[tuple[int, int, dict[str, object]]] = []
    now = 0
    for k in range(ops):
        name = owners[rng.randrange(names)]
        roll = rng.random()
        op: dict[str, object]
        if roll < 0.75:
            op = {"t": "query", "name": name, "type": "A" if roll < 0.7 else "TXT"}
        elif roll < 0.85:
            op = {
                "t": "update",
                "zone": ORIGIN,
                "prereq": [],
                "update": [["add", name, "A", 300, f"10.9.{rng.randrange(4)}.{rng.randrange(4)}"]],
            }
        elif roll < 0.93:
            rdata = sorted(r[3] for r in local[name] if r[0] == name and r[1] == "A")
            prereq = [["yxrrset_exact", name, "A", rdata]] if rdata else [["nxrrset", name, "A"]]
            if rng.random() < 0.3:
                prereq = [["yxrrset_exact", name, "A", ["10.8.8.8"]]]  # a CAS that fails
            op = {
                "t": "update",
                "zone": ORIGIN,
                "prereq": prereq,
                "update": [["delete_rrset", name, "A"], ["add", name, "A", 300, "10.7.0.1"]],
            }
        else:
            op = {"t": "update", "zone": ORIGIN, "prereq": [], "update": [["delete_name", name]]}
        text = dns_model.dumps(op)
        before = local[name]
        after, result_text = dns_model.step(before, text)
        local[name] = after
        result = json.loads(result_text)
        if op["t"] == "update":
            if after != before:
                serial += 1
            result["serial"] = serial
        else:
            for record in result["authority"]:
                if record[1] == "SOA":
                    fields = record[3].split(" ")
                    fields[2] = str(serial)
                    record[3] = " ".join(fields)
        # timing: the op takes effect at `point`, inside [invoke, complete] of one client
        now += rng.randrange(1, 4)
        point = now
        idle = [c for c in range(clients) if free_at[c] < point]
        if not idle:
            point = now = min(free_at) + 1
            idle = [c for c in range(clients) if free_at[c] < point]
        client = rng.choice(idle)
        invoke = rng.randrange(max(free_at[client] + 1, point - 40), point + 1)
        complete = point + rng.randrange(0, 40)
        free_at[client] = complete
        process = f"client-{client}"
        f = "read" if op["t"] == "query" else "update"
        mode = {"mode": "linearizable"} if f == "read" else {}
        events.append(
            (
                invoke,
                2 * k,
                {"type": "invoke", "process": process, "f": f, "value": text, "time": invoke},
            )
        )
        events.append(
            (
                complete,
                2 * k + 1,
                {
                    "type": "ok",
                    "process": process,
                    "f": f,
                    "value": dns_model.dumps(result),
                    "time": complete,
                    **mode,
                },
            )
        )
    events.sort(key=lambda e: (e[0], e[1]))
    header = {
        "schema": "vrref-history",
        "version": 1,
        "model": "dns",
        "initial": {"records": [list(r) for r in zone]},
    }
    with path.open("w") as out:
        out.write(json.dumps(header) + "\n")
        for _, _, event in events:
            out.write(json.dumps(event, separators=(",", ":")) + "\n")


def bench_dns(ops: int, names: int, clients: int, seed: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "dns.jsonl"
        started = time.perf_counter()
        synthetic_dns(path, ops=ops, names=names, clients=clients, seed=seed)
        print(f"(generated {ops} DNS operations in {time.perf_counter() - started:.1f} s)")
        started = time.perf_counter()
        loaded = cli_check.load([str(path)])
        read_s = time.perf_counter() - started
        started = time.perf_counter()
        result = cli_check.run(loaded, timeout_s=600.0, witness=False)
        search_s = time.perf_counter() - started
        title = f"dns {names} names {clients} clients"
        _line(f"{title}: read", len(loaded.ops), read_s, "")
        _line(
            f"{title}: search",
            len(loaded.ops),
            search_s,
            f"{result.verdict}, {result.stats.partitions} partitions",
        )
        _line(f"{title}: total", len(loaded.ops), read_s + search_s, "")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ops", type=int, default=100_000)
    p.add_argument("--names", type=int, default=1_000)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--skip-corpus", action="store_true")
    args = p.parse_args()
    if not args.skip_corpus:
        bench_corpus()
    bench_dns(args.ops, args.names, args.clients, args.seed)


if __name__ == "__main__":
    main()
