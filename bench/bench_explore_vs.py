"""Benchmark: the explorer on the real core, this tree against an earlier commit, in one run.

A change to the core or to the VR model (the state key, the actions, the properties) can
change how fast the explorer goes and, if it is wrong, how many states it finds. This runs
the same ``vrref explore --model vr`` configurations from a git worktree of ``--ref`` (made in
a temporary folder, removed at the end) and from this tree, alternately, ``--repeat`` times
each, and prints for each configuration the distinct states of both (which must be equal),
the best time of each and the ratio. Both run with this tree's virtual environment; only
the source differs. Figures only: nothing passes or fails on a time.

    .venv/bin/python bench/bench_explore_vs.py --ref f65cf03 [--repeat 3] [--big]
"""

from __future__ import annotations

import argparse
import json
import os
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


def explore(source: Path, flags: list[str]) -> dict[str, object]:
    """One exhaustive run with the source tree ``source`` first on the path."""
    env = {**os.environ, "PYTHONPATH": str(source)}
    code = "import sys; from vrref.cli import main; sys.exit(main(sys.argv[1:]))"
    argv = [sys.executable, "-c", code, "explore", "--model", "vr", *flags, "--json", "--quiet"]
    done = subprocess.run(argv, env=env, cwd=source, capture_output=True, text=True, check=False)
    if done.returncode not in (0, 1):
        raise RuntimeError(f"{source}: exit {done.returncode}: {done.stderr[-500:]}")
    result: dict[str, object] = json.loads(done.stdout)
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ref", required=True, help="the commit to compare with")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--big", action="store_true", help="also the CI configuration (minutes)")
    args = p.parse_args()
    configs = {**SMALL, **(BIG if args.big else {})}
    with tempfile.TemporaryDirectory(prefix="vrref-ref-") as tmp:
        ref = Path(tmp) / "ref"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(ref), args.ref],
            check=True,
        )
        try:
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
