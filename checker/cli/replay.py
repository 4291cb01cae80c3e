"""``vrref replay FILE [--mutant NAME | --core]``: the command-line front end of
checker/explore/counterexamples.py (which documents the file format and the verdicts)."""

from __future__ import annotations

import argparse
import sys

from checker.explore.counterexamples import ReplayError, replay_file
from checker.mutants import MUTANTS
from vrref.history import HistoryError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vrref replay",
        description="Re-run a counterexample history (from vrref explore --history) against "
        "the current code. Exit 1: a property still breaks; 0: none does; 2: unreadable.",
    )
    p.add_argument("file", help="the history file")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--core", action="store_true", help="replay against the real core")
    which.add_argument("--mutant", choices=sorted(MUTANTS), help="replay against this mutant")
    p.add_argument("--quiet", action="store_true", help="print only the verdict")
    return p


def main(argv: list[str]) -> int:
    p = parser()
    try:
        args = p.parse_args(argv)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 2
    choice: str | bool | None = None if args.core else (args.mutant or False)
    try:
        outcome = replay_file(args.file, choice)
    except (HistoryError, ReplayError) as error:
        sys.stderr.write(f"vrref replay: {error}\n")
        return 2
    from checker.explore.vr.model import describe_state

    if not args.quiet:
        for i, step in enumerate(outcome.steps, 1):
            print(f"{i} {'<initial>' if step.action is None else step.action}:")
            for line in describe_state(step.state).splitlines():
                print(f"    {line.strip()}")
    if outcome.broken is not None:
        print(f"REPRODUCED after {len(outcome.steps) - 1} steps: {outcome.broken}")
        for line in (outcome.explain or "").splitlines():
            print(f"  {line}")
        return 1
    if outcome.diverged is not None:
        print(f"no violation: the trace stops applying at {outcome.diverged}")
    else:
        print(f"no violation: all {len(outcome.steps) - 1} steps replayed")
    return 0
