"""Benchmark: exhausting VR configurations of growing size with the real replica core.

For each configuration (checker/explore/vr/model.py Bounds) this runs a full BFS with every property
of the VR model checked in every state, and prints the distinct and generated states, the
depth, the time to exhaust it, distinct states per second, and memory per stored state: the
visited set alone (fingerprint -> parent, ``sys.getsizeof`` over the dict and its ints) and
the growth of the process's peak resident set over the run divided by the states stored
(which includes the BFS queue of live states, each holding real ``Replica`` objects).
Figures only: nothing here passes or fails on a time.

    .venv/bin/python bench/bench_explore_vr.py            # the small configurations
    .venv/bin/python bench/bench_explore_vr.py --big      # and the larger ones (minutes)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
from typing import Any

from checker.explore.search import ExploreConfig, Explorer
from checker.explore.vr.model import Bounds, VRModel

SMALL: list[tuple[str, Bounds]] = [
    ("1 op, no loss", Bounds(ops_per_client=1, drop_count_max=0, duplicate_count_max=0)),
    (
        "1 op, 1 loss, 1 dup, no resend",
        Bounds(ops_per_client=1, drop_count_max=1, duplicate_count_max=1, resend_count_max=0),
    ),
    (
        "2 ops, no loss, no resend",
        Bounds(ops_per_client=2, drop_count_max=0, duplicate_count_max=0, resend_count_max=0),
    ),
]
BIG: list[tuple[str, Bounds]] = [
    (
        "2 ops, 1 loss, 1 dup, no resend (CI)",
        Bounds(ops_per_client=2, drop_count_max=1, duplicate_count_max=1, resend_count_max=0),
    ),
    (
        "2 ops, 1 loss, 1 dup, 1 resend",
        Bounds(ops_per_client=2, drop_count_max=1, duplicate_count_max=1, resend_count_max=1),
    ),
]


def visited_bytes(parents: dict[int, int]) -> int:
    objects = {id(k): k for k in parents} | {id(v): v for v in parents.values()}
    return sys.getsizeof(parents) + sum(sys.getsizeof(o) for o in objects.values())


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def measure(name: str, bounds: Bounds, timeout: float | None) -> dict[str, Any]:
    before = peak_rss_bytes()
    explorer = Explorer(
        VRModel(bounds), ExploreConfig(progress_seconds=None, time_seconds_max=timeout)
    )
    result = explorer.run()
    grown = max(0, peak_rss_bytes() - before)
    return {
        "config": name,
        "verdict": result.verdict,
        "distinct": result.distinct,
        "generated": result.generated,
        "depth": result.depth,
        "seconds": round(result.elapsed_seconds, 1),
        "states_per_second": round(result.states_per_second),
        "generated_per_second": round(result.generated_per_second),
        "visited_bytes_per_state": round(visited_bytes(explorer.parents) / result.distinct, 1),
        "peak_rss_growth_bytes_per_state": round(grown / result.distinct),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--big", action="store_true", help="also the larger configurations")
    p.add_argument("--timeout", type=float, default=None, help="seconds per configuration")
    p.add_argument("--json", action="store_true", help="one JSON object per configuration")
    args = p.parse_args(argv)
    configs = SMALL + (BIG if args.big else [])
    print(f"VR model, BFS, every property checked; {os.cpu_count()} CPUs, one used")
    header = (
        f"{'configuration':<40} {'verdict':<8} {'distinct':>10} {'generated':>11} "
        f"{'depth':>5} {'s':>7} {'states/s':>9} {'B/visited':>9} {'B/state(rss)':>12}"
    )
    if not args.json:
        print(header)
    for name, bounds in configs:
        row = measure(name, bounds, args.timeout)
        if args.json:
            print(json.dumps(row))
            continue
        print(
            f"{name:<40} {row['verdict']:<8} {row['distinct']:>10,} {row['generated']:>11,} "
            f"{row['depth']:>5} {row['seconds']:>7.1f} {row['states_per_second']:>9,} "
            f"{row['visited_bytes_per_state']:>9} {row['peak_rss_growth_bytes_per_state']:>12,}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
