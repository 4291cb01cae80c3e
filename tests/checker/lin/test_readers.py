"""Readers: the EDN subset, Jepsen and Porcupine files, vrref histories, and bad input.

Every error must name the file and the line; pairing of invocations and completions is
strict. The vrref writer and reader round-trip, and merged files are ordered by time.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from checker.lin import readers
from checker.lin.readers import ClientHistory, Keyword, ReadError, parse_edn
from vrref import history
from vrref.history import HistoryError, HistoryWriter


def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# ---------------------------------------------------------------------------- EDN


def test_edn_values() -> None:
    value = parse_edn(
        '{:a 1, :b [1 -2 3N], :c "x\\"y\\n", :d nil, :e true, :f false, :g (1 2), :h 1.5} ; c'
    )
    assert value == {
        Keyword("a"): 1,
        Keyword("b"): (1, -2, 3),
        Keyword("c"): 'x"y\n',
        Keyword("d"): None,
        Keyword("e"): True,
        Keyword("f"): False,
        Keyword("g"): (1, 2),
        Keyword("h"): 1.5,
    }
    assert parse_edn(":timed-out") == Keyword("timed-out")
    assert parse_edn(":timed-out") != "timed-out"
    assert str(Keyword("ok")) == ":ok"


@pytest.mark.parametrize(
    "text", ["{:a 1", "[1 2", '"abc', "#{1 2}", "{:a}", "foo", "1 2", '"\\q"', "]"]
)
def test_edn_rejects(text: str) -> None:
    with pytest.raises(readers.EdnError):
        parse_edn(text)


def test_edn_depth_is_bounded() -> None:
    with pytest.raises(readers.EdnError, match="deeply"):
        parse_edn("[" * 100 + "]" * 100)


# ---------------------------------------------------------------------------- Jepsen EDN


def test_jepsen_vector_of_maps_ignores_extra_keys_and_the_nemesis(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "h.edn",
        "[{:process 0, :type :invoke, :f :cas, :value [1 2], :time 5}\n"
        " {:process :nemesis, :type :info, :f :start, :value nil}\n"
        " {:process 0, :type :ok, :f :cas, :value [1 2], :time 9, :index 3}\n"
        " {:process 1, :type :invoke, :f :read, :value nil}]\n",
    )
    got = readers.read_path(path)
    assert got.format == "jepsen-edn"
    assert [(op.process, op.f, op.value, op.outcome, op.call, op.ret) for op in got.ops] == [
        (0, "cas", (1, 2), "ok", 0, 1),
        (1, "read", None, None, 2, None),
    ]
    assert got.ops[0].call_line == 1 and got.ops[0].ret_line == 3


def test_porcupine_kv_one_map_a_line(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "c.txt",
        '{:process 0, :type :invoke, :f :append, :key "0", :value "x 0 0 y"}\n'
        '{:process 0, :type :ok, :f :append, :key "0", :value "x 0 0 y"}\n',
    )
    got = readers.read_path(path)
    assert got.format == "porcupine-kv"
    assert got.ops[0].key == "0" and got.ops[0].value == "x 0 0 y"


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("{:process 0 :type :invoke :f :read :value nil}\n{:process 0 :type :invoke", 2, "EDN"),
        ("{:process 0 :type :ok :f :read :value 1}\n", 1, "never invoked"),
        (
            "{:process 0 :type :invoke :f :read :value nil}\n"
            "{:process 0 :type :invoke :f :read :value nil}\n",
            2,
            "outstanding",
        ),
        (
            "{:process 0 :type :invoke :f :read :value nil}\n"
            "{:process 0 :type :ok :f :write :value 1}\n",
            2,
            "does not match",
        ),
        ("\n\n{:process 0 :type :bogus :f :read :value nil}\n", 3, "unknown :type"),
        ("{:process 0 :type :invoke :f :read :value nil}\n[1 2]\n", 2, "operation map"),
    ],
)
def test_jepsen_errors_name_the_line(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = _write(tmp_path, "bad.edn", text)
    with pytest.raises(ReadError, match=message) as error:
        readers.read([path], "jepsen-edn")
    assert error.value.line == line
    assert str(error.value).startswith(f"{path}:{line}: ")


# ---------------------------------------------------------------------------- Porcupine log


def test_porcupine_log_tabs_spaces_and_noise(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "etcd.log",
        "INFO  jepsen.util - 3\t:invoke\t:write\t4\n"
        "some other log line\n"
        "INFO  jepsen.util - 3   :ok     :write  4\n"
        "INFO  jepsen.util - 1\t:invoke\t:cas\t[4 1]\n"
        "INFO  jepsen.util - 1\t:fail\t:cas\t[4 1]\n"
        "INFO  jepsen.util - 2\t:invoke\t:read\tnil\n"
        "INFO  jepsen.util - 2\t:fail\t:read\t:timed-out\n"
        "INFO  jepsen.util - :nemesis\t:info\t:start\tnil\n",
    )
    got = readers.read_path(path)
    assert got.format == "porcupine-log"
    assert [(op.process, op.f, op.value, op.outcome, op.result) for op in got.ops] == [
        (3, "write", 4, "ok", 4),
        (1, "cas", (4, 1), "fail", (4, 1)),
        (2, "read", None, "fail", Keyword("timed-out")),
    ]
    assert [op.call_line for op in got.ops] == [1, 4, 6]


def test_porcupine_log_bad_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "etcd.log", "INFO  jepsen.util - 3\t:invoke\t:write\t[1\n")
    with pytest.raises(ReadError, match="EDN value") as error:
        readers.read([path])
    assert error.value.line == 1


# ---------------------------------------------------------------------------- vrref


def _history_text(*events: dict[str, object], header: dict[str, object] | None = None) -> str:
    head = header if header is not None else {"schema": "vrref-history", "version": 1}
    return "\n".join(json.dumps(e) for e in (head, *events)) + "\n"


def test_vrref_reader_passes_replica_events_and_pairs_client_events(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "h.jsonl",
        _history_text(
            {"type": "boot", "replica": 0, "time": 1},
            {"type": "invoke", "process": "a/1", "f": "read", "value": "q", "time": 2},
            {"type": "send", "replica": 0, "to": 1, "message": {}, "time": 3},
            {"type": "ok", "process": "a/1", "f": "read", "value": "r", "mode": "local"},
        ),
    )
    parsed = history.read_history(path)
    assert [type(e).__name__ for e in parsed.events] == [
        "ReplicaEvent",
        "ClientEvent",
        "ReplicaEvent",
        "ClientEvent",
    ]
    got = readers.read_path(path)
    assert got.format == "vrref"
    (op,) = got.ops
    assert (op.process, op.value, op.result, op.mode, op.call, op.ret) == (
        "a/1",
        "q",
        "r",
        "local",
        0,
        1,
    )
    assert (op.call_line, op.ret_line, op.call_time) == (3, 5, 2)


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"type": "okay", "process": 1, "f": "read", "value": None}, "unknown event type"),
        ({"process": 1, "f": "read", "value": None}, '"type"'),
        ({"type": "invoke", "process": 1.5, "f": "read", "value": None}, '"process"'),
        ({"type": "invoke", "process": 1, "f": "read"}, '"value"'),
        ({"type": "invoke", "process": 1, "f": 3, "value": None}, '"f"'),
        ({"type": "invoke", "process": 1, "f": "r", "value": 1, "time": "x"}, '"time"'),
        ({"type": "invoke", "process": 1, "f": "r", "value": 1, "mode": "local"}, "completion"),
        ({"type": "ok", "process": 1, "f": "r", "value": 1, "mode": "stale"}, "read mode"),
    ],
)
def test_vrref_reader_rejects_with_line(
    tmp_path: Path, event: dict[str, object], message: str
) -> None:
    ok = {"type": "tick", "replica": 0}
    path = _write(tmp_path, "h.jsonl", _history_text(ok, event))
    with pytest.raises(ReadError, match=message) as error:
        readers.read([path], "vrref")
    assert error.value.line == 3


def test_vrref_header_and_json_errors(tmp_path: Path) -> None:
    bad_header = _write(tmp_path, "a.jsonl", _history_text(header={"schema": "other"}))
    with pytest.raises(ReadError, match="first line") as error:
        readers.read([bad_header], "vrref")
    assert error.value.line == 1
    newer = _write(
        tmp_path, "b.jsonl", _history_text(header={"schema": "vrref-history", "version": 9})
    )
    with pytest.raises(ReadError, match="version"):
        readers.read([newer], "vrref")
    torn = _write(tmp_path, "c.jsonl", _history_text() + '{"type": "inv')
    with pytest.raises(ReadError, match="not JSON") as error:
        readers.read([torn], "vrref")
    assert error.value.line == 2
    with pytest.raises(ReadError, match="No such file"):
        readers.read([str(tmp_path / "missing.jsonl")], "vrref")


def test_writer_round_trip_and_append(tmp_path: Path) -> None:
    path = tmp_path / "w.jsonl"
    with HistoryWriter(path, model="cas-register") as writer:
        writer.invoke(0, "write", 1, time=10)
        writer.write({"type": "tick", "replica": 0})
        writer.complete("ok", 0, "write", None, time=11)
    with HistoryWriter(path, model="ignored") as writer:  # appends: no second header
        writer.invoke(1, "read", None)
        writer.complete("info", 1, "read", None)
        with pytest.raises(ValueError):
            writer.write({"type": "bogus"})
        with pytest.raises(ValueError):
            writer.complete("ok", 1, "read", 1, mode="stale")
    parsed = history.read_history(path)
    assert parsed.header == {"schema": "vrref-history", "version": 1, "model": "cas-register"}
    assert [e.type for e in parsed.events] == ["invoke", "tick", "ok", "invoke", "info"]
    got = readers.read_path(path)
    assert [(op.f, op.outcome) for op in got.ops] == [("write", "ok"), ("read", "info")]
    with pytest.raises(ValueError):
        history.header(schema="x")


def test_merging_files_by_time(tmp_path: Path) -> None:
    header = {"schema": "vrref-history", "version": 1, "model": "cas-register"}
    a = _write(
        tmp_path,
        "a.jsonl",
        _history_text(
            {"type": "invoke", "process": "a", "f": "write", "value": 1, "time": 10},
            {"type": "ok", "process": "a", "f": "write", "value": None, "time": 40},
            header=header,
        ),
    )
    b = _write(
        tmp_path,
        "b.jsonl",
        _history_text(
            {"type": "invoke", "process": "b", "f": "read", "value": None, "time": 20},
            {"type": "ok", "process": "b", "f": "read", "value": 1, "time": 30},
            header=header,
        ),
    )
    got = readers.read([a, b])
    assert [(op.process, op.call, op.ret) for op in got.ops] == [("a", 0, 3), ("b", 1, 2)]
    assert got.ops[1].path == b
    untimed = _write(
        tmp_path,
        "c.jsonl",
        _history_text({"type": "invoke", "process": "c", "f": "read", "value": None}),
    )
    with pytest.raises(ReadError, match="time"):
        readers.read([a, untimed])
    with pytest.raises(ReadError, match="merged"):
        readers.read([a, b], "jepsen-edn")


def test_format_detection(tmp_path: Path) -> None:
    assert readers.detect_format(_write(tmp_path, "a", _history_text())) == "vrref"
    assert readers.detect_format(_write(tmp_path, "b", "\n[{:process 0}]")) == "jepsen-edn"
    assert readers.detect_format(_write(tmp_path, "c", "INFO  jepsen.util - 1")) == "porcupine-log"
    with pytest.raises(ReadError, match="format"):
        readers.detect_format(_write(tmp_path, "d", "hello"))


def test_history_error_is_named() -> None:
    error = HistoryError("f.jsonl", 7, "boom")
    assert str(error) == "f.jsonl:7: boom"
    assert isinstance(readers.ClientHistory(path="p", format="vrref", ops=()), ClientHistory)


def test_a_restarted_process_may_reuse_the_names_its_previous_life_left_outstanding(
    tmp_path: Path,
) -> None:
    """A replica process that restarts (boot, restart or reopen in its file) never completes
    what its previous life left open, even where it names its operations as before."""
    for restart in (
        {"type": "boot", "replica": 0, "time": 3},
        {"type": "restart", "replica": 0, "nonce": 7, "time": 3},
    ):
        text = _history_text(
            {"type": "invoke", "process": "h:1/0", "f": "read", "value": "x", "time": 1},
            restart,
            {"type": "invoke", "process": "h:1/0", "f": "read", "value": "y", "time": 4},
            {"type": "ok", "process": "h:1/0", "f": "read", "value": "z", "time": 5},
            header={"schema": "vrref-history", "version": 1, "replica": 0},
        )
        path = _write(tmp_path, "restarted.jsonl", text)
        first, second = readers.read([path]).ops
        assert (first.value, first.outcome, first.ret) == ("x", None, None)
        assert (second.value, second.outcome, second.result) == ("y", "ok", "z")
    # Without the restart between them, the same two invocations are refused.
    text = _history_text(
        {"type": "invoke", "process": "h:1/0", "f": "read", "value": "x", "time": 1},
        {"type": "invoke", "process": "h:1/0", "f": "read", "value": "y", "time": 4},
    )
    with pytest.raises(ReadError, match="outstanding"):
        readers.read([_write(tmp_path, "not.jsonl", text)])
    # A file of many replicas (the simulator's, no "replica" in its header): a replica's
    # restart ends none of the clients' operations.
    text = _history_text(
        {"type": "invoke", "process": 1, "f": "read", "value": "x", "time": 1},
        {"type": "restart", "replica": 0, "nonce": 7, "time": 3},
        {"type": "ok", "process": 1, "f": "read", "value": "z", "time": 5},
    )
    (op,) = readers.read([_write(tmp_path, "sim.jsonl", text)]).ops
    assert (op.outcome, op.result) == ("ok", "z")


def test_errors_survive_pickling_so_a_pool_worker_can_report_them() -> None:
    """The simulator checks seeds in a process pool: an error that cannot be rebuilt from
    its pickle kills the pool's result thread and hangs the run (it did)."""
    import pickle

    from checker.lin.models import ModelError

    op = readers.ClientOp(
        index=0, process=1, f="read", value="x", outcome=None, result=None, call=0, ret=None
    )
    for error in (
        ReadError("h.jsonl", 3, "bad"),
        HistoryError("h.jsonl", None, "empty"),
        ModelError(op, "no model"),
    ):
        again = pickle.loads(pickle.dumps(error))
        assert type(again) is type(error) and str(again) == str(error)
        assert (again.path, again.line, again.message) == (error.path, error.line, error.message)
