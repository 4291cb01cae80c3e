"""``vrref check``: is a recorded history linearizable?

The command is a thin pipe: read the history (checker/lin/readers.py, any supported format,
detected when not given), pick the model (from ``--model``, the history's header, or the
operations' names), turn client operations into the model's inputs and outputs
(checker/lin/models.py, which also drops definite failures and the reads it does not judge),
run the search (checker/lin/wgl.py); after a linearizable verdict, judge the local reads
(checker/lin/local_reads.py); when the files hold a recorded run (replica histories),
validate its trace and check the invariants over it (checker/trace.py; ``--no-runs`` skips
this). checker/verdict.py's ``check`` does all of it and returns one verdict, which is
printed in prose or, with ``--json``, as one JSON object: the linearizability verdict's
keys, and ``local_reads``, ``trace``, ``invariants`` and ``exit_status`` (each part says
whether it was judged and, if not, why). ``--html OUT`` also writes the single-file view of
checker/report.py.

Exit status, as for every checker here: 0 linearizable, 1 not linearizable, 2 unknown (time
or memory limit) or unusable input (the message names the file and the line) or bad flags;
a violation in any part (a local read, the trace, an invariant) is 1, and a run whose files
cannot be validated 2 unless another part found a violation.
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
from typing import TextIO

from checker.lin import models
from checker.lin import wgl as lin
from checker.lin.readers import FORMATS, ReadError
from checker.verdict import (
    EXIT_UNKNOWN,
    MEMO_ENTRIES_MAX_CLI,
    UsageError,
    check,
    describe_verdict,
    verdict_json,
)


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


def main(argv: list[str]) -> int:
    args = parse(parser(), argv)
    if isinstance(args, int):
        return args
    if args.timeout <= 0 or args.memo_max <= 0:
        sys.stderr.write("vrref check: --timeout and --memo-max must be positive\n")
        return EXIT_UNKNOWN
    progress = _Progress(sys.stderr) if sys.stderr.isatty() and not args.json else None
    try:
        verdict = check(
            args.files,
            fmt=args.format,
            model_name=args.model,
            zone=args.zone,
            timeout_s=args.timeout,
            memo_entries_max=args.memo_max,
            certify=not args.no_certify,
            progress=progress,
            runs=not args.no_runs,
        )
    except (ReadError, models.ModelError, UsageError) as error:
        sys.stderr.write(f"vrref check: {error}\n")
        return EXIT_UNKNOWN
    except lin.PartitioningError as error:
        sys.stderr.write(f"vrref check: internal error, no verdict: {error}\n")
        return EXIT_UNKNOWN
    if progress is not None:
        sys.stderr.write("\r" + " " * 70 + "\r")
    if args.json:
        sys.stdout.write(json.dumps(verdict_json(verdict)) + "\n")
    else:
        sys.stdout.write(describe_verdict(verdict))
    if verdict.runs_error is not None:
        sys.stderr.write(f"vrref check: {verdict.runs_error}\n")
    if args.html:
        from checker import report

        try:
            report.write(args.html, verdict.loaded, verdict.result)
        except OSError as error:
            sys.stderr.write(f"vrref check: cannot write {args.html}: {error}\n")
            return EXIT_UNKNOWN
        if not args.json:
            sys.stdout.write(f"view: {args.html}\n")
    return verdict.status
