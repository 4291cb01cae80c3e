"""``vrref simulate``: the front end of checker/sim/simulate.py."""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time

from checker.mutants import MUTANTS
from checker.sim.simulate import Outcome, run_seed


def worker(args: tuple[int, str | None, str | None, bool]) -> Outcome:
    """One seed in a pool process (a top-level function, so ``spawn`` can pickle it)."""
    seed, mutant, history_dir, durable = args
    return run_seed(seed, mutant, history_dir, durable_world=durable)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vrref simulate",
        description="Seeded swarm simulation of the real core: faults, then healing; "
        "invariants after every event, liveness, and linearizability of the clients' history.",
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument("--seeds", type=int, help="run this many seeds (from --start)")
    which.add_argument("--seed", type=int, help="run (replay) one seed")
    p.add_argument("--start", type=int, default=0, help="first seed (default 0)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--mutant", choices=sorted(MUTANTS), help="simulate a mutant of the core")
    p.add_argument("--json", action="store_true", help="one JSON summary a seed on stdout")
    p.add_argument("--history-dir", help="keep every seed's history here")
    p.add_argument("--stop-on-failure", action="store_true", help="stop at the first failing seed")
    p.add_argument(
        "--durable",
        action="store_true",
        help="durable worlds: replicas persist and checkpoint often; whole-cluster crashes and"
        " crashes in the middle of an event",
    )
    return p


def main(argv: list[str]) -> int:
    p = parser()
    try:
        args = p.parse_args(argv)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 2
    if args.seed is None and args.seeds is None:
        p.print_usage(sys.stderr)
        sys.stderr.write("vrref simulate: error: give --seeds N or --seed S\n")
        return 2
    if (args.seeds is not None and args.seeds < 1) or args.jobs < 1 or args.start < 0:
        p.print_usage(sys.stderr)
        sys.stderr.write("vrref simulate: error: --seeds and --jobs must be positive\n")
        return 2
    seeds = (
        [args.seed] if args.seed is not None else list(range(args.start, args.start + args.seeds))
    )
    tasks = [(s, args.mutant, args.history_dir, args.durable) for s in seeds]
    started = time.monotonic()
    failures: list[Outcome] = []
    done = ops = 0
    last_progress = started

    def report(outcome: Outcome) -> None:
        nonlocal done, ops, last_progress
        done += 1
        ops += int(outcome.summary["ops"])
        if args.json:
            sys.stdout.write(json.dumps(outcome.summary, sort_keys=True) + "\n")
        if not outcome.passed:
            failures.append(outcome)
            mutant = f" --mutant {outcome.mutant}" if outcome.mutant else ""
            mutant += " --durable" if args.durable else ""
            sys.stderr.write(
                f"seed {outcome.seed} FAILED: {outcome.problem}\n"
                f"  replay: vrref simulate --seed {outcome.seed}{mutant}\n"
                f"  history: {outcome.history}\n"
            )
        now = time.monotonic()
        if now - last_progress > 5 or done == len(tasks):
            elapsed = max(now - started, 1e-9)
            sys.stderr.write(
                f"simulate: {done}/{len(tasks)} seeds, {done / elapsed:.1f} seeds/s, "
                f"{ops / elapsed:.0f} simulated ops/s, {len(failures)} failed\n"
            )
            last_progress = now

    if args.jobs == 1 or len(tasks) == 1:
        for task in tasks:
            report(worker(task))
            if failures and args.stop_on_failure:
                break
    else:
        with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
            for outcome in pool.imap(worker, tasks, chunksize=4):
                report(outcome)
                if failures and args.stop_on_failure:
                    pool.terminate()
                    break
    return 1 if failures else 0
