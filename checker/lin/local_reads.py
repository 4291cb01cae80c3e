"""Judging reads served from a replica's local state (``"mode": "local"``).

A local read answers from the replica's committed zone, which may lag behind the cluster:
it is not linearizable by design. Its standard here is **consistent prefix, no future**: the
answer must be exactly what the DNS model answers after some prefix of the linearization of
the updates (the witness the linearizability checker found, replayed through the
unpartitioned model), and that prefix may not contain an update that was invoked only after
the read had returned. So a stale answer passes; an answer that no committed state ever
gave (a torn update, a value never written, a reordering), or one that reflects an update
the client had not even sent yet, fails. The empty prefix (the initial zone) is allowed.

This needs the linearization, so it runs only after a linearizable verdict. Its cost is
bounded (``steps_max`` model steps): beyond it the verdict is unknown, never a guess.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from checker.lin import wgl as lin
from checker.lin.models import CheckedModel
from checker.lin.readers import ClientOp

STEPS_MAX_DEFAULT = 2_000_000


@dataclass(frozen=True, slots=True)
class LocalReadVerdict:
    checked: int
    violations: tuple[tuple[ClientOp, str], ...]
    unknown: int
    """Reads not judged because the step budget ran out."""

    @property
    def ok(self) -> bool:
        return not self.violations


def judge(
    model: CheckedModel,
    ops: Sequence[ClientOp],
    linearization: Sequence[lin.Operation],
    *,
    steps_max: int = STEPS_MAX_DEFAULT,
) -> LocalReadVerdict:
    """Judges every completed local read of ``ops`` against ``linearization``."""
    reads = [op for op in ops if op.mode == "local" and op.outcome == "ok"]
    if not reads:
        return LocalReadVerdict(0, (), 0)
    states = lin.replay(model, linearization, states=True)
    # calls[i]: the real-time position of the invocation of the i-th linearized op.
    calls = [op.call for op in linearization]
    steps = 0
    violations: list[tuple[ClientOp, str]] = []
    unknown = 0
    for read in reads:
        converted = model.convert(dataclasses.replace(read, mode=None))
        if converted is None:
            continue
        input, output = converted
        ret = read.ret if read.ret is not None else float("inf")
        # the longest prefix with no update invoked after the read returned
        limit = next((i for i, call in enumerate(calls) if call > ret), len(calls))
        found = False
        for k in range(limit, -1, -1):  # the freshest states first: the likely ones
            if steps >= steps_max:
                break
            steps += 1
            accepted, _ = model.step(states[k], input, output)
            if accepted:
                found = True
                break
        if found:
            continue
        if steps >= steps_max:
            unknown += 1
            continue
        violations.append((read, _describe(model, input, output)))
    return LocalReadVerdict(len(reads) - unknown, tuple(violations), unknown)


def _describe(model: CheckedModel, input: Any, output: Any) -> str:
    describe = getattr(model, "describe_operation", None)
    text = describe(input, output) if callable(describe) else f"{input!r} -> {output!r}"
    return f"no committed prefix answers {text}"
