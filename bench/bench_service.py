"""Benchmark: the replicated zone (vrref.dns.zone.Zone) against dns.btreezone.Zone.

Every replica applies every committed update, so the cost of one ``Zone.apply`` caps the
update rate of the whole cluster; queries are answered locally, so their cost caps one
replica's read rate before any cache. This prints microseconds per operation for our zone and
for dnspython's copy-on-write B-tree zone on the same workload, in the same run, and the ratio.
Figures only: nothing here passes or fails on a time.

Workload, on examples/example.com.zone plus ``--names`` hosts (10,000 by default):

- updates: alternately "add a new name's A record" and "replace an existing host's A record"
  (delete_rrset + add). Ours starts from the op text, as a replica does (JSON decoding, rdata
  checks, RFC 2136 rules, serial bump, digest upkeep); btreezone gets pre-parsed dnspython
  names and rdatas, one write transaction per update with ``update_serial``, and no RFC 2136
  rules at all, so the comparison favours btreezone.
- queries: existing hosts (A) and missing names, from a ``dns.name.Name``; ours resolves fully
  (delegations, CNAMEs, wildcards, negative answers with the SOA), btreezone does one read
  transaction and one ``get``.

    .venv/bin/python bench/bench_service.py [--names 10000] [--updates 2000] [--queries 5000]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import dns.btreezone
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.zone

from vrref.dns import canonical
from vrref.dns.ops import make_query_op
from vrref.dns.zone import Zone

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "example.com.zone"
ORIGIN = dns.name.from_text("example.com.")


def zone_text(names: int) -> str:
    hosts = (f"host{i} 300 IN A 198.51.100.{i % 250 + 1}" for i in range(names))
    return EXAMPLE.read_text() + "\n".join(hosts) + "\n"


def per_op_us(run: Callable[[int], object], count: int) -> float:
    start = time.perf_counter()
    for i in range(count):
        run(i)
    return (time.perf_counter() - start) / count * 1e6


def address(i: int) -> str:
    return f"203.0.113.{i % 250 + 1}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", type=int, default=10_000)
    parser.add_argument("--updates", type=int, default=2_000)
    parser.add_argument("--queries", type=int, default=5_000)
    args = parser.parse_args(argv)
    text = zone_text(args.names)

    start = time.perf_counter()
    ours = Zone.from_text(text, ORIGIN)
    load_ours_ms = (time.perf_counter() - start) * 1e3
    start = time.perf_counter()
    btree = dns.zone.from_text(text, ORIGIN, relativize=False, zone_factory=dns.btreezone.Zone)
    load_btree_ms = (time.perf_counter() - start) * 1e3
    assert isinstance(btree, dns.btreezone.Zone)
    print(f"zone: {len(ours.records())} records, {args.names} hosts + examples/example.com.zone")
    print(f"load: ours {load_ours_ms:.0f} ms, btreezone {load_btree_ms:.0f} ms")

    # Updates: the same changes, as op texts for ours and dnspython objects for btreezone.
    ops: list[str] = []
    changes: list[tuple[dns.name.Name, bool, dns.rdataset.Rdataset]] = []
    for i in range(args.updates):
        replace = i % 2 == 1
        name = f"host{(i * 7919) % args.names}.example.com." if replace else f"u{i}.example.com."
        rdata = address(i)
        update: list[list[object]] = [["add", name, "A", 60, rdata]]
        if replace:
            update.insert(0, ["delete_rrset", name, "A"])
        # Written directly (make_update_op would validate, warming the zone's parse caches).
        op = {"t": "update", "zone": "example.com.", "prereq": [], "update": update}
        ops.append(json.dumps(op, separators=(",", ":"), sort_keys=True))
        rdataset = dns.rdataset.from_text(dns.rdataclass.IN, dns.rdatatype.A, 60, rdata)
        changes.append((dns.name.from_text(name), replace, rdataset))

    def update_ours(i: int) -> object:
        return ours.apply(ops[i])

    def update_btree(i: int) -> object:
        name, replace, rdataset = changes[i]
        with btree.writer() as txn:
            if replace:
                txn.delete(name, dns.rdatatype.A)
            txn.add(name, rdataset)
            txn.update_serial(name=ORIGIN)
        return None

    serial_before = ours.serial
    for cache in (
        canonical.is_canonical_name,
        canonical.is_canonical_rdata_cached,
        canonical.ancestors,
    ):
        cache.cache_clear()  # a backup meets each name and rdata for the first time
    update_ours_us = per_op_us(update_ours, args.updates)
    update_btree_us = per_op_us(update_btree, args.updates)
    assert ours.serial == (serial_before + args.updates) % (1 << 32), "every update changed"

    # Queries: half existing hosts, half missing names.
    questions = [
        (dns.name.from_text(f"host{(i * 104729) % args.names}.example.com."), dns.rdatatype.A)
        if i % 2 == 0
        else (dns.name.from_text(f"missing{i}.example.com."), dns.rdatatype.A)
        for i in range(args.queries)
    ]
    query_ops = [make_query_op(n, t) for n, t in questions]

    def query_ours(i: int) -> object:
        name, rdtype = questions[i]
        return ours.query(name, rdtype)

    def query_op_ours(i: int) -> object:
        return ours.apply(query_ops[i])

    def query_btree(i: int) -> object:
        name, rdtype = questions[i]
        with btree.reader() as txn:
            return txn.get(name, rdtype)

    query_ours_us = per_op_us(query_ours, args.queries)
    query_op_us = per_op_us(query_op_ours, args.queries)
    query_btree_us = per_op_us(query_btree, args.queries)

    rounds = 200
    clone_us = per_op_us(lambda _: ours.clone(), rounds)
    digest_us = per_op_us(lambda _: ours.digest(), rounds)

    print(
        f"update: ours {update_ours_us:8.1f} µs   btreezone {update_btree_us:8.1f} µs   "
        f"btreezone/ours {update_btree_us / update_ours_us:5.1f}x   ({args.updates} updates)"
    )
    print(
        f"query:  ours {query_ours_us:8.1f} µs   btreezone {query_btree_us:8.1f} µs   "
        f"btreezone/ours {query_btree_us / query_ours_us:5.1f}x   ({args.queries} queries)"
    )
    print(f"query op text through apply (decode + answer + encode): {query_op_us:.1f} µs")
    print(f"clone of the whole zone: {clone_us:.0f} µs; digest (cached): {digest_us:.2f} µs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
