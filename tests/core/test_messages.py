"""The wire codec: every message round-trips, and malformed input is a CodecError."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vrref.core import messages as m

ints = st.integers(min_value=0, max_value=m.INT_MAX)
small = st.integers(min_value=0, max_value=50)
ops = st.text(max_size=30)
requests = st.builds(m.Request, op=ops, client_id=ints, request_number=ints)
entries = st.builds(m.LogEntry, view=small, request=requests)
logs = st.lists(entries, max_size=5).map(tuple)

any_message = st.one_of(
    requests,
    st.builds(m.Prepare, view=ints, entries=logs, op_number=ints, commit_number=ints),
    st.builds(m.PrepareOk, view=ints, op_number=ints, replica=small),
    st.builds(m.Commit, view=ints, commit_number=ints),
    st.builds(m.Reply, view=ints, client_id=ints, request_number=ints, result=ops),
    st.builds(m.StartViewChange, view=ints, replica=small),
    st.builds(
        m.DoViewChange,
        view=ints,
        log=logs,
        last_normal_view=ints,
        op_number=ints,
        commit_number=ints,
        replica=small,
    ),
    st.builds(m.StartView, view=ints, log=logs, op_number=ints, commit_number=ints),
    st.builds(m.Recovery, replica=small, nonce=ints),
    st.builds(
        m.RecoveryResponse,
        view=ints,
        nonce=ints,
        log=st.none() | logs,
        op_number=st.none() | ints,
        commit_number=st.none() | ints,
        replica=small,
    ),
    st.builds(m.GetState, view=ints, op_number=ints, replica=small),
    st.builds(
        m.NewState,
        view=ints,
        after_op_number=ints,
        entries=logs,
        op_number=ints,
        commit_number=ints,
    ),
)


@settings(max_examples=400)
@given(any_message)
def test_every_message_round_trips(message: m.Message) -> None:
    wire = m.encode(message)
    assert m.decode(wire) == message
    assert m.encode(m.decode(wire)) == wire  # canonical


def test_every_message_type_has_a_wire_name() -> None:
    assert len(m.WIRE_NAMES) == 12
    assert m.message_name(m.Commit(view=1, commit_number=2)) == "COMMIT"


@pytest.mark.parametrize(
    ("wire", "complaint"),
    [
        (b"", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1,2]", "JSON object"),
        (b'{"type":"NOPE"}', "unknown message type"),
        (b'{"type":"COMMIT","view":1}', "missing fields ['commit_number']"),
        (b'{"type":"COMMIT","view":1,"commit_number":2,"x":3}', "unexpected fields ['x']"),
        (b'{"type":"COMMIT","view":-1,"commit_number":2}', "'view' must be an integer"),
        (b'{"type":"COMMIT","view":1.5,"commit_number":2}', "'view' must be an integer"),
        (b'{"type":"COMMIT","view":true,"commit_number":2}', "'view' must be an integer"),
        (b'{"type":"COMMIT","view":NaN,"commit_number":2}', "'view' must be an integer"),
        (b'{"type":"COMMIT","view":99999999999999999999,"commit_number":2}', "integer"),
        (b'{"type":"REQUEST","op":5,"client_id":1,"request_number":1}', "'op' must be a string"),
        (
            b'{"type":"PREPARE","view":0,"entries":[[0,"a",1]],"op_number":1,"commit_number":0}',
            "entries[0] must be",
        ),
        (
            b'{"type":"PREPARE","view":0,"entries":{},"op_number":1,"commit_number":0}',
            "list of log entries",
        ),
        (b"[" * 100_000, "not JSON"),
    ],
)
def test_malformed_input_is_a_codec_error(wire: bytes, complaint: str) -> None:
    with pytest.raises(m.CodecError, match=None) as info:
        m.decode(wire)
    assert complaint in str(info.value)


def test_size_bound_is_enforced_before_parsing() -> None:
    wire = m.encode(m.Commit(view=1, commit_number=2))
    with pytest.raises(m.CodecError, match="exceeds the bound"):
        m.decode(wire, bytes_max=len(wire) - 1)


def test_op_length_is_bounded() -> None:
    wire = json.dumps(
        {"type": "REQUEST", "op": "x" * (m.OP_BYTES_MAX + 1), "client_id": 1, "request_number": 1}
    ).encode()
    with pytest.raises(m.CodecError, match="longer than"):
        m.decode(wire)


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_random_bytes_never_raise_anything_but_codec_error(data: bytes) -> None:
    with contextlib.suppress(m.CodecError):
        m.decode(data)


@settings(max_examples=300)
@given(any_message, st.data())
def test_mutated_messages_decode_or_fail_cleanly(message: m.Message, data: st.DataObject) -> None:
    obj = m.to_json(message)
    key = data.draw(st.sampled_from(sorted(obj)))
    obj[key] = data.draw(
        st.one_of(
            st.none(), st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=3)
        )
    )
    try:
        decoded = m.decode(json.dumps(obj).encode())
    except m.CodecError:
        return
    assert type(decoded) in m.WIRE_NAMES
