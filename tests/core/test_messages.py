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
records = st.builds(m.ClientRecord, client_id=ints, request_number=ints, result=ops)
checkpoints = st.builds(
    m.Checkpoint,
    op_number=ints,
    service=st.text(max_size=60),
    digest=ops,
    client_table=st.lists(records, max_size=3).map(tuple),
)

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
        log_start=ints,
        log=logs,
        checkpoint=st.none() | checkpoints,
        last_normal_view=ints,
        op_number=ints,
        commit_number=ints,
        replica=small,
    ),
    st.builds(
        m.StartView,
        view=ints,
        log_start=ints,
        log=logs,
        checkpoint=st.none() | checkpoints,
        op_number=ints,
        commit_number=ints,
    ),
    st.builds(m.Recovery, replica=small, nonce=ints),
    st.builds(
        m.RecoveryResponse,
        view=ints,
        nonce=ints,
        log_start=st.none() | ints,
        log=st.none() | logs,
        checkpoint=st.none() | checkpoints,
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
        checkpoint=st.none() | checkpoints,
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


# Ops taking exactly OP_BYTES_MAX bytes encoded: plain, every character escaped, and
# characters beyond the BMP (12 bytes each, the widest).
B = m.OP_BYTES_MAX
OPS_AT_THE_BOUND = {
    "plain": "x" * B,
    "quotes": '"' * (B // 2),
    "astral": "\U0001f600" * (B // m.ESCAPED_CHAR_BYTES_MAX) + "x" * (B % m.ESCAPED_CHAR_BYTES_MAX),
}


def biggest_prepare(op: str, entries: int) -> m.Prepare:
    request = m.Request(op=op, client_id=m.INT_MAX, request_number=m.INT_MAX)
    entry = m.LogEntry(view=m.INT_MAX, request=request)
    return m.Prepare(
        view=m.INT_MAX, entries=(entry,) * entries, op_number=m.INT_MAX, commit_number=m.INT_MAX
    )


@pytest.mark.parametrize("kind", sorted(OPS_AT_THE_BOUND))
def test_an_op_at_the_bound_round_trips_in_a_prepare_and_one_byte_more_does_not(
    kind: str,
) -> None:
    op = OPS_AT_THE_BOUND[kind]
    assert m.op_wire_bytes(op) == B and m.op_fits(op)
    prepare = biggest_prepare(op, 1)
    assert m.decode(m.encode(prepare)) == prepare
    over = biggest_prepare(op + "x", 1)
    assert not m.op_fits(op + "x")
    with pytest.raises(m.CodecError, match="longer than"):
        m.decode(m.encode(over))


def test_the_longest_prepare_the_core_may_build_fits_in_a_message() -> None:
    prepare = biggest_prepare(OPS_AT_THE_BOUND["quotes"], m.PREPARE_ENTRIES_MAX)
    wire = m.encode(prepare)
    assert len(wire) == m.PREPARE_BYTES_MAX <= m.MESSAGE_BYTES_MAX
    assert m.decode(wire) == prepare


def test_the_bounds_fit_together_and_a_misfit_is_named() -> None:
    assert m.bound_problems() == []
    assert m.PREPARE_ENTRIES_MAX <= m.LOG_ENTRIES_MAX
    # (a) an op as long as a whole message leaves no room for its envelope.
    (problem,) = [p for p in m.bound_problems(op_bytes_max=m.MESSAGE_BYTES_MAX) if "REQUEST" in p]
    assert "over the message bound" in problem
    # (b) a PREPARE of four times the entries does not fit.
    problems = m.bound_problems(prepare_entries_max=4 * m.PREPARE_ENTRIES_MAX)
    assert problems and all("PREPARE of" in p for p in problems)


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
