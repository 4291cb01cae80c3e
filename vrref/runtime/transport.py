"""Peer transport: VR messages between replicas over TCP, authenticated with HMAC.

VR tolerates lost, duplicated and reordered messages, so the transport promises little:
a message sent may arrive, once or not at all. What it must do is carry messages of any
size the protocol produces (a DOVIEWCHANGE or STARTVIEW holds a checkpoint and the log after
it; NEWSTATE a long suffix) up to ``MESSAGE_BYTES_MAX``, refuse anything not sent by a replica
of this cluster, and never let a peer's bytes crash the replica. A message over the bound is
not sent (the peer would refuse it): it is counted and logged, never dropped in silence.

Frame: a 4-byte big-endian payload length, a 32-byte HMAC-SHA256 of the payload under the
cluster key, then the payload (the JSON of ``vrref.core.messages.encode``). A frame that is too
long, has a bad MAC or does not decode is dropped and counted by reason; a framing error
closes the connection (the stream can no longer be trusted to be in step).

Each peer has one outgoing connection, owned by a sender thread that reads a bounded queue;
when the queue is full or the peer is unreachable, messages are dropped (counted), exactly
the loss VR is built for. Incoming connections are read by one thread each.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import queue
import socket
import struct
import threading
from collections import Counter
from collections.abc import Callable

from vrref.core.messages import MESSAGE_BYTES_MAX, CodecError, Message, decode, encode

log = logging.getLogger(__name__)
MAC_BYTES = 32
HEADER = struct.Struct("!I")
SEND_QUEUE_MAX = 10_000
CONNECT_TIMEOUT_S = 1.0


def seal(key: bytes, payload: bytes) -> bytes:
    """One frame: length, MAC, payload."""
    mac = hmac.new(key, payload, hashlib.sha256).digest()
    return HEADER.pack(len(payload)) + mac + payload


class FrameError(Exception):
    """The stream is out of step or hostile: close the connection."""


def read_frame(sock: socket.socket, key: bytes, bytes_max: int) -> bytes | None:
    """Reads one frame and returns its payload if its MAC is right, None if not (dropped).
    Raises FrameError when the stream ends or is malformed, EOFError at a clean end."""
    header = _read_exactly(sock, HEADER.size, clean_eof=True)
    if header is None:
        raise EOFError
    (length,) = HEADER.unpack(header)
    if length > bytes_max:
        raise FrameError(f"frame of {length} bytes exceeds {bytes_max}")
    mac = _read_exactly(sock, MAC_BYTES)
    payload = _read_exactly(sock, length)
    assert mac is not None and payload is not None
    expected = hmac.new(key, payload, hashlib.sha256).digest()
    if not hmac.compare_digest(mac, expected):
        return None
    return payload


def _read_exactly(sock: socket.socket, count: int, *, clean_eof: bool = False) -> bytes | None:
    chunks = []
    remaining = count
    while remaining:
        chunk = sock.recv(min(remaining, 1 << 20))
        if not chunk:
            if clean_eof and remaining == count:
                return None
            raise FrameError("connection closed inside a frame")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


class PeerTransport:
    """Sends to and receives from the other replicas of one cluster."""

    def __init__(
        self,
        *,
        key: bytes,
        listen: tuple[str, int],
        peers: dict[int, tuple[str, int]],
        deliver: Callable[[Message], None],
        bytes_max: int = MESSAGE_BYTES_MAX,
    ) -> None:
        if len(key) < 16:
            raise ValueError("the cluster key must be at least 16 bytes")
        self._key = key
        self._listen = listen
        self._peers = peers
        self._deliver = deliver
        self._bytes_max = bytes_max
        self.counters: Counter[str] = Counter()
        self._queues: dict[int, queue.Queue[bytes | None]] = {
            peer: queue.Queue(SEND_QUEUE_MAX) for peer in peers
        }
        self._server: socket.socket | None = None
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------------ sending

    def send(self, to: int, message: Message) -> None:
        """Queues a message for a peer; drops it (counted) when the queue is full, and
        (counted and logged) when it is over the message bound."""
        payload = encode(message)
        if len(payload) > self._bytes_max:
            self.counters["dropped: message over the bound"] += 1
            log.warning(
                "not sending a %s of %d bytes to replica %d: over the message bound of %d",
                type(message).__name__,
                len(payload),
                to,
                self._bytes_max,
            )
            return
        frame = seal(self._key, payload)
        try:
            self._queues[to].put_nowait(frame)
        except queue.Full:
            self.counters["dropped: send queue full"] += 1

    def _sender(self, peer: int) -> None:
        address = self._peers[peer]
        q = self._queues[peer]
        sock: socket.socket | None = None
        while not self._stopping.is_set():
            frame = q.get()
            if frame is None:
                break
            if sock is None:
                try:
                    sock = socket.create_connection(address, timeout=CONNECT_TIMEOUT_S)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    sock.settimeout(None)
                except OSError:
                    self.counters["dropped: peer unreachable"] += 1
                    continue
            try:
                sock.sendall(frame)
                self.counters["sent"] += 1
            except OSError:
                self.counters["dropped: connection lost"] += 1
                sock.close()
                sock = None
        if sock is not None:
            sock.close()

    # ------------------------------------------------------------------ receiving

    def _accept_loop(self) -> None:
        server = self._server
        assert server is not None
        while not self._stopping.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                break
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            thread = threading.Thread(target=self._reader, args=(conn,), daemon=True)
            thread.start()

    def _reader(self, conn: socket.socket) -> None:
        with conn:
            while not self._stopping.is_set():
                try:
                    payload = read_frame(conn, self._key, self._bytes_max)
                except EOFError:
                    return
                except (FrameError, OSError) as error:
                    self.counters[f"dropped: {type(error).__name__}"] += 1
                    return
                if payload is None:
                    self.counters["dropped: bad MAC"] += 1
                    continue
                try:
                    message = decode(payload, bytes_max=self._bytes_max)
                except CodecError:
                    self.counters["dropped: undecodable"] += 1
                    continue
                self.counters["received"] += 1
                self._deliver(message)

    # ------------------------------------------------------------------ life cycle

    def start(self) -> None:
        server = socket.create_server(self._listen, reuse_port=False)
        self._server = server
        threads = [threading.Thread(target=self._accept_loop, daemon=True)]
        threads += [
            threading.Thread(target=self._sender, args=(peer,), daemon=True) for peer in self._peers
        ]
        for thread in threads:
            thread.start()
        self._threads = threads

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.getsockname()[1]
        return port

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.close()
        for q in self._queues.values():
            with contextlib.suppress(queue.Full):
                q.put_nowait(None)
