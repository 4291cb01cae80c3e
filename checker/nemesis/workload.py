"""The workload: K client threads, each an independent Jepsen process, on a few names.

Every thread runs one operation at a time against a random replica's DNS port and records
it in the one client history file (DIR/clients.jsonl, vrref/history.py): the invoke is
written and handed to the OS before the request is sent, the completion after the reply.
``ok`` carries the canonical result (an update's rcode, a read's QueryResult text), ``fail``
only an update the server certainly did not order (NOTAUTH: the TSIG check comes before
anything is ordered; never expected), ``info`` anything unknown: a timeout, SERVFAIL (not
committed in time: it may still commit), a reply that does not verify. After an ``info`` the
thread takes a new process number (its old one has an operation outstanding forever), as
Jepsen does: process p becomes p + K.

The operations, on ``NAMES_COUNT`` names under the origin, so that they conflict:

- ``cas``: prerequisite "TXT RRset exists (value dependent)" with the RRset the thread last
  read there, then the RRset replaced by a new value (NOERROR, or NXRRSET when it changed);
- ``write``: a blind write, the TXT or A RRset replaced by a new value;
- ``add``: one new TXT record added to the RRset;
- ``read``: a query of the name's TXT or A RRset.

Every value written is unique in the run (a counter), so an update is identified by its op
text, and a read's answer says which writes it saw.

Times are CLOCK_MONOTONIC nanoseconds (``time.monotonic_ns``), shared with the replica
processes, and taken under the writer's lock with the write, so the file's order is the
order of its times.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype

from checker.nemesis import dnsclient
from checker.nemesis.cluster import KEY, ORIGIN, Cluster
from vrref import history as hist
from vrref.dns.canonical import canonical_rdata_of, name_text
from vrref.dns.zone import Zone

NAMES_COUNT: Final = 6
NAMES: Final = tuple(f"k{i}.{ORIGIN}" for i in range(NAMES_COUNT))
KINDS: Final = ("read", "cas", "write", "add")
WEIGHTS: Final = (0.40, 0.20, 0.25, 0.15)
A_SHARE: Final = 0.3  # of reads and blind writes: the A RRset (the rest: TXT)

Outcome = Literal["ok", "fail", "info"]


@dataclass(frozen=True, slots=True)
class OpRecord:
    """One operation as the workload saw it (for the figures and the cross-check)."""

    client: int
    process: int
    kind: str
    f: str
    op: str
    replica: int
    outcome: Outcome
    rcode: str | None
    invoke_ns: int
    complete_ns: int
    mode: str | None = None


class Recorder:
    """The client history: one HistoryWriter, each event's time taken under one lock."""

    def __init__(self, path: Path, zone_file: Path, *, read_mode: str) -> None:
        initial = Zone.from_file(zone_file, ORIGIN)
        self.path = path
        self._lock = threading.Lock()
        self.writer = hist.HistoryWriter(
            path,
            model="dns",
            origin=ORIGIN,
            initial={"records": [list(r) for r in initial.records()]},
            writer="vrref nemesis (client side)",
            read_mode=read_mode,
        )

    def invoke(self, process: int, f: str, value: str) -> int:
        """Writes the invoke and hands it to the OS (before the request leaves)."""
        with self._lock:
            now = time.monotonic_ns()
            self.writer.invoke(process, f, value, time=now)
            self.writer.flush()
        return now

    def complete(
        self, kind: Outcome, process: int, f: str, value: Any, mode: str | None = None
    ) -> int:
        with self._lock:
            now = time.monotonic_ns()
            self.writer.complete(kind, process, f, value, time=now, mode=mode)
        return now

    def now(self) -> int:
        with self._lock:
            return time.monotonic_ns()

    def write(self, event: hist.Record) -> None:
        with self._lock:
            self.writer.write(event)
            self.writer.flush()

    def close(self) -> None:
        with self._lock:
            self.writer.close()


@dataclass
class ReadMode:
    """The cluster's read mode as the clients should record it, and a generation that
    changes whenever it may change (a whole-cluster restart): a read that overlaps a change
    is recorded ``local``, the weaker standard, which a linearizable read also meets."""

    mode: str
    generation: int = 0


@dataclass
class Workload:
    cluster: Cluster
    recorder: Recorder
    clients: int
    seed: int
    read_mode: ReadMode
    timeout_s: float = 1.0
    think_s: float = 0.0
    signer: dnsclient.Signer = field(default_factory=lambda: dnsclient.Signer.from_file(KEY))
    records: list[OpRecord] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    on_error: Callable[[str], None] | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _values: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def start(self) -> None:
        for k in range(self.clients):
            thread = threading.Thread(target=self._client, args=(k,), daemon=True, name=f"c{k}")
            thread.start()
            self._threads.append(thread)

    def stop(self) -> int:
        """Tells the clients to stop and waits for them; returns when it told them (ns)."""
        told = time.monotonic_ns()
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.timeout_s * 3 + 5)
        return told

    def _value(self) -> int:
        with self._lock:
            return next(self._values)

    def _client(self, k: int) -> None:
        try:
            _Client(self, k).run()
        except Exception as error:  # a bug of ours: say so, the run is not to be trusted
            message = f"client {k} stopped: {error!r}"
            with self._lock:
                self.errors.append(message)
            if self.on_error is not None:
                self.on_error(message)

    def add(self, record: OpRecord) -> None:
        with self._lock:
            self.records.append(record)


class _Client:
    """One client thread's loop (its own random stream, its own knowledge of values)."""

    def __init__(self, workload: Workload, k: int) -> None:
        self.w = workload
        self.k = k
        self.process = k
        self.rng = random.Random(f"{workload.seed}/client/{k}")
        self.origin = dns.name.from_text(ORIGIN)
        self.known: dict[str, frozenset[str]] = {}  # name -> its TXT RRset, as last seen

    def run(self) -> None:
        w = self.w
        while not w._stop.is_set():
            kind = self.rng.choices(KINDS, WEIGHTS)[0]
            name = self.rng.choice(NAMES)
            replica = self.rng.randrange(len(w.cluster.hosts))
            a_type = self.rng.random() < A_SHARE
            if kind == "cas" and not self.known.get(name):
                kind = "read"
                a_type = False
            if kind == "read":
                self.read(name, "A" if a_type else "TXT", replica)
            else:
                self.update(kind, name, a_type, replica)
            if w.think_s > 0:
                w._stop.wait(self.rng.uniform(0, 2 * w.think_s))

    def _new_value(self, rdtype: str) -> str:
        n = self.w._value()
        if rdtype == "A":
            return f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"
        return dnsclient.txt(f"v{n}")

    def update(self, kind: str, name: str, a_type: bool, replica: int) -> None:
        w = self.w
        signer, origin = w.signer, self.origin
        rdtype = "A" if (kind == "write" and a_type) else "TXT"
        new = self._new_value(rdtype)
        if kind == "cas":
            update = dnsclient.compare_and_set(origin, signer, name, self.known[name], new)
        elif kind == "write":
            update = dnsclient.blind_write(origin, signer, name, rdtype, new)
        else:
            update = dnsclient.set_add(origin, signer, name, new)
        host, port = w.cluster.address(replica)
        process = self.process
        invoked = w.recorder.invoke(process, "update", update.op)
        outcome: Outcome
        rcode: str | None = None
        value: str | None = None
        try:
            reply = dnsclient.exchange(update.message, host, port, w.timeout_s)
        except (dns.exception.DNSException, OSError, EOFError, ValueError):
            outcome = "info"  # timed out, refused, did not verify: it may have happened
        else:
            rcode, value = dnsclient.update_result(reply)
            if rcode == "SERVFAIL":
                outcome = "info"  # not committed in time: it may commit later
            elif rcode == "NOTAUTH":
                outcome = "fail"  # the TSIG check comes before anything is ordered
            else:
                outcome = "ok"
        completed = w.recorder.complete(
            outcome, process, "update", value if outcome == "ok" else None
        )
        if outcome == "info":
            self.process += w.clients
        elif outcome == "ok" and rcode == "NOERROR" and rdtype == "TXT":
            if kind == "add":
                self.known[name] = self.known.get(name, frozenset()) | {new}
            else:
                self.known[name] = frozenset({new})
        w.add(
            OpRecord(
                client=self.k,
                process=process,
                kind=kind,
                f="update",
                op=update.op,
                replica=replica,
                outcome=outcome,
                rcode=rcode,
                invoke_ns=invoked,
                complete_ns=completed,
            )
        )

    def read(self, name: str, rdtype: str, replica: int) -> None:
        w = self.w
        op = dnsclient.read_op(name, rdtype)
        host, port = w.cluster.address(replica)
        process = self.process
        generation, mode = w.read_mode.generation, w.read_mode.mode
        invoked = w.recorder.invoke(process, "read", op)
        reply: dns.message.Message | None = None
        try:
            reply = dnsclient.exchange(dnsclient.query(name, rdtype), host, port, w.timeout_s)
        except (dns.exception.DNSException, OSError, EOFError, ValueError):
            reply = None
        rcode = None if reply is None else dns.rcode.to_text(reply.rcode())
        if reply is None or rcode == "SERVFAIL":
            outcome: Outcome = "info"
            completed = w.recorder.complete("info", process, "read", None)
            self.process += w.clients
            recorded_mode = None
        else:
            if generation != w.read_mode.generation:
                mode = "local"  # the mode may have changed while the read was out
            result = dnsclient.query_result(reply)
            outcome = "ok"
            recorded_mode = mode
            completed = w.recorder.complete("ok", process, "read", result, mode=mode)
            if rdtype == "TXT":
                self.known[name] = frozenset(
                    canonical_rdata_of(r)
                    for rrset in reply.answer
                    if rrset.rdtype == dns.rdatatype.TXT and name_text(rrset.name) == name
                    for r in rrset
                )
        w.add(
            OpRecord(
                client=self.k,
                process=process,
                kind="read",
                f="read",
                op=op,
                replica=replica,
                outcome=outcome,
                rcode=rcode,
                invoke_ns=invoked,
                complete_ns=completed,
                mode=recorded_mode,
            )
        )
