"""``vrref nemesis``: a Jepsen-style test of the real cluster (checker/nemesis/).

    vrref nemesis [--seconds N] [--seed S] [--clients K] [--dir DIR] [--report OUT.html]
                  [--faults kill,pause,partition,restart-all]
                  [--read-mode local|linearizable|alternate] [--server-mutant NAME]
                  [--diskless]

Starts three replica processes on 127.0.0.11-13, runs K client threads against them for N
seconds while killing, pausing, partitioning and restarting replicas on a schedule drawn
from the seed, then checks the clients' history, the servers' history and that every
acknowledged update is in the servers' history, and writes an HTML report. Exit status: 0
every check passed, 1 a violation, 2 the run could not be made or a check could not decide.
Partitions need iptables (root); without it they are skipped, and the output says so.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from checker.nemesis.faults import FAULT_KINDS
from checker.nemesis.result import EXIT_UNKNOWN, READ_MODES, SERVER_MUTANTS, Options
from checker.nemesis.runner import run


def _range(text: str) -> tuple[float, float]:
    low, _, high = text.partition(",")
    try:
        values = (float(low), float(high or low))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not LOW,HIGH seconds: {text!r}") from None
    return values


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vrref nemesis",
        description="faults against a real 3-replica cluster under a concurrent workload, "
        "then the clients' and the servers' histories checked",
    )
    p.add_argument("--seconds", type=float, default=60.0, help="workload and faults (default 60)")
    p.add_argument("--seed", type=int, default=0, help="the fault schedule and workload seed")
    p.add_argument("--clients", type=int, default=8, help="concurrent client threads (default 8)")
    p.add_argument("--dir", type=Path, default=None, help="the run's files (default: a temp dir)")
    p.add_argument(
        "--report", type=Path, default=None, help="HTML report (default DIR/report.html)"
    )
    p.add_argument(
        "--faults",
        default=",".join(FAULT_KINDS),
        help=f"comma-separated, of {','.join(FAULT_KINDS)} (default all; '' for none)",
    )
    p.add_argument(
        "--read-mode",
        choices=READ_MODES,
        default="local",
        help="the cluster's read mode; alternate: local first, flipped at each whole-cluster "
        "restart",
    )
    p.add_argument(
        "--server-mutant",
        choices=SERVER_MUTANTS,
        default=None,
        metavar="NAME",
        help="run the replicas with a mutant: " + ", ".join(SERVER_MUTANTS),
    )
    p.add_argument("--diskless", action="store_true", help="replicas keep nothing on disk")
    p.add_argument("--op-timeout", type=float, default=1.0, help="client timeout, s (default 1)")
    p.add_argument(
        "--think",
        type=float,
        default=0.15,
        help="mean client pause between ops, s (default 0.15: about 30 ops/s from 8 clients, "
        "which keeps the checks of a minute's history near 10 s; they grow faster than it)",
    )
    p.add_argument(
        "--calm", type=_range, default=(2.0, 4.0), help="calm between faults, LOW,HIGH s"
    )
    p.add_argument(
        "--fault-duration", type=_range, default=(1.0, 3.0), help="fault duration, LOW,HIGH s"
    )
    p.add_argument(
        "--primary-share",
        type=float,
        default=0.5,
        help="how often a single-replica fault aims at the primary (default 0.5)",
    )
    p.add_argument(
        "--check-timeout", type=float, default=300.0, help="time limit of each history check, s"
    )
    p.add_argument("--quiet", action="store_true", help="print only the summary")
    return p


def options_from(args: argparse.Namespace) -> Options:
    faults = tuple(f for f in args.faults.split(",") if f.strip())
    return Options(
        seconds=args.seconds,
        seed=args.seed,
        clients=args.clients,
        directory=args.dir,
        report=args.report,
        faults=faults,
        read_mode=args.read_mode,
        server_mutant=args.server_mutant,
        diskless=args.diskless,
        op_timeout_s=args.op_timeout,
        think_s=args.think,
        calm_s=args.calm,
        fault_s=args.fault_duration,
        primary_share=args.primary_share,
        check_timeout_s=args.check_timeout,
    )


def _terminate(signum: int, frame: object) -> None:
    del frame
    raise SystemExit(128 + signum)  # unwinds through the run's cleanup (processes, iptables)


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    try:
        options = options_from(args)
        options.validate()
    except ValueError as error:
        print(f"vrref nemesis: {error}", file=sys.stderr)
        return EXIT_UNKNOWN
    signal.signal(signal.SIGTERM, _terminate)
    say = (lambda _: None) if args.quiet else (lambda line: print(line, flush=True))
    result = run(options, say=say)
    if args.quiet:
        print(result.summary())
    return result.exit_status
