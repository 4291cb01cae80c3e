"""An independent linearizability oracle: the definition, handed to an SMT solver.

The WGL search in checker/lin/wgl.py is clever (memoization, partitions, forced
reads, definite failures dropped early), and clever code needs a dumb witness. This module
states linearizability almost word for word and lets z3 decide it, for small histories
(up to a dozen operations). It shares nothing with the search but the raw operations: it
reads ``ClientOp`` values itself, and for the register and the key-value store it encodes
the sequential semantics in z3 rather than calling checker/lin/models.py.

The encoding, for n operations that may take effect:

* each operation i gets a position ``pos_i`` in ``0..n-1``, all distinct (a permutation);
* an indeterminate operation (``info``, no completion, a timed-out read) gets a Boolean
  ``takes_effect_i``; a definite one takes effect. An operation that does not take effect
  still occupies its position but leaves the state alone;
* real time: if i completed before j was invoked, ``pos_i < pos_j``;
* the state after position k is ``s_{k+1}``, ``s_0`` is the initial state, and for every k
  and i, ``pos_i = k`` implies that the model's transition of i relates ``s_k`` and
  ``s_{k+1}`` and agrees with i's output.

Definite failures (a ``fail`` that is not a timed-out read) did not happen and are left out;
a ``local`` (possibly stale) DNS read is not judged, as in the checker.

For the DNS model the semantics is a Python function (spec/dns_model.py), so the oracle is
lazy instead: z3 proposes an order and a choice of indeterminate operations that satisfy
the real-time constraints; the model runs it; if the k-th operation returns something else,
a clause forbids exactly that prefix (these operations, in this order, with no other
effective operation before them) and z3 is asked again. It ends when an order passes
(linearizable) or z3 runs out of orders (not linearizable). The result projection is the
same one the checker documents (``checker.lin.models.Dns.project``), since it is part of what
"returns the same" means, not of how the search works.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Final

import z3

from checker.lin.readers import ClientOp, Keyword

OPERATIONS_MAX: Final = 14
LAZY_ROUNDS_MAX: Final = 100_000


class OracleError(ValueError):
    """A history outside what this oracle handles (too big, an unknown operation)."""


def _timed_out(value: Any) -> bool:
    return bool(value == Keyword("timed-out") or value == "timed-out")


def _effective(
    ops: Sequence[ClientOp], *, fail_is_definite: Callable[[ClientOp], bool]
) -> list[ClientOp]:
    kept = [op for op in ops if not (op.outcome == "fail" and fail_is_definite(op))]
    kept = [op for op in kept if op.mode != "local"]
    if len(kept) > OPERATIONS_MAX:
        raise OracleError(f"{len(kept)} operations: the oracle is for small histories")
    return kept


def _definite(op: ClientOp) -> bool:
    return op.outcome == "ok"


def _skeleton(
    solver: z3.Solver, ops: Sequence[ClientOp]
) -> tuple[list[z3.ArithRef], list[z3.BoolRef]]:
    """Positions (a permutation), take-effect flags, and the real-time constraints."""
    n = len(ops)
    pos = [z3.Int(f"pos_{i}") for i in range(n)]
    eff = [z3.Bool(f"eff_{i}") for i in range(n)]
    for i, op in enumerate(ops):
        solver.add(pos[i] >= 0, pos[i] < n)
        if _definite(op):
            solver.add(eff[i])
    if n > 1:
        solver.add(z3.Distinct(*pos))
    for i, a in enumerate(ops):
        if not _definite(a):
            continue  # completes at +infinity: precedes nothing
        assert a.ret is not None
        for j, b in enumerate(ops):
            if i != j and a.ret < b.call:
                solver.add(pos[i] < pos[j])
    return pos, eff


def _chain(
    solver: z3.Solver,
    pos: Sequence[z3.ArithRef],
    eff: Sequence[z3.BoolRef],
    states: Sequence[Any],
    transition: Callable[[int, Any, Any], z3.BoolRef],
    same: Callable[[Any, Any], z3.BoolRef],
) -> None:
    """At every position k, the operation there relates states[k] and states[k+1]."""
    n = len(pos)
    for k in range(n):
        for i in range(n):
            here = pos[i] == k
            solver.add(z3.Implies(z3.And(here, eff[i]), transition(i, states[k], states[k + 1])))
            solver.add(z3.Implies(z3.And(here, z3.Not(eff[i])), same(states[k], states[k + 1])))


def _decide(solver: z3.Solver) -> bool:
    verdict = solver.check()
    if verdict == z3.unknown:
        raise OracleError(f"z3 gave up: {solver.reason_unknown()}")
    return bool(verdict == z3.sat)


# ---------------------------------------------------------------------------- register


def register_linearizable(ops: Sequence[ClientOp]) -> bool:
    """Jepsen etcd register semantics (nil initial; read, write, cas)."""

    def fail_is_definite(op: ClientOp) -> bool:
        return not _timed_out(op.result)

    ops = _effective(ops, fail_is_definite=fail_is_definite)
    codes: dict[Hashable, int] = {None: 0}

    def code(value: Any) -> int:
        key = tuple(value) if isinstance(value, list) else value
        return codes.setdefault(key, len(codes))

    solver = z3.Solver()
    pos, eff = _skeleton(solver, ops)
    states = [z3.Int(f"s_{k}") for k in range(len(ops) + 1)]
    solver.add(states[0] == code(None))

    def transition(i: int, before: Any, after: Any) -> z3.BoolRef:
        op = ops[i]
        if op.f == "read":
            if _definite(op):
                return z3.And(before == code(op.result), after == before)
            return after == before
        if op.f == "write":
            return after == code(op.value)
        if op.f == "cas":
            expected, new = code(op.value[0]), code(op.value[1])
            if _definite(op):
                return z3.And(before == expected, after == new)
            return after == z3.If(before == expected, z3.IntVal(new), before)
        raise OracleError(f"unknown register operation {op.f!r}")

    _chain(solver, pos, eff, states, transition, lambda a, b: a == b)
    return _decide(solver)


# ---------------------------------------------------------------------------- key-value


def kv_linearizable(ops: Sequence[ClientOp]) -> bool:
    """Porcupine's kv store ("" initial; get, put, append), every key in one state."""
    ops = _effective(ops, fail_is_definite=lambda op: True)
    keys = sorted({str(op.key) for op in ops})
    solver = z3.Solver()
    pos, eff = _skeleton(solver, ops)
    states = [{key: z3.String(f"s_{k}_{key}") for key in keys} for k in range(len(ops) + 1)]
    for key in keys:
        solver.add(states[0][key] == z3.StringVal(""))

    def same(before: dict[str, Any], after: dict[str, Any]) -> z3.BoolRef:
        return z3.And([after[key] == before[key] for key in keys])

    def transition(i: int, before: dict[str, Any], after: dict[str, Any]) -> z3.BoolRef:
        op = ops[i]
        key = str(op.key)
        others = [after[k] == before[k] for k in keys if k != key]
        if op.f == "get":
            if _definite(op):
                return z3.And(before[key] == z3.StringVal(op.result), same(before, after))
            return same(before, after)
        if op.f == "put":
            return z3.And(after[key] == z3.StringVal(op.value), *others)
        if op.f == "append":
            grown = z3.Concat(before[key], z3.StringVal(op.value))
            return z3.And(after[key] == grown, *others)
        raise OracleError(f"unknown kv operation {op.f!r}")

    _chain(solver, pos, eff, states, transition, same)
    return _decide(solver)


# ---------------------------------------------------------------------------- lazy (DNS)

Step = Callable[[Any, Any], tuple[Any, Any]]  # (state, op) -> (state, result)


def lazy_linearizable(
    ops: Sequence[ClientOp],
    *,
    initial: Any,
    step: Step,
    matches: Callable[[ClientOp, Any], bool],
    fail_is_definite: Callable[[ClientOp], bool] = lambda op: True,
) -> bool:
    """Linearizability for a model given as a Python function, by lazy enumeration.

    ``step(state, op.value)`` runs the sequential specification; ``matches(op, result)``
    says whether the client's observation of ``op`` agrees with the model's ``result``.
    """
    ops = _effective(ops, fail_is_definite=fail_is_definite)
    n = len(ops)
    solver = z3.Solver()
    pos, eff = _skeleton(solver, ops)
    for _ in range(LAZY_ROUNDS_MAX):
        if not _decide(solver):
            return False
        model = solver.model()
        order = sorted(range(n), key=lambda i: model.eval(pos[i]).as_long())
        chosen = [i for i in order if _definite(ops[i]) or z3.is_true(model.eval(eff[i]))]
        state = initial
        failed_at: int | None = None
        for k, i in enumerate(chosen):
            state, result = step(state, ops[i].value)
            if _definite(ops[i]) and not matches(ops[i], result):
                failed_at = k
                break
        if failed_at is None:
            return True
        prefix = chosen[: failed_at + 1]
        inside = set(prefix)
        clause = [eff[i] for i in prefix]
        clause += [pos[a] < pos[b] for a, b in itertools.pairwise(prefix)]
        last = pos[prefix[-1]]
        clause += [z3.Implies(eff[j], pos[j] > last) for j in range(n) if j not in inside]
        solver.add(z3.Not(z3.And(clause)))
    raise OracleError("too many rounds")
