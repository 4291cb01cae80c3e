"""Trace validation of recorded runs (checker/trace.py): a real cluster's history replays
exactly through fresh cores, and every kind of tampering is caught, naming the line."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from checker import trace as runs
from checker.cli import check as cli_check
from tests.integration.test_cluster_tools import nsupdate, start_cluster
from vrref import history
from vrref.core.replica import Config

pytestmark = pytest.mark.skipif(shutil.which("nsupdate") is None, reason="nsupdate is needed")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    cluster = start_cluster(tmp_path_factory.mktemp("run"))
    try:
        for n in range(3):
            done = nsupdate(
                cluster.port(n), f"update add run{n}.example.com. 300 A 192.0.2.{n + 1}"
            )
            assert done.returncode == 0, done.stderr
    finally:
        cluster.stop()
    yield cluster.history_dir


def files(directory: Path) -> list[str]:
    return sorted(str(p) for p in directory.glob("*.jsonl"))


def test_recorded_run_validates(recorded: Path) -> None:
    report = runs.check_run(files(recorded))
    assert report.ok, runs.report_lines(report)
    assert [r.replica for r in report.replicas] == [0, 1, 2]
    assert all(r.inputs > 0 and r.states > 0 for r in report.replicas)
    assert max(len(r.committed) for r in report.replicas) == 3


def tampered(recorded: Path, tmp_path: Path, edit: object) -> tuple[list[str], int]:
    """A copy of the run with replica 1's file edited; returns the files and the line."""
    out = tmp_path / "run"
    shutil.copytree(recorded, out)
    path = out / "replica-1.jsonl"
    lines = path.read_text().splitlines()
    line = edit(lines)  # type: ignore[operator]
    path.write_text("\n".join(lines) + "\n")
    return files(out), line


def first(lines: list[str], kind: str, start: int = 1) -> int:
    return next(i for i in range(start, len(lines)) if json.loads(lines[i])["type"] == kind)


def test_a_changed_state_is_caught_with_its_line(recorded: Path, tmp_path: Path) -> None:
    def edit(lines: list[str]) -> int:
        i = first(lines, "state", first(lines, "deliver"))
        event = json.loads(lines[i])
        event["commit_number"] += 1
        lines[i] = json.dumps(event)
        return i + 1

    paths, line = tampered(recorded, tmp_path, edit)
    report = runs.check_run(paths)
    assert not report.ok
    problem = report.replicas[1].problems[0]
    assert f"replica-1.jsonl:{line}: commit_number" in problem


def test_a_dropped_delivery_is_caught(recorded: Path, tmp_path: Path) -> None:
    def edit(lines: list[str]) -> int:
        # a delivery the core answered (one with no effect at all cannot be missed)
        i = next(
            i
            for i in range(1, len(lines) - 1)
            if json.loads(lines[i])["type"] == "deliver"
            and json.loads(lines[i + 1])["type"] == "send"
        )
        del lines[i]
        return i + 1

    paths, _ = tampered(recorded, tmp_path, edit)
    assert runs.check_run(paths).replicas[1].problems != []


def test_an_invented_send_is_caught(recorded: Path, tmp_path: Path) -> None:
    def edit(lines: list[str]) -> int:
        i = first(lines, "tick")
        fake = {
            "type": "send",
            "replica": 1,
            "to": 0,
            "message": {"type": "COMMIT", "view": 0, "commit_number": 99},
        }
        lines.insert(i + 1, json.dumps(fake))
        return i + 2

    paths, line = tampered(recorded, tmp_path, edit)
    problem = runs.check_run(paths).replicas[1].problems[0]
    assert f"replica-1.jsonl:{line}:" in problem


def test_vrref_check_reports_and_exits_1_on_tampering(
    recorded: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_check.main([str(recorded)]) == 0
    assert "invariants: ok" in capsys.readouterr().out

    def edit(lines: list[str]) -> int:
        i = first(lines, "state", first(lines, "deliver"))
        event = json.loads(lines[i])
        event["view"] = 7
        lines[i] = json.dumps(event)
        return i + 1

    paths, _ = tampered(recorded, tmp_path, edit)
    assert cli_check.main(paths) == 1
    assert "FAILED" in capsys.readouterr().out


def test_a_broken_line_is_named(
    recorded: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def edit(lines: list[str]) -> int:
        lines[3] = "{not json"
        return 4

    paths, line = tampered(recorded, tmp_path, edit)
    assert cli_check.main(paths) == 2
    assert f"replica-1.jsonl:{line}" in capsys.readouterr().err


def test_local_reads_are_judged_by_consistent_prefix(
    recorded: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_check.main([str(recorded)]) == 0
    assert "local reads: " in capsys.readouterr().out

    def edit(lines: list[str]) -> int:
        # a local SOA read now claims a serial no committed state ever had
        for i, text in enumerate(lines):
            event = json.loads(text)
            if event.get("mode") == "local" and '"SOA"' in event["value"]:
                event["value"] = event["value"].replace("2024010101", "2024019999")
                lines[i] = json.dumps(event)
                return i + 1
        raise AssertionError("no local SOA read recorded")

    paths, line = tampered(recorded, tmp_path, edit)
    assert cli_check.main(paths) == 1
    out = capsys.readouterr().out
    assert "local reads: " in out and "1 VIOLATED" in out
    assert f"replica-1.jsonl:{line}" in out


# ---------------------------------------------------------------------------- recorded states


def test_every_recorded_state_holds_every_state_field(recorded: Path) -> None:
    for path in files(recorded):
        parsed = history.read_history(path)
        assert parsed.header["protocol"] == history.protocol_to_json(
            history.protocol_from_json(parsed.header["protocol"])
        )
        assert set(parsed.header["protocol"]) == {f.name for f in dataclasses.fields(Config)}
        states = [
            e.record
            for e in parsed.events
            if isinstance(e, history.ReplicaEvent) and isinstance(e.record, history.State)
        ]
        assert states and all(s.missing() == () for s in states)
        assert all(tuple(s.values) == history.STATE_FIELDS for s in states)


@pytest.mark.parametrize("lost", history.STATE_FIELDS)
def test_a_state_field_the_writer_stops_recording_is_caught(
    recorded: Path, tmp_path: Path, lost: str
) -> None:
    def edit(lines: list[str]) -> int:
        for i in range(1, len(lines)):
            event = json.loads(lines[i])
            if event["type"] == "state":
                del event[lost]
                lines[i] = json.dumps(event)
        return first(lines, "state") + 1

    paths, line = tampered(recorded, tmp_path, edit)
    report = runs.check_run(paths)
    assert not report.ok
    (problem,) = report.replicas[1].problems
    assert f"replica-1.jsonl:{line}: the recorded state has no {lost}" in problem
    assert report.replicas[0].problems == report.replicas[2].problems == []


def test_a_header_without_a_protocol_setting_cannot_be_validated(
    recorded: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def edit(lines: list[str]) -> int:
        head = json.loads(lines[0])
        del head["protocol"]["pipeline_max"]
        lines[0] = json.dumps(head)
        return 1

    paths, _ = tampered(recorded, tmp_path, edit)
    assert cli_check.main(paths) == 2
    assert "replica-1.jsonl:1: cannot rebuild the core" in capsys.readouterr().err


def test_an_event_of_another_replica_is_caught(recorded: Path, tmp_path: Path) -> None:
    def edit(lines: list[str]) -> int:
        i = first(lines, "tick")
        event = json.loads(lines[i])
        event["replica"] = 2
        lines[i] = json.dumps(event)
        return i + 1

    paths, line = tampered(recorded, tmp_path, edit)
    (problem,) = runs.check_run(paths).replicas[1].problems
    assert f"replica-1.jsonl:{line}: a tick of replica 2 in replica 1's history" in problem


# ---------------------------------------------------------------------------- vrref check --json


def test_check_json_reports_every_part(recorded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_check.main([str(recorded), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["verdict"] == "linearizable" and data["exit_status"] == 0
    assert data["local_reads"]["judged"] and data["local_reads"]["ok"]
    assert data["local_reads"]["checked"] > 0 and data["local_reads"]["violations"] == []
    trace = data["trace"]
    assert trace["judged"] and trace["ok"]
    assert [r["replica"] for r in trace["replicas"]] == [0, 1, 2]
    for r in trace["replicas"]:
        assert r["ok"] and r["problems"] == []
        assert r["inputs"] > 0 and r["sends"] > 0 and r["states"] > 0 and r["lives"] == 1
    assert max(r["committed"] for r in trace["replicas"]) == 3
    invariants = data["invariants"]
    assert invariants["judged"] and invariants["ok"] and invariants["problems"] == []
    assert "commit_number_within_log" in invariants["after_every_state"]
    assert "acknowledged_ops_survive" in invariants["not_judged"]
    assert invariants["final_states_of"] == [0, 1, 2]

    # the prose says the same
    assert cli_check.main([str(recorded)]) == 0
    out = capsys.readouterr().out
    assert "verdict: LINEARIZABLE" in out and "invariants: ok" in out
    assert f"local reads: {data['local_reads']['checked']} judged" in out


def test_check_json_names_a_trace_problem_and_exits_1(
    recorded: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def edit(lines: list[str]) -> int:
        i = first(lines, "state", first(lines, "deliver"))
        event = json.loads(lines[i])
        event["view"] = 7
        lines[i] = json.dumps(event)
        return i + 1

    paths, line = tampered(recorded, tmp_path, edit)
    assert cli_check.main([*paths, "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["verdict"] == "linearizable" and data["exit_status"] == 1
    assert not data["trace"]["ok"]
    (replica,) = [r for r in data["trace"]["replicas"] if not r["ok"]]
    assert replica["replica"] == 1
    (problem,) = replica["problems"]
    assert f"replica-1.jsonl:{line}: view is 7 in the history" in problem
    assert {"local_reads", "invariants"} <= set(data)


# ---------------------------------------------------------------------------- commit order, finals


def test_the_replays_give_the_order_the_cluster_committed(recorded: Path) -> None:
    report = runs.check_run(files(recorded))
    order = report.commit_order()
    assert order is not None
    updates = [op for op, _ in order.ops if '"t":"update"' in op]
    assert [f"run{n}.example.com." in op for n, op in enumerate(updates)] == [True] * 3
    assert all('"rcode":"NOERROR"' in result for _, result in order.ops)
    assert order.committed_by(order.commit_times[-1][0]) == len(order.ops)
    assert order.committed_by(0) == 0


def test_local_reads_of_a_recorded_run_are_judged_by_its_commit_order(
    recorded: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_check.main([str(recorded)]) == 0
    out = capsys.readouterr().out
    assert "against the commit order" in out
    assert "final states: 3 judged (a linearizable read): ok" in out


def test_a_final_state_that_is_not_the_cores_zone_is_caught(
    recorded: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def edit(lines: list[str]) -> int:
        at = first(lines, "final")
        event = json.loads(lines[at])
        event["records"] = [r for r in event["records"] if r[0] != "run0.example.com."]
        lines[at] = json.dumps(event)
        return at + 1

    paths, line = tampered(recorded, tmp_path, edit)
    report = runs.check_run(paths)
    (problem,) = report.replicas[1].problems
    assert f"replica-1.jsonl:{line}: the final state's records are not the core's" in problem
    assert cli_check.main(paths) == 1
    out = capsys.readouterr().out
    assert "missing run0.example.com." in out


def test_a_life_cut_short_inside_an_input_is_forgiven_at_the_next_life_only(
    recorded: Path, tmp_path: Path
) -> None:
    """A SIGKILL after an input's line reached the file and before its sends did: the
    next life's first line forgives the missing sends; without a next life, or with the
    input's successor in the same life, they are a difference."""

    def cut(lines: list[str], restart: bool) -> int:
        deliver = next(
            i
            for i in range(1, len(lines) - 1)
            if json.loads(lines[i])["type"] == "deliver"
            and json.loads(lines[i + 1])["type"] == "send"
        )
        del lines[deliver + 1 :]
        if restart:
            lines.append(json.dumps({"type": "restart", "replica": 1, "nonce": 5}))
        else:
            lines.append(json.dumps({"type": "tick", "replica": 1}))
        return deliver + 1

    paths, _ = tampered(recorded, tmp_path / "a", lambda lines: cut(lines, restart=True))
    report = runs.check_run(paths)
    assert not report.replicas[1].problems, report.replicas[1].problems
    assert report.replicas[1].cut_short == 1
    paths, _ = tampered(recorded, tmp_path / "b", lambda lines: cut(lines, restart=False))
    (problem,) = runs.check_run(paths).replicas[1].problems
    assert "and the history has no such send" in problem
