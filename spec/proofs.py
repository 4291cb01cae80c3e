"""z3 proofs of the two lemmas that VR's safety rests on, and why each hypothesis is needed.

The explorer checks the real code in small clusters; these proofs check the arguments the
protocol relies on, for every configuration up to a size, by asking z3 for a counterexample
and getting ``unsat``. Each proof is a function returning a ``ProofResult`` (``proved`` and a
readable ``detail``). A proof whose hypotheses are inconsistent would be vacuous, so every
proof comes with its refutations: the same query with one hypothesis dropped, or with the
rule under test mutated, must be ``sat``, and the model z3 returns is printed as a concrete
counterexample. This module imports neither vrref nor checker: it is the plain statement of
why the protocol is correct.

1. Quorum intersection (VRR §3, §4): any two sets of at least f+1 among 2f+1 replicas share
   a replica. Subsets are vectors of booleans and the cardinality constraints are z3
   pseudo-boolean ``AtLeast``. Refutation: sets of only f replicas can be disjoint.

2. The view-change lemma (VRR §4.2, step 3): if an op was prepared at f+1 replicas in the
   view that committed it, the log the new primary chooses from any f+1 DOVIEWCHANGE
   messages (largest v', ties broken by the largest op-number) holds that op. It is the
   inductive step of VR's safety argument: assuming every view between the commit view and
   the new one started with the op, the new one does too. Symbols: the op sits at position
   ``k`` of the log, with value ``x``, committed in view ``w``; the new view is ``v``; each
   replica i has a last normal view ``v'_i``, an op-number ``n_i`` and a log of at most
   ``log_length`` entries; ``plog(u, p)`` is the op at position p of the log of view u's
   primary. The axioms, each a guarantee the protocol gives:

   - A0 (setup): 0 <= w < v; 1 <= k <= log_length; x = plog(w, k). P (the replicas that
     acked the op in view w) and D (the senders of the DOVIEWCHANGE messages used) each hold
     at least f+1 replicas. For a sender, 0 <= v'_i < v and 0 <= n_i <= log_length.
   - A1 (one log per view): a replica whose last normal view is u holds a prefix of the log
     of u's primary: for every p <= n_i, log_i[p] = plog(v'_i, p). (Backups accept PREPAREs
     only in order and only from the primary of their view; the safe state transfer
     replaces a log only with one from the same view.)
   - A2 (an ack is durable): a replica that acked op k in view w has v' >= w (views never
     decrease and it was normal in w), and if v' = w then n >= k (within a view its log
     only grows).
   - A3 (induction hypothesis): every view u with w < u < v in which some replica was normal
     started with a log holding x at position k, and logs within a view only grow, so a
     sender with v'_i > w has n_i >= k and plog(v'_i, k) = x.
   - Rule: the chosen message c is in D and every other message in D has a smaller v', or
     the same v' and an op-number no larger.

   Claim: n_c >= k and log_c[k] = x. The refutations drop A1, A2 or A3, take only f
   messages, or apply the rule "largest op-number, ignoring v'" (which a replica that missed
   the last views with a long stale log would win): each has a counterexample, so the
   paper's rule and every axiom matter.

Run ``python -m spec.proofs`` for a report; tests/spec/test_proofs.py runs them all.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import z3

QUORUM_F_MAX = 5
VIEW_CHANGE_REPLICA_COUNTS = (3, 5)
VIEW_CHANGE_LOG_LENGTH_MAX = 4
MUTATIONS = (
    "select_by_op_number",
    "drop_one_log_per_view",
    "drop_ack_durable",
    "drop_induction_hypothesis",
    "too_few_messages",
)
"""Ways to weaken the view-change lemma, each of which must yield a counterexample."""


@dataclass(frozen=True, slots=True)
class ProofResult:
    name: str
    proved: bool
    detail: str

    def __str__(self) -> str:
        return f"{'proved' if self.proved else 'NOT PROVED'}: {self.name}: {self.detail}"


def quorum_intersection(f: int, quorum_size: int | None = None) -> ProofResult:
    """Any two sets of ``quorum_size`` (default f+1) among 2f+1 replicas intersect."""
    n = 2 * f + 1
    q = f + 1 if quorum_size is None else quorum_size
    name = f"any two quorums of {q} among {n} replicas intersect"
    a = [z3.Bool(f"a{i}") for i in range(n)]
    b = [z3.Bool(f"b{i}") for i in range(n)]
    solver = z3.Solver()
    solver.add(z3.AtLeast(*a, q), z3.AtLeast(*b, q))
    solver.add(*[z3.Not(z3.And(a[i], b[i])) for i in range(n)])
    outcome = solver.check()
    if outcome == z3.unsat:
        return ProofResult(name, True, "unsat: no two such quorums are disjoint")
    if outcome != z3.sat:
        return ProofResult(name, False, f"z3 answered {outcome}")
    model = solver.model()
    first = [i for i in range(n) if z3.is_true(model.eval(a[i], model_completion=True))]
    second = [i for i in range(n) if z3.is_true(model.eval(b[i], model_completion=True))]
    return ProofResult(name, False, f"counterexample: disjoint quorums {first} and {second}")


def _lemma_solver(replica_count: int, log_length: int, mutation: str | None) -> tuple[Any, Any]:
    """The axioms (minus any a mutation drops) and the rule; returns (solver, symbols)."""
    if mutation is not None and mutation not in MUTATIONS:
        raise ValueError(f"unknown mutation {mutation!r}; known: {MUTATIONS}")
    if replica_count < 1 or replica_count % 2 == 0:
        raise ValueError(f"replica_count must be odd (2f+1), not {replica_count}")
    if log_length < 1:
        raise ValueError(f"log_length must be at least 1, not {log_length}")
    n, f = replica_count, (replica_count - 1) // 2
    w, v, k, x = z3.Ints("w v k x")
    plog = z3.Function("plog", z3.IntSort(), z3.IntSort(), z3.IntSort())
    acked = [z3.Bool(f"acked{i}") for i in range(n)]
    sent = [z3.Bool(f"sent{i}") for i in range(n)]
    chosen = [z3.Bool(f"chosen{i}") for i in range(n)]
    last_normal = [z3.Int(f"last_normal{i}") for i in range(n)]
    op_number = [z3.Int(f"op_number{i}") for i in range(n)]
    log = [[z3.Int(f"log{i}_{p}") for p in range(1, log_length + 1)] for i in range(n)]

    def entry(i: int, position: Any) -> Any:
        """log_i[position] for a symbolic position in 1..log_length."""
        value = log[i][0]
        for p in range(2, log_length + 1):
            value = z3.If(position == p, log[i][p - 1], value)
        return value

    s = z3.Solver()
    # A0: setup.
    s.add(w >= 0, w < v, k >= 1, k <= log_length, x == plog(w, k))
    s.add(z3.AtLeast(*acked, f + 1))
    s.add(z3.AtLeast(*sent, f if mutation == "too_few_messages" else f + 1))
    for i in range(n):
        s.add(z3.Implies(sent[i], z3.And(last_normal[i] >= 0, last_normal[i] < v)))
        s.add(z3.Implies(sent[i], z3.And(op_number[i] >= 0, op_number[i] <= log_length)))
        # A1: one log per view.
        if mutation != "drop_one_log_per_view":
            for p in range(1, log_length + 1):
                s.add(
                    z3.Implies(
                        z3.And(sent[i], p <= op_number[i]),
                        log[i][p - 1] == plog(last_normal[i], p),
                    )
                )
        # A2: an ack is durable.
        if mutation != "drop_ack_durable":
            s.add(
                z3.Implies(
                    z3.And(acked[i], sent[i]),
                    z3.And(last_normal[i] >= w, z3.Implies(last_normal[i] == w, op_number[i] >= k)),
                )
            )
        # A3: induction hypothesis.
        if mutation != "drop_induction_hypothesis":
            s.add(
                z3.Implies(
                    z3.And(sent[i], last_normal[i] > w),
                    z3.And(op_number[i] >= k, plog(last_normal[i], k) == x),
                )
            )
    # The rule: exactly one chosen message, from D, beating every other message in D.
    s.add(z3.PbEq([(c, 1) for c in chosen], 1))
    for i in range(n):
        beats = []
        for j in range(n):
            if mutation == "select_by_op_number":
                beats.append(z3.Implies(sent[j], op_number[j] <= op_number[i]))
            else:
                beats.append(
                    z3.Implies(
                        sent[j],
                        z3.Or(
                            last_normal[j] < last_normal[i],
                            z3.And(last_normal[j] == last_normal[i], op_number[j] <= op_number[i]),
                        ),
                    )
                )
        s.add(z3.Implies(chosen[i], z3.And(sent[i], *beats)))
    loses_op = z3.Or(
        *[z3.And(chosen[i], z3.Or(op_number[i] < k, entry(i, k) != x)) for i in range(n)]
    )
    symbols = {
        "w": w,
        "v": v,
        "k": k,
        "x": x,
        "acked": acked,
        "sent": sent,
        "chosen": chosen,
        "last_normal": last_normal,
        "op_number": op_number,
        "log": log,
        "loses_op": loses_op,
    }
    return s, symbols


def _describe(model: Any, symbols: dict[str, Any]) -> str:
    def value(term: Any) -> str:
        return str(model.eval(term, model_completion=True))

    def true(term: Any) -> bool:
        return bool(z3.is_true(model.eval(term, model_completion=True)))

    parts = [
        f"op {value(symbols['x'])} at position {value(symbols['k'])} committed in view "
        f"{value(symbols['w'])}, new view {value(symbols['v'])}"
    ]
    for i in range(len(symbols["sent"])):
        roles = [
            name
            for name, key in (("acked", "acked"), ("sent DVC", "sent"), ("CHOSEN", "chosen"))
            if true(symbols[key][i])
        ]
        if not true(symbols["sent"][i]):
            parts.append(f"r{i} ({', '.join(roles) or 'silent'})")
            continue
        length = int(value(symbols["op_number"][i]))
        entries = [value(e) for e in symbols["log"][i][:length]]
        parts.append(
            f"r{i} ({', '.join(roles)}): v'={value(symbols['last_normal'][i])} "
            f"n={length} log={entries}"
        )
    return "; ".join(parts)


def _small_model(solver: Any, symbols: dict[str, Any]) -> str:
    """Describes a model of a satisfiable query, with small view numbers and ops when the
    query allows them (for readability only: the query's answer is already known)."""
    solver.push()
    solver.add(symbols["v"] <= 4, symbols["x"] >= 0, symbols["x"] <= 9)
    for row in symbols["log"]:
        solver.add(*[z3.And(entry >= 0, entry <= 9) for entry in row])
    small = solver.check() == z3.sat
    model = solver.model() if small else None
    solver.pop()
    if model is None:
        solver.check()
        model = solver.model()
    return _describe(model, symbols)


def view_change_lemma(
    replica_count: int, log_length: int, mutation: str | None = None
) -> ProofResult:
    """The chosen log holds every op committed in an earlier view (see the module essay)."""
    name = f"view-change lemma, {replica_count} replicas, logs of at most {log_length}" + (
        "" if mutation is None else f", mutated: {mutation}"
    )
    solver, symbols = _lemma_solver(replica_count, log_length, mutation)
    solver.add(symbols["loses_op"])
    outcome = solver.check()
    if outcome == z3.unsat:
        return ProofResult(name, True, "unsat: the chosen log always holds the committed op")
    if outcome != z3.sat:
        return ProofResult(name, False, f"z3 answered {outcome}")
    return ProofResult(name, False, "counterexample: " + _small_model(solver, symbols))


def view_change_axioms_consistent(replica_count: int, log_length: int) -> ProofResult:
    """The lemma's axioms have a model in which a sender missed the commit view (v' < w):
    the proof is not vacuous, and the case the rule must handle does arise."""
    name = f"view-change axioms are consistent, {replica_count} replicas, logs of {log_length}"
    solver, symbols = _lemma_solver(replica_count, log_length, None)
    solver.add(
        z3.Or(
            *[
                z3.And(sent, last_normal < symbols["w"])
                for sent, last_normal in zip(symbols["sent"], symbols["last_normal"], strict=True)
            ]
        )
    )
    outcome = solver.check()
    if outcome == z3.sat:
        return ProofResult(name, True, "sat: " + _small_model(solver, symbols))
    return ProofResult(name, False, f"z3 answered {outcome}: the axioms are contradictory")


def proofs() -> list[ProofResult]:
    """Every claim; each must come out proved."""
    results = [quorum_intersection(f) for f in range(1, QUORUM_F_MAX + 1)]
    for n in VIEW_CHANGE_REPLICA_COUNTS:
        for length in range(1, VIEW_CHANGE_LOG_LENGTH_MAX + 1):
            results.append(view_change_lemma(n, length))
            results.append(view_change_axioms_consistent(n, length))
    return results


def refutations() -> list[ProofResult]:
    """Every weakened claim; each must come out NOT proved, with a counterexample."""
    results = [quorum_intersection(f, quorum_size=f) for f in range(1, QUORUM_F_MAX + 1)]
    for n in VIEW_CHANGE_REPLICA_COUNTS:
        for mutation in MUTATIONS:
            results.append(view_change_lemma(n, 2, mutation))
    return results


def main() -> int:
    ok = True
    for result in proofs():
        ok = ok and result.proved
        print(result)
    for result in refutations():
        ok = ok and not result.proved
        print(
            ("refuted as expected" if not result.proved else "UNEXPECTEDLY PROVED") + f": {result}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
