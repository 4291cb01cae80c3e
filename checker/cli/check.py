"""``vrref check``: is a recorded history linearizable?

The command is a thin pipe: read the history (checker/lin/readers.py, any supported format,
detected when not given), pick the model (from ``--model``, the history's header, or the
operations' names), turn client operations into the model's inputs and outputs
(checker/lin/models.py, which also drops definite failures and the reads it does not judge),
run the search (checker/lin/wgl.py) and say what it found, in prose or, with
``--json``, as one JSON object. ``--html OUT`` also writes the single-file view of
checker/report.py.

Exit status, as for every checker here: 0 linearizable, 1 not linearizable, 2 unknown (time
or memory limit) or unusable input (the message names the file and the line) or bad flags.
Every Ok is certified: the merged witness is replayed through the unpartitioned model (the
whole initial state, no footprints), so a partitioning mistake can never print
"linearizable" (it is an internal error instead). The replay counts against ``--timeout``;
on a big DNS history it costs several times the search (the model scans the whole zone
at each step), and ``--no-certify`` skips it. ``--timeout`` bounds the search and the
replay, not the reading of the file.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, TextIO

from checker.lin import models
from checker.lin import wgl as lin
from checker.lin.readers import FORMATS, ReadError
from checker.verdict import (
    EXIT_ILLEGAL,
    EXIT_OK,
    EXIT_UNKNOWN,
    MEMO_ENTRIES_MAX_CLI,
    SHOWN_OPS_MAX,
    UsageError,
    describe,
    exit_status,
    expand,
    load,
    run,
    to_json,
)
from vrref.history import HistoryError


class _Progress:
    """Progress lines on a terminal, at most one a second."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.started = time.monotonic()
        self.last = self.started

    def __call__(self, done: int, total: int, steps: int) -> None:
        now = time.monotonic()
        if now - self.last < 1.0:
            return
        self.last = now
        rate = steps / max(now - self.started, 1e-9)
        self.stream.write(
            f"\r  {done}/{total} partitions done, {steps} steps ({rate:,.0f} steps/s)   "
        )
        self.stream.flush()


# ---------------------------------------------------------------------------- main


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vrref check",
        description="Check a client history for linearizability. Exit 0 linearizable, "
        "1 not linearizable, 2 unknown or unusable input.",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="the history (vrref: one or more)")
    p.add_argument("--model", choices=models.MODELS, help="default: from the history")
    p.add_argument("--format", choices=FORMATS, help="default: detected")
    p.add_argument("--timeout", type=float, default=60.0, metavar="S", help="default 60 s")
    p.add_argument(
        "--memo-max",
        type=int,
        default=MEMO_ENTRIES_MAX_CLI,
        metavar="N",
        help=f"memo entries before giving up (default {MEMO_ENTRIES_MAX_CLI})",
    )
    p.add_argument("--zone", metavar="ZONEFILE", help="DNS: the initial zone (master file)")
    p.add_argument("--html", metavar="OUT", help="also write the HTML view to OUT")
    p.add_argument(
        "--no-certify",
        action="store_true",
        help="skip replaying the witness through the unpartitioned model (faster on big "
        "DNS histories; a linearizable verdict then rests on the model's footprints)",
    )
    p.add_argument(
        "--no-runs",
        action="store_true",
        help="skip trace validation and invariants of recorded replica events (checker/trace.py)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def parse(p: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace | int:
    try:
        return p.parse_args(argv)
    except SystemExit as exit_:  # argparse has printed usage or help
        return exit_.code if isinstance(exit_.code, int) else EXIT_UNKNOWN


def _local_lines(verdict: Any) -> str:
    lines = [
        f"local reads: {verdict.checked} judged (consistent prefix, no future): "
        + ("ok" if verdict.ok else f"{len(verdict.violations)} VIOLATED")
        + (f", {verdict.unknown} unknown (step budget)" if verdict.unknown else "")
    ]
    for op, why in verdict.violations[:SHOWN_OPS_MAX]:
        lines.append(f"  {op.path}:{op.ret_line}: process {op.process}: {why}")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    args = parse(parser(), argv)
    if isinstance(args, int):
        return args
    if args.timeout <= 0 or args.memo_max <= 0:
        sys.stderr.write("vrref check: --timeout and --memo-max must be positive\n")
        return EXIT_UNKNOWN
    try:
        loaded = load(args.files, fmt=args.format, model_name=args.model, zone=args.zone)
    except (ReadError, models.ModelError, UsageError) as error:
        sys.stderr.write(f"vrref check: {error}\n")
        return EXIT_UNKNOWN
    progress = _Progress(sys.stderr) if sys.stderr.isatty() and not args.json else None
    try:
        result = run(
            loaded,
            timeout_s=args.timeout,
            memo_entries_max=args.memo_max,
            certify=not args.no_certify,
            progress=progress,
        )
    except lin.PartitioningError as error:
        sys.stderr.write(f"vrref check: internal error, no verdict: {error}\n")
        return EXIT_UNKNOWN
    if progress is not None:
        sys.stderr.write("\r" + " " * 70 + "\r")
    if args.json:
        sys.stdout.write(json.dumps(to_json(loaded, result)) + "\n")
    else:
        sys.stdout.write(describe(loaded, result))
    if args.html:
        from checker import report

        try:
            report.write(args.html, loaded, result)
        except OSError as error:
            sys.stderr.write(f"vrref check: cannot write {args.html}: {error}\n")
            return EXIT_UNKNOWN
        if not args.json:
            sys.stdout.write(f"view: {args.html}\n")
    status = exit_status(result)
    local = [op for op in loaded.history.ops if op.mode == "local" and op.outcome == "ok"]
    if local and isinstance(result, lin.Ok) and result.linearization is not None:
        from checker.lin import local_reads

        verdict = local_reads.judge(loaded.model, loaded.history.ops, result.linearization)
        if not args.json:
            sys.stdout.write(_local_lines(verdict))
        if verdict.violations:
            status = EXIT_ILLEGAL
        elif verdict.unknown and status == EXIT_OK:
            status = EXIT_UNKNOWN
    if args.no_runs:
        return status
    from checker import trace as runs

    files = expand(args.files)
    if not runs.has_replica_events(files):
        return status
    try:
        checked = runs.check_run(files)
    except (HistoryError, ValueError) as error:
        sys.stderr.write(f"vrref check: {error}\n")
        return EXIT_UNKNOWN
    if not args.json:
        sys.stdout.write("\n".join(runs.report_lines(checked)) + "\n")
    return status if checked.ok else EXIT_ILLEGAL
