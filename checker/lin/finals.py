"""Judging the final states of a run: does every replica serve every acknowledged update?

A history can be linearizable and still hide a loss: after a whole-cluster restart that
lost the zone, no recorded operation need observe the loss. So a run may end with each
replica's committed zone recorded (vrref/history.py's ``final``: the runtime at a clean
stop, the nemesis from an AXFR), and each is held to the standard of a **linearizable read
of the whole zone** over its interval [``since``, ``time``]: there must be a linearization
of the history in which, at some point of that interval, the model's zone is the final
zone. A replica that lost or never received an update acknowledged before ``since`` fails;
one that holds an update whose outcome the history leaves open (``info``) passes, since the
search may place that update or leave it out.

**How.** The whole-zone read is split into reads the search can partition: for every owner
name of the final zone, of the initial zone and of the witness's final zone, an ANY query
at that name (at the apex: a query of each of its types but SOA), each answered from the
final zone by the DNS model itself (spec/dns_model.py ``step``), all with the final's
interval. Those reads are added to the history's operations and the linearizability search
runs again (checker/lin/wgl.py): linearizable means the final zone answers every name as
the cluster's state did at a point of its interval (each name at a point of its own: with
the quiet end a run has, no operation completes inside the interval, so the points agree but
for updates whose outcome the history leaves open). The SOA record is not compared: its
serial changes with every update, so a read of it would put every operation in one
partition, and a zone that differs from every linearizable state differs in some name.

**What a failure says.** The names whose records differ between the final zone and the
witness of the linearizable verdict (replayed through the model): ``missing`` (the witness
has records there, the final zone none), ``unexpected`` (the reverse) and ``different``.
The witness is one linearization, so with indeterminate updates the lists can name an
update the search could have left out; the verdict itself never rests on the witness.

Identical final zones are judged once. The search gets the caller's time limit; beyond it
the verdict is unknown, never a guess.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from checker.lin import wgl as lin
from checker.lin.models import Dns
from checker.lin.readers import ClientOp, FinalState

NAMES_SHOWN_MAX = 20

Record = tuple[str, str, int, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class FinalVerdict:
    """The verdict on one replica's final state."""

    replica: int
    path: str
    line: int
    commit_number: int | None
    verdict: Literal["ok", "stale", "unknown"]
    detail: str = ""
    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    different: tuple[str, ...] = ()

    def describe(self) -> str:
        where = f"{self.path}:{self.line}"
        at = "" if self.commit_number is None else f" (commit-number {self.commit_number})"
        if self.verdict == "ok":
            return f"replica {self.replica}{at}: ok"
        if self.verdict == "unknown":
            return f"replica {self.replica}{at}: unknown ({self.detail}) [{where}]"
        parts = [
            f"{label} {_names(names)}"
            for label, names in (
                ("missing", self.missing),
                ("unexpected", self.unexpected),
                ("different at", self.different),
            )
            if names
        ]
        diff = "; ".join(parts) if parts else "no name differs from the witness"
        return (
            f"replica {self.replica}{at}: NOT a state of any linearization over its interval "
            f"({self.detail}); against the witness: {diff} [{where}]"
        )


@dataclass(frozen=True, slots=True)
class FinalsVerdict:
    finals: tuple[FinalVerdict, ...]

    @property
    def ok(self) -> bool:
        return all(f.verdict == "ok" for f in self.finals)

    @property
    def stale(self) -> tuple[FinalVerdict, ...]:
        return tuple(f for f in self.finals if f.verdict == "stale")

    @property
    def unknown(self) -> tuple[FinalVerdict, ...]:
        return tuple(f for f in self.finals if f.verdict == "unknown")


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(names[:NAMES_SHOWN_MAX])
    more = len(names) - NAMES_SHOWN_MAX
    return shown + (f" (+{more} more)" if more > 0 else "")


def judge(
    model: Dns,
    ops: Sequence[lin.Operation],
    finals: Sequence[FinalState],
    witness: Sequence[lin.Operation],
    *,
    timeout_s: float | None,
) -> FinalsVerdict:
    """Judges each of ``finals`` against ``ops`` (the history's operations as the search
    takes them) and ``witness`` (the linearization of a linearizable verdict on ``ops``)."""
    witness_zone: frozenset[Record] = lin.replay(model, witness)[-1]
    judged: dict[tuple[Record, ...], tuple[Literal["ok", "stale", "unknown"], str]] = {}
    out: list[FinalVerdict] = []
    first_id = 1 + max((op.id for op in ops), default=0)
    for final in finals:
        records = tuple(sorted(final.records))
        if records not in judged:
            judged[records] = _judge_one(
                model, ops, final, records, witness_zone, first_id, timeout_s
            )
        verdict, detail = judged[records]
        missing: list[str] = []
        unexpected: list[str] = []
        different: list[str] = []
        if verdict == "stale":
            mine = _by_name(records)
            theirs = _by_name(tuple(witness_zone))
            for name in sorted(set(mine) | set(theirs)):
                if name not in mine:
                    missing.append(name)
                elif name not in theirs:
                    unexpected.append(name)
                elif _without_soa(mine[name]) != _without_soa(theirs[name]):
                    different.append(name)
        out.append(
            FinalVerdict(
                replica=final.replica,
                path=final.path,
                line=final.line,
                commit_number=final.commit_number,
                verdict=verdict,
                detail=detail,
                missing=tuple(missing),
                unexpected=tuple(unexpected),
                different=tuple(different),
            )
        )
    return FinalsVerdict(tuple(out))


def _by_name(records: Sequence[Record]) -> dict[str, set[Record]]:
    out: dict[str, set[Record]] = {}
    for record in records:
        out.setdefault(record[0], set()).add(record)
    return out


def _without_soa(records: set[Record]) -> set[Record]:
    return {r for r in records if r[1] != "SOA"}


def _judge_one(
    model: Dns,
    ops: Sequence[lin.Operation],
    final: FinalState,
    records: tuple[Record, ...],
    witness_zone: frozenset[Record],
    first_id: int,
    timeout_s: float | None,
) -> tuple[Literal["ok", "stale", "unknown"], str]:
    spec = model._spec
    if sum(1 for r in records if r[1] == "SOA") != 1:
        return "stale", "the final zone does not have exactly one SOA record"
    zone = frozenset(records)
    if spec.origin_of(zone) != model.origin:
        return "stale", f"the final zone's apex is {spec.origin_of(zone)}, not {model.origin}"
    origin = model.origin
    owners = {r[0] for r in records} | {r[0] for r in model.initial} | {r[0] for r in witness_zone}
    apex_types = {
        r[1] for r in (*records, *model.initial, *witness_zone) if r[0] == origin and r[1] != "SOA"
    }
    questions = [(name, "ANY") for name in sorted(owners - {origin})]
    questions += [(origin, rdtype) for rdtype in sorted(apex_types)]
    reads: list[lin.Operation] = []
    for k, (name, rdtype) in enumerate(questions):
        text = json.dumps({"name": name, "t": "query", "type": rdtype}, separators=(",", ":"))
        _, result = spec.step(zone, text)
        op = ClientOp(
            index=first_id + k,
            process=f"final/{final.replica}/{k}",
            f="read",
            value=text,
            outcome="ok",
            result=result,
            call=final.call,
            ret=final.ret,
            mode="linearizable",
            call_line=final.line,
            ret_line=final.line,
            path=final.path,
        )
        converted = model.convert(op)
        assert converted is not None
        reads.append(
            lin.Operation(
                id=op.index,
                process=op.process,
                input=converted[0],
                output=converted[1],
                call=final.call,
                ret=final.ret,
                source=op,
            )
        )
    result = lin.check(model, [*ops, *reads], timeout_s=timeout_s, witness=False)
    if isinstance(result, lin.Ok):
        return "ok", ""
    if isinstance(result, lin.Unknown):
        return "unknown", f"{result.reason}: {result.detail}"
    blocking = result.blocking
    why = "the search cannot place the final state's reads"
    if blocking is not None and isinstance(blocking.source, ClientOp):
        source: Any = blocking.source
        if str(source.process).startswith("final/"):
            text = model.describe_operation(blocking.input, blocking.output)
            why = f"no state in its interval answers {text}"
    return "stale", why
