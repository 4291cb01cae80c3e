"""The WGL search and the z3 oracle must agree on random small histories.

Histories are generated the way real ones arise: a random sequential execution of the model
gives every operation a linearization point and its true output; invocations and
completions are placed around those points; some operations become indeterminate (``info``,
no completion, a timed-out read) and may or may not have taken effect; then, sometimes, the
history is perturbed (an output changed, an interval moved away from its point) so that
about half of the histories are not linearizable. The search (partitioned and not) and the
oracle must return the same verdict on every one.

The generator draws through a small ``Draw`` interface so that hypothesis can shrink a
failing history, while a seeded ``random.Random`` drives the test that the generator
really produces both verdicts (a cross-check that only ever sees one answer checks little).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checker.lin import models, smt_oracle
from checker.lin import wgl as lin
from checker.lin.readers import ClientOp, Keyword
from spec import dns_model


class Draw(Protocol):
    def __call__(self, lo: int, hi: int) -> int: ...


def _random_draw(rng: random.Random) -> Draw:
    return lambda lo, hi: rng.randint(lo, hi)


def _hypothesis_draw(data: st.DataObject) -> Draw:
    return lambda lo, hi: data.draw(st.integers(lo, hi))


# ---------------------------------------------------------------------------- generation

Spec = tuple[str, Any, Any]  # (f, invocation value, key)
Run = Callable[[Any, Spec], tuple[Any, Any, bool]]  # (state, spec) -> (state, output, happened)


def _register_spec(draw: Draw) -> Spec:
    kind = draw(0, 3)
    if kind == 0:
        return ("read", None, None)
    # mostly writes of few values, so that a write often writes the current value: it must
    # still be tried after later writes (a classic pitfall of "changes nothing" shortcuts)
    if kind <= 2:
        return ("write", draw(0, 1), None)
    return ("cas", (draw(0, 2), draw(0, 1)), None)


def _register_run(state: Any, spec: Spec) -> tuple[Any, Any, bool]:
    f, value, _ = spec
    if f == "read":
        return state, state, True
    if f == "write":
        return value, None, True
    if state == value[0]:
        return value[1], None, True
    return state, None, False  # a cas whose compare fails is a definite failure


def _kv_spec(draw: Draw) -> Spec:
    key = "ab"[draw(0, 1)]
    kind = draw(0, 2)
    if kind == 0:
        return ("get", None, key)
    text = ("x", "y", "xy")[draw(0, 2)] if kind == 2 else ("x", "y")[draw(0, 1)]
    return ("put" if kind == 1 else "append", text, key)


def _kv_run(state: Any, spec: Spec) -> tuple[Any, Any, bool]:
    f, value, key = spec
    current = dict(state)
    if f == "get":
        return state, current.get(key, ""), True
    current[key] = value if f == "put" else current.get(key, "") + value
    return tuple(sorted(current.items())), None, True


def generate(
    draw: Draw,
    *,
    spec: Callable[[Draw], Spec],
    run: Run,
    initial: Any,
    indeterminate: bool,
    perturb_output: Callable[[Draw, Spec, Any], Any],
    count_max: int = 8,
) -> list[ClientOp]:
    count = draw(2, count_max)
    specs = [spec(draw) for _ in range(count)]
    # the true sequential order, by linearization point
    order = list(range(count))
    for i in range(count - 1, 0, -1):
        j = draw(0, i)
        order[i], order[j] = order[j], order[i]
    point = {op: 10 * k + 5 for k, op in enumerate(order)}
    # which indeterminate operations took effect at all
    kind = {i: "ok" for i in range(count)}
    if indeterminate:
        for i in range(count):
            roll = draw(0, 5)
            if roll == 0:
                kind[i] = "info"
            elif roll == 1:
                kind[i] = "none"
    took_effect = {i: kind[i] == "ok" or draw(0, 1) == 1 for i in range(count)}
    state = initial
    output: dict[int, Any] = {}
    for i in order:
        if not took_effect[i]:
            continue
        after, out, happened = run(state, specs[i])
        if not happened:
            took_effect[i] = False
            if kind[i] == "ok":
                kind[i] = "fail"
            continue
        state = after
        output[i] = out
    # intervals around the points
    # half of the histories are highly concurrent: intervals span several points
    width = 16 if draw(0, 1) else 45
    call = {i: point[i] - draw(1, width) for i in range(count)}
    ret = {i: point[i] + draw(1, width) for i in range(count)}
    perturb = draw(0, 3)
    readers = [i for i in range(count) if kind[i] == "ok" and output.get(i) is not None]
    readers += [i for i in range(count) if kind[i] == "ok" and specs[i][0] in ("read", "get")]
    if perturb in (1, 3) and readers:  # an output changed
        victim = readers[draw(0, len(readers) - 1)]
        output[victim] = perturb_output(draw, specs[victim], output.get(victim))
    if perturb >= 2:  # an interval moved away from its point
        victim = draw(0, count - 1)
        shift = draw(15, 40) * (1 if draw(0, 1) else -1)
        call[victim] += shift
        ret[victim] += shift
    # timed-out reads: a fail that is not definite
    timed_out = {
        i
        for i in range(count)
        if indeterminate and specs[i][0] in ("read",) and kind[i] == "info" and draw(0, 1)
    }
    events: list[tuple[int, int, int, bool]] = []
    for i in range(count):
        events.append((call[i], draw(0, 9), i, True))
        if kind[i] != "none":
            events.append((ret[i], draw(0, 9), i, False))
    events.sort()
    position: dict[tuple[int, bool], int] = {}
    for p, (_, _, i, is_call) in enumerate(events):
        position[(i, is_call)] = p
    ops: list[ClientOp] = []
    for i in range(count):
        f, value, key = specs[i]
        ret_position = position.get((i, False))
        if ret_position is not None and ret_position < position[(i, True)]:
            # a perturbed interval crossed itself: keep it well-formed
            ret_position, call_position = position[(i, True)], ret_position
        else:
            call_position = position[(i, True)]
        outcome: Any = None if kind[i] == "none" else kind[i]
        result = output.get(i) if kind[i] == "ok" else None
        if i in timed_out:
            outcome, result = "fail", Keyword("timed-out")
        elif kind[i] == "fail":
            result = value
        ops.append(
            ClientOp(
                index=i,
                process=i,
                f=f,
                value=value,
                outcome=outcome,
                result=result,
                call=call_position,
                ret=ret_position,
                key=key,
                path="generated",
            )
        )
    return ops


def _other(draw: Draw, values: Sequence[Any], out: Any) -> Any:
    choices = [v for v in values if v != out]
    return choices[draw(0, len(choices) - 1)]


def _perturb_register(draw: Draw, spec: Spec, out: Any) -> Any:
    return _other(draw, (None, 0, 1, 2), out) if spec[0] == "read" else out


def _perturb_kv(draw: Draw, spec: Spec, out: Any) -> Any:
    return _other(draw, ("", "x", "y", "xy", "yx"), out) if spec[0] == "get" else out


# DNS: a small zone with a delegation, a wildcard, CNAMEs and empty non-terminals in reach.
ZONE = (
    ("example.com.", "SOA", 3600, "ns1.example.com. admin.example.com. 1 3600 600 86400 300"),
    ("example.com.", "NS", 3600, "ns1.example.com."),
    ("ns1.example.com.", "A", 3600, "192.0.2.1"),
    ("a.example.com.", "A", 300, "192.0.2.10"),
)
NAMES = (
    "a.example.com.",
    "b.example.com.",
    "x.b.example.com.",
    "c.example.com.",
    "ns.c.example.com.",
    "ns1.example.com.",
)
WILDCARD = "*.example.com."
QUERY_NAMES = (*NAMES, "example.com.", "y.x.b.example.com.", "q.example.com.")


def _dns_name(draw: Draw, wildcard: bool) -> str:
    if wildcard and draw(0, 5) == 0:
        return WILDCARD
    return NAMES[draw(0, len(NAMES) - 1)]


def _dns_entry(draw: Draw, wildcard: bool) -> list[Any]:
    name = _dns_name(draw, wildcard)
    kind = draw(0, 6)
    if kind <= 1:
        return ["add", name, "A", 300, f"192.0.2.{draw(1, 2)}"]
    if kind == 2:
        return ["add", name, "CNAME", 300, NAMES[draw(0, len(NAMES) - 1)]]
    if kind == 3:
        target = ("ns1.example.com.", "ns.c.example.com.")[draw(0, 1)]
        return ["add", name, "NS", 300, target]
    if kind == 4:
        return ["delete_name", name]
    if kind == 5:
        return ["delete_rrset", name, ("A", "CNAME", "NS")[draw(0, 2)]]
    return ["delete_rr", name, "A", f"192.0.2.{draw(1, 2)}"]


def _dns_prereq(draw: Draw, wildcard: bool) -> list[Any]:
    name = _dns_name(draw, wildcard)
    kind = draw(0, 3)
    if kind == 0:
        return ["yxdomain", name]
    if kind == 1:
        return ["nxdomain", name]
    if kind == 2:
        return ["nxrrset", name, "A"]
    return ["yxrrset_exact", name, "A", sorted({f"192.0.2.{draw(1, 2)}"})]


def _dns_spec(draw: Draw) -> Spec:
    # A third of the specs may touch the wildcard or ask for the SOA: both join much of the
    # history, so the other two thirds exercise the finer footprints.
    wide = draw(0, 2) == 0
    if draw(0, 1):
        name = QUERY_NAMES[draw(0, len(QUERY_NAMES) - 1)]
        rdtype = ("A", "A", "CNAME", "NS", "ANY", "TXT", "SOA")[draw(0, 6 if wide else 5)]
        return ("read", dns_model.dumps({"t": "query", "name": name, "type": rdtype}), None)
    prereq = [_dns_prereq(draw, wide) for _ in range(draw(0, 1))]
    update = [_dns_entry(draw, wide) for _ in range(draw(1, 2))]
    op = {"t": "update", "zone": "example.com.", "prereq": prereq, "update": update}
    return ("update", dns_model.dumps(op), None)


def _dns_run(state: Any, spec: Spec) -> tuple[Any, Any, bool]:
    after, result = dns_model.step(state, spec[1])
    return after, result, True


def _perturb_dns(draw: Draw, spec: Spec, out: Any) -> Any:
    _, stale = dns_model.step(dns_model.initial_state(ZONE), spec[1])
    if stale != out and draw(0, 1):
        return stale
    result = json.loads(out)
    result["rcode"] = "SERVFAIL" if result["rcode"] != "SERVFAIL" else "NOERROR"
    return dns_model.dumps(result)


GENERATORS: dict[str, dict[str, Any]] = {
    "dns": {
        "spec": _dns_spec,
        "run": _dns_run,
        "initial": dns_model.initial_state(ZONE),
        "perturb_output": _perturb_dns,
        "count_max": 7,  # the lazy oracle enumerates orders: keep it quick
    },
    "cas-register": {
        "spec": _register_spec,
        "run": _register_run,
        "initial": None,
        "perturb_output": _perturb_register,
    },
    "kv": {"spec": _kv_spec, "run": _kv_run, "initial": (), "perturb_output": _perturb_kv},
}


def oracle(model: str, ops: Sequence[ClientOp]) -> bool:
    if model == "dns":
        projection = models.Dns(ZONE)

        def matches(op: ClientOp, result: Any) -> bool:
            decoded = dns_model.decode(op.value)
            observed = projection._project(decoded, json.loads(op.result))
            return bool(projection._project(decoded, json.loads(result)) == observed)

        return smt_oracle.lazy_linearizable(
            ops, initial=dns_model.initial_state(ZONE), step=dns_model.step, matches=matches
        )
    if model == "cas-register":
        return smt_oracle.register_linearizable(ops)
    assert model == "kv"
    return smt_oracle.kv_linearizable(ops)


def search(model_name: str, ops: Sequence[ClientOp], *, partitioned: bool = True) -> bool:
    model = models.model_for(model_name, {"initial": [list(r) for r in ZONE]})
    result = lin.check(
        model, models.operations(model, ops), timeout_s=None, partitioned=partitioned, witness=True
    )
    assert not isinstance(result, lin.Unknown)
    return isinstance(result, lin.Ok)


def _agree(model: str, ops: Sequence[ClientOp]) -> None:
    expected = oracle(model, ops)
    assert search(model, ops) == expected, (expected, ops)
    assert search(model, ops, partitioned=False) == expected, (expected, ops)


# ---------------------------------------------------------------------------- the tests

SETTINGS = settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)


@pytest.mark.parametrize("indeterminate", [False, True])
@pytest.mark.parametrize("model", ["cas-register", "kv", "dns"])
@SETTINGS
@given(data=st.data())
def test_search_agrees_with_oracle(model: str, indeterminate: bool, data: st.DataObject) -> None:
    ops = generate(_hypothesis_draw(data), indeterminate=indeterminate, **GENERATORS[model])
    _agree(model, ops)


@pytest.mark.parametrize("model", ["cas-register", "kv", "dns"])
def test_generator_makes_both_verdicts(model: str) -> None:
    rng = random.Random(7)
    verdicts = [
        oracle(model, generate(_random_draw(rng), indeterminate=True, **GENERATORS[model]))
        for _ in range(100)
    ]
    assert 0.2 < sum(verdicts) / len(verdicts) < 0.9


def test_oracle_refutes_a_stale_read() -> None:
    def op(i: int, f: str, value: Any, result: Any, call: int, ret: int) -> ClientOp:
        return ClientOp(
            index=i, process=i, f=f, value=value, outcome="ok", result=result, call=call, ret=ret
        )

    stale = [op(0, "write", 1, None, 0, 1), op(1, "read", None, None, 2, 3)]
    fresh = [op(0, "write", 1, None, 0, 1), op(1, "read", None, 1, 2, 3)]
    assert not smt_oracle.register_linearizable(stale)
    assert smt_oracle.register_linearizable(fresh)
    assert not search("cas-register", stale)
    assert search("cas-register", fresh)
