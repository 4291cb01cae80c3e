"""The peer transport: authentic frames arrive; forged, malformed and oversized ones are
dropped and counted, and the transport keeps working afterwards."""

from __future__ import annotations

import os
import queue
import random
import socket
import time

import pytest

from vrref.core.messages import Commit, LogEntry, Message, Request, StartView, encode
from vrref.runtime.transport import PeerTransport, seal

KEY = b"k" * 32


@pytest.fixture
def receiver():
    inbox: queue.Queue[Message] = queue.Queue()
    transport = PeerTransport(
        key=KEY, listen=("127.0.0.1", 0), peers={}, deliver=inbox.put, bytes_max=8 * 1024 * 1024
    )
    transport.start()
    yield transport, inbox
    transport.stop()


def sender_to(port: int, key: bytes = KEY) -> PeerTransport:
    transport = PeerTransport(
        key=key, listen=("127.0.0.1", 0), peers={0: ("127.0.0.1", port)}, deliver=lambda m: None
    )
    transport.start()
    return transport


def raw(port: int, data: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(data)
        time.sleep(0.05)


def wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_messages_arrive_including_large_logs(receiver) -> None:
    transport, inbox = receiver
    sender = sender_to(transport.port)
    try:
        log = tuple(
            LogEntry(
                view=0,
                request=Request(op=f"update {i} " + "x" * 100, client_id=1, request_number=i),
            )
            for i in range(20_000)
        )
        big = StartView(
            log_start=0, checkpoint=None, view=1, log=log, op_number=len(log), commit_number=0
        )
        sender.send(0, Commit(view=1, commit_number=2))
        sender.send(0, big)
        assert inbox.get(timeout=5) == Commit(view=1, commit_number=2)
        assert inbox.get(timeout=10) == big
        assert len(encode(big)) > 2_000_000
    finally:
        sender.stop()


def test_forged_frames_are_dropped_and_counted(receiver) -> None:
    transport, inbox = receiver
    forger = sender_to(transport.port, key=b"not the cluster key!" * 2)
    try:
        forger.send(0, Commit(view=9, commit_number=9))
        assert wait_for(lambda: transport.counters["dropped: bad MAC"] == 1)
        assert inbox.empty()
    finally:
        forger.stop()


def test_malformed_payloads_oversize_and_garbage_are_dropped(receiver) -> None:
    transport, inbox = receiver
    raw(transport.port, seal(KEY, b'{"type":"COMMIT","view":-1,"commit_number":0}'))
    raw(transport.port, seal(KEY, b"\xff not json"))
    raw(transport.port, (2**31).to_bytes(4, "big") + os.urandom(64))
    raw(transport.port, b"\x00\x00\x00\x10" + b"short")
    rng = random.Random(7)
    for _ in range(50):
        raw(transport.port, bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))))
    assert wait_for(lambda: transport.counters["dropped: undecodable"] == 2)
    assert wait_for(lambda: transport.counters["dropped: FrameError"] >= 2)
    assert inbox.empty()
    # Still serving authentic peers.
    raw(transport.port, seal(KEY, encode(Commit(view=1, commit_number=1))))
    assert inbox.get(timeout=5) == Commit(view=1, commit_number=1)


def test_unreachable_peer_drops_instead_of_blocking() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    sender = sender_to(port)
    try:
        for _ in range(100):
            sender.send(0, Commit(view=1, commit_number=1))  # queued; never blocks the caller
        assert wait_for(lambda: sender.counters["dropped: peer unreachable"] >= 1)
    finally:
        sender.stop()


def test_short_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        PeerTransport(key=b"short", listen=("127.0.0.1", 0), peers={}, deliver=lambda m: None)


def test_a_message_over_the_bound_is_not_sent_but_counted_and_logged(
    receiver, caplog: pytest.LogCaptureFixture
) -> None:
    transport, inbox = receiver
    small = PeerTransport(
        key=KEY,
        listen=("127.0.0.1", 0),
        peers={0: ("127.0.0.1", transport.port)},
        deliver=lambda m: None,
        bytes_max=200,
    )
    small.start()
    try:
        entry = LogEntry(view=0, request=Request(op="x" * 300, client_id=1, request_number=1))
        big = StartView(
            log_start=0, checkpoint=None, view=1, log=(entry,), op_number=1, commit_number=0
        )
        with caplog.at_level("WARNING"):
            small.send(0, big)
        assert small.counters["dropped: message over the bound"] == 1
        assert "over the message bound of 200" in caplog.text
        small.send(0, Commit(view=1, commit_number=1))  # a small one still goes
        assert wait_for(lambda: not inbox.empty())
        assert inbox.get() == Commit(view=1, commit_number=1)
    finally:
        small.stop()
