"""``vrref view HISTORY [-o OUT.html]``: run the check and write the HTML page of checker/report.py.

Exits 0 once the page is written, whatever the verdict, and 2 when the history cannot be
read.
"""

from __future__ import annotations

import argparse
import sys

from checker import report
from checker import verdict as cli_check
from checker.cli.check import parse
from checker.lin import models
from checker.lin import wgl as lin
from checker.lin.readers import FORMATS, ReadError


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="vrref view",
        description="Write a self-contained HTML view of a history and its linearizability "
        "check. Exit 0 when written, 2 when the history cannot be read.",
    )
    p.add_argument("files", nargs="+", metavar="HISTORY")
    p.add_argument("-o", "--output", metavar="OUT.html", help="default: HISTORY.html")
    p.add_argument("--model", choices=models.MODELS)
    p.add_argument("--format", choices=FORMATS)
    p.add_argument("--timeout", type=float, default=60.0, metavar="S")
    p.add_argument("--zone", metavar="ZONEFILE", help="DNS: the initial zone (master file)")
    args = parse(p, argv)
    if isinstance(args, int):
        return args
    try:
        loaded = cli_check.load(args.files, fmt=args.format, model_name=args.model, zone=args.zone)
        result = cli_check.run(loaded, timeout_s=args.timeout)
    except (ReadError, models.ModelError, cli_check.UsageError) as error:
        sys.stderr.write(f"vrref view: {error}\n")
        return 2
    except lin.PartitioningError as error:
        sys.stderr.write(f"vrref view: internal error, no verdict: {error}\n")
        return 2
    out = args.output or f"{args.files[0]}.html"
    try:
        report.write(out, loaded, result)
    except OSError as error:
        sys.stderr.write(f"vrref view: cannot write {out}: {error}\n")
        return 2
    sys.stdout.write(f"{result.verdict}: {out}\n")
    return 0
