"""The long nemesis soak: one cluster, every fault, for tens of minutes, then every check.

    .venv/bin/python bench/soak_nemesis.py --minutes 30 --seed S [--dir DIR] [--report OUT]
        [--read-mode linearizable|local|alternate] [--clients K] [--check-timeout S]

The same run as ``vrref nemesis`` (checker/nemesis/), only longer; it prints the figures
(operations by kind and outcome, faults by kind, each check's verdict, the longest
unavailability overall and by fault kind, the times) and writes the HTML report
(DIR/report.html unless --report). Exit status as ``vrref nemesis``: 0 every check passed,
1 a violation, 2 could not run or a check could not decide (a time limit).

The read mode defaults to ``linearizable`` here: a history of tens of thousands of local
reads costs the local-read judges far more than the run itself (on the clients' side each
read that does not fit the witness is a search of its own over its partition; on the
servers' side each read looks up what had been committed by its time), so the soak orders
its reads and the minute-long runs of tests/integration/test_nemesis.py cover local reads.
``--read-mode alternate`` or ``local`` give them to the soak too, with a check time to
match (``--check-timeout``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from checker.nemesis import Options, run
from checker.nemesis.faults import FAULT_KINDS


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--dir", type=Path, default=None)
    p.add_argument("--report", type=Path, default=None)
    p.add_argument(
        "--read-mode", choices=("local", "linearizable", "alternate"), default="linearizable"
    )
    p.add_argument("--faults", default=",".join(FAULT_KINDS))
    p.add_argument("--think", type=float, default=0.15, help="mean client pause, s")
    p.add_argument("--check-timeout", type=float, default=3600.0, help="per history check, s")
    p.add_argument("--diskless", action="store_true")
    args = p.parse_args(argv)
    result = run(
        Options(
            seconds=args.minutes * 60,
            seed=args.seed,
            clients=args.clients,
            directory=args.dir,
            report=args.report,
            faults=tuple(f for f in args.faults.split(",") if f),
            read_mode=args.read_mode,
            think_s=args.think,
            check_timeout_s=args.check_timeout,
            diskless=args.diskless,
            quiet=True,
        )
    )
    figures = result.figures()
    print(result.summary())
    print("figures:")
    print(json.dumps(figures, indent=1, sort_keys=True))
    for check in result.checks:
        print(f"{check.name}: {check.status} in {check.seconds:.1f} s")
    return result.exit_status


if __name__ == "__main__":
    raise SystemExit(main())
