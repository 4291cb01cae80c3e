"""The threaded runtime: one replica process, its sockets, its clock and its history.

One thread, the core thread, owns the replica core, the client proxies and the zone; it
takes events from one queue (peer messages, DNS updates to order, ticks) and turns their
effects into sends. Every other thread only does I/O: the peer transport's readers and
senders, the DNS frontend's UDP and TCP servers, and a ticker. So the protocol code never
runs concurrently with itself, and what it sees is a sequence of events that the history
records and a checker can replay into a fresh core (checker/trace.py).

Updates arriving at any replica go through that replica's VR client proxies (VRR §4: the
client side), to the primary, and are answered after they commit. Proxies are pooled: each
has at most one request outstanding, so concurrency comes from several proxies. Client-ids
embed the replica number in their top byte, so a primary's REPLY is routed to the replica
that hosts the proxy, and a random part chosen at start, so a restarted replica never
reuses a client-id whose request-numbers the cluster remembers.

Durable (the default): each replica keeps a write-ahead log and checkpoints in
``STATE_DIR/replica-<id>/`` (vrref/runtime/storage.py). The core returns persist effects
ahead of the messages that depend on them (spec/vr.md R20), and the core thread writes and
fsyncs them, once per batch, before it sends anything that follows them. A process that
starts on an empty directory boots as a member of view 0 with the zone file as its state;
one that finds its disk resumes from it (``Replica.restarted``), so a whole cluster can stop
and start again and keep every acknowledged update. A disk found corrupt (not just a torn
last write) is not trusted: it is moved aside and the replica recovers from its peers
(VRR §4.3).

Diskless (``--diskless``, VRR's own model): nothing is on disk; a process that finds a
marker of an earlier start lost its state and must recover (VRR §4.3) with a fresh nonce,
so starting every replica of a running cluster at once cannot recover (trap 5,
spec/traps.md).

Local reads are answered from a snapshot of the committed zone published by the core
thread after each batch of commits (a clone, so a reader never sees half an update).
"""

from __future__ import annotations

import logging
import queue
import secrets
import threading
import time
import tomllib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import dns.name

from vrref import history as hist
from vrref.core import durable
from vrref.core.client import Client
from vrref.core.messages import Message, Reply, to_json
from vrref.core.replica import Config, Effect, Replica, Send, SendReply, Status
from vrref.dns.zone import Zone
from vrref.runtime.storage import Damage, Storage
from vrref.runtime.transport import PeerTransport

log = logging.getLogger(__name__)
PERSIST_EFFECTS = (durable.PersistVote, durable.PersistLog, durable.PersistCheckpoint)
CLIENT_ID_REPLICA_SHIFT = 56
CLIENT_PROXIES_MAX = 256
FINAL_DRAIN_HEARTBEATS = 3
"""How long a cleanly stopping replica lets commits reach it before recording its final
state: the primary tells its backups the commit-number at least once a heartbeat."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplicaAddress:
    host: str
    peer_port: int
    dns_port: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterConfig:
    """What every replica of a cluster shares (``cluster.toml``)."""

    replicas: tuple[ReplicaAddress, ...]
    key: bytes
    zone_file: Path
    origin: str
    tsig_key_file: Path
    tick_ms: int = 50
    read_mode: str = "local"
    protocol: Config = field(default_factory=lambda: Config(replica_count=3))

    def __post_init__(self) -> None:
        if self.protocol.replica_count != len(self.replicas):
            raise ValueError(
                f"protocol.replica_count is {self.protocol.replica_count}"
                f" but there are {len(self.replicas)} replicas"
            )

    @classmethod
    def load(cls, path: Path) -> ClusterConfig:
        """Reads cluster.toml; raises ValueError naming what is wrong."""
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise ValueError(f"{path}: {error}") from None
        protocol_table = _protocol_table(path, data)
        try:
            replicas = tuple(
                ReplicaAddress(
                    host=r["host"], peer_port=int(r["peer_port"]), dns_port=int(r["dns_port"])
                )
                for r in data["replica"]
            )
            base = path.parent
            protocol = Config(replica_count=len(replicas), **protocol_table)
            config = cls(
                replicas=replicas,
                key=bytes.fromhex(data["cluster_key"]),
                zone_file=base / data["zone_file"],
                origin=data["origin"],
                tsig_key_file=base / data["tsig_key_file"],
                tick_ms=int(data.get("tick_ms", 50)),
                read_mode=data.get("read_mode", "local"),
                protocol=protocol,
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{path}: bad or missing setting: {error}") from None
        if config.read_mode not in ("local", "linearizable"):
            raise ValueError(f"{path}: read_mode must be 'local' or 'linearizable'")
        return config

    def dump(self) -> str:
        """The TOML text of this configuration, which ``load`` reads back equal to it. Paths
        are written as they are; ``load`` reads relative ones from the file's folder."""
        lines = [
            f'origin = "{self.origin}"',
            f'zone_file = "{self.zone_file}"',
            f'tsig_key_file = "{self.tsig_key_file}"',
            f'cluster_key = "{self.key.hex()}"',
            f"tick_ms = {self.tick_ms}",
            f'read_mode = "{self.read_mode}"',
            "",
            "[protocol]",
        ]
        lines += [f"{name} = {getattr(self.protocol, name)}" for name in PROTOCOL_TABLE_FIELDS]
        for r in self.replicas:
            lines += [
                "",
                "[[replica]]",
                f'host = "{r.host}"',
                f"peer_port = {r.peer_port}",
                f"dns_port = {r.dns_port}",
            ]
        return "\n".join(lines) + "\n"


PROTOCOL_TABLE_FIELDS = tuple(f.name for f in fields(Config) if f.name != "replica_count")
"""The settings of cluster.toml's [protocol] table: every Config field but replica_count,
which is the length of the replica list."""


def _protocol_table(path: Path, data: dict[str, Any]) -> dict[str, int]:
    """The [protocol] table of cluster.toml, checked; raises ValueError naming the file."""
    table = data.get("protocol", {})
    if not isinstance(table, dict):
        raise ValueError(f"{path}: [protocol] must be a table")
    if "replica_count" in table:
        raise ValueError(
            f"{path}: [protocol] must not set replica_count: it is the number of [[replica]]"
        )
    unknown = sorted(set(table) - set(PROTOCOL_TABLE_FIELDS))
    if unknown:
        raise ValueError(f"{path}: [protocol] has unknown settings {unknown}")
    for name, value in table.items():
        if type(value) is not int:
            raise ValueError(f"{path}: [protocol] {name} must be an integer, got {value!r}")
    return table


@dataclass(slots=True)
class _Pending:
    client: Client
    done: Callable[[str | None], None] | None
    deadline_tick: int


class Node:
    """One replica process: core thread, transport, DNS frontend, ticker."""

    def __init__(
        self,
        cluster: ClusterConfig,
        replica_id: int,
        *,
        state_dir: Path,
        history_path: Path | None = None,
        update_timeout_s: float = 10.0,
        diskless: bool = False,
    ) -> None:
        from vrref.dns.keys import load_keyring
        from vrref.runtime.frontend import DnsFrontend

        if not 0 <= replica_id < len(cluster.replicas):
            raise ValueError(f"replica id {replica_id} is not in the cluster")
        self.cluster = cluster
        self.replica_id = replica_id
        self.read_mode = cluster.read_mode
        self.counters: Counter[str] = Counter()
        self.events: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self._stopping = threading.Event()
        self._stop_requested = threading.Event()
        self._tick_queued = threading.Event()  # a tick waits in the queue (see _ticker)
        self._ticks = 0
        self._update_timeout_ticks = max(1, int(update_timeout_s * 1000 / cluster.tick_ms))

        origin = dns.name.from_text(cluster.origin)
        initial = Zone.from_file(cluster.zone_file, origin)
        self._initial_zone = initial

        state_dir.mkdir(parents=True, exist_ok=True)
        marker = state_dir / f"replica-{replica_id}.started"
        self.storage: Storage | None = None
        self.damage: Damage | None = None
        disk = durable.EMPTY
        if diskless:
            self.mode = "recovering" if marker.exists() else "booted"
        else:
            self.storage, disk, self.damage = self._open_storage(
                state_dir / f"replica-{replica_id}"
            )
            if self.damage is not None and self.damage.kind == "corrupt":
                self.mode = "recovering"
            else:
                self.mode = "booted" if disk == durable.EMPTY else "reopened"
        self.recovering = self.mode == "recovering"
        marker.write_text(f"{time.time_ns()}\n")

        # Buffered whole lines, flushed once per batch of events (and before the batch's
        # submissions take effect: see _handle_batch), so that replies wait for their
        # completions (vrref/runtime/frontend.py) at one write a batch.
        self.history = (
            hist.HistoryWriter(
                history_path,
                buffer_bytes=1 << 16,
                replica=replica_id,
                replica_count=len(cluster.replicas),
                origin=cluster.origin,
                model="dns",
                initial={"records": [list(r) for r in initial.records()]},
                read_mode=cluster.read_mode,
                protocol=hist.protocol_to_json(cluster.protocol),
            )
            if history_path is not None
            else None
        )
        if self.mode == "recovering":
            nonce = secrets.randbits(63)
            self.core, effects = Replica.recovering(
                cluster.protocol, replica_id, self._zone_factory, nonce=nonce
            )
            self._record(hist.Restart(replica=replica_id, nonce=nonce, time=time.monotonic_ns()))
        elif self.mode == "reopened":
            self.core, effects = Replica.restarted(
                cluster.protocol, replica_id, self._zone_factory, disk
            )
            self._record(
                hist.Reopen(
                    replica=replica_id, disk=durable.to_json(disk), time=time.monotonic_ns()
                )
            )
        else:
            self.core = Replica(cluster.protocol, replica_id, self._zone_factory)
            effects = []
            self._record(hist.Boot(replica=replica_id, time=time.monotonic_ns()))
        self._published: Zone = self._snapshot_zone()
        self._published_commit = self.core.commit_number
        self.announce = False
        """Print a line on stdout when a view starts here (``vrref replica`` does)."""
        self._announced_view = -1

        self._client_base = (replica_id << CLIENT_ID_REPLICA_SHIFT) | (secrets.randbits(40) << 8)
        self._free: list[Client] = []
        self._clients_made = 0
        self._pending: dict[int, _Pending] = {}
        self._backlog: list[tuple[str, Callable[[str | None], None]]] = []

        me = cluster.replicas[replica_id]
        self.transport = PeerTransport(
            key=cluster.key,
            listen=(me.host, me.peer_port),
            peers={
                i: (r.host, r.peer_port) for i, r in enumerate(cluster.replicas) if i != replica_id
            },
            deliver=lambda message: self.events.put(("message", message)),
        )
        self.front = DnsFrontend(
            self,
            host=me.host,
            port=me.dns_port,
            keyring=load_keyring(cluster.tsig_key_file),
            origin=origin,
            history=self._record_client if self.history is not None else None,
            history_flush=self.history.flush if self.history is not None else None,
            history_then=self.history.then if self.history is not None else None,
            update_timeout_s=update_timeout_s,
            life=secrets.token_hex(4),  # a fresh name per life of the process
        )
        self._initial_effects: list[Effect] = effects
        self._threads: list[threading.Thread] = []

    @staticmethod
    def _open_storage(directory: Path) -> tuple[Storage, durable.Durable, Damage | None]:
        """The replica's store. A disk found corrupt is moved aside (kept for the operator)
        and replaced by an empty one: the replica then recovers from its peers."""
        storage, disk, damage = Storage.open(directory)
        if damage is not None:
            log.warning(
                "replica storage %s: %s at %s: %s",
                directory,
                damage.kind,
                damage.file,
                damage.detail,
            )
        if damage is None or damage.kind != "corrupt":
            return storage, disk, damage
        storage.close()
        aside = directory.with_name(f"{directory.name}.damaged-{time.time_ns()}")
        directory.rename(aside)
        log.warning("replica storage %s moved to %s; recovering from the peers", directory, aside)
        storage, disk, _ = Storage.open(directory)
        assert disk == durable.EMPTY
        return storage, disk, damage

    # ------------------------------------------------------------------ Backend for dnsfront

    def zone(self) -> Zone:
        return self._published

    def submit(self, op: str, done: Callable[[str | None], None]) -> None:
        """Orders ``op`` through VR; ``done`` gets the committed result, or None on timeout."""
        self.events.put(("submit", op, done))

    # ------------------------------------------------------------------ life cycle

    def start(self) -> None:
        self.transport.start()
        self._route(self._initial_effects)
        self.front.start()
        for target in (self._core_loop, self._ticker):
            thread = threading.Thread(target=target, daemon=True, name=target.__name__)
            thread.start()
            self._threads.append(thread)

    def stop(self, *, final: bool = True) -> None:
        """Stops cleanly. With ``final`` (and a history): the DNS frontend stops first (no
        new client operations), the core runs on for ``FINAL_DRAIN_HEARTBEATS`` heartbeat
        periods so that the commits the cluster made before reach it, and then the
        replica's committed zone is recorded as the history's ``final`` state (when it is
        in normal status: a recovering replica's zone is not its state)."""
        since = time.monotonic_ns()
        drain = final and self.history is not None and not self._stopping.is_set()
        self.front.stop()
        if drain:
            ticks = FINAL_DRAIN_HEARTBEATS * self.cluster.protocol.heartbeat_ticks
            self._stopping.wait(ticks * self.cluster.tick_ms / 1000)
        self._stopping.set()
        self.events.put(("stop",))
        self.transport.stop()
        for thread in self._threads:
            thread.join(timeout=2)
        core_stopped = not any(t.is_alive() for t in self._threads if t.name == "_core_loop")
        if drain and core_stopped and self.core.status is Status.NORMAL:
            service = self.core.service
            assert isinstance(service, Zone)
            self._record(
                hist.FinalZone(
                    replica=self.replica_id,
                    records=service.records(),
                    since=since,
                    commit_number=self.core.commit_number,
                    time=time.monotonic_ns(),
                )
            )
        if self.history is not None:
            self.history.close()
        if self.storage is not None:
            self.storage.close()

    def request_stop(self) -> None:
        """Makes ``wait`` return (a signal handler's: ``stop`` then runs on the main thread)."""
        self._stop_requested.set()

    def wait(self) -> None:
        while not (self._stopping.is_set() or self._stop_requested.is_set()):
            self._stopping.wait(0.5)

    # ------------------------------------------------------------------ the core thread

    def _ticker(self) -> None:
        """One tick per tick period, and never a burst: periods missed while the process
        was paused (SIGSTOP, a stalled VM) or the core thread was busy are dropped, not
        replayed, and at most one tick waits in the queue. A burst would fire every timer
        at once (the primary timeout of a backup whose primary's messages wait in the same
        queue), so a pause would cause view changes; a missed period only delays a timer."""
        interval = self.cluster.tick_ms / 1000
        next_at = time.monotonic()
        while not self._stopping.is_set():
            next_at += interval
            now = time.monotonic()
            if now > next_at + interval:
                self.counters["ticks skipped"] += int((now - next_at) / interval)
                next_at = now  # behind by more than a period: start again from now
            self._stopping.wait(max(0.0, next_at - now))
            if self._tick_queued.is_set():
                self.counters["ticks skipped"] += 1
                continue
            self._tick_queued.set()
            self.events.put(("tick",))

    def _core_loop(self) -> None:
        while not self._stopping.is_set():
            batch = [self.events.get()]
            while len(batch) < 512:
                try:
                    batch.append(self.events.get_nowait())
                except queue.Empty:
                    break
            try:
                self._handle_batch(batch)
            except Exception as error:  # a bug: record it and stop rather than run on
                crash = hist.Crash(
                    replica=self.replica_id, error=repr(error), time=time.monotonic_ns()
                )
                self._record(crash)
                if self.history is not None:
                    self.history.flush()
                self._stopping.set()
                raise

    def _handle_batch(self, batch: list[tuple[Any, ...]]) -> None:
        if self.history is not None and any(event[0] == "submit" for event in batch):
            self.history.flush()  # the submissions' invokes, before any of them can commit
        try:
            self._handle_events(batch)
        finally:
            if self.history is not None:
                self.history.flush()  # and releases the replies waiting on it

    def _handle_events(self, batch: list[tuple[Any, ...]]) -> None:
        messages: list[Message] = []
        for event in batch:
            kind = event[0]
            if kind == "message":
                message = event[1]
                if isinstance(message, Reply):
                    self._on_reply(message)
                else:
                    messages.append(message)
            elif kind == "submit":
                messages.extend(self._start_request(event[1], event[2]))
            elif kind == "tick":
                self._tick_queued.clear()
                self._deliver(messages)
                messages = []
                self._tick()
            elif kind == "stop":
                return
        self._deliver(messages)
        self._publish()

    def _deliver(self, messages: list[Message]) -> None:
        if not messages:
            return
        if self.history is not None:
            batch = tuple(to_json(m) for m in messages)
            self._record(
                hist.Deliver(replica=self.replica_id, messages=batch, time=time.monotonic_ns())
            )
        self._route(self.core.on_messages(messages))
        self._record_state()

    def _tick(self) -> None:
        self._ticks += 1
        if self.history is not None:
            self._record(hist.Tick(replica=self.replica_id, time=time.monotonic_ns()))
        self._route(self.core.on_tick())
        self._record_state()
        local: list[Message] = []
        for pending in list(self._pending.values()):
            for send in pending.client.on_tick():
                local.extend(self._send_request(send))
            if pending.done is not None and self._ticks >= pending.deadline_tick:
                # The request may still commit later: the caller must treat it as unknown.
                done, pending.done = pending.done, None
                self.counters["requests timed out"] += 1
                done(None)
        self._deliver(local)

    def _publish(self) -> None:
        """Publishes a snapshot of the committed zone for readers on other threads, and
        says on stdout (with ``announce``) when a view starts here."""
        core = self.core
        if self.announce and core.status is Status.NORMAL and core.view != self._announced_view:
            self._announced_view = core.view
            print(
                f"replica {self.replica_id}: in view {core.view}, primary {core.primary},"
                f" op-number {core.op_number}",
                flush=True,
            )
        if self.core.commit_number != self._published_commit or (
            self._published.digest() != self.core.service.digest()
        ):
            self._published = self._snapshot_zone()
            self._published_commit = self.core.commit_number

    def _snapshot_zone(self) -> Zone:
        service = self.core.service
        assert isinstance(service, Zone)
        return service.clone()

    def _zone_factory(self) -> Zone:
        return self._initial_zone.clone()

    # ------------------------------------------------------------------ client proxies

    def _start_request(self, op: str, done: Callable[[str | None], None]) -> list[Message]:
        client = self._free.pop() if self._free else self._new_client()
        if client is None:
            self.counters["requests refused: too many outstanding"] += 1
            done(None)
            return []
        sends = client.submit(op)
        self._pending[client.client_id] = _Pending(
            client=client, done=done, deadline_tick=self._ticks + self._update_timeout_ticks
        )
        local: list[Message] = []
        for send in sends:
            local.extend(self._send_request(send))
        return local

    def _new_client(self) -> Client | None:
        if self._clients_made >= CLIENT_PROXIES_MAX:
            return None
        self._clients_made += 1
        return Client(
            self._client_base + self._clients_made,
            len(self.cluster.replicas),
            resend_ticks=self.cluster.protocol.primary_timeout_ticks,
        )

    def _send_request(self, send: Send) -> list[Message]:
        """A client proxy's REQUEST: to the local core directly, or over the transport."""
        if send.to == self.replica_id:
            return [send.message]
        self.transport.send(send.to, send.message)
        return []

    def _on_reply(self, reply: Reply) -> None:
        pending = self._pending.get(reply.client_id)
        if pending is None:
            self.counters["replies for unknown clients"] += 1
            return
        completion = pending.client.on_reply(reply)
        if completion is None:
            return
        del self._pending[reply.client_id]
        self._free.append(pending.client)
        if pending.done is not None:
            pending.done(completion.result)

    # ------------------------------------------------------------------ effects

    def _route(self, effects: list[Effect]) -> None:
        """Performs the core's effects in order: each run of persist effects is written and
        fsynced (one ``Storage.write``) before any effect after it (R20)."""
        persist: list[durable.Persist] = []
        for effect in effects:
            if isinstance(effect, PERSIST_EFFECTS):
                persist.append(effect)
                continue
            if persist:
                self._persist(persist)
                persist = []
            if isinstance(effect, SendReply):
                owner = effect.reply.client_id >> CLIENT_ID_REPLICA_SHIFT
                if owner == self.replica_id:
                    self._on_reply(effect.reply)
                elif 0 <= owner < len(self.cluster.replicas):
                    self.transport.send(owner, effect.reply)
                else:
                    self.counters["replies for unknown replicas"] += 1
            elif isinstance(effect, Send):
                if self.history is not None:
                    message = to_json(effect.message)
                    self._record(
                        hist.Send(
                            replica=self.replica_id,
                            to=effect.to,
                            message=message,
                            time=time.monotonic_ns(),
                        )
                    )
                self.transport.send(effect.to, effect.message)

        if persist:
            self._persist(persist)

    def _persist(self, effects: list[durable.Persist]) -> None:
        if self.storage is not None:
            self.storage.write(effects)
            self.counters["persist batches"] += 1

    def _record(self, event: hist.Record) -> None:
        if self.history is not None:
            self.history.write(event)

    def _record_client(self, event: dict[str, object]) -> None:
        """The DNS frontend's client events (JSON objects, parsed and checked by the writer)."""
        if self.history is not None:
            self.history.write(event)

    def _record_state(self) -> None:
        """The core's state after an input (vrref/history.py's replica_state)."""
        if self.history is not None:
            self.history.write(hist.State.of(self.core, time=time.monotonic_ns()))


def run_replica(
    config_path: Path,
    replica_id: int,
    state_dir: Path,
    history: Path | None,
    *,
    diskless: bool = False,
) -> int:
    """``vrref replica``: runs one replica until SIGTERM or Ctrl-C."""
    import signal

    cluster = ClusterConfig.load(config_path)
    node = Node(cluster, replica_id, state_dir=state_dir, history_path=history, diskless=diskless)
    node.announce = True
    node.start()
    me = cluster.replicas[replica_id]
    mode = node.mode
    if node.mode == "reopened":
        mode += f" at view {node.core.view}, op {node.core.op_number}"
    if node.damage is not None:
        mode += f" (its disk had a {node.damage.kind} record: {node.damage.detail})"
    print(
        f"replica {replica_id} {mode}: DNS on {me.host}:{node.front.port}, "
        f"peers on {me.host}:{me.peer_port}",
        flush=True,
    )

    def stop(signum: int, frame: object) -> None:
        del signum, frame
        node.request_stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    node.wait()
    crashed = node._stopping.is_set() and not node._stop_requested.is_set()
    node.stop()
    if crashed:  # the core raised: the history has its crash; say so to whoever started us
        print(f"replica {replica_id}: stopped after an internal error", flush=True)
        return 1
    return 0
