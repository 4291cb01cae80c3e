"""The checks of a nemesis run, each with its verdict and what it found.

(a) ``clients``: ``vrref check`` (checker/verdict.py ``check``) of the clients' own history,
    DIR/clients.jsonl: linearizability, the local reads, and the replicas' final states
    (one ``final`` a replica, from an AXFR at the end).
(b) ``servers``: ``vrref check`` of the replicas' histories, DIR/history: the client
    operations as the servers recorded them, trace validation of every replica's every life,
    the invariants, and the final states the replicas recorded at their clean stop.
(c) ``acknowledged``: every update the clients saw answered (``ok``) appears, by its op text,
    as an ``ok`` update with the same rcode in the servers' histories. The servers write
    their history ahead of the wire (a reply never leaves before its completion is in the
    file), so a missing one is an answered operation the server's own record lost.
(d) ``availability``: the longest window with no answered update, overall and per fault.

(a), (b) and (c) decide the verdict; (d) is a figure. The final states are judged by
``check`` when it does (checker/lin/finals.py); with a ``check`` that does not yet, they
are judged here with the same function.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from checker import verdict as verdicts
from checker.lin import wgl as lin
from checker.lin.readers import ClientOp, ReadError
from checker.nemesis.faults import Fault
from vrref.history import ClientEvent, HistoryError, iter_lines, parse_event

Status = Literal["pass", "fail", "unknown", "info"]
"""``info``: a figure, not a verdict (the availability check)."""
VIOLATIONS_SHOWN_MAX = 40


@dataclass
class Check:
    """One check's verdict and what it found."""

    name: str
    title: str
    status: Status
    summary: str
    details: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    """Each a "file:line: what" (or a sentence when no line applies)."""
    text: str = ""
    """The checker's own prose, as ``vrref check`` prints it."""
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "status": self.status,
            "summary": self.summary,
            "details": self.details,
            "violations": self.violations,
            "seconds": round(self.seconds, 2),
        }


# ---------------------------------------------------------------------------- (a) and (b)


def _status(code: int) -> Status:
    if code == verdicts.EXIT_OK:
        return "pass"
    return "fail" if code == verdicts.EXIT_ILLEGAL else "unknown"


def _op_where(op: lin.Operation) -> str:
    source = op.source
    if isinstance(source, ClientOp):
        ret = f"-{source.ret_line}" if source.ret_line is not None else ""
        return f"{source.path}:{source.call_line}{ret}"
    return f"op {op.id}"


def _lin_violations(verdict: verdicts.Verdict) -> list[str]:
    result = verdict.result
    if not isinstance(result, lin.Illegal):
        return []
    model = verdict.loaded.model
    out: list[str] = []
    if result.blocking is not None:
        op = result.blocking
        out.append(
            f"{_op_where(op)}: not linearizable: cannot be placed after the longest partial "
            f"linearization ({len(result.longest[0]) if result.longest else 0} ops): process "
            f"{op.process}: {model.describe_operation(op.input, op.output)}"
        )
    for candidate in result.candidates[:10]:
        op = candidate.op
        out.append(
            f"{_op_where(op)}: candidate ({candidate.why}): process {op.process}: "
            f"{model.describe_operation(op.input, op.output)}"
        )
    return out


def _finals(verdict: verdicts.Verdict, timeout_s: float | None) -> tuple[Any, bool]:
    """The verdict on the final states: ``check``'s own when it has one (then already in
    its status), else judged here (the second value: whether it is to be folded in)."""
    if hasattr(verdict, "finals"):
        return verdict.finals, False
    history = verdict.loaded.history
    finals = getattr(history, "finals", ())
    result = verdict.result
    if not finals:
        return None, False
    if not isinstance(result, lin.Ok) or result.linearization is None:
        return None, False
    from checker.lin import finals as judge_finals
    from checker.lin.models import Dns

    model = verdict.loaded.model
    if not isinstance(model, Dns):
        return None, False
    judged = judge_finals.judge(
        model, verdict.loaded.ops, finals, result.linearization, timeout_s=timeout_s
    )
    return judged, True


def check_history(name: str, title: str, paths: Sequence[str], timeout_s: float | None) -> Check:
    """``vrref check`` of ``paths``, with its final states."""
    started = time.monotonic()
    try:
        verdict = verdicts.check(paths, timeout_s=timeout_s)
    except (ReadError, HistoryError, verdicts.UsageError, ValueError) as error:
        return Check(
            name,
            title,
            "unknown",
            f"could not be checked: {error}",
            violations=[str(error)],
            seconds=time.monotonic() - started,
        )
    except lin.PartitioningError as error:  # a bug of the checker's model: no verdict
        return Check(
            name,
            title,
            "unknown",
            f"the checker failed (a model's footprints are wrong): {error}",
            violations=[f"checker error: {error}"],
            seconds=time.monotonic() - started,
        )
    text = verdicts.describe_verdict(verdict)
    status = _status(verdict.status)
    violations = _lin_violations(verdict)
    if verdict.local is not None:
        for op, why in verdict.local.violations[:VIOLATIONS_SHOWN_MAX]:
            violations.append(f"{op.path}:{op.ret_line}: local read, process {op.process}: {why}")
    if verdict.runs is not None:
        for run in verdict.runs.replicas:
            violations.extend(f"trace: {p}" for p in run.problems[:VIOLATIONS_SHOWN_MAX])
        violations.extend(f"invariant: {p}" for p in verdict.runs.problems)
    if verdict.runs_error is not None:
        violations.append(f"the run could not be validated: {verdict.runs_error}")
    finals, fold = _finals(verdict, timeout_s)
    final_lines: list[str] = []
    if finals is not None:
        for final in finals.finals:
            final_lines.append(f"final state: {final.describe()}")
            if final.verdict == "stale":
                violations.append(f"final state: {final.describe()}")
        if fold:
            if finals.stale:
                status = "fail"
            elif finals.unknown and status == "pass":
                status = "unknown"
            text += "".join(f"{line}\n" for line in final_lines)
    counts = verdict.loaded.counts
    lin_word = verdict.result.verdict.upper()
    summary = (
        f"{counts['operations']} operations ({counts['ok']} ok, {counts['info']} info, "
        f"{counts['fail']} fail); {lin_word}"
    )
    if verdict.local is not None:
        summary += f"; local reads {'ok' if verdict.local.ok else 'VIOLATED'}"
    if verdict.runs is not None:
        summary += f"; trace and invariants {'ok' if verdict.runs.ok else 'VIOLATED'}"
    if finals is not None:
        stale = len(finals.stale)
        summary += f"; final states {'ok' if finals.ok else f'{stale} stale'}"
    details = [line for line in text.splitlines() if line.strip()]
    return Check(
        name,
        title,
        status,
        summary,
        details=details,
        violations=violations[: 4 * VIOLATIONS_SHOWN_MAX],
        text=text,
        seconds=time.monotonic() - started,
    )


# ---------------------------------------------------------------------------- (c)


@dataclass(frozen=True, slots=True)
class Answered:
    """An update a history shows answered: its op text, rcode, file and lines."""

    op: str
    rcode: str
    path: str
    line: int
    time: int | None


def answered_updates(path: Path, *, lenient: bool) -> tuple[list[Answered], list[str]]:
    """The ``ok`` updates of one history file, paired per process; with ``lenient``, lines
    that do not parse are skipped and named (a replica SIGKILLed inside a write)."""
    out: list[Answered] = []
    problems: list[str] = []
    open_ops: dict[int | str, str] = {}
    lines = iter_lines(path)
    first = True
    while True:
        try:
            number, obj = next(lines)
        except StopIteration:
            break
        except HistoryError as error:
            if not lenient:
                raise
            problems.append(str(error))
            break  # the reader cannot resume after a bad line
        if first:
            first = False
            continue
        try:
            event = parse_event(obj, str(path), number)
        except HistoryError as error:
            if not lenient:
                raise
            problems.append(str(error))
            continue
        if not isinstance(event, ClientEvent) or event.f != "update":
            continue
        if event.type == "invoke":
            open_ops[event.process] = str(event.value)
            continue
        op = open_ops.pop(event.process, None)
        if op is None or event.type != "ok":
            continue
        try:
            rcode = str(json.loads(event.value)["rcode"])
        except (TypeError, ValueError, KeyError):
            problems.append(f"{path}:{number}: an update result without an rcode")
            continue
        out.append(Answered(op, rcode, str(path), number, event.time))
    return out, problems


def check_acknowledged(clients: Path, history_dir: Path) -> Check:
    started = time.monotonic()
    title = "(c) every update answered to a client is an ok update in the servers' history"
    try:
        acked, _ = answered_updates(clients, lenient=False)
    except HistoryError as error:
        return Check("acknowledged", title, "unknown", f"the client history: {error}")
    server: dict[str, Answered] = {}
    problems: list[str] = []
    files = sorted(history_dir.glob("*.jsonl"))
    for path in files:
        found, bad = answered_updates(path, lenient=True)
        problems.extend(bad)
        for answered in found:
            server.setdefault(answered.op, answered)
    violations: list[str] = []
    noerror = 0
    missing_noerror = 0
    for answered in acked:
        noerror += answered.rcode == "NOERROR"
        there = server.get(answered.op)
        if there is None:
            missing_noerror += answered.rcode == "NOERROR"
            violations.append(
                f"{answered.path}:{answered.line}: answered {answered.rcode} to the client, "
                f"but no replica's history has it as an ok update: {answered.op}"
            )
        elif there.rcode != answered.rcode:
            violations.append(
                f"{answered.path}:{answered.line}: answered {answered.rcode} to the client, "
                f"recorded {there.rcode} at {there.path}:{there.line}: {answered.op}"
            )
    details = [
        f"{len(acked)} updates answered to the clients ({noerror} NOERROR); "
        f"{len(server)} ok updates in {len(files)} server history files",
        *[f"unreadable line (skipped): {p}" for p in problems],
    ]
    missing = sum(1 for v in violations if "no replica's history" in v)
    if violations:
        summary = (
            f"{missing} answered updates missing from the servers' history "
            f"({missing_noerror} of them NOERROR), {len(violations) - missing} with another rcode"
        )
        status: Status = "fail"
    else:
        summary = (
            f"all {len(acked)} answered updates ({noerror} NOERROR) are in the servers' history"
        )
        status = "pass"
    return Check(
        "acknowledged",
        title,
        status,
        summary,
        details=details,
        violations=violations[: 4 * VIOLATIONS_SHOWN_MAX],
        seconds=time.monotonic() - started,
    )


# ---------------------------------------------------------------------------- (d)


@dataclass(frozen=True, slots=True)
class Gap:
    """A window with no answered update, in ns of CLOCK_MONOTONIC."""

    start: int
    end: int

    @property
    def seconds(self) -> float:
        return (self.end - self.start) / 1e9


def gaps(success_ns: Sequence[int], start: int, end: int) -> list[Gap]:
    """The windows between consecutive answered updates, from ``start`` to ``end``."""
    points = [start, *sorted(t for t in success_ns if start <= t <= end), end]
    return [Gap(a, b) for a, b in itertools.pairwise(points) if b > a]


def check_availability(
    success_ns: Sequence[int], faults: Sequence[Fault], start: int, end: int
) -> tuple[Check, Gap | None, list[tuple[Fault, Gap | None]]]:
    """The longest window without an answered update, overall and within each fault's
    span (from its start to the next fault's, the time it may take to recover included)."""
    windows = gaps(success_ns, start, end)
    longest = max(windows, key=lambda g: g.seconds, default=None)
    per_fault: list[tuple[Fault, Gap | None]] = []
    for k, fault in enumerate(faults):
        until = faults[k + 1].start_ns if k + 1 < len(faults) else end
        overlapping = [g for g in windows if g.end > fault.start_ns and g.start < until]
        per_fault.append((fault, max(overlapping, key=lambda g: g.seconds, default=None)))
    details = []
    by_kind: dict[str, float] = {}
    for fault, gap in per_fault:
        if gap is not None:
            by_kind[fault.kind] = max(by_kind.get(fault.kind, 0.0), gap.seconds)
    for kind, seconds in sorted(by_kind.items()):
        details.append(
            f"longest window without an answered update around a {kind}: {seconds:.2f} s"
        )
    summary = (
        "no answered update at all"
        if not success_ns
        else f"longest window without an answered update: {longest.seconds:.2f} s"
        f" (at {(longest.start - start) / 1e9:.1f}-{(longest.end - start) / 1e9:.1f} s)"
        if longest is not None
        else "no window"
    )
    check = Check(
        "availability",
        "(d) unavailability: the longest window with no answered update",
        "info",
        summary,
        details=details,
    )
    return check, longest, per_fault
