"""The WGL search, its partitioning and limits, the models, and ``vrref check``.

Histories are written as Jepsen EDN (one map a line) or built from a sequential run of the
DNS model, so that each test states a situation a reader can check by hand: the verdict,
and for violations what the explanation points at.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from checker.lin import models
from checker.lin import wgl as lin
from checker.lin.readers import ClientOp, read_jepsen_edn
from checker.lin.wgl import Footprint, Operation
from spec import dns_model
from vrref import cli


def edn_ops(*lines: str) -> list[ClientOp]:
    text = "\n".join(
        "{:process %s, :type :%s, :f :%s, :value %s}" % tuple(line.split(" ", 3))  # noqa: UP031
        for line in lines
    )
    return list(read_jepsen_edn("test.edn", text).ops)


def check(model: models.CheckedModel, ops: Sequence[ClientOp], **kwargs: Any) -> lin.Result:
    kwargs.setdefault("timeout_s", 10.0)
    return lin.check(model, models.operations(model, ops), **kwargs)


REGISTER = models.CasRegister()
KV = models.KeyValue()


# ---------------------------------------------------------------------------- register


def test_read_after_write() -> None:
    ok = edn_ops("0 invoke write 1", "0 ok write 1", "1 invoke read nil", "1 ok read 1")
    stale = edn_ops("0 invoke write 1", "0 ok write 1", "1 invoke read nil", "1 ok read nil")
    assert isinstance(check(REGISTER, ok), lin.Ok)
    result = check(REGISTER, stale)
    assert isinstance(result, lin.Illegal)
    assert result.blocking is not None and result.blocking.input == ("read",)
    assert [op.input for op in result.longest[0]] == [("write", 1)]
    assert result.state_after == "1"
    assert [(c.op.input, c.why) for c in result.candidates] == [(("read",), "wrong output")]


def test_concurrent_read_may_see_either() -> None:
    for seen in ("nil", "1"):
        ops = edn_ops("0 invoke write 1", "1 invoke read nil", f"1 ok read {seen}", "0 ok write 1")
        assert isinstance(check(REGISTER, ops), lin.Ok)
    ops = edn_ops("0 invoke write 1", "1 invoke read nil", "1 ok read 2", "0 ok write 1")
    assert isinstance(check(REGISTER, ops), lin.Illegal)


def test_indeterminate_write_takes_effect_later_or_never() -> None:
    base = ("0 invoke write 1", "0 info write 1", "1 invoke read nil")
    assert isinstance(check(REGISTER, edn_ops(*base, "1 ok read 1")), lin.Ok)
    assert isinstance(check(REGISTER, edn_ops(*base, "1 ok read nil")), lin.Ok)
    # once seen, it cannot un-happen
    flip = edn_ops(*base, "1 ok read 1", "2 invoke read nil", "2 ok read nil")
    assert isinstance(check(REGISTER, flip), lin.Illegal)
    # an invocation without a completion is indeterminate too
    pending = edn_ops("0 invoke write 1", "1 invoke read nil", "1 ok read 1")
    assert isinstance(check(REGISTER, pending), lin.Ok)


def test_a_write_of_the_current_value_may_still_be_needed_later() -> None:
    # write 1 changes nothing right after the first write 1, but must follow write 2
    ops = edn_ops(
        "0 invoke write 1",
        "0 ok write 1",
        "1 invoke write 1",
        "2 invoke write 2",
        "2 ok write 2",
        "1 ok write 1",
        "3 invoke read nil",
        "3 ok read 1",
    )
    assert isinstance(check(REGISTER, ops), lin.Ok)


def test_failed_cas_did_not_happen_but_timed_out_read_is_unknown() -> None:
    ops = edn_ops(
        "0 invoke write 1",
        "0 ok write 1",
        "1 invoke cas [1 2]",
        "1 fail cas [1 2]",
        "2 invoke read nil",
        "2 fail read :timed-out",
        "3 invoke read nil",
        "3 ok read 2",
    )
    assert len(models.operations(REGISTER, ops)) == 2  # the failed cas and timed-out read
    assert isinstance(check(REGISTER, ops), lin.Illegal)
    info_cas = [op if op.index != 1 else _with(op, outcome="info") for op in ops]
    assert isinstance(check(REGISTER, info_cas), lin.Ok)


def _with(op: ClientOp, **changes: Any) -> ClientOp:
    fields = {name: getattr(op, name) for name in op.__dataclass_fields__}
    return ClientOp(**{**fields, **changes})


def test_cas_semantics() -> None:
    ops = edn_ops("0 invoke cas [nil 3]", "0 ok cas [nil 3]", "1 invoke read nil", "1 ok read 3")
    assert isinstance(check(REGISTER, ops), lin.Ok)
    ops = edn_ops("0 invoke cas [2 3]", "0 ok cas [2 3]")
    assert isinstance(check(REGISTER, ops), lin.Illegal)


def test_bad_operations_name_the_line() -> None:
    with pytest.raises(models.ModelError, match=r"test\.edn:1: cas needs"):
        models.operations(REGISTER, edn_ops("0 invoke cas 3", "0 ok cas 3"))
    with pytest.raises(models.ModelError, match="no operation"):
        models.operations(REGISTER, edn_ops("0 invoke get nil", "0 ok get 3"))


# ---------------------------------------------------------------------------- partitioning


def _op(i: int) -> Operation:
    return Operation(id=i, process=i, input=None, output=None, call=2 * i, ret=2 * i + 1)


def _fp(reads: set[str], writes: set[str]) -> Footprint:
    return Footprint(frozenset(reads), frozenset(writes))


def test_union_find_over_written_keys() -> None:
    ops = [_op(i) for i in range(6)]
    footprints: list[Footprint | None] = [
        _fp({"a"}, {"a"}),
        _fp({"b"}, {"b"}),
        _fp({"a", "b"}, set()),  # reads both: joins a and b
        _fp({"c"}, {"c"}),
        _fp({"k"}, set()),  # reads a key nobody writes: a constant, alone
        _fp({"k"}, set()),
    ]
    groups = [[op.id for op in g] for g in lin.partition(ops, footprints)]
    assert sorted(groups) == [[0, 1, 2], [3], [4], [5]]
    footprints[5] = None  # unsure: joins everything
    assert [[op.id for op in g] for g in lin.partition(ops, footprints)] == [list(range(6))]


def _hard_and_bad() -> list[ClientOp]:
    """Key "hard": 12 concurrent appends and a get no order can produce (a huge refutation);
    key "bad": 30 cheap sequential operations, the last of which is impossible."""
    lines = [f'{p} invoke append ["hard" "{p}"]' for p in range(12)]
    lines += [f'{p} ok append ["hard" "{p}"]' for p in range(12)]
    lines += ['99 invoke get ["hard" nil]', '99 ok get ["hard" "nope"]']
    for k in range(29):
        lines += [f'50 invoke put ["bad" "v{k}"]', f'50 ok put ["bad" "v{k}"]']
    lines += ['51 invoke get ["bad" nil]', '51 ok get ["bad" "v3"]']
    return edn_ops(*lines)


def test_round_robin_finds_the_cheap_violation_in_a_bigger_partition() -> None:
    result = check(KV, _hard_and_bad())
    assert isinstance(result, lin.Illegal)
    assert {op.input[1] for op in result.partition} == {"bad"}
    assert result.stats.steps < 100_000


def test_timeout_gives_unknown_promptly() -> None:
    hard = [op for op in _hard_and_bad() if op.key is None and op.value[0] == "hard"]
    started = time.monotonic()
    result = check(KV, hard, timeout_s=0.3)
    assert isinstance(result, lin.Unknown) and result.reason == "timeout"
    assert time.monotonic() - started < 3.0


def test_memo_cap_gives_unknown() -> None:
    hard = [op for op in _hard_and_bad() if op.value[0] == "hard"]
    result = check(KV, hard, memo_entries_max=5_000)
    assert isinstance(result, lin.Unknown) and result.reason == "memory"
    assert result.stats.memo_entries_max <= 5_001


def test_witness_is_merged_across_partitions_in_real_time_order() -> None:
    ops = edn_ops(
        '0 invoke put ["a" "x"]',
        '1 invoke put ["b" "y"]',
        '1 ok put ["b" "y"]',
        '0 ok put ["a" "x"]',
        '2 invoke get ["b" nil]',
        '2 ok get ["b" "y"]',
        '3 invoke append ["a" "z"]',
        '3 ok append ["a" "z"]',
        '4 invoke get ["a" nil]',
        '4 ok get ["a" "xz"]',
    )
    result = check(KV, ops, witness=True)
    assert isinstance(result, lin.Ok) and result.linearization is not None
    assert result.partitions is not None and len(result.partitions) == 2
    order = [op.id for op in result.linearization]
    assert sorted(order) == list(range(5))
    states = lin.replay(KV, result.linearization, states=True)
    assert states[-1] == (("a", "xz"), ("b", "y"))


class _SplitRegister(models.CasRegister):
    """A wrong model: it claims that every operation is independent of every other."""

    def footprints(self, ops: Sequence[Operation]) -> Sequence[Footprint | None]:
        return [_fp({str(op.id)}, {str(op.id)}) for op in ops]


def test_wrong_footprints_never_yield_linearizable() -> None:
    # Each operation alone is fine; together they are not (the write is not visible).
    ops = edn_ops("0 invoke write 1", "0 ok write 1", "1 invoke read nil", "1 ok read nil")
    with pytest.raises(lin.PartitioningError):
        check(_SplitRegister(), ops, witness=True)


def test_empty_history() -> None:
    assert isinstance(lin.check(KV, [], witness=True), lin.Ok)


# ---------------------------------------------------------------------------- DNS

ZONE: list[tuple[str, str, int, str]] = [
    ("example.com.", "SOA", 3600, "ns1.example.com. admin.example.com. 1 3600 600 86400 300"),
    ("example.com.", "NS", 3600, "ns1.example.com."),
    ("ns1.example.com.", "A", 3600, "192.0.2.1"),
    ("a.example.com.", "A", 300, "192.0.2.10"),
]


def q(name: str, rdtype: str = "A") -> str:
    return dns_model.dumps({"t": "query", "name": name, "type": rdtype})


def u(*update: list[Any], prereq: Sequence[list[Any]] = ()) -> str:
    return dns_model.dumps(
        {"t": "update", "zone": "example.com.", "prereq": list(prereq), "update": list(update)}
    )


def sequential(
    ops: Sequence[str], zone: Sequence[tuple[str, str, int, str]] = ZONE
) -> list[ClientOp]:
    """A linearizable history: the operations one after another, with the model's results."""
    state = dns_model.initial_state(zone)
    out = []
    for i, op in enumerate(ops):
        state, result = dns_model.step(state, op)
        f = "read" if '"t":"query"' in op else "update"
        out.append(
            ClientOp(
                index=i,
                process=i,
                f=f,
                value=op,
                outcome="ok",
                result=result,
                call=2 * i,
                ret=2 * i + 1,
                mode="linearizable" if f == "read" else None,
            )
        )
    return out


def dns_check(ops: Sequence[ClientOp], **kwargs: Any) -> lin.Result:
    kwargs.setdefault("witness", True)
    return check(models.Dns(ZONE), ops, **kwargs)


SCENARIOS = {
    # an empty non-terminal answers NODATA once a child exists
    "ent": [u(["add", "x.b.example.com.", "A", 60, "192.0.2.5"]), q("b.example.com.")],
    # a delegation below the apex turns answers into referrals, with glue
    "delegation": [
        u(["add", "b.example.com.", "NS", 60, "ns.b.example.com."]),
        u(["add", "ns.b.example.com.", "A", 60, "192.0.2.53"]),
        q("x.b.example.com."),
    ],
    # a CNAME's answer follows its target
    "cname": [
        u(["add", "c.example.com.", "CNAME", 60, "a.example.com."]),
        u(["delete_rrset", "a.example.com.", "A"], ["add", "a.example.com.", "A", 60, "192.0.2.9"]),
        q("c.example.com."),
    ],
    # a wildcard answers for names that do not exist, until one does
    "wildcard": [
        u(["add", "*.example.com.", "A", 60, "192.0.2.7"]),
        q("nothing.example.com."),
        u(["add", "y.nothing.example.com.", "TXT", 60, '"t"']),
        q("nothing.example.com."),
        q("other.example.com."),
    ],
    # prerequisites are compare-and-set
    "prereq": [
        u(["add", "d.example.com.", "A", 60, "192.0.2.2"], prereq=[["nxdomain", "d.example.com."]]),
        u(["add", "d.example.com.", "A", 60, "192.0.2.3"], prereq=[["nxdomain", "d.example.com."]]),
        q("d.example.com."),
    ],
    # a prerequisite reads a name the update does not write
    "prereq-elsewhere": [
        u(["add", "d.example.com.", "A", 60, "192.0.2.2"]),
        u(["add", "e.example.com.", "A", 60, "192.0.2.3"], prereq=[["nxdomain", "d.example.com."]]),
        q("d.example.com."),
    ],
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_dns_scenarios_are_linearizable_and_stale_reads_are_not(name: str) -> None:
    ops = sequential(SCENARIOS[name])
    result = dns_check(ops)
    assert isinstance(result, lin.Ok), name
    assert result.stats.partitions >= 1
    # the last read, answered from the initial zone instead, must be refuted
    last = ops[-1]
    _, stale = dns_model.step(dns_model.initial_state(ZONE), last.value)
    assert stale != last.result
    assert isinstance(dns_check([*ops[:-1], _with(last, result=stale)]), lin.Illegal), name


def test_dns_delete_of_a_missing_name_may_come_after_an_add() -> None:
    delete = u(["delete_name", "p.example.com."])
    add = u(["add", "p.example.com.", "A", 60, "192.0.2.1"])
    ops = sequential([delete, add, delete, q("p.example.com.")])
    # the second delete overlaps the add: [2, 7] around [4, 5]
    ops[2] = _with(ops[2], call=3, ret=6)
    ops[1] = _with(ops[1], call=4, ret=5)
    ops[3] = _with(ops[3], call=7, ret=8)
    assert isinstance(dns_check(ops), lin.Ok)


def test_dns_partitions_split_independent_names() -> None:
    ops = sequential(
        [
            u(["add", "p.example.com.", "A", 60, "192.0.2.1"]),
            u(["add", "r.example.com.", "A", 60, "192.0.2.2"]),
            q("p.example.com."),
            q("r.example.com."),
            q("a.example.com."),
        ]
    )
    result = dns_check(ops)
    assert isinstance(result, lin.Ok)
    assert result.stats.partitions == 3


def test_dns_soa_query_joins_every_update_and_compares_the_serial() -> None:
    ops = sequential(
        [
            u(["add", "p.example.com.", "A", 60, "192.0.2.1"]),
            u(["add", "r.example.com.", "A", 60, "192.0.2.2"]),
            q("example.com.", "SOA"),
        ]
    )
    result = dns_check(ops)
    assert isinstance(result, lin.Ok) and result.stats.partitions == 1
    _, old = dns_model.step(dns_model.initial_state(ZONE), ops[-1].value)
    assert isinstance(dns_check([*ops[:-1], _with(ops[-1], result=old)]), lin.Illegal)


def test_dns_projection_ignores_update_serials_but_not_rcodes() -> None:
    ops = sequential([u(["add", "p.example.com.", "A", 60, "192.0.2.1"]), q("p.example.com.")])
    other_serial = json.dumps({"rcode": "NOERROR", "serial": 77})
    assert isinstance(dns_check([_with(ops[0], result=other_serial), ops[1]]), lin.Ok)
    refused = json.dumps({"rcode": "YXDOMAIN", "serial": 1})
    assert isinstance(dns_check([_with(ops[0], result=refused), ops[1]]), lin.Illegal)


def test_dns_local_reads_are_not_judged_and_failures_did_not_happen() -> None:
    ops = sequential([u(["add", "p.example.com.", "A", 60, "192.0.2.1"]), q("p.example.com.")])
    _, stale = dns_model.step(dns_model.initial_state(ZONE), ops[1].value)
    model = models.Dns(ZONE)
    local = [ops[0], _with(ops[1], result=stale, mode="local")]
    assert isinstance(check(model, local), lin.Ok)
    assert model.dropped_local == 1
    failed = [_with(ops[0], outcome="fail", result=None), _with(ops[1], result=stale)]
    assert isinstance(dns_check(failed), lin.Ok)
    assert isinstance(dns_check([failed[0], ops[1]]), lin.Illegal)
    unknown = [_with(ops[0], outcome="info", result=None), ops[1]]
    assert isinstance(dns_check(unknown), lin.Ok)
    assert isinstance(dns_check([unknown[0], _with(ops[1], result=stale)]), lin.Ok)


def test_dns_footprints_name_their_reasons() -> None:
    model = models.Dns([*ZONE, ("*.w.example.com.", "A", 60, "192.0.2.8")])
    ops = models.operations(
        model,
        sequential(
            [
                q("x.y.w.example.com."),
                u(["add", "c.example.com.", "CNAME", 60, "t.example.com."]),
                q("c.example.com."),
                q("example.com.", "NS"),
            ]
        ),
    )
    wild, update, chased, apex = model.footprints(ops)
    assert wild is not None and ("name", "*.w.example.com.") in wild.reads
    assert ("ns", "y.w.example.com.") in wild.reads
    assert update is not None and ("name", "c.example.com.") in update.writes
    assert chased is not None and ("name", "t.example.com.") in chased.reads
    assert apex is not None and models.SOA_SERIAL not in apex.reads


# ---------------------------------------------------------------------------- the CLI


def _vrref_file(tmp_path: Path, ops: Sequence[ClientOp], zone: bool = True) -> str:
    header: dict[str, Any] = {"schema": "vrref-history", "version": 1, "model": "dns"}
    if zone:
        header["initial"] = {"records": [list(r) for r in ZONE]}
    lines = [json.dumps(header)]
    events = []
    for op in ops:
        events.append(
            (op.call, {"type": "invoke", "process": op.process, "f": op.f, "value": op.value})
        )
        if op.ret is not None:
            done = {"type": op.outcome, "process": op.process, "f": op.f, "value": op.result}
            if op.mode:
                done["mode"] = op.mode
            events.append((op.ret, done))
    lines += [json.dumps(e) for _, e in sorted(events, key=lambda x: x[0])]
    path = tmp_path / "h.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_cli_check_dns_history(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ops = sequential(SCENARIOS["cname"])
    path = _vrref_file(tmp_path, ops)
    assert cli.main(["check", path]) == 0
    out = capsys.readouterr().out
    assert "verdict: LINEARIZABLE" in out and "serial" in out
    _, stale = dns_model.step(dns_model.initial_state(ZONE), ops[-1].value)
    bad = _vrref_file(tmp_path, [*ops[:-1], _with(ops[-1], result=stale)])
    html = tmp_path / "v.html"
    assert cli.main(["check", bad, "--json", "--html", str(html)]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["verdict"] == "not linearizable" and data["blocking"]["line"] == 6
    assert html.read_text().startswith("<!DOCTYPE html>")


def test_cli_zone_option_and_missing_zone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _vrref_file(tmp_path, sequential(SCENARIOS["ent"]), zone=False)
    assert cli.main(["check", path]) == 2
    assert "initial zone" in capsys.readouterr().err
    zone = tmp_path / "zone"
    zone.write_text(
        "$ORIGIN example.com.\n$TTL 3600\n"
        "@ SOA ns1 admin 1 3600 600 86400 300\n@ NS ns1\nns1 A 192.0.2.1\na 300 A 192.0.2.10\n"
    )
    assert cli.main(["check", path, "--zone", str(zone)]) == 0


def test_cli_bad_input_and_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.edn"
    bad.write_text("{:process 0 :type :invoke :f :read :value nil}\n{:process 0 :type :ok")
    assert cli.main(["check", str(bad)]) == 2
    assert f"{bad}:2:" in capsys.readouterr().err
    assert cli.main(["check", str(bad), "--model", "nope"]) == 2
    err = capsys.readouterr().err
    assert "usage:" in err and "invalid choice" in err
    assert cli.main(["check"]) == 2
    assert cli.main(["check", str(bad), "--timeout", "0"]) == 2
    unknown_model = tmp_path / "m.edn"
    unknown_model.write_text("{:process 0 :type :invoke :f :frob :value nil}\n")
    assert cli.main(["check", str(unknown_model)]) == 2
    assert "--model" in capsys.readouterr().err


def test_cli_unknown_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = [
        f'{{:process {p}, :type :invoke, :f :append, :key "k", :value "{p}"}}' for p in range(12)
    ]
    lines += [f'{{:process {p}, :type :ok, :f :append, :key "k", :value "{p}"}}' for p in range(12)]
    lines += ['{:process 99, :type :invoke, :f :get, :key "k", :value nil}']
    lines += ['{:process 99, :type :ok, :f :get, :key "k", :value "nope"}']
    path = tmp_path / "hard.edn"
    path.write_text("\n".join(lines) + "\n")
    assert cli.main(["check", str(path), "--timeout", "0.2", "--json"]) == 2
    assert json.loads(capsys.readouterr().out)["reason"] == "timeout"
    assert cli.main(["check", str(path), "--memo-max", "100"]) == 2
    assert "memory" in capsys.readouterr().out
