"""Judging reads served from a replica's local state (``"mode": "local"``).

A local read answers from the replica's committed zone, which may lag behind the cluster:
it is not linearizable by design. Its standard here is **consistent prefix, no future**: the
answer must be exactly what the DNS model answers after some prefix of the order in which
the cluster committed its operations, and that prefix may not go past what had been
committed when the read returned. So a stale answer passes; an answer that no committed
state ever gave (a torn update, a value never written, a reordering), or one that reflects
an update not yet committed, fails. The empty prefix (the initial zone) is allowed.

Which order, in this order of preference:

1. **The recorded commit order**, when the history holds the replicas' own records of the
   run (trace validation replays them and learns what each replica executed, op-number by
   op-number: checker/trace.py ``CommitOrder``). The prefixes are the committed prefixes,
   replayed through the DNS model (each committed op's recorded result must be the
   model's, or the order is not used), and "not past what was committed" is the highest
   commit-number any replica had recorded by the read's return time. This is the order
   the replica actually served from, so nothing depends on the search's choices.
2. **Every linearization**, otherwise. A read is first tried against the witness the
   linearizability search found (cheap, and it nearly always fits); a read that does not
   fit it is judged exactly: the search runs again with that read added as an operation
   that may take effect at any point before it returned (its invocation moved to the start
   of the history), so it passes iff some linearization has a prefix, ending before the
   read returned, that answers it. One arbitrary witness never condemns a read.

Its cost is bounded (``steps_max`` model steps, and the caller's time limit for the exact
searches): beyond them the read's verdict is unknown, never a guess.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from checker.lin import wgl as lin
from checker.lin.models import CheckedModel
from checker.lin.readers import ClientOp

if TYPE_CHECKING:
    from checker.trace import CommitOrder

STEPS_MAX_DEFAULT = 2_000_000


@dataclass(frozen=True, slots=True)
class LocalReadVerdict:
    checked: int
    violations: tuple[tuple[ClientOp, str], ...]
    unknown: int
    """Reads not judged because the step budget or the time limit ran out."""
    basis: str = "witness"
    """What the reads were judged against: "commit order" or "linearizations" (and why
    the commit order was not used, when it was given and refused)."""
    searched: int = 0
    """Reads that did not fit the witness and were judged by a search of their own."""

    @property
    def ok(self) -> bool:
        return not self.violations


def judge(
    model: CheckedModel,
    ops: Sequence[ClientOp],
    linearization: Sequence[lin.Operation],
    *,
    order: CommitOrder | None = None,
    searched_ops: Sequence[lin.Operation] | None = None,
    timeout_s: float | None = None,
    steps_max: int = STEPS_MAX_DEFAULT,
) -> LocalReadVerdict:
    """Judges every completed local read of ``ops``: against ``order`` (the recorded commit
    order) when given and usable, else against the linearizations of ``searched_ops`` (the
    operations the search took; ``linearization`` is its witness)."""
    reads = [op for op in ops if op.mode == "local" and op.outcome == "ok"]
    if not reads:
        return LocalReadVerdict(0, (), 0)
    refused = ""
    if order is not None:
        states, refused = _commit_states(model, order)
        if states is not None:
            return _judge_by_order(model, reads, states, order, steps_max)
    verdict = _judge_by_linearizations(
        model, reads, linearization, searched_ops, timeout_s, steps_max
    )
    if refused:
        verdict = dataclasses.replace(
            verdict, basis=f"{verdict.basis} (the recorded commit order: {refused})"
        )
    return verdict


def _commit_states(model: CheckedModel, order: CommitOrder) -> tuple[list[Any] | None, str]:
    """The model's states along the commit order (initial first), or None and why not."""
    state = model.init()
    states = [state]
    for n, (op, result) in enumerate(order.ops, start=1):
        f = "read" if _is_query(op) else "update"
        converted = model.convert(
            ClientOp(
                index=-n,
                process="commit",
                f=f,
                value=op,
                outcome="ok",
                result=result,
                call=0,
                ret=1,
            )
        )
        if converted is None:
            return None, f"op {n} is not an operation of the model"
        accepted, state = model.step(state, *converted)
        if not accepted:
            return None, f"op {n}'s recorded result is not the model's"
        states.append(state)
    return states, ""


def _is_query(op: str) -> bool:
    try:
        decoded = json.loads(op)
    except ValueError:
        return False
    return isinstance(decoded, dict) and decoded.get("t") == "query"


def _judge_by_order(
    model: CheckedModel,
    reads: Sequence[ClientOp],
    states: Sequence[Any],
    order: CommitOrder,
    steps_max: int,
) -> LocalReadVerdict:
    steps = 0
    violations: list[tuple[ClientOp, str]] = []
    unknown = 0
    for read in reads:
        converted = model.convert(dataclasses.replace(read, mode=None))
        if converted is None:
            continue
        input, output = converted
        limit = len(states) - 1
        if read.ret_time is not None:
            limit = min(limit, order.committed_by(read.ret_time))
        found, used = _answered(model, states, limit, input, output, steps_max - steps)
        steps += used
        if found:
            continue
        if steps >= steps_max:
            unknown += 1
            continue
        violations.append(
            (read, f"no committed prefix (ops 0..{limit}) answers {_text(model, input, output)}")
        )
    return LocalReadVerdict(len(reads) - unknown, tuple(violations), unknown, "commit order")


def _judge_by_linearizations(
    model: CheckedModel,
    reads: Sequence[ClientOp],
    linearization: Sequence[lin.Operation],
    searched_ops: Sequence[lin.Operation] | None,
    timeout_s: float | None,
    steps_max: int,
) -> LocalReadVerdict:
    started = time.monotonic()
    states = lin.replay(model, linearization, states=True)
    # latest_call[i]: the latest invocation among the first i + 1 linearized ops.
    latest_call = list(itertools.accumulate((op.call for op in linearization), max))
    steps = 0
    violations: list[tuple[ClientOp, str]] = []
    unknown = 0
    searched = 0
    for read in reads:
        converted = model.convert(dataclasses.replace(read, mode=None))
        if converted is None:
            continue
        input, output = converted
        ret = read.ret if read.ret is not None else float("inf")
        # the longest prefix with no update invoked after the read returned: the first op
        # invoked after it is the first where the running maximum of invocations passes it
        limit = bisect.bisect_right(latest_call, ret)
        found, used = _answered(model, states, limit, input, output, steps_max - steps)
        steps += used
        if found:
            continue
        if searched_ops is None:  # no search to ask: the witness is all there is
            if steps >= steps_max:
                unknown += 1
            else:
                violations.append((read, _describe(model, input, output)))
            continue
        searched += 1
        left = None if timeout_s is None else max(0.0, timeout_s - (time.monotonic() - started))
        alone = lin.Operation(
            id=1 + max((op.id for op in searched_ops), default=0),
            process=read.process,
            input=input,
            output=output,
            call=-1,  # any point before it returned
            ret=read.ret,
            source=read,
        )
        result = lin.check(model, [*searched_ops, alone], timeout_s=left)
        if isinstance(result, lin.Unknown):
            unknown += 1
        elif isinstance(result, lin.Illegal):
            violations.append((read, _describe(model, input, output)))
    return LocalReadVerdict(
        len(reads) - unknown, tuple(violations), unknown, "linearizations", searched
    )


def _answered(
    model: CheckedModel, states: Sequence[Any], limit: int, input: Any, output: Any, budget: int
) -> tuple[bool, int]:
    """Whether one of ``states[0..limit]`` answers the read, the freshest tried first (the
    likely ones), within ``budget`` model steps; and the steps it took."""
    steps = 0
    for k in range(limit, -1, -1):
        if steps >= budget:
            break
        steps += 1
        if model.step(states[k], input, output)[0]:
            return True, steps
    return False, steps


def _text(model: CheckedModel, input: Any, output: Any) -> str:
    describe = getattr(model, "describe_operation", None)
    return describe(input, output) if callable(describe) else f"{input!r} -> {output!r}"


def _describe(model: CheckedModel, input: Any, output: Any) -> str:
    return f"no prefix of any linearization answers {_text(model, input, output)}"
