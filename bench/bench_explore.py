"""Benchmark: the explorer's speed and memory on TwoPhase, by number of resource managers.

For each configuration this prints the time to exhaust it (BFS), distinct states per second,
states generated per second, and two memory figures per distinct state: the visited set
alone (the fingerprint -> parent dict, measured with ``sys.getsizeof`` over the dict and the
int objects it holds, each counted once), and the peak of everything the run allocated
(``tracemalloc``, in a second run, since tracing slows it: the BFS queue of live states, the
fingerprint encodings, the traces). The same with symmetry reduction follows. The VR
configurations come with the VR model. Figures only: nothing here passes or fails on a time.

    .venv/bin/python bench/bench_explore.py [--rms 3 4 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tracemalloc
from typing import Any

from checker.explore.search import ExploreConfig, Explorer
from checker.explore.twophase import TwoPhase


def visited_bytes(parents: dict[int, int]) -> int:
    """The dict plus every distinct int object it refers to (parents share their keys)."""
    objects = {id(k): k for k in parents} | {id(v): v for v in parents.values()}
    return sys.getsizeof(parents) + sum(sys.getsizeof(o) for o in objects.values())


def measure(rm_count: int, symmetry: bool) -> dict[str, Any]:
    config = ExploreConfig(symmetry=symmetry, progress_seconds=None)
    explorer = Explorer(TwoPhase(rm_count), config)
    result = explorer.run()
    stored = visited_bytes(explorer.parents)
    tracemalloc.start()
    Explorer(TwoPhase(rm_count), config).run()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "rms": rm_count,
        "symmetry": symmetry,
        "distinct": result.distinct,
        "generated": result.generated,
        "depth": result.depth,
        "seconds": round(result.elapsed_seconds, 3),
        "states_per_second": round(result.states_per_second),
        "generated_per_second": round(result.generated_per_second),
        "visited_bytes_per_state": round(stored / result.distinct, 1),
        "peak_bytes_per_state": round(peak / result.distinct, 1),
        "verdict": result.verdict,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rms", type=int, nargs="+", default=[3, 4, 5])
    parser.add_argument("--json", action="store_true", help="one JSON object a line")
    args = parser.parse_args(argv)
    rows = [measure(n, symmetry) for symmetry in (False, True) for n in args.rms]
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    print(
        f"{'RMs':>3} {'sym':>3} {'distinct':>9} {'generated':>10} {'depth':>5} {'seconds':>8}"
        f" {'states/s':>9} {'gen/s':>8} {'B/state visited':>15} {'B/state peak':>12}"
    )
    for r in rows:
        print(
            f"{r['rms']:>3} {'yes' if r['symmetry'] else 'no':>3} {r['distinct']:>9,}"
            f" {r['generated']:>10,} {r['depth']:>5} {r['seconds']:>8.3f}"
            f" {r['states_per_second']:>9,} {r['generated_per_second']:>8,}"
            f" {r['visited_bytes_per_state']:>15} {r['peak_bytes_per_state']:>12}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
