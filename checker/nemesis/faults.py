"""The faults and their schedule: seeded, one faulty replica at a time (but the restart of
the whole cluster), each recorded when it starts and when it ends.

The schedule is drawn from ``random.Random(seed)`` in a fixed order (calm, kind, whether to
aim at the primary, a replica, duration), so a seed names the same sequence of faults
whatever the cluster does; which replica "the primary" is, is what the replicas last
announced at that moment.

- ``kill``: SIGKILL a replica (the primary half the time), start it again after the
  fault's duration (1-3 s): durable, it resumes from its disk; diskless, it recovers.
- ``pause``: SIGSTOP, then SIGCONT after the duration.
- ``partition``: the replica cut off from the other two (checker/nemesis/partition.py),
  healed after the duration. Skipped, with the reason, when iptables cannot be used.
- ``restart-all``: SIGKILL all three, start all three (with ``--read-mode alternate`` the
  read mode flips in cluster.toml in between); it ends when all three answer. Skipped for
  diskless replicas, which cannot all restart at once (spec/traps.md, trap 5).

Between faults, 2-4 s of calm. Every start, end and skip is a JSON line in
DIR/nemesis.jsonl (``{"event", "fault", "replicas", "time", "t", ...}``; ``time`` in
CLOCK_MONOTONIC nanoseconds, ``t`` seconds since the run began) and a printed line.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from checker.nemesis.cluster import Cluster
from checker.nemesis.partition import Partitioner, PartitionError
from checker.nemesis.workload import ReadMode

FAULT_KINDS: Final = ("kill", "pause", "partition", "restart-all")
RESTART_ANSWER_S: Final = 30.0


@dataclass
class Fault:
    """One fault as it happened."""

    kind: str
    replicas: tuple[int, ...]
    start_ns: int
    planned_s: float
    target: str  # "primary", "random" or "all"
    end_ns: int | None = None
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "replicas": list(self.replicas),
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "planned_s": round(self.planned_s, 3),
            "target": self.target,
            "detail": self.detail,
        }


@dataclass
class Schedule:
    """The seeded draws, in a fixed order whatever happens."""

    seed: int
    calm_s: tuple[float, float] = (2.0, 4.0)
    fault_s: tuple[float, float] = (1.0, 3.0)
    primary_share: float = 0.5
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(f"{self.seed}/nemesis")

    def next(self, kinds: tuple[str, ...]) -> tuple[float, str, bool, int, float]:
        """(calm before it, kind, aim at the primary, a replica otherwise, duration)."""
        rng = self.rng
        calm = rng.uniform(*self.calm_s)
        kind = rng.choice(kinds)
        at_primary = rng.random() < self.primary_share
        replica = rng.randrange(3)
        duration = rng.uniform(*self.fault_s)
        return calm, kind, at_primary, replica, duration


class Nemesis:
    """Injects the faults of ``kinds`` into ``cluster`` until ``stop``; ``heal`` undoes
    whatever is still in effect."""

    def __init__(
        self,
        cluster: Cluster,
        *,
        kinds: tuple[str, ...],
        schedule: Schedule,
        log_path: Path,
        started_ns: int,
        read_mode: ReadMode,
        alternate: bool,
        partitioner: Partitioner | None,
        say: Callable[[str], None],
    ) -> None:
        self.cluster = cluster
        self.kinds = kinds
        self.schedule = schedule
        self.started_ns = started_ns
        self.read_mode = read_mode
        self.alternate = alternate
        self.partitioner = partitioner
        self.say = say
        self.faults: list[Fault] = []
        self.skipped: dict[str, str] = {}
        self._log = log_path.open("a", encoding="utf-8")
        self._stop = threading.Event()

    # ------------------------------------------------------------------ the record

    def _t(self, ns: int) -> float:
        return (ns - self.started_ns) / 1e9

    def record(self, event: str, **fields: Any) -> int:
        now = time.monotonic_ns()
        line = {"event": event, "time": now, "t": round(self._t(now), 3), **fields}
        self._log.write(json.dumps(line, sort_keys=True) + "\n")
        self._log.flush()
        what = " ".join(f"{k}={v}" for k, v in fields.items() if v not in (None, "", []))
        self.say(f"[{self._t(now):7.2f}s] nemesis: {event} {what}")
        return now

    def skip(self, kind: str, reason: str) -> None:
        if kind not in self.skipped:
            self.skipped[kind] = reason
            self.record("skip", fault=kind, reason=reason)

    def close(self) -> None:
        self._log.close()

    # ------------------------------------------------------------------ the loop

    def stop(self) -> None:
        self._stop.set()

    def run(self, deadline_s: float) -> None:
        """Faults until ``deadline_s`` (time.monotonic) or ``stop``; each fault that has
        started is ended (healed) before this returns."""
        while not self._stop.is_set():
            calm, kind, at_primary, replica, duration = self.schedule.next(self.kinds)
            if self._stop.wait(max(0.0, min(calm, deadline_s - time.monotonic()))):
                return
            if time.monotonic() >= deadline_s:
                return
            self._note_exits()
            if kind in self.skipped:
                continue  # skipped (said once); the draws stay in step with the seed
            duration = min(duration, max(0.2, deadline_s - time.monotonic()))
            target = replica
            aim = "random"
            if at_primary:
                primary = self.cluster.primary()
                if primary is not None:
                    target, aim = primary, "primary"
            if kind == "kill":
                self._kill(target, aim, duration)
            elif kind == "pause":
                self._pause(target, aim, duration)
            elif kind == "partition":
                self._partition(target, aim, duration)
            elif kind == "restart-all":
                self._restart_all(duration)
            else:
                raise ValueError(f"unknown fault {kind!r}")

    def _note_exits(self) -> None:
        """A replica that ended by itself (a crash: its log says why) is recorded and
        started again, so the run goes on; trace validation judges the crash."""
        for i, code in self.cluster.exited().items():
            self.cluster.processes.pop(i, None)
            self.record("exited", replicas=[i], code=code)
            self.cluster.start(i)

    def _begin(self, kind: str, replicas: tuple[int, ...], aim: str, planned: float) -> Fault:
        start = self.record(
            "start", fault=kind, replicas=list(replicas), target=aim, planned_s=round(planned, 2)
        )
        fault = Fault(kind, replicas, start, planned, aim)
        self.faults.append(fault)
        return fault

    def _end(self, fault: Fault, detail: str = "") -> None:
        fault.detail = detail
        fault.end_ns = self.record(
            "end", fault=fault.kind, replicas=list(fault.replicas), detail=detail
        )

    def _hold(self, seconds: float) -> None:
        """Keeps a fault in effect for ``seconds`` (less when the run is stopped)."""
        self._stop.wait(seconds)

    def _kill(self, replica: int, aim: str, duration: float) -> None:
        fault = self._begin("kill", (replica,), aim, duration)
        self.cluster.kill(replica)
        self._hold(duration)
        self.cluster.start(replica)
        self._end(fault, f"life {self.cluster.starts[replica]} started")

    def _pause(self, replica: int, aim: str, duration: float) -> None:
        fault = self._begin("pause", (replica,), aim, duration)
        self.cluster.pause(replica)
        self._hold(duration)
        self.cluster.resume(replica)
        self._end(fault)

    def _partition(self, replica: int, aim: str, duration: float) -> None:
        assert self.partitioner is not None
        try:
            self.partitioner.isolate(
                replica,
                self.cluster.hosts,
                [self.cluster.peer_port(i) for i in range(len(self.cluster.hosts))],
            )
        except PartitionError as error:
            self.partitioner.heal()
            self.skip("partition", str(error))
            return
        fault = self._begin("partition", (replica,), aim, duration)
        self._hold(duration)
        self.partitioner.heal()
        self._end(fault)

    def _restart_all(self, duration: float) -> None:
        del duration  # the restart takes as long as it takes
        replicas = tuple(range(len(self.cluster.hosts)))
        fault = self._begin("restart-all", replicas, "all", 0.0)
        self.read_mode.generation += 1
        for i in replicas:
            self.cluster.kill(i)
        detail = ""
        if self.alternate:
            mode = "linearizable" if self.cluster.read_mode == "local" else "local"
            self.cluster.read_mode = mode
            self.cluster.write_config()
            detail = f"read_mode now {mode}; "
        for i in replicas:
            self.cluster.start(i)
        answering = self.cluster.wait_answering(list(replicas), RESTART_ANSWER_S)
        self.read_mode.mode = self.cluster.read_mode
        self.read_mode.generation += 1
        detail += "all answering" if answering else f"not all answering in {RESTART_ANSWER_S}s"
        self._end(fault, detail)

    # ------------------------------------------------------------------ the end

    def heal(self) -> None:
        """Heals a partition, resumes a paused replica, starts any replica that is down."""
        if self.partitioner is not None and self.partitioner.isolated is not None:
            self.partitioner.heal()
            self.record("heal", fault="partition")
        for i in list(self.cluster.paused):
            self.cluster.resume(i)
            self.record("heal", fault="pause", replicas=[i])
        for i in range(len(self.cluster.hosts)):
            if not self.cluster.running(i):
                self.cluster.processes.pop(i, None)
                self.cluster.start(i)
                self.record("heal", fault="down", replicas=[i])
