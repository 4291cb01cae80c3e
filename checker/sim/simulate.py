"""Seeded swarm simulation of the real core (``vrref simulate``), in the manner of
TigerBeetle's VOPR and FoundationDB's simulator.

Each seed draws its own world from ``random.Random(seed)`` and nothing else: a cluster of 3
or 5 replicas of the real ``Replica`` (or a mutant of the bug zoo) serving the DNS zone of
examples/example.com.zone, 2 to 4 clients, a packet loss rate up to 30%, a duplication
rate, random delivery order (reordering), partitions (symmetric splits, one replica
isolated, and asymmetric cuts where one direction of a link is lost), crashes that lose a
replica's state (at most f replicas down or recovering at once) and restarts into
recovery. The clients send RFC 2136 updates with prerequisites (compare-and-set) and reads,
both ordered through the log, over a few names, so that operations conflict.

A seed runs a **safety phase** (faults on; the invariants of spec/invariants.py are checked
after every event by the harness) and then a **liveness phase** (network healed, every
replica restarted): every operation must complete and every replica must converge on the
same view, op-number, commit-number and zone digest. Last, the clients' history goes
through the linearizability checker with the DNS model (checker/lin/models.py).

The same seed replays exactly: ``--json`` prints a summary per seed (events, operations,
faults by kind, a digest of the seed's history) with no wall-clock figure in it, so two
runs of a seed print the same line. On a failure the command prints the seed, the replay
command and the path of the seed's history file (vrref/history.py format: the client
operations, and the faults as replica events; ``vrref check`` reads it).

    vrref simulate --seeds 300 --jobs 2          # seeds 0..299
    vrref simulate --seed 17 --mutant no-client-table --json

Seeds needed to catch each mutant of the bug zoo: the first failing seed, counting from 0,
of ``vrref simulate --seeds 1500 --jobs 2 --mutant NAME --stop-on-failure`` (measured
2026-11-24; tests/checker/sim/test_simulate.py checks each seed still fails, and passes on the real
core)::

    commit-too-few-prepareoks        1     no-client-table                  0
    accept-prepare-gap               0     recovering-replica-votes         0
    commit-backwards-on-startview    1     commit-from-chosen-log          66
    paper-literal-state-transfer    33     recovery-ignores-nonce         162
    log-by-op-number              1142

The mutants of checkpoints and durability need durable worlds (``--durable``): measured
2026-12-02 with ``--durable``, acknowledge-before-persist is first caught at seed 91 (a
crash between a PREPAREOK and the write it depends on, then the only other copy's loss),
checkpoint-drops-uncommitted and suffix-without-checkpoint-state at seed 0; 300 durable
seeds of the real core pass (``vrref simulate --seeds 300 --jobs 2 --durable``).

Two things made the difference for the hard ones. Swarm weights: before each seed drew its
own mix of event kinds, 600 seeds caught neither the nonce nor the state-transfer mutant.
And the isolate-the-primary nemesis (clients still reach it, so it prepares ops nobody
else sees): without it log-by-op-number survived 1,100 seeds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import tempfile
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from checker.mutants import replica_class
from checker.sim.cluster import Cluster, InvariantViolation
from vrref import EXAMPLES_DIR
from vrref import history as hist
from vrref.core import durable
from vrref.core.replica import Config, Status
from vrref.dns.ops import make_query_op, make_update_op
from vrref.dns.zone import Zone

ZONE_FILE = EXAMPLES_DIR / "example.com.zone"
ORIGIN = "example.com."
NAMES = ("a.example.com.", "b.example.com.", "c.example.com.", "www.example.com.")
ADDRESSES = ("192.0.2.1", "192.0.2.2", "192.0.2.3")

SAFETY_STEPS = 600
LIVENESS_TICKS = 600

DURABLE_SEEDS_TO_CATCH: dict[str, int | None] = {
    "acknowledge-before-persist": 91,
    "checkpoint-drops-uncommitted": 0,
    "suffix-without-checkpoint-state": 0,
}
"""The first failing seed of each mutant that needs durable worlds (``--durable``), measured
the same way with ``--durable``."""

SEEDS_TO_CATCH: dict[str, int | None] = {
    "commit-too-few-prepareoks": 1,
    "accept-prepare-gap": 0,
    "no-client-table": 0,
    "recovering-replica-votes": 0,
    "commit-backwards-on-startview": 1,
    "commit-from-chosen-log": 66,
    "paper-literal-state-transfer": 33,
    "recovery-ignores-nonce": 162,
    "log-by-op-number": 1142,
}
"""The first failing seed of each mutant, measured; None would mean not caught."""


@dataclass
class Outcome:
    seed: int
    mutant: str | None
    passed: bool
    problem: str | None
    summary: dict[str, Any]
    history: str | None = None


@dataclass
class _World:
    rng: random.Random
    cluster: Cluster
    writer_events: list[hist.Record] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    oneway: set[tuple[int, int]] = field(default_factory=set)
    events: int = 0
    position: int = 0

    def note(self, event: hist.Record) -> None:
        """Records ``event`` for the history, its ``time`` the event's position."""
        self.position += 1
        self.writer_events.append(dataclasses.replace(event, time=self.position))

    def restarted(self, i: int) -> None:
        replica = self.cluster.replicas[i]
        assert replica is not None
        if self.cluster.durable:
            self.note(hist.Reopen(replica=i, disk=durable.to_json(self.cluster.disks[i])))
        else:
            self.note(hist.Restart(replica=i, nonce=replica.nonce))


_ZONE: Zone | None = None


def _base_zone() -> Zone:
    global _ZONE
    if _ZONE is None:
        _ZONE = Zone.from_file(ZONE_FILE, ORIGIN)
    return _ZONE


def random_op(rng: random.Random) -> tuple[str, str]:
    """(f, op): an update with a prerequisite, a plain update, or a read."""
    name = rng.choice(NAMES)
    kind = rng.random()
    if kind < 0.35:
        return "read", make_query_op(name, rng.choice(("A", "TXT")))
    address = rng.choice(ADDRESSES)
    update = [["add", name, "A", 300, address]]
    if rng.random() < 0.3:
        update = [["delete_rrset", name, "A"]]
    prereq: list[list[object]] = []
    choice = rng.random()
    if choice < 0.25:
        prereq = [["yxrrset_exact", name, "A", [rng.choice(ADDRESSES)]]]
    elif choice < 0.45:
        prereq = [["nxrrset", name, "A"]]
    elif choice < 0.55:
        prereq = [["yxdomain", name]]
    return "update", make_update_op(ORIGIN, prereq=prereq, update=update)


def run_seed(
    seed: int,
    mutant: str | None = None,
    history_dir: str | None = None,
    *,
    durable_world: bool = False,
) -> Outcome:
    """One seed's world. A durable world (``--durable``) has replicas that persist, a
    checkpoint every 1 to 8 ops, crashes of any number of replicas at once (whole-cluster
    power loss included), and crashes in the middle of an event (after some of its effects:
    between a write and its fsync, or before the messages that follow a write); the other
    draws are those of the diskless world of the same seed."""
    rng = random.Random(seed)
    replica_count = rng.choice((3, 5))
    f = (replica_count - 1) // 2
    client_ids = tuple(range(1, rng.randint(2, 4) + 1))
    ops_per_client = rng.randint(3, 6)
    loss = rng.uniform(0.0, 0.3)
    duplication = rng.uniform(0.0, 0.1)
    # Swarm testing: each seed weighs the kinds of event differently, so some worlds are
    # all crashes, some all partitions, some quiet, instead of every world being average.
    weights = {
        "deliver": rng.uniform(0.3, 0.7),
        "tick": rng.uniform(0.1, 0.4),
        "crash": rng.choice((0.0, rng.uniform(0.0, 0.15))),
        "partition": rng.choice((0.0, rng.uniform(0.0, 0.08))),
        "heal": rng.uniform(0.01, 0.05),
    }
    # A durable world draws its own settings from a second generator, so that the draws
    # above and the diskless world of each seed stay what they were.
    disk_rng = random.Random(f"durable-{seed}")
    config = Config(replica_count=replica_count)
    mid_event_crash = 0.0
    if durable_world:
        config = Config(
            replica_count=replica_count, checkpoint_ops=disk_rng.choice((1, 2, 3, 5, 8))
        )
        weights["power_loss"] = disk_rng.choice((0.0, disk_rng.uniform(0.0, 0.02)))
        mid_event_crash = disk_rng.choice((0.0, disk_rng.uniform(0.0, 0.05)))
    kinds = list(weights)
    cumulative = [sum(weights[k] for k in kinds[: i + 1]) for i in range(len(kinds))]
    steps = rng.randint(SAFETY_STEPS // 2, SAFETY_STEPS)
    base = _base_zone()
    cluster = Cluster(
        config,
        service_factory=base.clone,
        client_ids=client_ids,
        check=True,
        seed=seed,
        replica_class=replica_class(mutant),
        durable=durable_world,
    )
    world = _World(rng, cluster)
    submitted: Counter[int] = Counter()
    pending: dict[int, tuple[str, str]] = {}
    completed = 0
    problem: str | None = None

    def submit(client_id: int) -> None:
        f_, op = random_op(rng)
        pending[client_id] = (f_, op)
        submitted[client_id] += 1
        world.note(hist.ClientEvent(type="invoke", process=client_id, f=f_, value=op))
        cluster.submit(client_id, op)

    def harvest() -> None:
        nonlocal completed
        while completed < len(cluster.completions):
            client_id, completion = cluster.completions[completed]
            completed += 1
            f_, _ = pending.pop(client_id)
            result = completion.result
            world.note(hist.ClientEvent(type="ok", process=client_id, f=f_, value=result))

    def deliver_one() -> None:
        index = rng.randrange(len(cluster.network))
        item = cluster.network[index]
        src, dst = item.src, item.dst
        if src[0] == dst[0] == "replica" and (src[1], dst[1]) in world.oneway:
            cluster.network.pop(index)
            world.faults["asymmetric_loss"] += 1
            return
        if rng.random() < loss:
            cluster.network.pop(index)
            world.faults["loss"] += 1
            return
        if rng.random() < duplication:
            cluster.network.append(item)
            world.faults["duplication"] += 1
        if dst[0] == "replica" and mid_event_crash and disk_rng.random() < mid_event_crash:
            i = dst[1]
            if cluster.replicas[i] is not None:
                cluster.deliver(index, crash_after=disk_rng.randrange(4))
                if cluster.replicas[i] is None:
                    world.faults["crash_mid_event"] += 1
                    world.note(hist.Crash(replica=i))
                world.events += 1
                return
        cluster.deliver(index)
        world.events += 1

    def down() -> list[int]:
        return [
            i for i, r in enumerate(cluster.replicas) if r is None or r.status is Status.RECOVERING
        ]

    try:
        # ---------------------------------------------------------------- safety phase
        for _ in range(steps):
            for client_id in client_ids:
                idle = cluster.clients[client_id].outstanding is None
                if idle and submitted[client_id] < ops_per_client and rng.random() < 0.2:
                    submit(client_id)
            draw = rng.uniform(0.0, cumulative[-1])
            action = kinds[next(i for i, c in enumerate(cumulative) if draw <= c)]
            if action == "deliver":
                if cluster.network:
                    deliver_one()
            elif action == "tick":
                cluster.tick(run=False)
                world.events += 1
            elif action == "crash":
                crashed = [i for i, r in enumerate(cluster.replicas) if r is None]
                if crashed and rng.random() < 0.6:
                    i = rng.choice(crashed)
                    cluster.restart(i)
                    world.faults["restart"] += 1
                    world.restarted(i)
                elif len(down()) < f or durable_world:
                    i = rng.randrange(replica_count)
                    if cluster.replicas[i] is not None:
                        cluster.crash(i)
                        world.faults["crash"] += 1
                        world.note(hist.Crash(replica=i))
            elif action == "power_loss":
                for i, r in enumerate(cluster.replicas):
                    if r is not None:
                        cluster.crash(i)
                        world.note(hist.Crash(replica=i))
                world.faults["power_loss"] += 1
            elif action == "partition":
                _partition(world, replica_count)
            else:
                cluster.heal()
                world.oneway.clear()
                world.note(hist.Heal())
            harvest()
        # -------------------------------------------------------------- liveness phase
        cluster.heal()
        world.oneway.clear()
        world.note(hist.Heal())
        for i, r in enumerate(cluster.replicas):
            if r is None:
                cluster.restart(i)
                world.faults["restart"] += 1
                world.restarted(i)
        for _ in range(LIVENESS_TICKS):
            for client_id in client_ids:
                idle = cluster.clients[client_id].outstanding is None
                if idle and submitted[client_id] < ops_per_client:
                    submit(client_id)
            cluster.tick()
            world.events += 1
            harvest()
            if _done(cluster, submitted, ops_per_client, client_ids) and _converged(cluster):
                break
        else:
            if not _done(cluster, submitted, ops_per_client, client_ids):
                problem = "liveness: operations still outstanding after the network healed"
            else:
                problem = "liveness: the replicas did not converge after the network healed"
    except InvariantViolation as violation:
        problem = f"invariant: {str(violation).splitlines()[0]}"
    except AssertionError as error:
        frame = traceback.extract_tb(error.__traceback__)[-1]
        where = f"{Path(frame.filename).name}:{frame.lineno} {frame.line}"
        problem = f"assertion in the core: {str(error) or where}"
    except Exception as error:  # the core crashed: a failure of the seed, not of the run
        frame = traceback.extract_tb(error.__traceback__)[-1]
        where = f"{Path(frame.filename).name}:{frame.lineno} {frame.line}"
        problem = f"the core raised {type(error).__name__}: {error} at {where}"

    path = _write_history(seed, mutant, replica_count, world, history_dir)
    if problem is None:
        problem = _linearizability(path)
    summary = {
        "seed": seed,
        "mutant": mutant,
        "durable": durable_world,
        "replicas": replica_count,
        "clients": len(client_ids),
        "events": world.events,
        "ops": sum(1 for e in world.writer_events if e.type == "invoke"),
        "completed": sum(1 for e in world.writer_events if e.type == "ok"),
        "faults": dict(sorted(world.faults.items())),
        "history_digest": _digest(world.writer_events),
        "verdict": "ok" if problem is None else "violation",
    }
    keep = problem is not None or history_dir is not None
    if not keep:
        Path(path).unlink(missing_ok=True)
    return Outcome(seed, mutant, problem is None, problem, summary, path if keep else None)


def _partition(world: _World, n: int) -> None:
    rng, cluster = world.rng, world.cluster
    kind = rng.random()
    replicas = list(range(n))
    if kind < 0.4:
        rng.shuffle(replicas)
        cut = rng.randint(1, n - 1)
        groups = (replicas[:cut], replicas[cut:])
        cluster.partition(*groups)
        world.faults["partition"] += 1
        world.note(hist.Partition(groups=tuple(tuple(sorted(g)) for g in groups)))
    elif kind < 0.7:
        # Jepsen's favourite nemesis: isolate the current primary (clients still reach it,
        # so it keeps preparing ops no one else sees); otherwise any replica.
        primary = cluster.primary_normal()
        alone = primary if primary is not None and rng.random() < 0.7 else rng.randrange(n)
        cluster.partition([alone], [i for i in replicas if i != alone])
        world.faults["isolate"] += 1
        world.note(hist.Partition(groups=((alone,),)))
    else:
        a, b = rng.sample(replicas, 2)
        world.oneway.add((a, b))
        world.faults["asymmetric"] += 1
        world.note(hist.Partition(oneway=(a, b)))


def _done(cluster: Cluster, submitted: Counter[int], per: int, ids: tuple[int, ...]) -> bool:
    return all(submitted[c] >= per and cluster.clients[c].outstanding is None for c in ids)


def _converged(cluster: Cluster) -> bool:
    live = [r for r in cluster.replicas if r is not None]
    if len(live) != len(cluster.replicas):
        return False
    if not all(r.status is Status.NORMAL for r in live):
        return False
    if len({(r.view, r.commit_number, r.op_number) for r in live}) != 1:
        return False
    if live[0].commit_number != live[0].op_number:
        return False
    return len({r.service.digest() for r in live}) == 1


def _digest(events: list[hist.Record]) -> str:
    text = "\n".join(json.dumps(e.to_json(), sort_keys=True) for e in events)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def _write_history(
    seed: int, mutant: str | None, replicas: int, world: _World, directory: str | None
) -> str:
    folder = Path(directory) if directory else Path(tempfile.gettempdir()) / "vrref-simulate"
    folder.mkdir(parents=True, exist_ok=True)
    name = f"seed-{seed}" + ("-durable" if world.cluster.durable else "")
    name += (f"-{mutant}" if mutant else "") + ".jsonl"
    path = folder / name
    path.unlink(missing_ok=True)
    records = [list(r) for r in _base_zone().records()]
    with hist.HistoryWriter(
        path,
        model="dns",
        initial={"records": records},
        source="vrref simulate",
        seed=seed,
        mutant=mutant,
        replica_count=replicas,
    ) as out:
        for event in world.writer_events:
            out.write(event)
    return str(path)


def _linearizability(path: str) -> str | None:
    from checker import verdict
    from checker.lin import wgl as lin

    loaded = verdict.load([path])
    result = lin.check(loaded.model, loaded.ops, timeout_s=60)
    if isinstance(result, lin.Ok):
        return None
    if isinstance(result, lin.Unknown):
        return f"linearizability unknown: {result.reason}"
    return "linearizability: the client history is not linearizable (vrref view shows why)"
