"""DNS over UDP and TCP: the wire frontend of one replica.

This module is where packets from the open network meet the replicated zone. It speaks the
DNS wire protocol with dnspython (parsing, rendering, TSIG) and never touches the VR core:
everything it needs from the replica is the small ``Backend`` protocol below — a committed
zone snapshot to answer local reads from, and ``submit`` to order an operation through VR.

The shape follows the sans-I/O idea of h11: ``DnsFrontend.handle(wire, tcp=...)`` is the
whole protocol decision for one request, with no sockets. It returns either the reply
messages to send now (an empty list means silence) or a ``Pending``: an operation to order
through VR plus the function that renders the reply once the committed result is known. The
socket servers (``start``), the synchronous test helper (``handle_sync``) and the fuzzer
all drive that one function, so what the fuzzer checks is what the servers do.

Decisions, in the order a request meets them (each is a rule of spec/dns.md, "Must"):

1. Shorter than a header, or a response (QR set): silence. Answering responses invites
   loops; a fragment of a header names nothing to answer.
2. Local-mode unsigned queries are answered from a cache of rendered replies keyed by the
   request minus its ID; the ID is patched in. The cache belongs to one zone snapshot and is
   dropped when the backend publishes another (snapshots are immutable, so identity is the
   version). This is the hot path; it neither parses nor renders.
3. Parse with TSIG verification. A malformed packet gets FORMERR with the question salvaged
   when possible; a TSIG failure gets NOTAUTH with the TSIG error BADKEY or BADSIG (unsigned,
   as RFC 8945 §5.3.2 requires) or BADTIME (signed, with our clock in Other Data).
4. EDNS version >= 1: BADVERS (RFC 6891 §6.1.3). Opcodes other than QUERY and UPDATE:
   NOTIMP.
5. QUERY: exactly one question (else FORMERR); class IN (else REFUSED); a name outside our
   zone: REFUSED without AA. Otherwise the zone's structured answer is rendered with AA set
   (clear for referrals), negative answers carrying the SOA with TTL min(TTL, MINIMUM).
   In ``linearizable`` read mode the query is ordered through VR as an operation and the
   committed result is rendered, so the read sees every update acknowledged before it.
6. AXFR (and IXFR, answered with the full zone as RFC 1995 §4 allows): TCP only (NOTIMP on
   UDP, as Knot does, except that an IXFR over UDP gets the SOA alone, RFC 1995 §2's "use
   TCP"), TSIG required, the whole zone SOA ... SOA in messages of at most 64 KiB with TSIG
   across them (RFC 8945 §5.3.1). Transfers read the local committed snapshot.
7. UPDATE: one zone RR of type SOA (else FORMERR); our zone in class IN (else NOTAUTH);
   signed (else REFUSED, as BIND does for a policy refusal); prerequisites and updates are
   encoded by ``vrref.dns.update.update_op_from_message`` (its errors carry their rcode) and
   ordered through VR; the committed rcode is the answer, signed like the request.

Replies fit the transport: over UDP at most the client's EDNS payload (512 without EDNS,
capped at the 1232 we advertise) with TC set when the answer does not fit; over TCP up to
65535 octets (dnspython would otherwise use the client's UDP payload even on TCP).

Every resource has a bound: TCP connections, pending operations in total and per
connection, idle time on a connection, cache entries and the size of a cacheable request.

Client operations are reported to ``history`` in Jepsen's shape. An operation is one VR
operation or one local read of the zone: ``{"type": "invoke", "process": P, "f": "read" |
"update", "value": OP, "time": NS}`` then ``{"type": "ok" | "info", "process": P, "f": ...,
"value": RESULT, "time": NS, "mode": "local" | "linearizable"}``. OP and RESULT are the
canonical texts of ``vrref.dns.ops``. ``info`` means the outcome is unknown (not committed in
time: it may still commit); ``fail`` is reported when the backend refused the operation
synchronously, so it certainly did not happen. Updates are always ``linearizable``. P is the
string ``"HOST:PORT/N"``: this frontend's address and a counter, so every operation is its
own process and processes are unique across the replicas of a cluster. Requests rejected
before they become operations (FORMERR, REFUSED, NOTAUTH, ...) and zone transfers are not
client operations on the zone and are not reported.

The history is written ahead of the wire: an operation's invoke reaches the file before the
operation can take effect, and its completion before its reply is sent (batched: one write
releases every reply of a batch). A replica killed at any moment therefore leaves a history
in which every answered operation is complete, and every operation that may have taken
effect is at least invoked (so the checker takes it as indeterminate, never as absent).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Literal, Protocol

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TSIG
import dns.rrset
import dns.tsig
import dns.update

from vrref.dns import ops
from vrref.dns.update import UpdateError, update_op_from_message
from vrref.dns.zone import Zone

log = logging.getLogger(__name__)

HEADER_BYTES = 12
UDP_PAYLOAD_OURS = 1232  # advertised in our OPT and the cap of any UDP reply (DNS flag day 2020)
UDP_PAYLOAD_MIN = 512  # RFC 1035 §4.2.1: a client without EDNS takes 512 octets
TCP_MESSAGE_BYTES_MAX = 65535
UDP_RECEIVE_BYTES_MAX = 65535
AXFR_MESSAGE_BYTES_MAX = 60_000  # uncompressed RR bytes a transfer message, below 64 KiB
CACHE_ENTRIES_MAX = 50_000  # the whole cache is dropped when full: simple, bounded
CACHE_QUERY_BYTES_MAX = 512  # longer requests are not cached (nothing normal is that long)
TCP_CONNECTIONS_MAX = 128
TCP_IDLE_TIMEOUT_S = 10.0
TCP_PENDING_PER_CONNECTION_MAX = 64  # reading pauses when a connection has this many in flight
PENDING_MAX = 4096  # operations submitted and not yet answered, over all clients
DEADLINE_GRACE_S = 1.0  # the backend reports its own timeouts; ours is a backstop after it
SOCKET_POLL_S = 0.25  # how often blocked server loops look at the stop flag
TSIG_FUDGE_S = 300

_TSIG_FAILURES: tuple[type[Exception], ...] = (
    dns.message.UnknownTSIGKey,
    dns.tsig.BadSignature,
    dns.tsig.BadTime,
    dns.tsig.BadKey,
    dns.tsig.BadAlgorithm,
    dns.tsig.PeerError,
)

ReadMode = Literal["local", "linearizable"]
Respond = Callable[[list[bytes]], None]


class Backend(Protocol):
    """What the frontend needs from a replica (``vrref.runtime.node.Node`` implements it)."""

    read_mode: str  # "local" or "linearizable"

    def zone(self) -> Zone:
        """The committed zone: an immutable snapshot, readable from any thread."""
        ...

    def submit(self, op: str, done: Callable[[str | None], None]) -> None:
        """Orders ``op`` through VR; ``done`` is called exactly once, from another thread,
        with the committed result, or with None when it could not be committed in time.

        The frontend has recorded the operation's invoke before it calls this; the backend
        must not let ``op`` take effect before that invoke is in the history file (Node
        flushes the history before it handles a batch holding submissions)."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Pending:
    """A request that becomes a VR operation: ``op`` is ordered, then ``finish`` renders
    the reply messages from the committed result (None: not committed in time)."""

    op: str
    f: Literal["update", "read"]
    mode: ReadMode
    finish: Callable[[str | None], list[bytes]]


@dataclass(frozen=True, slots=True)
class _Cached:
    wire: bytes  # the rendered reply; its first two octets (the ID) are replaced on use
    op: str | None  # the read's canonical op and result for the history (None: no read)
    result: str | None


class FrontendError(Exception):
    """A local misuse of the frontend (bad configuration), not a peer's fault."""


# ---------------------------------------------------------------------------- wire helpers


def _header_only(wire: bytes, rcode: int) -> bytes:
    """A reply of just a header: the request's ID, opcode and RD, QR set, ``rcode``."""
    (request_id, flags) = struct.unpack_from("!HH", wire)
    reply_flags = dns.flags.QR | (flags & (0x7800 | dns.flags.RD)) | (rcode & 0xF)
    return struct.pack("!HHHHHH", request_id, reply_flags, 0, 0, 0, 0)


def _udp_limit(request: dns.message.Message) -> int:
    if request.edns < 0:
        return UDP_PAYLOAD_MIN
    return min(max(request.payload, UDP_PAYLOAD_MIN), UDP_PAYLOAD_OURS)


def _render(response: dns.message.Message, request: dns.message.Message, *, tcp: bool) -> bytes:
    limit = TCP_MESSAGE_BYTES_MAX if tcp else _udp_limit(request)
    return response.to_wire(max_size=limit, prefer_truncation=True)


def _respond_skeleton(request: dns.message.Message) -> dns.message.Message:
    """make_response with our payload: copies the question, EDNS and the TSIG key."""
    return dns.message.make_response(request, our_payload=UDP_PAYLOAD_OURS, fudge=TSIG_FUDGE_S)


def _rrset_wire_bytes(rrset: dns.rrset.RRset) -> int:
    """An upper bound of the rrset's size in a message (uncompressed)."""
    size = 0
    for rdata in rrset:
        size += len(rrset.name.to_wire() or b"") + 10 + len(rdata.to_digestable())
    return size


def _pieces(rrset: dns.rrset.RRset) -> list[dns.rrset.RRset]:
    """The rrset, or one rrset a record when it alone would not fit a transfer message
    (RFC 5936 §2.2 lets an RRset span messages)."""
    if _rrset_wire_bytes(rrset) <= AXFR_MESSAGE_BYTES_MAX:
        return [rrset]
    return [dns.rrset.from_rdata(rrset.name, rrset.ttl, rdata) for rdata in rrset]


def _chain_order(qname: dns.name.Name, rrsets: list[dns.rrset.RRset]) -> list[dns.rrset.RRset]:
    """The answer in CNAME-chain order from ``qname`` (the service sorts its sections; stub
    resolvers such as glibc's read a chain in order), anything left over after it."""
    ordered: list[dns.rrset.RRset] = []
    rest = list(rrsets)
    current = qname
    while rest:
        here = [r for r in rest if r.name == current]
        if not here:
            break
        ordered.extend(here)
        rest = [r for r in rest if r.name != current]
        cnames = [r for r in here if r.rdtype == dns.rdatatype.CNAME]
        if not cnames:
            break
        current = cnames[0][0].target
    return ordered + rest


# ---------------------------------------------------------------------------- deadlines


class _Deadlines:
    """One daemon thread that runs callbacks at their deadlines (a backstop for submits)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._sequence = itertools.count()
        self._condition = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False

    def add(self, at_monotonic_s: float, callback: Callable[[], None]) -> None:
        with self._condition:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, daemon=True, name="dnsfront-deadlines"
                )
                self._thread.start()
            heapq.heappush(self._heap, (at_monotonic_s, next(self._sequence), callback))
            self._condition.notify()

    def stop(self) -> None:
        with self._condition:
            self._stopping = True
            self._condition.notify()

    def _run(self) -> None:
        while True:
            with self._condition:
                if self._stopping:
                    return
                now = time.monotonic()
                if not self._heap or self._heap[0][0] > now:
                    wait_s = self._heap[0][0] - now if self._heap else None
                    self._condition.wait(wait_s)
                    continue
                _, _, callback = heapq.heappop(self._heap)
            try:
                callback()
            except Exception:  # a callback's bug must not stop every later deadline
                log.exception("deadline callback failed")


class _Once:
    """Lets exactly one of several racing completions through."""

    __slots__ = ("_claimed", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._claimed = False

    def claim(self) -> bool:
        with self._lock:
            if self._claimed:
                return False
            self._claimed = True
            return True


# ---------------------------------------------------------------------------- the frontend


class DnsFrontend:
    """The DNS protocol of one replica, and the UDP and TCP servers that carry it."""

    def __init__(
        self,
        backend: Backend,
        *,
        host: str,
        port: int,
        keyring: dict[dns.name.Name, dns.tsig.Key],
        origin: dns.name.Name,
        history: Callable[[dict[str, object]], None] | None = None,
        history_flush: Callable[[], None] | None = None,
        history_then: Callable[[Callable[[], None]], None] | None = None,
        update_timeout_s: float = 10.0,
        life: str = "",
    ) -> None:
        """``history`` takes the client events; ``history_flush`` hands what it has taken
        to the file now, and ``history_then(action)`` runs ``action`` once it has (the
        HistoryWriter's ``flush`` and ``then``; without them, events are taken as written).
        A reply leaves only after its completion is written: a local read's with a flush
        before it is returned, an ordered operation's through ``history_then``, so that the
        core thread's one flush per batch releases all the batch's replies.

        ``life`` names this process's life in the history's process names
        (``HOST:PORT/LIFE/N``), so that a restarted replica never reuses the name of an
        operation its previous life left open."""
        if not origin.is_absolute():
            raise FrontendError(f"the zone origin {origin} must be absolute")
        if update_timeout_s <= 0:
            raise FrontendError("update_timeout_s must be positive")
        self.backend = backend
        self.host = host
        self.origin = origin
        self.keyring = dict(keyring)
        self.history = history
        self._history_flush = history_flush
        self._history_then = history_then
        self.update_timeout_s = update_timeout_s
        self.counters: Counter[str] = Counter()  # approximate under threads: for humans
        self._port = port
        self._cache_zone: Zone | None = None
        self._cache_udp: dict[bytes, _Cached] = {}
        self._cache_tcp: dict[bytes, _Cached] = {}
        self._cache_lock = threading.Lock()
        self._process_numbers = itertools.count()
        self._life = f"{life}/" if life else ""
        self._pending_count = 0
        self._pending_lock = threading.Lock()
        self._deadlines = _Deadlines()
        self._stopping = threading.Event()
        self._udp_socket: socket.socket | None = None
        self._tcp_socket: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._connection_slots = threading.BoundedSemaphore(TCP_CONNECTIONS_MAX)

    @property
    def port(self) -> int:
        """The bound port (the configured one until ``start`` binds port 0)."""
        return self._port

    # ------------------------------------------------------------------ the protocol

    def handle(self, wire: bytes, *, tcp: bool) -> list[bytes] | Pending:
        """Decides the reply to one request: messages to send now ([] = silence) or Pending.

        Never raises: an internal error is logged, counted and answered SERVFAIL.
        """
        try:
            return self._handle(wire, tcp)
        except Exception:
            self.counters["internal_error"] += 1
            log.exception("internal error answering a request")
            return [_header_only(wire, dns.rcode.SERVFAIL)] if len(wire) >= HEADER_BYTES else []

    def handle_sync(self, wire: bytes, *, tcp: bool) -> list[bytes]:
        """``handle``, then for a Pending submits it and waits for the reply (for tests)."""
        outcome = self.handle(wire, tcp=tcp)
        if not isinstance(outcome, Pending):
            return outcome
        box: list[list[bytes]] = []
        replied = threading.Event()

        def respond(messages: list[bytes]) -> None:
            box.append(messages)
            replied.set()

        self._submit(outcome, respond)
        replied.wait(self.update_timeout_s + 2 * DEADLINE_GRACE_S)
        assert box, "the deadline backstop answers every submitted operation"
        return box[0]

    def handle_async(self, wire: bytes, *, tcp: bool, respond: Respond) -> None:
        """``handle``, then ``respond(messages)`` now or, for a Pending, once committed.

        ``respond`` is not called for silence; it may be called from another thread.
        """
        outcome = self.handle(wire, tcp=tcp)
        if isinstance(outcome, Pending):
            self._submit(outcome, respond)
        elif outcome:
            respond(outcome)

    def _handle(self, wire: bytes, tcp: bool) -> list[bytes] | Pending:
        if len(wire) < HEADER_BYTES:
            self.counters["short"] += 1
            return []
        if wire[2] & 0x80:  # QR: a response; never answer one
            self.counters["response_ignored"] += 1
            return []
        local = self.backend.read_mode == "local"
        if local and len(wire) <= CACHE_QUERY_BYTES_MAX:
            self._current_zone()
            hit = (self._cache_tcp if tcp else self._cache_udp).get(wire[2:])
            if hit is not None:
                if hit.op is not None and self.history is not None:
                    self._record_local_read(hit.op, hit.result)
                    self._flush_history()
                return [wire[:2] + hit.wire[2:]]
        try:
            request = dns.message.from_wire(wire, keyring=self.keyring)
        except _TSIG_FAILURES as error:
            self.counters["tsig_failure"] += 1
            return [self._tsig_failure(wire, error, tcp)]
        except Exception:  # dnspython raises many kinds on malformed input
            self.counters["formerr"] += 1
            return [self._formerr(wire)]
        if request.edns > 0:
            self.counters["badvers"] += 1
            return [self._error(request, dns.rcode.BADVERS, tcp)]
        opcode = request.opcode()
        if opcode == dns.opcode.QUERY:
            return self._on_query(request, wire, tcp)
        if opcode == dns.opcode.UPDATE:
            return self._on_update(request, tcp)
        self.counters["notimp"] += 1
        return [self._error(request, dns.rcode.NOTIMP, tcp)]

    # ------------------------------------------------------------------ queries

    def _on_query(
        self, request: dns.message.Message, wire: bytes, tcp: bool
    ) -> list[bytes] | Pending:
        cacheable = not request.had_tsig and len(wire) <= CACHE_QUERY_BYTES_MAX
        if len(request.question) != 1:
            return [self._error(request, dns.rcode.FORMERR, tcp)]
        question = request.question[0]
        if question.rdtype in (dns.rdatatype.AXFR, dns.rdatatype.IXFR):
            return self._on_transfer(request, tcp)
        if question.rdclass != dns.rdataclass.IN or not question.name.is_subdomain(self.origin):
            self.counters["refused"] += 1
            reply = self._error(request, dns.rcode.REFUSED, tcp)
            if cacheable:
                self._cache_insert(self._current_zone(), wire, reply, tcp, None, None)
            return [reply]
        if self.backend.read_mode != "local":
            return Pending(
                op=ops.query_op(question.name, question.rdtype),
                f="read",
                mode="linearizable",
                finish=partial(self._finish_read, request, tcp),
            )
        zone = self._current_zone()
        if self.history is None:
            reply = self._render_answer(request, zone.query(question.name, question.rdtype), tcp)
            if cacheable:
                self._cache_insert(zone, wire, reply, tcp, None, None)
            return [reply]
        op = ops.query_op(question.name, question.rdtype)
        process = self._next_process()
        self._record_invoke(process, "read", op)
        answer = zone.query(question.name, question.rdtype)
        result = ops.encode_query_result(answer)
        self._record_completion(process, "read", "ok", result, "local")
        reply = self._render_answer(request, answer, tcp)
        if cacheable:
            self._cache_insert(zone, wire, reply, tcp, op, result)
        self._flush_history()
        return [reply]

    def _finish_read(
        self, request: dns.message.Message, tcp: bool, result: str | None
    ) -> list[bytes]:
        if result is None:
            return [self._error(request, dns.rcode.SERVFAIL, tcp)]
        try:
            answer = ops.decode_query_result(result)
        except ValueError:  # the service answered something else: a bug, not the client's
            log.error("a query op committed with a result that is not a query's: %.200s", result)
            return [self._error(request, dns.rcode.SERVFAIL, tcp)]
        return [self._render_answer(request, answer, tcp)]

    def _render_answer(
        self, request: dns.message.Message, answer: ops.QueryResult, tcp: bool
    ) -> bytes:
        response = _respond_skeleton(request)
        response.set_rcode(answer.rcode_value)
        if answer.aa:
            response.flags |= dns.flags.AA
        response.answer = _chain_order(request.question[0].name, answer.rrsets("answer"))
        response.authority = answer.rrsets("authority")
        response.additional = answer.rrsets("additional")
        return _render(response, request, tcp=tcp)

    # ------------------------------------------------------------------ zone transfers

    def _on_transfer(self, request: dns.message.Message, tcp: bool) -> list[bytes]:
        question = request.question[0]
        if question.rdclass != dns.rdataclass.IN or question.name != self.origin:
            return [self._error(request, dns.rcode.NOTAUTH, tcp)]
        if not request.had_tsig:
            self.counters["transfer_refused"] += 1
            return [self._error(request, dns.rcode.REFUSED, tcp)]
        zone = self._current_zone()
        if not tcp:
            if question.rdtype == dns.rdatatype.AXFR:
                return [self._error(request, dns.rcode.NOTIMP, tcp)]
            response = _respond_skeleton(request)
            response.flags |= dns.flags.AA
            response.answer.append(zone.soa_rrset())
            return [_render(response, request, tcp=False)]
        self.counters["transfer"] += 1
        return self._transfer_messages(request, zone)

    def _transfer_messages(self, request: dns.message.Message, zone: Zone) -> list[bytes]:
        """The zone, SOA first and last, in messages signed as one TSIG sequence."""
        soa = zone.soa_rrset()
        rrsets = [soa, *(r for r in zone.rrsets() if r.rdtype != dns.rdatatype.SOA), soa]
        batches: list[list[dns.rrset.RRset]] = [[]]
        batch_bytes = 0
        for rrset in rrsets:
            for piece in _pieces(rrset):
                size = _rrset_wire_bytes(piece)
                if batches[-1] and batch_bytes + size > AXFR_MESSAGE_BYTES_MAX:
                    batches.append([])
                    batch_bytes = 0
                batches[-1].append(piece)
                batch_bytes += size
        messages: list[bytes] = []
        tsig_ctx: object = None
        for index, batch in enumerate(batches):
            if index == 0:
                response = _respond_skeleton(request)
            else:
                response = dns.message.Message(id=request.id)
                response.flags = dns.flags.Flag(dns.flags.QR)
                assert request.keyring is not None and request.keyname is not None
                response.use_tsig(request.keyring, fudge=TSIG_FUDGE_S)
            response.flags |= dns.flags.AA
            response.answer.extend(batch)
            messages.append(
                response.to_wire(max_size=TCP_MESSAGE_BYTES_MAX, multi=True, tsig_ctx=tsig_ctx)
            )
            tsig_ctx = response.tsig_ctx
        return messages

    # ------------------------------------------------------------------ updates

    def _on_update(self, request: dns.message.Message, tcp: bool) -> list[bytes] | Pending:
        assert isinstance(request, dns.update.UpdateMessage)
        if len(request.zone) != 1 or request.zone[0].rdtype != dns.rdatatype.SOA:
            self.counters["formerr"] += 1
            return [self._error(request, dns.rcode.FORMERR, tcp)]
        zone_rrset = request.zone[0]
        if zone_rrset.rdclass != dns.rdataclass.IN or zone_rrset.name != self.origin:
            self.counters["update_notauth"] += 1
            return [self._error(request, dns.rcode.NOTAUTH, tcp)]
        if not request.had_tsig:
            self.counters["update_unsigned"] += 1
            return [self._error(request, dns.rcode.REFUSED, tcp)]
        try:
            op = update_op_from_message(request, self.origin)
        except UpdateError as error:
            self.counters["update_rejected"] += 1
            return [self._error(request, error.rcode, tcp)]
        return Pending(
            op=op,
            f="update",
            mode="linearizable",
            finish=partial(self._finish_update, request, tcp),
        )

    def _finish_update(
        self, request: dns.message.Message, tcp: bool, result: str | None
    ) -> list[bytes]:
        if result is None:
            return [self._error(request, dns.rcode.SERVFAIL, tcp)]
        try:
            rcode = ops.result_rcode(result)
        except ValueError:  # the service answered something else: a bug, not the client's
            log.error("an update op committed with a result without an rcode: %.200s", result)
            rcode = dns.rcode.SERVFAIL
        return [self._error(request, rcode, tcp)]

    # ------------------------------------------------------------------ errors

    def _error(self, request: dns.message.Message, rcode: dns.rcode.Rcode, tcp: bool) -> bytes:
        """A reply with the question and ``rcode``, signed when the request was."""
        response = _respond_skeleton(request)
        response.set_rcode(rcode)
        return _render(response, request, tcp=tcp)

    def _formerr(self, wire: bytes) -> bytes:
        """FORMERR, with the first question when the question section still parses."""
        try:
            request = dns.message.from_wire(wire, keyring=False, question_only=True)
            response = dns.message.Message(id=request.id)
            response.flags = dns.flags.Flag(dns.flags.QR | (request.flags & dns.flags.RD))
            response.set_opcode(request.opcode())
            response.set_rcode(dns.rcode.FORMERR)
            response.question = request.question[:1]
            return response.to_wire(max_size=UDP_PAYLOAD_MIN, prefer_truncation=True)
        except Exception:  # not even a question: the header alone
            return _header_only(wire, dns.rcode.FORMERR)

    def _tsig_failure(self, wire: bytes, error: Exception, tcp: bool) -> bytes:
        """NOTAUTH with the TSIG error of RFC 8945 §5.2: unsigned, except BADTIME."""
        try:
            request = dns.message.from_wire(wire, keyring=False)
        except Exception:
            return self._formerr(wire)
        assert request.keyname is not None and request.keyalgorithm is not None
        response = _respond_skeleton(request)
        response.set_rcode(dns.rcode.NOTAUTH)
        now = int(time.time())
        key = self.keyring.get(request.keyname)
        if isinstance(error, dns.tsig.BadTime) and key is not None:
            response.use_tsig(
                key,
                fudge=TSIG_FUDGE_S,
                tsig_error=dns.rcode.BADTIME,
                other_data=struct.pack("!HI", (now >> 32) & 0xFFFF, now & 0xFFFFFFFF),
            )
            response.request_mac = request.mac or b""
        else:
            if isinstance(error, dns.tsig.BadSignature | dns.tsig.PeerError):
                tsig_error = dns.rcode.BADSIG
            else:
                tsig_error = dns.rcode.BADKEY
            rdata = dns.rdtypes.ANY.TSIG.TSIG(  # type: ignore[no-untyped-call]
                dns.rdataclass.ANY,
                dns.rdatatype.TSIG,
                request.keyalgorithm,
                now,
                TSIG_FUDGE_S,
                b"",
                request.id,
                tsig_error,
                b"",
            )
            response.tsig = dns.rrset.from_rdata(request.keyname, 0, rdata)
        return _render(response, request, tcp=tcp)

    # ------------------------------------------------------------------ the reply cache

    def _current_zone(self) -> Zone:
        """The backend's snapshot; a new snapshot drops the reply cache."""
        zone = self.backend.zone()
        if zone is not self._cache_zone:
            with self._cache_lock:
                if zone is not self._cache_zone:
                    self._cache_udp = {}
                    self._cache_tcp = {}
                    self._cache_zone = zone
        return zone

    def _cache_insert(
        self,
        zone: Zone,
        wire: bytes,
        reply: bytes,
        tcp: bool,
        op: str | None,
        result: str | None,
    ) -> None:
        with self._cache_lock:
            if zone is not self._cache_zone:
                return  # rendered from a snapshot that is no longer current
            cache = self._cache_tcp if tcp else self._cache_udp
            if len(cache) >= CACHE_ENTRIES_MAX:
                cache.clear()
            cache[wire[2:]] = _Cached(reply, op, result)

    # ------------------------------------------------------------------ operations and history

    def _next_process(self) -> str:
        return f"{self.host}:{self._port}/{self._life}{next(self._process_numbers)}"

    def _record_invoke(self, process: str, f: str, op: str) -> None:
        if self.history is not None:
            event: dict[str, object] = {
                "type": "invoke",
                "process": process,
                "f": f,
                "value": op,
                "time": time.monotonic_ns(),
            }
            self.history(event)

    def _record_completion(
        self, process: str, f: str, kind: str, result: str | None, mode: str
    ) -> None:
        if self.history is not None:
            event: dict[str, object] = {
                "type": kind,
                "process": process,
                "f": f,
                "value": result,
                "time": time.monotonic_ns(),
                "mode": mode,
            }
            self.history(event)

    def _flush_history(self) -> None:
        if self._history_flush is not None:
            self._history_flush()

    def _after_history(self, action: Callable[[], None]) -> None:
        if self._history_then is not None:
            self._history_then(action)
        else:
            action()

    def _record_local_read(self, op: str, result: str | None) -> None:
        process = self._next_process()
        self._record_invoke(process, "read", op)
        self._record_completion(process, "read", "ok", result, "local")

    def _submit(self, pending: Pending, respond: Respond) -> None:
        """Orders ``pending.op`` and answers once: with the committed result, or SERVFAIL
        when the backend reports a timeout or the deadline backstop fires first."""
        process = self._next_process()
        once = _Once()

        def complete(result: str | None, kind: str) -> None:
            if not once.claim():
                return
            with self._pending_lock:
                self._pending_count -= 1
            self._record_completion(process, pending.f, kind, result, pending.mode)
            try:
                messages = pending.finish(result)
            except Exception:
                log.exception("internal error rendering a committed result")
                self.counters["internal_error"] += 1
                return

            def reply() -> None:
                try:
                    respond(messages)
                except Exception:  # the client's transport is gone; nothing to tell anyone
                    self.counters["respond_failed"] += 1

            self._after_history(reply)  # the reply leaves after its completion is written

        def done(result: str | None) -> None:
            complete(result, "ok" if result is not None else "info")

        with self._pending_lock:
            overloaded = self._pending_count >= PENDING_MAX
            if not overloaded:
                self._pending_count += 1
        if overloaded:
            self.counters["overloaded"] += 1
            respond(pending.finish(None))
            return
        # The backend takes the operation only after this invoke is in the file (Node
        # flushes the history before it handles a batch with submissions), so a process
        # that dies leaves no operation that took effect without its invoke.
        self._record_invoke(process, pending.f, pending.op)
        deadline = time.monotonic() + self.update_timeout_s + DEADLINE_GRACE_S
        self._deadlines.add(deadline, partial(done, None))
        try:
            self.backend.submit(pending.op, done)
        except Exception:
            log.exception("the backend refused an operation")
            complete(None, "fail")

    # ------------------------------------------------------------------ servers

    def start(self) -> None:
        """Binds UDP and TCP on host:port (one port for both) and serves in daemon threads."""
        if self._udp_socket is not None:
            raise FrontendError("a frontend starts once")
        attempts = 20 if self._port == 0 else 1
        for attempt in range(attempts):
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
                udp.bind((self.host, self._port))
                port = udp.getsockname()[1]
                tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                tcp.bind((self.host, port))
                tcp.listen(64)
            except OSError:
                udp.close()
                tcp.close()
                if attempt == attempts - 1:
                    raise
                continue
            udp.settimeout(SOCKET_POLL_S)
            tcp.settimeout(SOCKET_POLL_S)
            self._udp_socket, self._tcp_socket, self._port = udp, tcp, port
            break
        for target in (self._serve_udp, self._serve_tcp):
            thread = threading.Thread(target=target, daemon=True, name=f"dnsfront{target.__name__}")
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stops serving: closes the sockets and joins the server threads."""
        self._stopping.set()
        self._deadlines.stop()
        with self._connections_lock:
            for connection in self._connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(timeout=2 * SOCKET_POLL_S + 1)
        for sock in (self._udp_socket, self._tcp_socket):
            if sock is not None:
                sock.close()

    def _serve_udp(self) -> None:
        sock = self._udp_socket
        assert sock is not None
        while not self._stopping.is_set():
            try:
                wire, address = sock.recvfrom(UDP_RECEIVE_BYTES_MAX)
            except TimeoutError:
                continue
            except OSError:
                if self._stopping.is_set():
                    return
                continue
            outcome = self.handle(wire, tcp=False)
            if isinstance(outcome, Pending):
                self._submit(outcome, partial(self._udp_send, sock, address))
            elif outcome:
                self._udp_send(sock, address, outcome)

    @staticmethod
    def _udp_send(sock: socket.socket, address: tuple[str, int], messages: list[bytes]) -> None:
        with contextlib.suppress(OSError):  # the client went away, or we are stopping
            sock.sendto(messages[0], address)

    def _serve_tcp(self) -> None:
        listener = self._tcp_socket
        assert listener is not None
        while not self._stopping.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stopping.is_set():
                    return
                continue
            if not self._connection_slots.acquire(blocking=False):
                self.counters["tcp_refused_full"] += 1
                connection.close()
                continue
            thread = threading.Thread(
                target=self._serve_connection, args=(connection,), daemon=True, name="dnsfront-tcp"
            )
            thread.start()

    def _serve_connection(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)
        in_flight = threading.Semaphore(TCP_PENDING_PER_CONNECTION_MAX)
        send_lock = threading.Lock()

        def respond(messages: list[bytes]) -> None:
            frames = b"".join(len(m).to_bytes(2, "big") + m for m in messages)
            with send_lock:
                try:
                    connection.sendall(frames)
                except OSError:
                    self.counters["respond_failed"] += 1

        def respond_and_release(messages: list[bytes]) -> None:
            try:
                respond(messages)
            finally:
                in_flight.release()

        try:
            connection.settimeout(TCP_IDLE_TIMEOUT_S)
            while not self._stopping.is_set():
                length = _receive_exactly(connection, 2)
                if length is None:
                    break
                wire = _receive_exactly(connection, int.from_bytes(length, "big"))
                if wire is None:
                    break
                outcome = self.handle(wire, tcp=True)
                if isinstance(outcome, Pending):
                    in_flight.acquire()
                    self._submit(outcome, respond_and_release)
                elif outcome:
                    respond(outcome)
            # The client is done sending; answer what it is still waiting for, then close.
            for _ in range(TCP_PENDING_PER_CONNECTION_MAX):
                if not in_flight.acquire(timeout=self.update_timeout_s + 2 * DEADLINE_GRACE_S):
                    break
        finally:
            with self._connections_lock:
                self._connections.discard(connection)
            connection.close()
            self._connection_slots.release()


def _receive_exactly(connection: socket.socket, count: int) -> bytes | None:
    """``count`` octets from the stream, or None on end of stream, timeout or error."""
    chunks: list[bytes] = []
    remaining = count
    while remaining > 0:
        try:
            chunk = connection.recv(remaining)
        except OSError:  # includes the idle timeout
            return None
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)
