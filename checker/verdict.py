"""The verdict on a history: read it, pick its model, search, and say what was found.

The library behind ``vrref check`` and ``vrref view`` (checker/cli/check.py and
checker/cli/view.py are their command-line front ends, and the simulator calls it
directly): read a history (checker/lin/readers.py, any supported format, detected when not
given), pick the model (from an explicit name, the history's header, or the operations'
names), turn client operations into the model's inputs and outputs (checker/lin/models.py,
which also drops definite failures and the reads it does not judge), run the search
(checker/lin/wgl.py) and describe the result in prose or as JSON.

Exit statuses, as for every checker here: 0 linearizable, 1 not linearizable, 2 unknown (time
or memory limit) or unusable input.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from checker.lin import models
from checker.lin import wgl as lin
from checker.lin.readers import ClientHistory, ClientOp, read

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
