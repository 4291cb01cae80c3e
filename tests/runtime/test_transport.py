"""The peer transport: authentic frames arrive; forged, malformed and oversized ones are
dropped and counted, and the transport keeps working afterwards."""

from __future__ import annotations

import contextlib
import os
import queue
import random
import socket
import threading
import time

import pytest

from vrref.core.messages import Commit, LogEntry, Message, Request, StartView, encode
from vrref.runtime import transport as transport_module
from vrref.runtime.transport import PeerTransport, read_frame, seal

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


# ------------------------------------------------------------------ faults, over real sockets


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on ``host`` below the ephemeral range (32768), so that no outgoing socket
    is given it while a test relies on it."""
    for _ in range(200):
        port = 20000 + random.randrange(12000)
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port on {host}")


def started(
    listen: tuple[str, int], peers: dict[int, tuple[str, int]], deliver=lambda m: None
) -> PeerTransport:
    t = PeerTransport(key=KEY, listen=listen, peers=peers, deliver=deliver)
    t.start()
    return t


def send_until_received(sender: PeerTransport, to: int, inbox: queue.Queue) -> Message | None:
    """Sends COMMITs every 10 ms until one arrives; the first to arrive, or None after 5 s."""
    deadline = time.monotonic() + 5.0
    n = 0
    while time.monotonic() < deadline:
        n += 1
        sender.send(to, Commit(view=1, commit_number=n))
        with contextlib.suppress(queue.Empty):
            return inbox.get(timeout=0.01)
    return None


def test_a_connection_to_itself_is_refused_counted_and_closed(monkeypatch) -> None:
    """Nothing listens on port P, and a socket bound to 127.0.0.1:P that connects to
    127.0.0.1:P connects to itself (TCP simultaneous open). The connect step is made to take
    the destination port as its source port, as the kernel may when P is ephemeral."""
    port = free_port()
    real_connect = transport_module._connect
    made: list[socket.socket] = []
    ends: list[tuple[object, object]] = []

    def from_the_destination_port(address, source):
        sock = real_connect(address, address)
        made.append(sock)
        ends.append((sock.getsockname(), sock.getpeername()))
        return sock

    monkeypatch.setattr(transport_module, "_connect", from_the_destination_port)
    sender = sender_to(port)
    try:

        def refused() -> bool:
            sender.send(0, Commit(view=1, commit_number=1))
            return sender.counters["refused: self-connect"] >= 1

        assert wait_for(refused)
        assert ends[0] == (("127.0.0.1", port), ("127.0.0.1", port))  # really itself
        assert sender.counters["connected"] == 0 and sender.counters["sent"] == 0
        assert all(sock.fileno() == -1 for sock in made)  # closed, none kept
    finally:
        sender.stop()
    # The peer's port is free again: a replica restarting there can bind it.
    receiver = started(("127.0.0.1", port), {})
    receiver.stop()


def test_outgoing_connections_leave_from_the_listen_host() -> None:
    """So that a fault harness can partition replicas by source address."""
    with socket.create_server(("127.0.0.22", 0)) as peer:
        peer.settimeout(5)
        sender = started(("127.0.0.21", 0), {0: peer.getsockname()})
        try:
            sender.send(0, Commit(view=1, commit_number=1))
            conn, (host, _) = peer.accept()
            with conn:
                assert host == "127.0.0.21"
                conn.settimeout(5)
                payload = read_frame(conn, KEY, 1 << 20)
                assert payload == encode(Commit(view=1, commit_number=1))
        finally:
            sender.stop()


def test_an_unreachable_peer_gets_few_connect_attempts_and_send_never_blocks() -> None:
    sender = sender_to(free_port())  # nothing listens there
    try:
        began = time.monotonic()
        for _ in range(5000):
            sender.send(0, Commit(view=1, commit_number=1))
        assert time.monotonic() - began < 1.0  # put on the queue, no connect on the way
        total = 5000
        deadline = time.monotonic() + 0.6  # the back-off reaches its cap meanwhile
        while time.monotonic() < deadline:
            sender.send(0, Commit(view=1, commit_number=1))
            total += 1
            time.sleep(0.002)
        assert wait_for(lambda: sender.counters["dropped: peer unreachable"] == total)
        # One attempt a frame would be thousands; the back-off allows about one per wait
        # (25 ms, then 50, 100, 200, 250 at the least with jitter).
        assert 2 <= sender.counters["connect attempts"] <= 10
    finally:
        sender.stop()


def test_delivery_resumes_when_the_peer_comes_up() -> None:
    port = free_port()
    sender = sender_to(port)
    inbox: queue.Queue[Message] = queue.Queue()
    try:

        def backing_off() -> bool:
            sender.send(0, Commit(view=1, commit_number=0))
            time.sleep(0.005)
            return sender.counters["connect attempts"] >= 4

        assert wait_for(backing_off)
        receiver = started(("127.0.0.1", port), {}, inbox.put)
        try:
            assert send_until_received(sender, 0, inbox) is not None
            assert sender.counters["connected"] == 1
        finally:
            receiver.stop()
    finally:
        sender.stop()


def test_the_listen_port_is_bound_again_right_after_stop_with_live_connections() -> None:
    """A replica restarted on its port while its last life's connections are closing (the
    ones it closed itself are in TIME_WAIT)."""
    port_a, port_b = free_port(), free_port()
    inbox_a: queue.Queue[Message] = queue.Queue()
    inbox_b: queue.Queue[Message] = queue.Queue()
    b = started(("127.0.0.1", port_b), {0: ("127.0.0.1", port_a)}, inbox_b.put)
    try:
        a = started(("127.0.0.1", port_a), {1: ("127.0.0.1", port_b)}, inbox_a.put)
        try:
            assert send_until_received(b, 0, inbox_a) is not None
            assert send_until_received(a, 1, inbox_b) is not None
        finally:
            a.stop()
        again = started(("127.0.0.1", port_a), {1: ("127.0.0.1", port_b)}, inbox_a.put)
        try:
            while not inbox_a.empty():
                inbox_a.get()
            assert send_until_received(b, 0, inbox_a) is not None  # b reconnects
            assert send_until_received(again, 1, inbox_b) is not None
        finally:
            again.stop()
    finally:
        b.stop()


def test_stop_ends_every_thread_promptly() -> None:
    """Accept loop, senders (connected, backing off) and readers all end within stop()."""
    before = set(threading.enumerate())
    inbox: queue.Queue[Message] = queue.Queue()
    a = started(("127.0.0.1", 0), {}, inbox.put)
    b = started(("127.0.0.1", 0), {0: ("127.0.0.1", a.port), 2: ("127.0.0.1", free_port())})
    assert send_until_received(b, 0, inbox) is not None
    assert wait_for(
        lambda: (b.send(2, Commit(view=1, commit_number=1)), b.counters["connect attempts"] >= 2)[1]
    )
    began = time.monotonic()
    a.stop()  # its reader is blocked in recv on b's live connection
    b.stop()
    assert time.monotonic() - began < 1.0
    assert [t for t in threading.enumerate() if t not in before] == []


def test_a_stalled_connection_is_abandoned_and_replaced() -> None:
    """A peer that accepts and never reads (SIGSTOP, or a partition that drops): the user
    timeout aborts the sender's blocked sendall, and the sender reconnects."""
    with socket.socket() as stalled:
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.bind(("127.0.0.1", 0))
        stalled.listen()
        sender = sender_to(stalled.getsockname()[1])
        try:
            entry = LogEntry(view=0, request=Request(op="x" * 1000, client_id=1, request_number=1))
            big = StartView(
                log_start=0,
                checkpoint=None,
                view=1,
                log=(entry,) * 2000,
                op_number=2000,
                commit_number=0,
            )
            for _ in range(8):
                sender.send(0, big)  # megabytes: more than the socket buffers hold

            def replaced() -> bool:
                sender.send(0, Commit(view=1, commit_number=1))
                return sender.counters["connected"] >= 2

            assert wait_for(replaced)
            assert sender.counters["dropped: connection lost"] >= 1
        finally:
            sender.stop()
