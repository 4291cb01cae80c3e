"""Benchmark: the explorer on the real core, this tree against an earlier commit, in one run.

A change to the core or to the VR model (the state key, the actions, the properties) can
change how fast the explorer goes and, if it is wrong, how many states it finds. This runs
the same ``vrref explore --model vr`` configurations from a git worktree of ``--ref`` (made in
a temporary folder, removed at the end) and from this tree, alternately, ``--repeat`` times
each, and prints for each configuration the distinct states of both (which must be equal),
the best time of each and the ratio. Both run with this tree's virtual environment; only
the source differs. Figures only: nothing passes or fails on a time.

Wall time on a shared machine moves by 20% between runs. ``--callgrind`` instead counts the
instructions each tree executes for one configuration under valgrind (the same count on
every run, whatever else the machine does; about 50 times slower, so one small
configuration), and prints the two counts and their ratio.

    .venv/bin/python bench/bench_explore_vs.py --ref f65cf03 [--repeat 3] [--big]
    .venv/bin/python bench/bench_explore_vs.py --ref f65cf03 --callgrind
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SMALL = {
    "1 op, no loss": ["--ops", "1", "--drops", "0", "--dups", "0"],
    "1 op, 1 loss, 1 dup, no resend": [
        *("--ops", "1", "--drops", "1", "--dups", "1", "--resends", "0"),
    ],
    "2 ops, no loss, no resend": ["--ops", "2", "--drops", "0", "--dups", "0", "--resends", "0"],
}
BIG = {
    "2 ops, 1 loss, 1 dup, no resend (CI)": [
        "--ops", "2", "--drops", "1", "--dups", "1", "--resends", "0",
    ],
}  # fmt: skip


CALLGRIND_CONFIG = "2 ops, no loss, no resend"


def explore(source: Path, flags: list[str], *, callgrind: bool = False) -> dict[str, object]:
    """One exhaustive run with the source tree ``source`` first on the path (under
    valgrind's callgrind when asked: the result then has ``"instructions"``)."""
    env = {**os.environ, "PYTHONPATH": str(source)}
    code = "import sys; from vrref.cli import main; sys.exit(main(sys.argv[1:]))"
    argv = [sys.executable, "-c", code, "explore", "--model", "vr", *flags, "--json", "--quiet"]
    if callgrind:
        argv = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *argv]
    done = subprocess.run(argv, env=env, cwd=source, capture_output=True, text=True, check=False)
    if done.returncode not in (0, 1):
        raise RuntimeError(f"{source}: exit {done.returncode}: {done.stderr[-500:]}")
    result: dict[str, object] = json.loads(done.stdout)
    if callgrind:
        counted = re.search(r"Collected : (\d+)", done.stderr)
        if counted is None:
            raise RuntimeError(f"{source}: valgrind printed no count: {done.stderr[-500:]}")
        result["instructions"] = int(counted.group(1))
    return result


def compare_instructions(ref: Path, label: str) -> None:
    flags = SMALL[CALLGRIND_CONFIG]
    print(f"explorer instructions (callgrind), {label} (ref) vs this tree, {CALLGRIND_CONFIG}:")
    counts = {}
    for name, source in (("ref", ref), ("this", ROOT)):
        out = explore(source, flags, callgrind=True)
        counts[name] = int(str(out["instructions"]))
        print(f"  {name:5} {out['distinct']!s:>7} states  {counts[name]:>16,} instructions")
    print(f"  ratio {counts['this'] / counts['ref']:.3f}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ref", required=True, help="the commit to compare with")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--big", action="store_true", help="also the CI configuration (minutes)")
    p.add_argument("--callgrind", action="store_true", help="count instructions instead")
    args = p.parse_args()
    configs = {**SMALL, **(BIG if args.big else {})}
    with tempfile.TemporaryDirectory(prefix="vrref-ref-") as tmp:
        ref = Path(tmp) / "ref"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(ref), args.ref],
            check=True,
        )
        try:
            if args.callgrind:
                compare_instructions(ref, args.ref)
                return 0
            print(f"explorer, {args.ref} (ref) vs this tree, best of {args.repeat}:")
            print(f"{'configuration':40} {'distinct':>9} {'ref s':>8} {'this s':>8} {'ratio':>6}")
            for name, flags in configs.items():
                best: dict[str, float] = {}
                distinct: dict[str, object] = {}
                for _ in range(args.repeat):
                    for label, source in (("ref", ref), ("this", ROOT)):
                        out = explore(source, flags)
                        seconds = float(str(out["elapsed_seconds"]))
                        best[label] = min(best.get(label, seconds), seconds)
                        distinct[label] = out["distinct"]
                same = "" if distinct["ref"] == distinct["this"] else f"  DIFFER: {distinct}"
                print(
                    f"{name:40} {distinct['this']!s:>9} {best['ref']:8.2f} {best['this']:8.2f} "
                    f"{best['this'] / best['ref']:6.2f}{same}",
                    flush=True,
                )
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(ref)], check=False
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
