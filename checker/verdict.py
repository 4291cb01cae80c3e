"""The verdict on a history: read it, pick its model, search, and say what was found.

The library behind ``vrref check`` and ``vrref view`` (checker/cli/check.py and
checker/cli/view.py are their command-line front ends, and the simulator calls it
directly): read a history (checker/lin/readers.py, any supported format, detected when not
given), pick the model (from an explicit name, the history's header, or the operations'
names), turn client operations into the model's inputs and outputs (checker/lin/models.py,
which also drops definite failures and the reads it does not judge), run the search
(checker/lin/wgl.py) and describe the result in prose or as JSON.

``check`` is the whole verdict of ``vrref check``, in this order: linearizability; when the
files hold a recorded run, trace validation and invariants (checker/trace.py), which also
yield the order the cluster committed in; after a linearizable verdict, the local reads
(checker/lin/local_reads.py: consistent prefix, no future, against that commit order when
trace validation passed, else against every linearization) and the final states
(checker/lin/finals.py: each replica's zone at the end must be a linearizable read). It
returns one ``Verdict`` with every part and the exit
status they make together, which ``describe_verdict`` (prose) and ``verdict_json`` (one
JSON object) both only report, so the two cannot disagree.

Exit statuses, as for every checker here: 0 linearizable, 1 not linearizable, 2 unknown (time
or memory limit) or unusable input. For the whole verdict: 1 when any part found a
violation, else 2 when any part is unknown (or the run's files cannot be validated), else 0.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from checker.lin import models
from checker.lin import wgl as lin
from checker.lin.readers import ClientHistory, ClientOp, read

if TYPE_CHECKING:
    from checker.lin.finals import FinalsVerdict
    from checker.lin.local_reads import LocalReadVerdict
    from checker.trace import RunReport

EXIT_OK: Final = 0
EXIT_ILLEGAL: Final = 1
EXIT_UNKNOWN: Final = 2
SHOWN_OPS_MAX: Final = 40
MEMO_ENTRIES_MAX_CLI: Final = 5_000_000  # ~1 GB at worst


class UsageError(ValueError):
    """A combination of flags and input that cannot be checked (exit 2)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Loaded:
    history: ClientHistory
    model: models.CheckedModel
    ops: list[lin.Operation]
    counts: dict[str, int]


def guess_model(history: ClientHistory) -> str:
    """The model a history is about: its header's, or the one its operations name."""
    declared = history.header.get("model")
    if isinstance(declared, str):
        return declared
    if history.format == "porcupine-kv":
        return "kv"
    if history.format == "porcupine-log":
        return "cas-register"
    names = {op.f for op in history.ops}
    if names and names <= {"read", "write", "cas"}:
        return "cas-register"
    if names and names <= {"get", "put", "append"}:
        return "kv"
    if names and names <= {"read", "update", "query"}:
        return "dns"
    raise UsageError(f"{history.path}: cannot tell the model from {sorted(names)}; pass --model")


def expand(paths: Sequence[str]) -> list[str]:
    """Paths with each directory replaced by its ``*.jsonl`` files, sorted."""
    from pathlib import Path

    out: list[str] = []
    for path in paths:
        if Path(path).is_dir():
            files = sorted(str(p) for p in Path(path).glob("*.jsonl"))
            if not files:
                raise UsageError(f"{path}: a directory with no *.jsonl history files")
            out.extend(files)
        else:
            out.append(path)
    return out


def load(
    paths: Sequence[str],
    *,
    fmt: str | None = None,
    model_name: str | None = None,
    zone: str | None = None,
) -> Loaded:
    """Reads a history and prepares the search; raises ReadError, ModelError or UsageError.
    A directory stands for the ``*.jsonl`` files in it (a cluster's history directory)."""
    history = read(expand(paths), fmt)
    name = model_name or guess_model(history)
    if name not in models.MODELS:
        raise UsageError(f"unknown model {name!r}; choose from {', '.join(models.MODELS)}")
    header = dict(history.header)
    if zone is not None:
        try:
            header["initial"] = [list(r) for r in models.dns_records_from_zone_file(zone)]
        except ValueError as error:
            raise UsageError(str(error)) from None
    try:
        model = models.model_for(name, header)
    except (ValueError, AssertionError) as error:
        raise UsageError(f"{history.path}: {error}") from None
    ops = models.operations(model, history.ops)
    return Loaded(history=history, model=model, ops=ops, counts=_counts(history.ops, ops, model))


def _counts(
    raw: Sequence[ClientOp], ops: Sequence[lin.Operation], model: models.CheckedModel
) -> dict[str, int]:
    outcomes = Counter(op.outcome or "none" for op in raw)
    return {
        "operations": len(raw),
        "ok": outcomes["ok"],
        "fail": outcomes["fail"],
        "info": outcomes["info"],
        "no completion": outcomes["none"],
        "checked": len(ops),
        "checked indeterminate": sum(1 for op in ops if not op.definite),
        "left out": len(raw) - len(ops),
        "local reads left out": getattr(model, "dropped_local", 0),
    }


def run(
    loaded: Loaded,
    *,
    timeout_s: float | None,
    memo_entries_max: int = MEMO_ENTRIES_MAX_CLI,
    witness: bool = True,
    certify: bool = True,
    progress: lin.Progress | None = None,
) -> lin.Result:
    return lin.check(
        loaded.model,
        loaded.ops,
        timeout_s=timeout_s,
        memo_entries_max=memo_entries_max,
        witness=witness,
        certify=certify,
        progress=progress,
    )


def exit_status(result: lin.Result) -> int:
    if isinstance(result, lin.Ok):
        return EXIT_OK
    if isinstance(result, lin.Illegal):
        return EXIT_ILLEGAL
    return EXIT_UNKNOWN


# ---------------------------------------------------------------------------- output


def where(op: lin.Operation) -> str:
    source = op.source
    if not isinstance(source, ClientOp):
        return f"op {op.id}"
    lines = f"line {source.call_line}"
    if source.ret_line is not None:
        lines += f"-{source.ret_line}"
    return lines


def op_text(model: models.CheckedModel, op: lin.Operation) -> str:
    return f"[process {op.process}, {where(op)}] {model.describe_operation(op.input, op.output)}"


def describe(loaded: Loaded, result: lin.Result) -> str:
    model, counts = loaded.model, loaded.counts
    out = [
        f"history: {loaded.history.path} ({loaded.history.format}), model {model.name}",
        f"operations: {counts['operations']} ({counts['ok']} ok, {counts['fail']} fail, "
        f"{counts['info']} info, {counts['no completion']} without completion); "
        f"{counts['checked']} checked ({counts['checked indeterminate']} indeterminate), "
        f"{counts['left out']} left out (definite failures and unobservable reads)",
    ]
    if counts["local reads left out"]:
        out.append(
            f"note: {counts['local reads left out']} local (possibly stale) reads are left "
            "out of the linearizability search and judged after it (consistent prefix)"
        )
    if model.name == "dns":
        out.append(
            "note: update serials and the serial of the SOA in negative answers are not "
            "compared (see checker/lin/models.py Dns); SOA queries are compared exactly"
        )
    stats = result.stats
    out.append(
        f"search: {stats.partitions} partitions, {stats.steps} steps, "
        f"{stats.memo_entries_max} memo entries at most, {stats.elapsed_s:.2f} s"
    )
    if isinstance(result, lin.Ok):
        how = (
            "witness replayed through the unpartitioned model"
            if result.certified
            else "witness not replayed (--no-certify)"
        )
        out.append(f"verdict: LINEARIZABLE ({how})")
    elif isinstance(result, lin.Unknown):
        out.append(
            f"verdict: UNKNOWN ({result.reason}: {result.detail}; "
            f"{result.partitions_done} of {stats.partitions} partitions done)"
        )
    else:
        out.append("verdict: NOT LINEARIZABLE")
        out.extend(explain_illegal(model, result))
    return "\n".join(out) + "\n"


def explain_illegal(model: models.CheckedModel, result: lin.Illegal) -> list[str]:
    out = [f"the failing partition has {len(result.partition)} operations"]
    prefix = result.longest[0] if result.longest else ()
    out.append(f"longest partial linearization found: {len(prefix)} operations")
    shown = prefix[-SHOWN_OPS_MAX:]
    if len(prefix) > len(shown):
        out.append(f"  ... ({len(prefix) - len(shown)} earlier operations)")
    for k, op in enumerate(shown, start=len(prefix) - len(shown) + 1):
        out.append(f"  {k:>4}. {op_text(model, op)}")
    out.append("model state after it:")
    out.extend("  " + line for line in result.state_after.splitlines() or [""])
    if result.blocking is not None:
        out.append(f"cannot be placed next: {op_text(model, result.blocking)}")
        for candidate in result.candidates[:SHOWN_OPS_MAX]:
            out.append(f"  candidate ({candidate.why}): {op_text(model, candidate.op)}")
    if len(result.longest) > 1:
        out.append(f"({len(result.longest) - 1} other partial linearizations of that length)")
    return out


def to_json(loaded: Loaded, result: lin.Result) -> dict[str, Any]:
    stats = result.stats
    data: dict[str, Any] = {
        "verdict": result.verdict,
        "file": loaded.history.path,
        "format": loaded.history.format,
        "model": loaded.model.name,
        "counts": loaded.counts,
        "partitions": stats.partitions,
        "steps": stats.steps,
        "memo_entries_max": stats.memo_entries_max,
        "elapsed_s": round(stats.elapsed_s, 4),
    }
    model = loaded.model

    def op_json(op: lin.Operation) -> dict[str, Any]:
        item: dict[str, Any] = {
            "id": op.id,
            "process": op.process,
            "text": model.describe_operation(op.input, op.output),
        }
        if isinstance(op.source, ClientOp):
            item["line"] = op.source.call_line
            item["return_line"] = op.source.ret_line
        return item

    if isinstance(result, lin.Unknown):
        data["reason"] = result.reason
        data["detail"] = result.detail
    elif isinstance(result, lin.Illegal):
        data["partition_size"] = len(result.partition)
        data["longest"] = [[op_json(op) for op in prefix] for prefix in result.longest]
        data["blocking"] = None if result.blocking is None else op_json(result.blocking)
        data["candidates"] = [
            {**op_json(c.op), "why": c.why} for c in result.candidates[:SHOWN_OPS_MAX]
        ]
        data["state_after"] = result.state_after
    return data


# ---------------------------------------------------------------------------- the whole verdict


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """Every part of the verdict on a history, and the exit status they make together."""

    loaded: Loaded
    result: lin.Result
    """Linearizability."""
    local_reads: int
    """The completed local reads in the history."""
    local: LocalReadVerdict | None
    """Their verdict; None when not judged (see local_not_judged)."""
    local_not_judged: str | None
    finals: FinalsVerdict | None
    """The final states' verdict; None when not judged (see finals_not_judged)."""
    finals_not_judged: str | None
    runs: RunReport | None
    """Trace validation and invariants of the recorded run; None when not judged."""
    runs_not_judged: str | None
    runs_error: str | None
    """Why the run's files could not be validated (then runs is None)."""
    status: int


def check(
    paths: Sequence[str],
    *,
    fmt: str | None = None,
    model_name: str | None = None,
    zone: str | None = None,
    timeout_s: float | None,
    memo_entries_max: int = MEMO_ENTRIES_MAX_CLI,
    certify: bool = True,
    progress: lin.Progress | None = None,
    runs: bool = True,
) -> Verdict:
    """Linearizability, trace validation (``runs``), the local reads (by the recorded commit
    order when trace validation passed), then the final states: the verdict of
    ``vrref check``. Raises what ``load`` raises (unusable input) and lin.PartitioningError
    (an internal error, no verdict)."""
    from checker import trace
    from checker.lin import finals, local_reads

    loaded = load(paths, fmt=fmt, model_name=model_name, zone=zone)
    started = time.monotonic()
    result = run(
        loaded,
        timeout_s=timeout_s,
        memo_entries_max=memo_entries_max,
        certify=certify,
        progress=progress,
    )
    status = exit_status(result)
    report: RunReport | None = None
    runs_not_judged: str | None = None
    runs_error: str | None = None
    files = expand(paths)
    if not runs:
        runs_not_judged = "not asked for (--no-runs)"
    elif not trace.has_replica_events(files):
        runs_not_judged = "no replica history (a header with replica and protocol)"
    else:
        try:
            report = trace.check_run(files)
        except ValueError as error:  # HistoryError included: a file that cannot be replayed
            runs_error = str(error)
            if status == EXIT_OK:
                status = EXIT_UNKNOWN
        else:
            if not report.ok:
                status = EXIT_ILLEGAL

    def time_left() -> float | None:
        return None if timeout_s is None else max(1.0, timeout_s - (time.monotonic() - started))

    witness = result.linearization if isinstance(result, lin.Ok) else None
    ops = loaded.history.ops
    reads = sum(1 for op in ops if op.mode == "local" and op.outcome == "ok")
    local: LocalReadVerdict | None = None
    local_not_judged: str | None = None
    if not reads:
        local_not_judged = "no completed local reads"
    elif witness is not None:
        order = report.commit_order() if report is not None and report.ok else None
        local = local_reads.judge(
            loaded.model,
            ops,
            witness,
            order=order,
            searched_ops=loaded.ops,
            timeout_s=time_left(),
        )
        if local.violations:
            status = EXIT_ILLEGAL
        elif local.unknown and status == EXIT_OK:
            status = EXIT_UNKNOWN
    else:
        local_not_judged = "they are judged after a linearizable verdict"
    finals_verdict: FinalsVerdict | None = None
    finals_not_judged: str | None = None
    final_states = loaded.history.finals
    if not final_states:
        finals_not_judged = "no final states recorded"
    elif not isinstance(loaded.model, models.Dns):
        finals_not_judged = "final states are zones: judged for the dns model only"
    elif witness is None:
        finals_not_judged = "they are judged after a linearizable verdict"
    else:
        finals_verdict = finals.judge(
            loaded.model, loaded.ops, final_states, witness, timeout_s=time_left()
        )
        if finals_verdict.stale:
            status = EXIT_ILLEGAL
        elif finals_verdict.unknown and status == EXIT_OK:
            status = EXIT_UNKNOWN
    return Verdict(
        loaded=loaded,
        result=result,
        local_reads=reads,
        local=local,
        local_not_judged=local_not_judged,
        finals=finals_verdict,
        finals_not_judged=finals_not_judged,
        runs=report,
        runs_not_judged=runs_not_judged,
        runs_error=runs_error,
        status=status,
    )


def describe_verdict(verdict: Verdict) -> str:
    """The verdict in prose: linearizability, local reads, trace validation, invariants."""
    from checker import trace

    out = [describe(verdict.loaded, verdict.result).rstrip("\n")]
    local = verdict.local
    if local is not None:
        searched = f"; {local.searched} by a search of their own" if local.searched else ""
        out.append(
            f"local reads: {local.checked} judged (consistent prefix, no future; against "
            f"the {local.basis}{searched}): "
            + ("ok" if local.ok else f"{len(local.violations)} VIOLATED")
            + (f", {local.unknown} unknown (step budget)" if local.unknown else "")
        )
        for op, why in local.violations[:SHOWN_OPS_MAX]:
            out.append(f"  {op.path}:{op.ret_line}: process {op.process}: {why}")
    elif verdict.local_reads:
        out.append(f"local reads: {verdict.local_reads} not judged ({verdict.local_not_judged})")
    if verdict.finals is not None:
        finals = verdict.finals
        head = "ok" if finals.ok else f"{len(finals.stale)} STALE"
        if finals.unknown:
            head += f", {len(finals.unknown)} unknown"
        out.append(f"final states: {len(finals.finals)} judged (a linearizable read): {head}")
        out.extend(f"  {f.describe()}" for f in finals.finals)
    elif verdict.loaded.history.finals:
        out.append(
            f"final states: {len(verdict.loaded.history.finals)} not judged"
            f" ({verdict.finals_not_judged})"
        )
    if verdict.runs is not None:
        out.extend(trace.report_lines(verdict.runs))
    return "\n".join(out) + "\n"


def verdict_json(verdict: Verdict) -> dict[str, Any]:
    """The verdict as one JSON object: the linearizability verdict's keys (``to_json``, as
    they always were), and ``local_reads``, ``trace``, ``invariants`` and ``exit_status``."""
    data = to_json(verdict.loaded, verdict.result)
    data["local_reads"] = _local_json(verdict)
    data["finals"] = _finals_json(verdict)
    data["trace"] = _trace_json(verdict)
    data["invariants"] = _invariants_json(verdict)
    data["exit_status"] = verdict.status
    return data


def _local_json(verdict: Verdict) -> dict[str, Any]:
    local = verdict.local
    data: dict[str, Any] = {
        "judged": local is not None,
        "basis": None if local is None else local.basis,
        "reads": verdict.local_reads,
        "checked": 0 if local is None else local.checked,
        "unknown": 0 if local is None else local.unknown,
        "violations": [
            {"file": op.path, "line": op.ret_line, "process": op.process, "why": why}
            for op, why in (() if local is None else local.violations)
        ],
    }
    if local is None:
        data["not_judged"] = verdict.local_not_judged
    else:
        data["ok"] = local.ok
    return data


def _finals_json(verdict: Verdict) -> dict[str, Any]:
    finals = verdict.finals
    if finals is None:
        return {
            "judged": False,
            "count": len(verdict.loaded.history.finals),
            "not_judged": verdict.finals_not_judged,
        }
    return {
        "judged": True,
        "ok": finals.ok,
        "finals": [
            {
                "replica": f.replica,
                "file": f.path,
                "line": f.line,
                "commit_number": f.commit_number,
                "verdict": f.verdict,
                "detail": f.detail,
                "missing": list(f.missing),
                "unexpected": list(f.unexpected),
                "different": list(f.different),
            }
            for f in finals.finals
        ],
    }


def _trace_json(verdict: Verdict) -> dict[str, Any]:
    report = verdict.runs
    if report is None:
        data: dict[str, Any] = {"judged": False}
        if verdict.runs_error is not None:
            data["error"] = verdict.runs_error
        else:
            data["not_judged"] = verdict.runs_not_judged
        return data
    return {
        "judged": True,
        "ok": all(not r.problems for r in report.replicas),
        "replicas": [
            {
                "file": r.path,
                "replica": r.replica,
                "ok": not r.problems,
                "inputs": r.inputs,
                "sends": r.sends,
                "states": r.states,
                "lives": r.lives,
                "committed": len(r.committed),
                "problems": list(r.problems),
            }
            for r in report.replicas
        ],
    }


def _invariants_json(verdict: Verdict) -> dict[str, Any]:
    from checker import trace
    from spec import invariants

    report = verdict.runs
    if report is None:
        return {"judged": False, "not_judged": "no recorded run was validated"}
    return {
        "judged": True,
        "ok": not report.problems,
        "after_every_state": [
            p.__name__ for p in (*invariants.STEP_INVARIANTS, *trace.PER_REPLICA)
        ],
        "over_the_final_states": [p.__name__ for p in trace.ACROSS_REPLICAS],
        "final_states_of": [r.replica for r in report.replicas if r.final is not None],
        "not_judged": {
            "acknowledged_ops_survive": "a replica history does not link replies to requests"
        },
        "problems": list(report.problems),
        "note": "a violation after a state stops that replica's replay: it is the replica's "
        "problem in trace",
    }
