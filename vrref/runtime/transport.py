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

Faults the transport is built to survive (peers SIGKILLed and restarted, SIGSTOPped, cut off
by packet filters), and how:

* Source address. An outgoing socket is bound to the transport's own listen host (port 0)
  before it connects, so a replica's peer traffic leaves from its own address; with one
  127.0.0.x address a replica, a fault harness can partition replicas by source and
  destination address. (A wildcard listen host names no address, so nothing is bound.)
  ``IP_BIND_ADDRESS_NO_PORT`` defers the choice of port to the connect, which then needs
  only the four-tuple to be unique, so the bind does not use up ports.
* Self-connect. While a peer is down its port is free, and when that port lies in the
  ephemeral range and the peer shares our address the kernel may give our outgoing socket
  that very port: TCP simultaneous open then connects the socket to itself, and the peer,
  restarting, cannot bind its port. A connection whose local and remote addresses are equal
  is counted (``refused: self-connect``), treated as unreachable and closed abortively
  (``SO_LINGER`` 0: a reset, no TIME_WAIT left holding the peer's port).
* Rebinding. Every socket, listening and outgoing, sets ``SO_REUSEADDR`` (``create_server``
  would set it on the listener, but here it is explicit). Linux lets a listener bind a port
  held by connections that are not listening only when all of them set it: so a replica
  restarted right after a SIGKILL can bind its port while the connections of its previous
  life sit in TIME_WAIT, and also while a peer's outgoing connection happens to use that port
  as its source port (on a shared address, with the port in the ephemeral range).
* Reconnecting. A failed connect (or a lost connection) is not retried at once: the next
  attempt waits a back-off that starts at ``BACKOFF_MIN_S``, doubles to ``BACKOFF_MAX_S``
  and is jittered, and is reset by a successful connect. Frames that arrive meanwhile are
  dropped and counted (``dropped: peer unreachable``) rather than each paying a connect
  timeout while stale frames pile up behind it. The sender does not sleep through a
  back-off: it notes when the next attempt may be made, so it never delays ``stop()``.
  Attempts are counted (``connect attempts``; successes ``connected``).
* Dead connections. Under a packet filter that drops, an established connection stalls in
  silence and TCP's retransmission back-off would keep it (and the frames behind it) for
  seconds after the partition heals. Every connection, outgoing and accepted, sets
  ``TCP_USER_TIMEOUT`` (unacknowledged data, or unanswered keepalive probes, abort the
  connection after ``USER_TIMEOUT_S``) and short keepalives, so a dead connection is noticed
  within about two seconds even when idle: a sender blocked in ``sendall`` gets an error,
  closes the socket and reconnects under the back-off; a reader blocked on a dead accepted
  connection gets an error and ends (no reader threads pile up over a long soak).
* Stopping. ``stop()`` shuts the listening socket down (closing it would not wake a thread
  blocked in ``accept`` on Linux) and every live connection (which wakes a sender in
  ``sendall`` and the readers in ``recv``), then joins the threads for at most
  ``STOP_JOIN_S``. An error from ``accept`` other than the one ``stop()`` causes (too many
  open files, say) is counted and retried after a pause instead of ending the listener.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import queue
import random
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable

from vrref.core.messages import MESSAGE_BYTES_MAX, CodecError, Message, decode, encode

log = logging.getLogger(__name__)
MAC_BYTES = 32
HEADER = struct.Struct("!I")
SEND_QUEUE_MAX = 10_000
# A connect on a LAN or loopback answers in well under a millisecond; one that has not
# answered in half a second is to a peer that is down or cut off. Short, because the sender
# cannot send to this peer while it waits (a second per attempt was the old figure).
CONNECT_TIMEOUT_S = 0.5
# Back-off between connect attempts to a peer that is unreachable: starts small (a peer
# restarting is usually back within tens of milliseconds), doubles, and is capped well below
# VR's view-change timeout, so that a healed peer is reached again within half a second.
# Each wait is jittered down to as little as (1 - BACKOFF_JITTER) of its nominal value, so the
# replicas of a cluster do not retry in lock step.
BACKOFF_MIN_S = 0.05
BACKOFF_MAX_S = 0.5
BACKOFF_JITTER = 0.5
# How long data may go unacknowledged (or keepalive probes unanswered) before the kernel
# aborts the connection. About a second: ten thousand loopback or LAN round trips, yet short
# enough that a connection stalled by a partition is replaced soon after the partition heals.
USER_TIMEOUT_S = 1.0
# Keepalive, for connections that carry no data when they die: first probe after one idle
# second, then one a second; two unanswered probes (or USER_TIMEOUT_S, which overrides the
# count when set) end the connection. The kernel takes whole seconds here.
KEEPALIVE_IDLE_S = 1
KEEPALIVE_INTERVAL_S = 1
KEEPALIVE_COUNT = 2
# A pause after a failed accept (file descriptors exhausted, say) before trying again.
ACCEPT_RETRY_S = 0.05
# The longest stop() waits for the transport's threads to end.
STOP_JOIN_S = 2.0
# Listen hosts that name no address: outgoing sockets are then not bound.
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})


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


def _tune(sock: socket.socket) -> None:
    """Options for every peer connection, outgoing or accepted (see the module docstring)."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    if hasattr(socket, "TCP_KEEPIDLE"):  # Linux; macOS has TCP_KEEPALIVE instead
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE_IDLE_S)
    if hasattr(socket, "TCP_KEEPINTVL"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL_S)
    if hasattr(socket, "TCP_KEEPCNT"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_COUNT)
    if hasattr(socket, "TCP_USER_TIMEOUT"):  # Linux
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, round(USER_TIMEOUT_S * 1000))


def _connect(address: tuple[str, int], source: tuple[str, int] | None) -> socket.socket:
    """A tuned, blocking socket connected to ``address`` from ``source`` (if given), within
    ``CONNECT_TIMEOUT_S`` for each address the host resolves to; raises OSError."""
    host, port = address
    error: OSError | None = None
    for family, kind, proto, _, sockaddr in socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM):
        sock = socket.socket(family, kind, proto)
        try:
            _tune(sock)
            # So that neither this connection nor its TIME_WAIT keeps a restarting replica off
            # its port, should the kernel pick that port as our source port.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if source is not None:
                if family == socket.AF_INET and hasattr(socket, "IP_BIND_ADDRESS_NO_PORT"):
                    sock.setsockopt(socket.IPPROTO_IP, socket.IP_BIND_ADDRESS_NO_PORT, 1)
                sock.bind(source)
            sock.settimeout(CONNECT_TIMEOUT_S)
            sock.connect(sockaddr)
            sock.settimeout(None)
            return sock
        except OSError as failure:
            sock.close()
            error = failure
    raise error if error is not None else OSError(f"{host!r} resolves to no address")


def _connected_to_itself(sock: socket.socket) -> bool:
    try:
        return bool(sock.getsockname() == sock.getpeername())
    except OSError:  # reset already: not a connection worth keeping either
        return True


def _listening_socket(address: tuple[str, int]) -> socket.socket:
    host = address[0]
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    server = socket.socket(family, socket.SOCK_STREAM)
    try:
        # Bindable while connections of a previous life on this port are in TIME_WAIT.
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(address)
        server.listen()
    except OSError:
        server.close()
        raise
    return server


class _Backoff:
    """When the next connect attempt to one peer may be made."""

    def __init__(self) -> None:
        self._delay = BACKOFF_MIN_S
        self._not_before = 0.0

    def ready(self) -> bool:
        return time.monotonic() >= self._not_before

    def failed(self) -> None:
        wait = self._delay * random.uniform(1 - BACKOFF_JITTER, 1)
        self._not_before = time.monotonic() + wait
        self._delay = min(self._delay * 2, BACKOFF_MAX_S)

    def succeeded(self) -> None:
        self._delay = BACKOFF_MIN_S
        self._not_before = 0.0


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
        self._source: tuple[str, int] | None = (
            None if listen[0] in WILDCARD_HOSTS else (listen[0], 0)
        )
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
        # The live connections, for stop() to shut down; guarded by _lock, and never added
        # to once _stopping is set (checked under the lock).
        self._lock = threading.Lock()
        self._outgoing: dict[int, socket.socket] = {}
        self._readers: dict[socket.socket, threading.Thread] = {}

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
        q = self._queues[peer]
        backoff = _Backoff()
        sock: socket.socket | None = None
        try:
            while not self._stopping.is_set():
                frame = q.get()
                if frame is None:
                    break
                if sock is None:
                    sock = self._open(peer, backoff)
                    if sock is None:
                        self.counters["dropped: peer unreachable"] += 1
                        continue
                try:
                    sock.sendall(frame)
                    self.counters["sent"] += 1
                except OSError:  # reset, or aborted by the user timeout, or shut by stop()
                    self.counters["dropped: connection lost"] += 1
                    self._forget(peer, sock)
                    sock = None
                    backoff.failed()
        finally:
            if sock is not None:
                self._forget(peer, sock)

    def _open(self, peer: int, backoff: _Backoff) -> socket.socket | None:
        """A new connection to the peer, or None: in a back-off, unreachable, connected to
        itself, or stopping."""
        if not backoff.ready():
            return None
        address = self._peers[peer]
        self.counters["connect attempts"] += 1
        try:
            sock = _connect(address, self._source)
        except OSError:
            backoff.failed()
            return None
        if _connected_to_itself(sock):
            self.counters["refused: self-connect"] += 1
            log.warning(
                "the connection to replica %d at %s:%d connected to itself; closed",
                peer,
                *address,
            )
            with contextlib.suppress(OSError):  # a reset on close: no TIME_WAIT on the port
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
            backoff.failed()
            return None
        with self._lock:
            if self._stopping.is_set():
                sock.close()
                return None
            self._outgoing[peer] = sock
        self.counters["connected"] += 1
        backoff.succeeded()
        return sock

    def _forget(self, peer: int, sock: socket.socket) -> None:
        with self._lock:
            if self._outgoing.get(peer) is sock:
                del self._outgoing[peer]
        sock.close()

    # ------------------------------------------------------------------ receiving

    def _accept_loop(self) -> None:
        server = self._server
        assert server is not None
        while not self._stopping.is_set():
            try:
                conn, _ = server.accept()
            except OSError as error:
                if self._stopping.is_set():
                    break
                self.counters[f"accept failed: {type(error).__name__}"] += 1
                self._stopping.wait(ACCEPT_RETRY_S)
                continue
            try:
                _tune(conn)
            except OSError:  # reset before we got to it
                conn.close()
                continue
            with self._lock:
                if self._stopping.is_set():
                    conn.close()
                    break
                thread = threading.Thread(target=self._reader, args=(conn,), daemon=True)
                self._readers[conn] = thread
                thread.start()

    def _reader(self, conn: socket.socket) -> None:
        try:
            self._read(conn)
        finally:
            with self._lock:
                self._readers.pop(conn, None)
            conn.close()

    def _read(self, conn: socket.socket) -> None:
        while not self._stopping.is_set():
            try:
                payload = read_frame(conn, self._key, self._bytes_max)
            except EOFError:
                return
            except (FrameError, OSError) as error:
                if not self._stopping.is_set():
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
        self._server = _listening_socket(self._listen)
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
        """Ends every thread of the transport (waiting at most ``STOP_JOIN_S``) and releases
        the listening port."""
        self._stopping.set()
        server = self._server
        if server is not None:
            with contextlib.suppress(OSError):
                server.shutdown(socket.SHUT_RDWR)  # wakes the accept; close() would not
        for q in self._queues.values():
            with contextlib.suppress(queue.Full):
                q.put_nowait(None)  # a full queue needs none: the sender checks _stopping
        with self._lock:
            connections = [*self._outgoing.values(), *self._readers]
            readers = list(self._readers.values())
        for conn in connections:  # shut, not closed: the owning thread closes it
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + STOP_JOIN_S
        for thread in [*self._threads, *readers]:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
        if server is not None:
            server.close()
