"""The history format (vrref/history.py): one typed event per type, each documented by an
example line that parses and round-trips; one list of what a recorded state holds, derived
from the core's Snapshot and recorded as the core reports it; the protocol header derived
from Config; a strict reader; and one writer, which hands the OS whole lines only."""

from __future__ import annotations

import dataclasses
import json
import random
import typing
from pathlib import Path

import pytest

from checker.cli import explore as explore_cli
from checker.cli import replay as replay_cli
from checker.explore import counterexamples
from checker.sim import simulate
from checker.sim.cluster import Cluster
from vrref import history
from vrref.core.replica import Config, Snapshot
from vrref.core.statemachine import EchoLog

STORED = Path(__file__).parent / "explore" / "counterexamples"


def _examples() -> list[dict[str, object]]:
    """Every example event in the module docstring (``{...}`` stands for a message)."""
    text = (history.__doc__ or "").replace("{...}", "{}")
    decoder = json.JSONDecoder()
    found = []
    start = text.find('{"type":')
    while start >= 0:
        obj, end = decoder.raw_decode(text, start)
        found.append(obj)
        start = text.find('{"type":', end)
    return found


def test_the_docstring_shows_every_event_type_and_each_example_round_trips() -> None:
    examples = _examples()
    assert {e["type"] for e in examples} == history.REPLICA_EVENT_TYPES | (
        history.CLIENT_EVENT_TYPES
    )
    for example in examples:
        event = history.parse_event(example, "doc", 1)
        again = event.to_json() if isinstance(event, history.ClientEvent) else event.fields
        assert again == example
        if isinstance(event, history.ReplicaEvent):
            assert type(event.record).from_json(event.record.to_json()) == event.record
            assert history.REPLICA_RECORDS[event.type] is type(event.record)


def test_the_docstring_header_is_the_default_protocol() -> None:
    text = history.__doc__ or ""
    head, _ = json.JSONDecoder().raw_decode(text, text.index('{"schema":'))
    assert history.parse_header(head, "doc", 1) == head
    assert history.protocol_from_json(head["protocol"]) == Config(replica_count=3)
    assert history.protocol_to_json(Config(replica_count=3)) == head["protocol"]


def test_stored_counterexamples_read_and_round_trip_line_for_line() -> None:
    for path in sorted(STORED.glob("*.jsonl")):
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        parsed = history.read_history(path)
        assert parsed.header == lines[0]
        for event, raw in zip(parsed.events, lines[1:], strict=True):
            assert (
                event.to_json() if isinstance(event, history.ClientEvent) else event.fields
            ) == raw


# ---------------------------------------------------------------------------- states


def test_state_fields_are_the_snapshots_but_the_unrecorded() -> None:
    names = [f.name for f in dataclasses.fields(Snapshot)]
    assert tuple(n for n in names if n not in history.STATE_UNRECORDED) == history.STATE_FIELDS
    assert set(history.STATE_UNRECORDED) <= set(names)
    hints = typing.get_type_hints(Snapshot)
    assert all(hints[name] in (int, str) for name in history.STATE_FIELDS)  # JSON scalars


def test_replica_state_is_what_the_snapshot_reports() -> None:
    """Over a run with crashes, recoveries, view changes and commits: every replica after
    every event, through the function every writer records states with."""
    rng = random.Random(5)
    cluster = Cluster(Config(replica_count=3), service_factory=EchoLog, client_ids=(1, 2))
    statuses = set()
    for step in range(600):
        if step % 40 == 0:
            for client_id in (1, 2):
                if cluster.clients[client_id].outstanding is None:
                    cluster.submit(client_id, f"op{step}.{client_id}")
        draw = rng.random()
        if draw < 0.6 and cluster.network:
            cluster.deliver(rng.randrange(len(cluster.network)))
        elif draw < 0.97:
            cluster.tick(run=False)
        else:
            i = rng.randrange(3)
            if cluster.replicas[i] is None:
                cluster.restart(i)
            elif sum(r is None for r in cluster.replicas) == 0:
                cluster.crash(i)
        for core in cluster.replicas:
            if core is None:
                continue
            snapshot = core.snapshot()
            recorded = history.replica_state(core, log=True)
            assert recorded == {
                **{name: getattr(snapshot, name) for name in history.STATE_FIELDS},
                "log": [entry.request.op for entry in snapshot.log],
            }
            state = history.State.of(core)
            assert state.missing() == () and state.replica == core.replica
            statuses.add(recorded["status"])
    assert statuses == {"normal", "view-change", "recovering"}


def test_a_state_may_lack_fields_and_says_which() -> None:
    event = history.parse_event({"type": "state", "replica": 0, "status": "normal"}, "h", 2)
    assert isinstance(event, history.ReplicaEvent) and isinstance(event.record, history.State)
    assert event.record.missing() == history.STATE_FIELDS[1:]
    crashed = history.State(replica=1, values={"status": history.CRASHED})
    assert crashed.crashed and crashed.missing() == ()
    with pytest.raises(ValueError, match="no field 'comit_number'"):
        history.State(replica=0, values={"comit_number": 1})


# ---------------------------------------------------------------------------- the protocol


def test_protocol_header_is_every_config_field_and_back() -> None:
    config = Config(replica_count=5, heartbeat_ticks=3, pipeline_max=7, prepare_entries_max=2)
    protocol = history.protocol_to_json(config)
    assert list(protocol) == [f.name for f in dataclasses.fields(Config)]
    assert history.protocol_from_json(protocol) == config
    for broken, message in [
        ({k: v for k, v in protocol.items() if k != "pipeline_max"}, "lacks the setting"),
        ({**protocol, "lease_ticks": 3}, "unknown setting 'lease_ticks'"),
        ({**protocol, "heartbeat_ticks": "2"}, "'heartbeat_ticks'"),
        ({**protocol, "heartbeat_ticks": True}, "'heartbeat_ticks'"),
        ({**protocol, "replica_count": 4}, "odd"),
        ([], "object"),
    ]:
        with pytest.raises(ValueError, match=message):
            history.protocol_from_json(broken)


# ---------------------------------------------------------------------------- the reader


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"type": "tick"}, 'needs an integer "replica"'),
        ({"type": "tick", "replica": 0, "timer": "x"}, "no field 'timer'"),
        ({"type": "boot", "replica": "0"}, '"replica" must be an integer'),
        ({"type": "boot", "replica": True}, '"replica" must be an integer'),
        ({"type": "send", "replica": 0, "to": 1}, 'needs a "message"'),
        ({"type": "send", "replica": 0, "to": 1, "message": []}, "JSON object"),
        ({"type": "deliver", "replica": 0, "client": 1, "message": {}}, "exactly one"),
        ({"type": "deliver", "replica": 0}, "exactly one"),
        ({"type": "deliver", "replica": 0, "messages": {}}, "list of messages"),
        ({"type": "timeout", "replica": 0}, '"timer"'),
        ({"type": "timeout", "client": 1, "timer": "x"}, '"client" alone'),
        ({"type": "state", "replica": 0, "view": "1"}, '"view" must be of type int'),
        ({"type": "state", "replica": 0, "comit_number": 1}, "no field 'comit_number'"),
        ({"type": "state", "replica": 0, "log": [1]}, "list of ops"),
        ({"type": "partition", "groups": [[0]], "oneway": [0, 1]}, "exactly one"),
        ({"type": "partition", "oneway": [0]}, "two replicas"),
        ({"type": "restart", "replica": 0, "nonce": 1.5}, '"nonce"'),
        ({"type": "heal", "time": "now"}, '"time"'),
        ({"type": "commit", "replica": 0}, "unknown event type 'commit'"),
    ],
)
def test_replica_events_are_checked_field_by_field(event: dict[str, object], message: str) -> None:
    with pytest.raises(history.HistoryError, match=message) as error:
        history.parse_event(event, "h.jsonl", 7)
    assert (error.value.path, error.value.line) == ("h.jsonl", 7)
    assert str(error.value).startswith("h.jsonl:7: ")


def test_read_header_reads_only_the_header(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text('{"schema":"vrref-history","version":1,"replica":0}\nnot json\n')
    assert history.read_header(path)["replica"] == 0
    with pytest.raises(history.HistoryError, match=r"h\.jsonl:2: not JSON"):
        history.read_history(path)
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(history.HistoryError, match="no header"):
        history.read_header(tmp_path / "empty.jsonl")


# ---------------------------------------------------------------------------- the writer


def test_writer_hands_over_whole_lines_at_flush_or_when_the_buffer_fills(tmp_path: Path) -> None:
    path = tmp_path / "w.jsonl"
    writer = history.HistoryWriter(path, buffer_bytes=200, model="dns")
    header_bytes = path.stat().st_size
    assert header_bytes > 0  # the header is on disk at once
    writer.write(history.Tick(replica=0, time=1))
    assert path.stat().st_size == header_bytes  # waiting: a SIGKILL now loses it, whole
    writer.flush()
    assert path.read_text().endswith('{"type":"tick","replica":0,"time":1}\n')
    for i in range(20):  # past buffer_bytes: handed over, in whole lines, without a flush
        writer.write(history.Send(replica=0, to=1, message={"type": "COMMIT", "n": i}))
        assert path.read_text().endswith("\n")
    assert path.stat().st_size > header_bytes + 200
    writer.close()
    writer.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        writer.write(history.Tick(replica=0))
    parsed = history.read_history(path)
    assert [e.type for e in parsed.events] == ["tick"] + ["send"] * 20
    with history.HistoryWriter(path, model="other") as again:  # appends after whole lines
        again.write(history.Heal(time=2))
    assert history.read_history(path).header["model"] == "dns"
    assert history.read_history(path).events[-1].type == "heal"


def test_writer_parses_json_objects_and_writes_typed_events_canonically(tmp_path: Path) -> None:
    path = tmp_path / "w.jsonl"
    with history.HistoryWriter(path) as writer:
        writer.write({"time": 3, "replica": 0, "type": "boot"})
        writer.write(history.State(replica=0, values={"status": "normal", "view": 0}))
        with pytest.raises(ValueError, match="no field 'view'"):
            writer.write({"type": "tick", "replica": 0, "view": 0})
        with pytest.raises(ValueError):
            history.Deliver(replica=0, client=1, message={})
    lines = path.read_text().splitlines()[1:]
    assert lines[1] == '{"type":"state","replica":0,"status":"normal","view":0}'


# ---------------------------------------------------------------------------- the writers


def test_a_counterexample_written_now_records_every_state_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ce.jsonl"
    argv = ["--model", "vr", "--ops", "1", "--drops", "0", "--dups", "0", "--quiet"]
    assert (
        explore_cli.main([*argv, "--mutant", "commit-too-few-prepareoks", "--history", str(out)])
        == 1
    )
    capsys.readouterr()
    events = history.read_history(out).events
    states = [
        e.record
        for e in events
        if isinstance(e, history.ReplicaEvent) and isinstance(e.record, history.State)
    ]
    assert states
    for state in states:
        assert state.missing() == ()
        assert state.crashed or list(state.values) == [*history.STATE_FIELDS, history.STATE_LOG]
    assert events[-1].type == "note"
    assert replay_cli.main([str(out), "--core", "--quiet"]) == 0


def test_replay_refuses_a_state_with_a_field_missing_that_was_always_recorded(
    tmp_path: Path,
) -> None:
    source = STORED / "accept-prepare-gap.jsonl"
    lines = source.read_text().splitlines()
    i = next(k for k, line in enumerate(lines) if '"type":"state"' in line)
    state = json.loads(lines[i])
    del state["op_number"]
    lines[i] = json.dumps(state)
    path = tmp_path / "ce.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(counterexamples.ReplayError, match=f"{path}:{i + 1}: .*no op_number"):
        counterexamples.replay_file(path)


def test_a_changed_state_in_a_counterexample_diverges(tmp_path: Path) -> None:
    source = STORED / "accept-prepare-gap.jsonl"
    lines = source.read_text().splitlines()
    i = next(k for k, line in enumerate(lines) if '"type":"state"' in line)
    state = json.loads(lines[i])
    state["view"] = 5
    lines[i] = json.dumps(state)
    path = tmp_path / "ce.jsonl"
    path.write_text("\n".join(lines) + "\n")
    outcome = counterexamples.replay_file(path)
    assert outcome.diverged is not None and f"{path}:{i + 1}: r0 is now" in outcome.diverged


def test_a_simulated_seed_writes_typed_events(tmp_path: Path) -> None:
    outcome = simulate.run_seed(3, history_dir=str(tmp_path))
    assert outcome.history is not None
    parsed = history.read_history(outcome.history)
    kinds = {e.type for e in parsed.events}
    assert {"invoke", "ok", "heal"} <= kinds
    restarts = [
        e.record
        for e in parsed.events
        if isinstance(e, history.ReplicaEvent) and isinstance(e.record, history.Restart)
    ]
    assert all(r.nonce is not None for r in restarts)
    assert [e.time for e in parsed.events] == list(range(1, len(parsed.events) + 1))


def test_then_runs_once_the_lines_before_it_are_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    seen: list[int] = []

    def lines_in_file() -> None:
        seen.append(len(path.read_text().splitlines()))

    with history.HistoryWriter(path, buffer_bytes=1 << 20) as writer:
        writer.then(lines_in_file)  # nothing waiting: at once
        assert seen == [1]
        writer.invoke(1, "read", "x", time=1)
        writer.complete("ok", 1, "read", "y", time=2)
        writer.then(lines_in_file)
        writer.then(lines_in_file)
        assert seen == [1]  # waiting for the flush
        writer.flush()
        assert seen == [1, 3, 3]
        writer.invoke(2, "read", "x", time=3)
        writer.then(lines_in_file)
    assert seen == [1, 3, 3, 4]  # close flushes and runs what waits
