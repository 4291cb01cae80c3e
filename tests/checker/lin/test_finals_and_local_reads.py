"""The final-state check (checker/lin/finals.py) and the local-read judgment
(checker/lin/local_reads.py) on small histories written in the history format: what a
stale final state and a misjudged local read look like, and what must pass.

Each history is built the way the runtime writes one (HistoryWriter, canonical ops and the
results the DNS model gives), so the checker reads it through the same path as a real run's.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from checker import verdict
from checker.lin import local_reads
from checker.lin import wgl as lin
from checker.lin.readers import ReadError
from checker.trace import CommitOrder
from spec import dns_model
from vrref import history
from vrref.dns import ops
from vrref.dns.zone import Zone

ROOT = Path(__file__).resolve().parents[3]
ZONE = Zone.from_file(ROOT / "examples" / "example.com.zone", "example.com.")
INITIAL = dns_model.initial_state(ZONE.records())


def add(name: str, address: str) -> str:
    return ops.make_update_op("example.com.", update=[["add", name, "A", 300, address]])


def query(name: str) -> str:
    return ops.make_query_op(name, "A")


class Run:
    """A client history under construction, with the model's state for results."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.writer = history.HistoryWriter(
            path,
            model="dns",
            origin="example.com.",
            initial={"records": [list(r) for r in ZONE.records()]},
        )
        self.state = INITIAL
        self.clock = 1000

    def tick(self) -> int:
        self.clock += 10
        return self.clock

    def invoke(self, process: str, f: str, op: str) -> None:
        self.writer.invoke(process, f, op, time=self.tick())

    def ok(self, process: str, f: str, result: str, mode: str | None = None) -> None:
        self.writer.complete("ok", process, f, result, time=self.tick(), mode=mode)

    def apply(self, op: str) -> str:
        self.state, result = dns_model.step(self.state, op)
        return result

    def answer(self, state: frozenset[tuple[str, str, int, str]], op: str) -> str:
        return dns_model.step(state, op)[1]

    def final(self, replica: int, records: object) -> None:
        since = self.tick()
        self.writer.write(
            history.FinalZone(
                replica=replica,
                records=tuple(sorted(records)),  # type: ignore[call-overload]
                since=since,
                time=self.tick(),
            )
        )

    def check(self) -> verdict.Verdict:
        self.writer.close()
        return verdict.check([str(self.path)], timeout_s=60)


def test_a_final_state_with_every_update_passes(tmp_path: Path) -> None:
    run = Run(tmp_path / "h.jsonl")
    for n in range(3):
        op = add(f"a{n}.example.com.", f"192.0.2.{n + 1}")
        run.invoke(f"p{n}", "update", op)
        run.ok(f"p{n}", "update", run.apply(op))
    run.final(0, run.state)
    run.final(1, run.state)
    result = run.check()
    assert result.status == 0, verdict.describe_verdict(result)
    assert result.finals is not None and result.finals.ok
    assert len(result.finals.finals) == 2


def test_a_final_state_without_an_acknowledged_update_is_stale_and_names_it(
    tmp_path: Path,
) -> None:
    run = Run(tmp_path / "h.jsonl")
    before = run.state
    op = add("gone.example.com.", "192.0.2.7")
    run.invoke("p0", "update", op)
    run.ok("p0", "update", run.apply(op))
    run.final(2, before)  # the zone as it was before the acknowledged update
    result = run.check()
    assert result.status == 1
    assert result.finals is not None
    (stale,) = result.finals.stale
    assert stale.replica == 2 and stale.missing == ("gone.example.com.",)
    text = verdict.describe_verdict(result)
    assert "1 STALE" in text and "missing gone.example.com." in text
    assert verdict.verdict_json(result)["finals"]["finals"][0]["missing"] == ["gone.example.com."]


def test_an_update_of_unknown_outcome_may_or_may_not_be_in_the_final_state(
    tmp_path: Path,
) -> None:
    for included in (False, True):
        run = Run(tmp_path / f"h{included}.jsonl")
        op = add("maybe.example.com.", "192.0.2.8")
        run.invoke("p0", "update", op)
        run.writer.complete("info", "p0", "update", None, time=run.tick())
        zone = dns_model.step(run.state, op)[0] if included else run.state
        run.final(0, zone)
        result = run.check()
        assert result.status == 0, verdict.describe_verdict(result)


def test_an_update_acknowledged_after_the_final_began_need_not_be_in_it(
    tmp_path: Path,
) -> None:
    run = Run(tmp_path / "h.jsonl")
    op = add("late.example.com.", "192.0.2.9")
    run.invoke("p0", "update", op)
    before = run.state
    since = run.tick()
    run.ok("p0", "update", run.apply(op))  # acknowledged inside the final's interval
    run.writer.write(
        history.FinalZone(replica=0, records=tuple(sorted(before)), since=since, time=run.tick())
    )
    result = run.check()
    assert result.status == 0, verdict.describe_verdict(result)


def test_a_final_state_without_time_is_refused_naming_its_line(tmp_path: Path) -> None:
    run = Run(tmp_path / "h.jsonl")
    run.writer.write(history.FinalZone(replica=0, records=tuple(sorted(run.state)), since=5))
    run.writer.close()
    with pytest.raises(ReadError, match=r"h\.jsonl:2: a final state needs its \"time\""):
        verdict.check([str(run.path)], timeout_s=10)


OP_A = add("x.example.com.", "192.0.2.1")
OP_B = add("x.example.com.", "192.0.2.2")


def concurrent_updates_and_a_read(run: Run) -> None:
    """Updates a and b of x overlap and the cluster commits b first; a local read returns x
    with b's address alone: a prefix of b-then-a, of no prefix of a-then-b."""
    run.invoke("pa", "update", OP_A)
    run.invoke("pb", "update", OP_B)
    result_b = run.apply(OP_B)
    only_b = run.state
    result_a = run.apply(OP_A)
    run.ok("pa", "update", result_a)
    run.ok("pb", "update", result_b)
    run.invoke("r", "read", query("x.example.com."))
    run.ok("r", "read", run.answer(only_b, query("x.example.com.")), mode="local")


def test_a_local_read_the_witness_cannot_explain_passes_when_some_linearization_can(
    tmp_path: Path,
) -> None:
    run = Run(tmp_path / "h.jsonl")
    concurrent_updates_and_a_read(run)
    result = run.check()
    assert result.local is not None
    assert result.local.ok, verdict.describe_verdict(result)
    assert result.local.basis == "linearizations"
    # The witness placed a first (its order is the search's), so the read needed a search.
    assert result.local.searched == 1


def test_a_local_read_of_a_value_never_written_is_a_violation(tmp_path: Path) -> None:
    run = Run(tmp_path / "h.jsonl")
    op = add("c.example.com.", "192.0.2.3")
    run.invoke("p", "update", op)
    run.ok("p", "update", run.apply(op))
    forged = dns_model.step(run.state, add("c.example.com.", "192.0.2.4"))[0]
    run.invoke("r", "read", query("c.example.com."))
    run.ok("r", "read", run.answer(forged, query("c.example.com.")), mode="local")
    result = run.check()
    assert result.status == 1
    assert result.local is not None and len(result.local.violations) == 1
    assert "no prefix of any linearization answers" in result.local.violations[0][1]


def test_local_reads_are_judged_by_the_commit_order_when_it_is_given(tmp_path: Path) -> None:
    run = Run(tmp_path / "h.jsonl")
    concurrent_updates_and_a_read(run)
    run.writer.close()
    loaded = verdict.load([str(run.path)])
    state, result_b = dns_model.step(INITIAL, OP_B)
    _, result_a = dns_model.step(state, OP_A)
    witness = verdict.run(loaded, timeout_s=30)
    assert isinstance(witness, lin.Ok) and witness.linearization is not None
    reads = loaded.history.ops

    def judge(order: CommitOrder) -> local_reads.LocalReadVerdict:
        assert witness.linearization is not None
        return local_reads.judge(loaded.model, reads, witness.linearization, order=order)

    b_then_a = CommitOrder(ops=((OP_B, result_b), (OP_A, result_a)), commit_times=((0, 2),))
    judged = judge(b_then_a)
    assert judged.basis == "commit order" and judged.ok, judged
    # Committed in the other order, no committed prefix holds b without a.
    _, first_a = dns_model.step(INITIAL, OP_A)
    a_then_b = CommitOrder(ops=((OP_A, first_a), (OP_B, result_b)), commit_times=((0, 2),))
    judged = judge(a_then_b)
    assert judged.basis == "commit order" and len(judged.violations) == 1
    # Nothing committed yet when the read returned: only the initial zone may be served.
    judged = judge(CommitOrder(ops=b_then_a.ops, commit_times=((10**30, 2),)))
    assert len(judged.violations) == 1
    # An order whose recorded results are not the model's is not used (the search is).
    refused = ops.update_result("NXRRSET", 2024010101)  # the model says NOERROR
    wrong = CommitOrder(ops=((OP_B, refused), (OP_A, result_a)), commit_times=((0, 2),))
    assert judge(wrong).basis.startswith("linearizations (the recorded commit order: op ")
