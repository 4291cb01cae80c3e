"""Explicit-state exploration: every reachable state of a small model, or seeded walks of a big one.

A model is three pure functions and a list of claims, as in Stateright and TLC: the initial
states, the actions enabled in a state, and the state an action leads to (``None`` when the
action is disabled there), plus properties, each one English sentence tagged ALWAYS (an
invariant: it must hold in every reachable state) or SOMETIMES (a reachability goal: some
reachable state must satisfy it, or the check was vacuous). Anything with those four methods
is a model (``Model`` is a structural protocol); a model may also offer
``fingerprint(state) -> int``, ``canonical(state)`` (a true canonical form over a symmetry
group, used when ``symmetry`` is on), ``within_bounds(state) -> bool`` (TLC's CONSTRAINT: a
state outside is counted as generated but neither stored, checked nor expanded) and
``describe(state) -> str`` (how a trace prints a state).

The checker stores fingerprints, not states. The visited set maps each state's 64-bit
fingerprint to its parent's (an initial state is its own parent), which is all TLC keeps
too: a counterexample is rebuilt at the end by walking the chain of fingerprints from the
initial state and, at each step, re-running the enabled actions to find the one whose
successor has the next fingerprint. That costs a little time once and saves the memory of an
action and a state per stored state; it requires the model to be deterministic, and says so
loudly if it is not. Fingerprints are blake2b over a canonical encoding (sets sorted by the
encodings of their members), never Python's ``hash``, which is salted per process for
strings and collides often on frozensets of small tuples.

Breadth-first search gives shortest counterexamples: properties are checked when a state is
first discovered, and BFS discovers every state at depth d before any at depth d+1.
Depth-first search uses the same machinery with a stack. Random walks are seeded: walk ``i``
of a run with ``seed`` s uses ``random.Random(s + i)``, so a violation found by walk ``i``
replays exactly with ``seed=s + i, walk_count=1`` (given a model whose ``actions`` yields in
a deterministic order).

Counts follow TLC, so that published TLC tables can be reproduced: ``generated`` is the
number of initial states plus every successor computed (duplicates included), ``distinct``
the number of different states stored, and ``depth`` the number of states on the longest of
the shortest paths from an initial state (1 when only initial states exist). ``depth_max``
and ``walk_depth_max`` count states the same way. All bounds live in one frozen
``ExploreConfig``; a run ends with a three-valued verdict in the spirit of Porcupine:
``ok``, ``violation`` (or ``vacuous``, a SOMETIMES never reached), or ``unknown`` when a
time or state limit cut it short without a violation: an unfinished search proves nothing.
A search bounded by ``depth_max`` or ``within_bounds`` that runs out of states is finished:
its verdict holds for those bounds.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import random
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Literal, Protocol, TextIO, TypeAlias, TypeVar, cast

import networkx as nx

S = TypeVar("S")
A = TypeVar("A")

GRAPH_STATE_COUNT_MAX = 100_000
"""The explored graph is kept (for GraphML export) only for runs up to this many states."""

Strategy = Literal["bfs", "dfs", "random"]
STRATEGIES: tuple[Strategy, ...] = ("bfs", "dfs", "random")


class Kind(enum.StrEnum):
    ALWAYS = "always"
    SOMETIMES = "sometimes"


ALWAYS = Kind.ALWAYS
SOMETIMES = Kind.SOMETIMES


@dataclass(frozen=True, slots=True)
class Property(Generic[S]):
    """One claim about the model: a sentence, its kind, and a predicate over a state."""

    name: str
    kind: Kind
    predicate: Callable[[S], bool]

    @staticmethod
    def always(name: str, predicate: Callable[[S], bool]) -> Property[S]:
        return Property(name, Kind.ALWAYS, predicate)

    @staticmethod
    def sometimes(name: str, predicate: Callable[[S], bool]) -> Property[S]:
        return Property(name, Kind.SOMETIMES, predicate)


PropertyLike: TypeAlias = Property[S] | tuple[str, str, Callable[[S], bool]]
"""A ``Property``, or the plain tuple ``(name, "always" | "sometimes", predicate)``."""


def as_property(item: PropertyLike[S]) -> Property[S]:
    if isinstance(item, Property):
        return item
    name, kind, predicate = item
    return Property(name, Kind(kind), predicate)


class Model(Protocol[S, A]):
    """What the explorer needs of a model. Optional hooks, looked up by name when present:
    ``fingerprint(state) -> int``, ``canonical(state) -> S``, ``within_bounds(state) -> bool``,
    ``describe(state) -> str``."""

    def init_states(self) -> Iterable[S]: ...

    def actions(self, state: S) -> Iterable[A]: ...

    def next_state(self, state: S, action: A) -> S | None: ...

    def properties(self) -> Sequence[PropertyLike[S]]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ExploreConfig:
    """Every limit of a run, in one place. Depths count states (1 = initial states only)."""

    strategy: Strategy = "bfs"
    depth_max: int | None = None
    """States at this depth are stored and checked but not expanded."""
    state_count_max: int | None = None
    """Stop after this many distinct states (verdict ``unknown`` unless a violation)."""
    time_seconds_max: float | None = None
    walk_count: int = 100
    walk_depth_max: int = 100
    seed: int = 0
    symmetry: bool = False
    """Fingerprint ``model.canonical(state)`` instead of the state (the model must offer it)."""
    stop_on_violation: bool = True
    """Stop at the first ALWAYS violation (TLC); otherwise look for one per property."""
    graph: bool = False
    """Keep the explored graph for ``Result.graph`` (up to ``GRAPH_STATE_COUNT_MAX`` states)."""
    progress_seconds: float | None = 5.0
    """Print a progress line to the progress stream this often; None for never."""

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, not {self.strategy!r}")
        for name in ("depth_max", "state_count_max", "walk_depth_max"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, not {value}")
        if self.walk_count < 0:
            raise ValueError(f"walk_count must not be negative, not {self.walk_count}")
        if self.time_seconds_max is not None and self.time_seconds_max <= 0:
            raise ValueError(f"time_seconds_max must be positive, not {self.time_seconds_max}")
        if self.progress_seconds is not None and self.progress_seconds < 0:
            raise ValueError(f"progress_seconds must not be negative: {self.progress_seconds}")


@dataclass(frozen=True, slots=True)
class Step(Generic[S, A]):
    """One step of a trace: the action taken (None for the initial state) and its result."""

    action: A | None
    state: S


Trace: TypeAlias = tuple[Step[S, A], ...]


@dataclass(frozen=True, slots=True)
class PropertyResult(Generic[S, A]):
    """``holds``: an ALWAYS property was never violated, or a SOMETIMES one was reached.
    ``trace`` is the counterexample (ALWAYS) or the witness (SOMETIMES), shortest under BFS;
    ``walk_seed`` replays the random walk that found it."""

    name: str
    kind: Kind
    holds: bool
    trace: Trace[S, A] | None = None
    walk_seed: int | None = None


Verdict = Literal["ok", "violation", "vacuous", "unknown"]
EXIT_CODES: dict[Verdict, int] = {"ok": 0, "violation": 1, "vacuous": 1, "unknown": 2}


class GraphTooLarge(Exception):
    """The explored graph was not kept: the run had more states than the export allows."""


@dataclass(frozen=True, kw_only=True)
class Result(Generic[S, A]):
    """What a run found, with TLC's counts."""

    config: ExploreConfig
    distinct: int
    generated: int
    depth: int
    pruned: int
    """Successors outside ``within_bounds`` (counted in ``generated``, never stored)."""
    deadlocks: int
    """Expanded states with no enabled action (random walks: walks that got stuck)."""
    queue: int
    """States discovered but never expanded (left in the queue when the run stopped)."""
    elapsed_seconds: float
    complete: bool
    """Every state within the bounds (depth_max, within_bounds) was explored."""
    stopped_by: str | None
    """None, or why the run ended early: "violation", "state_count_max", "time_seconds_max"."""
    properties: tuple[PropertyResult[S, A], ...]
    graph: Any = field(default=None, repr=False)
    """The explored ``networkx.MultiDiGraph`` when ``config.graph`` was set and it fit."""
    describe_state: Callable[[S], str] = field(default=repr, repr=False, compare=False)

    @property
    def violations(self) -> list[PropertyResult[S, A]]:
        return [p for p in self.properties if p.kind is Kind.ALWAYS and not p.holds]

    @property
    def unreached(self) -> list[PropertyResult[S, A]]:
        return [p for p in self.properties if p.kind is Kind.SOMETIMES and not p.holds]

    @property
    def verdict(self) -> Verdict:
        """violation > unknown (a time or state limit cut the search short) > vacuous (a
        SOMETIMES never reached in a finished search) > ok."""
        if self.violations:
            return "violation"
        if self.stopped_by in ("state_count_max", "time_seconds_max"):
            return "unknown"
        return "vacuous" if self.unreached else "ok"

    @property
    def states_per_second(self) -> float:
        return self.distinct / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0

    @property
    def generated_per_second(self) -> float:
        return self.generated / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0

    @property
    def collision_probability(self) -> float:
        """TLC's optimistic estimate that two distinct states shared a fingerprint."""
        return self.distinct * max(self.generated - self.distinct, 0) / 2.0**64

    def trace_lines(self, trace: Trace[S, A]) -> list[str]:
        """A trace as numbered lines: "1 <initial>: state", "2 action: state", ..."""
        lines = []
        for i, s in enumerate(trace, 1):
            head = f"{i} {'<initial>' if s.action is None else s.action}:"
            text = self.describe_state(s.state)
            if "\n" in text:  # a multi-line state goes under its step, indented
                lines.append(head)
                lines.extend(f"    {line.strip()}" for line in text.splitlines())
            else:
                lines.append(f"{head} {text}")
        return lines

    def to_json(self) -> dict[str, Any]:
        def trace_json(trace: Trace[S, A] | None) -> list[dict[str, str | None]] | None:
            if trace is None:
                return None
            return [
                {
                    "action": None if s.action is None else str(s.action),
                    "state": self.describe_state(s.state),
                }
                for s in trace
            ]

        return {
            "strategy": self.config.strategy,
            "verdict": self.verdict,
            "distinct": self.distinct,
            "generated": self.generated,
            "depth": self.depth,
            "pruned": self.pruned,
            "deadlocks": self.deadlocks,
            "queue": self.queue,
            "complete": self.complete,
            "stopped_by": self.stopped_by,
            "elapsed_seconds": round(self.elapsed_seconds, 6),
            "states_per_second": round(self.states_per_second, 1),
            "generated_per_second": round(self.generated_per_second, 1),
            "collision_probability": self.collision_probability,
            "config": dataclasses.asdict(self.config),
            "properties": [
                {
                    "name": p.name,
                    "kind": str(p.kind),
                    "holds": p.holds,
                    "trace": trace_json(p.trace),
                    "walk_seed": p.walk_seed,
                }
                for p in self.properties
            ],
        }

    def write_graphml(self, path: str | Path) -> None:
        if self.graph is None:
            raise GraphTooLarge(
                "no graph kept: run with ExploreConfig(graph=True) and at most "
                f"{GRAPH_STATE_COUNT_MAX:,} states (this run: {self.distinct:,})"
            )
        nx.write_graphml(self.graph, str(path))


# ---------------------------------------------------------------------- fingerprints


def canonical_bytes(value: object) -> bytes:
    """An encoding of a value that equal values share: sets and dicts sorted, dataclasses by
    type and compared fields, enums by type and member. Refuses what it cannot encode
    faithfully (an arbitrary object's repr may hold its address)."""
    out = bytearray()
    _encode(value, out)
    return bytes(out)


def stable_fingerprint(value: object) -> int:
    """A 64-bit fingerprint of a value, the same in every process (blake2b)."""
    digest = hashlib.blake2b(canonical_bytes(value), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def _chunk(tag: bytes, payload: bytes, out: bytearray) -> None:
    out += tag
    out += len(payload).to_bytes(4, "big")
    out += payload


_LAYOUTS: dict[type, tuple[bytes, tuple[tuple[bytes, str], ...]]] = {}
"""Per dataclass type: its encoded header and its compared fields (encoded name, name)."""


def _layout(kind: type) -> tuple[bytes, tuple[tuple[bytes, str], ...]]:
    layout = _LAYOUTS.get(kind)
    if layout is None:
        header = bytearray()
        _chunk(b"D", kind.__qualname__.encode(), header)
        names = []
        for f in dataclasses.fields(kind):
            if f.compare:
                encoded = bytearray()
                _chunk(b"k", f.name.encode(), encoded)
                names.append((bytes(encoded), f.name))
        layout = _LAYOUTS[kind] = (bytes(header), tuple(names))
    return layout


def _encode(value: object, out: bytearray) -> None:
    kind = type(value)
    # The common exact types first; bool is not int here (type(True) is bool).
    if kind is str:
        _chunk(b"s", cast(str, value).encode(), out)
    elif kind is int:
        _chunk(b"i", str(value).encode(), out)
    elif kind is tuple:
        items = cast(tuple[object, ...], value)
        out += b"t" + len(items).to_bytes(4, "big")
        for item in items:
            _encode(item, out)
    elif value is None:
        out += b"N"
    elif kind is bool:
        out += b"T" if value else b"F"
    elif kind is frozenset or kind is set:
        members = sorted(canonical_bytes(item) for item in cast(frozenset[object], value))
        out += (b"S" if kind is frozenset else b"U") + len(members).to_bytes(4, "big")
        for member in members:
            out += member
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        header, names = _layout(kind)
        out += header
        for encoded, name in names:
            out += encoded
            _encode(getattr(value, name), out)
    elif isinstance(value, enum.Enum):
        _chunk(b"E", f"{kind.__qualname__}.{value.name}".encode(), out)
    elif isinstance(value, int):
        _chunk(b"I", f"{kind.__qualname__}:{value}".encode(), out)
    elif isinstance(value, str):
        _chunk(b"s", value.encode(), out)
    elif isinstance(value, bytes):
        _chunk(b"b", value, out)
    elif isinstance(value, float):
        _chunk(b"f", repr(value).encode(), out)
    elif isinstance(value, tuple | list):
        if kind is not list:  # a NamedTuple: its type is part of its value
            _chunk(b"n", kind.__qualname__.encode(), out)
        out += (b"t" if isinstance(value, tuple) else b"l") + len(value).to_bytes(4, "big")
        for item in value:
            _encode(item, out)
    elif isinstance(value, dict):
        pairs = sorted(canonical_bytes(k) + canonical_bytes(v) for k, v in value.items())
        out += b"M" + len(pairs).to_bytes(4, "big")
        for pair in pairs:
            out += pair
    else:
        raise TypeError(
            f"cannot fingerprint a {kind.__qualname__}: build states from frozen "
            "dataclasses, tuples, frozensets and scalars, or give the model fingerprint(state)"
        )


# ---------------------------------------------------------------------- the checker


class NondeterministicModel(Exception):
    """Replaying a stored path did not reproduce a fingerprint: the model is not a function
    of its state (or its fingerprint is not a function of the state)."""


class Explorer(Generic[S, A]):
    """Runs one search of a model under a config. ``run()`` returns a ``Result``."""

    def __init__(
        self,
        model: Model[S, A],
        config: ExploreConfig | None = None,
        *,
        progress: TextIO | None = None,
    ) -> None:
        self.model = model
        self.config = config or ExploreConfig()
        self.progress = sys.stderr if progress is None else progress
        self.properties = [as_property(p) for p in model.properties()]
        hook = getattr(model, "fingerprint", None)
        self._fingerprint: Callable[[S], int] = hook if callable(hook) else stable_fingerprint
        canonical = getattr(model, "canonical", None)
        if self.config.symmetry and not callable(canonical):
            raise ValueError("symmetry needs a model with canonical(state)")
        self._canonical: Callable[[S], S] | None = canonical if self.config.symmetry else None
        within = getattr(model, "within_bounds", None)
        self._within: Callable[[S], bool] | None = within if callable(within) else None
        describe = getattr(model, "describe", None)
        self.describe: Callable[[S], str] = describe if callable(describe) else repr
        self.parents: dict[int, int] = {}
        """Fingerprint -> parent's fingerprint (an initial state is its own parent)."""

    def key(self, state: S) -> int:
        """The fingerprint the visited set uses (of the canonical form, under symmetry)."""
        if self._canonical is not None:
            state = self._canonical(state)
        return self._fingerprint(state)

    def run(self) -> Result[S, A]:
        if self.config.strategy == "random":
            return _Walks(self).run()
        return _Search(self, self.properties).run()

    def shortest_path_to(self, predicate: Callable[[S], bool]) -> Trace[S, A] | None:
        """A shortest trace to a state satisfying ``predicate`` (BFS, this config's limits),
        or None when no state within them does."""
        goal = Property.sometimes("the goal is reached", predicate)
        config = dataclasses.replace(self.config, strategy="bfs", graph=False)
        search = _Search(Explorer(self.model, config, progress=self.progress), [goal])
        return search.run(stop_at_goal=True).properties[0].trace

    def trace_to(self, fingerprint: int) -> Trace[S, A]:
        """The stored path to a fingerprint, replayed into actions and states."""
        chain = [fingerprint]
        while (parent := self.parents[chain[-1]]) != chain[-1]:
            chain.append(parent)
        chain.reverse()
        state = next((s for s in self._initial() if self.key(s) == chain[0]), None)
        if state is None:
            raise NondeterministicModel(f"no initial state has fingerprint {chain[0]:016x}")
        steps: list[Step[S, A]] = [Step(None, state)]
        for target in chain[1:]:
            for action in self.model.actions(state):
                successor = self.model.next_state(state, action)
                if successor is not None and self.key(successor) == target:
                    steps.append(Step(action, successor))
                    state = successor
                    break
            else:
                raise NondeterministicModel(
                    f"no action of step {len(steps)} leads to fingerprint {target:016x}"
                )
        return tuple(steps)

    def _initial(self) -> list[S]:
        return list(self.model.init_states())

    def within(self, state: S) -> bool:
        return self._within is None or self._within(state)


class _Progress:
    """Times the run, enforces time_seconds_max, and prints a line every few seconds."""

    def __init__(self, config: ExploreConfig, stream: TextIO) -> None:
        self.config = config
        self.stream = stream
        self.start = time.monotonic()
        self.last = self.start
        self.printed = False

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def tick(
        self, distinct: int, generated: int, depth: int, queue: int, what: str, final: bool = False
    ) -> bool:
        """Prints a line when one is due (or the final one, if any was printed); returns
        False when the time limit is reached."""
        now = time.monotonic()
        every = self.config.progress_seconds
        due = every is not None and now - self.last >= every
        if due or (final and self.printed):
            self.last = now
            self.printed = True
            rate = distinct / (now - self.start) if now > self.start else 0.0
            self.stream.write(
                f"explore: {distinct:,} distinct, {generated:,} generated, {rate:,.0f} states/s,"
                f" depth {depth}, {what} {queue:,}, {now - self.start:.1f}s\n"
            )
            self.stream.flush()
        limit = self.config.time_seconds_max
        return limit is None or now - self.start < limit


class _Search(Generic[S, A]):
    """BFS or DFS over fingerprints with parent pointers."""

    def __init__(self, explorer: Explorer[S, A], properties: Sequence[Property[S]]) -> None:
        self.x = explorer
        self.config = explorer.config
        self.properties = list(properties)
        self.found: dict[int, int] = {}
        """Property index -> fingerprint of the state that violated or reached it."""
        self.edges: list[tuple[int, int, str]] | None = [] if self.config.graph else None
        self.depths: dict[int, int] = {}

    def check(self, state: S, fingerprint: int) -> None:
        for index, prop in enumerate(self.properties):
            if index in self.found:
                continue
            holds = prop.predicate(state)
            if holds != (prop.kind is Kind.ALWAYS):
                self.found[index] = fingerprint

    def violated(self) -> bool:
        return any(self.properties[i].kind is Kind.ALWAYS for i in self.found)

    def done(self, stop_at_goal: bool) -> bool:
        if stop_at_goal:
            return bool(self.found)
        return self.config.stop_on_violation and self.violated()

    def run(self, *, stop_at_goal: bool = False) -> Result[S, A]:
        x, config = self.x, self.config
        parents = x.parents
        parents.clear()
        progress = _Progress(config, x.progress)
        frontier: deque[tuple[S, int, int]] = deque()
        take = frontier.popleft if config.strategy == "bfs" else frontier.pop
        generated = pruned = deadlocks = 0
        depth = 0
        stopped_by: str | None = None
        keep = self.edges is not None
        for state in x._initial():
            generated += 1
            if not x.within(state):
                pruned += 1
                continue
            fingerprint = x.key(state)
            if fingerprint in parents:
                continue
            parents[fingerprint] = fingerprint
            depth = 1
            if keep:
                self.depths[fingerprint] = 1
            frontier.append((state, fingerprint, 1))
            self.check(state, fingerprint)
            if self.done(stop_at_goal):
                stopped_by = "violation"
                break
            if config.state_count_max is not None and len(parents) >= config.state_count_max:
                stopped_by = "state_count_max"
                break
        depth_max = config.depth_max
        state_count_max = config.state_count_max
        since_tick = 0
        while frontier and stopped_by is None:
            state, fingerprint, level = take()
            if depth_max is not None and level >= depth_max:
                continue
            enabled = 0
            for action in x.model.actions(state):
                successor = x.model.next_state(state, action)
                if successor is None:
                    continue
                enabled += 1
                generated += 1
                if not x.within(successor):
                    pruned += 1
                    continue
                child = x.key(successor)
                if keep:
                    assert self.edges is not None
                    self.edges.append((fingerprint, child, str(action)))
                if child in parents:
                    continue
                parents[child] = fingerprint
                if level + 1 > depth:
                    depth = level + 1
                if keep:
                    self.depths[child] = level + 1
                    if len(parents) > GRAPH_STATE_COUNT_MAX:
                        keep, self.edges, self.depths = False, None, {}
                frontier.append((successor, child, level + 1))
                self.check(successor, child)
                if self.done(stop_at_goal):
                    stopped_by = "violation"
                    break
                if state_count_max is not None and len(parents) >= state_count_max:
                    stopped_by = "state_count_max"
                    break
            if enabled == 0:
                deadlocks += 1
            since_tick += 1
            if since_tick >= 64:
                since_tick = 0
                if not progress.tick(len(parents), generated, depth, len(frontier), "queue"):
                    stopped_by = "time_seconds_max"
        if stop_at_goal and stopped_by == "violation":
            stopped_by = None  # reaching the goal is not a violation
        results = tuple(self.result_of(i, p) for i, p in enumerate(self.properties))
        progress.tick(len(parents), generated, depth, len(frontier), "queue", final=True)
        return Result(
            config=config,
            distinct=len(parents),
            generated=generated,
            depth=depth,
            pruned=pruned,
            deadlocks=deadlocks,
            queue=len(frontier),
            elapsed_seconds=progress.elapsed(),
            complete=stopped_by is None,
            stopped_by=stopped_by,
            properties=results,
            graph=self.graph() if keep else None,
            describe_state=x.describe,
        )

    def result_of(self, index: int, prop: Property[S]) -> PropertyResult[S, A]:
        fingerprint = self.found.get(index)
        if fingerprint is None:
            return PropertyResult(prop.name, prop.kind, holds=prop.kind is Kind.ALWAYS)
        trace = self.x.trace_to(fingerprint)
        return PropertyResult(prop.name, prop.kind, prop.kind is Kind.SOMETIMES, trace)

    def graph(self) -> Any:
        graph = nx.MultiDiGraph()
        initial = {fp for fp, parent in self.x.parents.items() if fp == parent}
        for fingerprint, level in self.depths.items():
            graph.add_node(f"{fingerprint:016x}", depth=level, initial=fingerprint in initial)
        for source, target, action in self.edges or ():
            graph.add_edge(f"{source:016x}", f"{target:016x}", action=action)
        return graph


class _Walks(Generic[S, A]):
    """Seeded random walks: walk i uses random.Random(seed + i)."""

    def __init__(self, explorer: Explorer[S, A]) -> None:
        self.x = explorer
        self.config = explorer.config
        self.found: dict[int, tuple[Trace[S, A], int]] = {}

    def run(self) -> Result[S, A]:
        x, config = self.x, self.config
        properties = x.properties
        progress = _Progress(config, x.progress)
        visited: set[int] = set()
        initial = [s for s in x._initial()]
        generated = pruned = deadlocks = depth = 0
        stopped_by: str | None = None
        walks_done = 0
        for walk in range(config.walk_count):
            if stopped_by is not None:
                break
            walk_seed = config.seed + walk
            rng = random.Random(walk_seed)
            start = rng.choice(initial) if initial else None
            walks_done += 1
            if start is None:
                break
            generated += 1
            if not x.within(start):
                pruned += 1
                continue
            steps: list[Step[S, A]] = [Step(None, start)]
            state = start
            while True:
                fingerprint = x.key(state)
                if fingerprint not in visited:
                    visited.add(fingerprint)
                    self.check(state, tuple(steps), walk_seed)
                    if config.stop_on_violation and self.violated():
                        stopped_by = "violation"
                    elif config.state_count_max and len(visited) >= config.state_count_max:
                        stopped_by = "state_count_max"
                depth = max(depth, len(steps))
                if stopped_by is not None or len(steps) >= config.walk_depth_max:
                    break
                actions = list(x.model.actions(state))
                rng.shuffle(actions)
                chosen: tuple[A, S] | None = None
                for action in actions:
                    successor = x.model.next_state(state, action)
                    if successor is None:
                        continue
                    generated += 1
                    if not x.within(successor):
                        pruned += 1
                        continue
                    chosen = (action, successor)
                    break
                if chosen is None:
                    deadlocks += 1
                    break
                steps.append(Step(chosen[0], chosen[1]))
                state = chosen[1]
            if stopped_by is None and not progress.tick(
                len(visited), generated, depth, config.walk_count - walks_done, "walks left"
            ):
                stopped_by = "time_seconds_max"
        progress.tick(
            len(visited), generated, depth, config.walk_count - walks_done, "walks left", True
        )
        results: list[PropertyResult[S, A]] = []
        for index, prop in enumerate(properties):
            hit = self.found.get(index)
            holds = (hit is None) == (prop.kind is Kind.ALWAYS)
            if hit is None:
                results.append(PropertyResult(prop.name, prop.kind, holds))
            else:
                results.append(PropertyResult(prop.name, prop.kind, holds, hit[0], hit[1]))
        return Result(
            config=config,
            distinct=len(visited),
            generated=generated,
            depth=depth,
            pruned=pruned,
            deadlocks=deadlocks,
            queue=config.walk_count - walks_done,
            elapsed_seconds=progress.elapsed(),
            complete=stopped_by is None,
            stopped_by=stopped_by,
            properties=tuple(results),
            describe_state=x.describe,
        )

    def check(self, state: S, trace: Trace[S, A], walk_seed: int) -> None:
        for index, prop in enumerate(self.x.properties):
            if index not in self.found and prop.predicate(state) != (prop.kind is Kind.ALWAYS):
                self.found[index] = (trace, walk_seed)

    def violated(self) -> bool:
        return any(self.x.properties[i].kind is Kind.ALWAYS for i in self.found)


# ---------------------------------------------------------------------- entry points


def explore(
    model: Model[S, A], config: ExploreConfig | None = None, *, progress: TextIO | None = None
) -> Result[S, A]:
    """Explores ``model`` under ``config`` (BFS, no limits, by default)."""
    return Explorer(model, config, progress=progress).run()


def shortest_path_to(
    model: Model[S, A],
    predicate: Callable[[S], bool],
    config: ExploreConfig | None = None,
) -> Trace[S, A] | None:
    """A shortest trace from an initial state to the nearest state satisfying ``predicate``."""
    return Explorer(model, config).shortest_path_to(predicate)


class Rooted(Generic[S, A]):
    """``model`` with one given initial state: the next phase of a chained search."""

    def __init__(self, model: Model[S, A], root: S) -> None:
        self.model = model
        self.root = root

    def init_states(self) -> list[S]:
        return [self.root]

    def actions(self, state: S) -> Iterable[A]:
        return self.model.actions(state)

    def next_state(self, state: S, action: A) -> S | None:
        return self.model.next_state(state, action)

    def properties(self) -> Sequence[PropertyLike[S]]:
        return self.model.properties()

    def __getattr__(self, name: str) -> Any:  # the optional hooks: fingerprint, describe...
        return getattr(self.model, name)


@dataclass(frozen=True, slots=True)
class ChainResult(Generic[S, A]):
    """A chained search (DSLabs' search goals): ``trace`` runs from an initial state through
    each goal in turn (each leg a shortest path) and, when ``broken`` names an ALWAYS
    property, ends at a state that breaks it (the last leg also a shortest path).
    ``missed`` names the goal no state reached, if any; ``final`` is the last leg's run."""

    trace: Trace[S, A]
    legs: tuple[int, ...]
    broken: str | None
    missed: str | None
    final: Result[S, A] | None


def chain(
    model: Model[S, A],
    goals: Sequence[tuple[str, Callable[[S], bool]]],
    config: ExploreConfig | None = None,
    *,
    final: ExploreConfig | None = None,
) -> ChainResult[S, A]:
    """Breadth-first to the first goal, from there to the next, and so on; then a full
    search of the ALWAYS properties from the last goal's state. Each leg is shortest, the
    whole trace need not be: chaining trades global minimality for reaching deep states
    (a protocol's second view change, say) that one search could not exhaust. Every state
    on the legs is checked against the ALWAYS properties as well. ``final`` configures the
    last search (a ``depth_max`` bounds it; default: ``config``)."""
    config = config or ExploreConfig()
    always = [p for p in map(as_property, model.properties()) if p.kind is Kind.ALWAYS]
    steps: list[Step[S, A]] = []
    legs: list[int] = []
    current: Model[S, A] = model
    for name, predicate in goals:
        leg = Explorer(current, config).shortest_path_to(predicate)
        if leg is None:
            return ChainResult(tuple(steps), tuple(legs), None, name, None)
        fresh = leg if not steps else leg[1:]
        for i, step in enumerate(fresh):
            broken = next((p.name for p in always if not p.predicate(step.state)), None)
            if broken is not None:
                trace = (*steps, *fresh[: i + 1])
                return ChainResult(trace, (*legs, i + 1), broken, None, None)
        steps.extend(fresh)
        legs.append(len(fresh))
        current = Rooted(model, leg[-1].state)
    last = Explorer(current, final or config).run()
    failing = next((p for p in last.violations if p.trace is not None), None)
    if failing is None or failing.trace is None:
        return ChainResult(tuple(steps), tuple(legs), None, None, last)
    tail = failing.trace if not steps else failing.trace[1:]
    return ChainResult((*steps, *tail), (*legs, len(tail)), failing.name, None, last)


def replay(model: Model[S, A], actions: Iterable[A], initial: S | None = None) -> Trace[S, A]:
    """Runs actions from an initial state (the first one, unless given): a trace, or
    ValueError naming the first action that is disabled."""
    state = next(iter(model.init_states())) if initial is None else initial
    steps: list[Step[S, A]] = [Step(None, state)]
    for action in actions:
        successor = model.next_state(state, action)
        if successor is None:
            raise ValueError(f"step {len(steps)}: {action} is disabled")
        steps.append(Step(action, successor))
        state = successor
    return tuple(steps)


__all__ = [
    "ALWAYS",
    "EXIT_CODES",
    "GRAPH_STATE_COUNT_MAX",
    "SOMETIMES",
    "STRATEGIES",
    "ChainResult",
    "ExploreConfig",
    "Explorer",
    "GraphTooLarge",
    "Kind",
    "Model",
    "NondeterministicModel",
    "Property",
    "PropertyLike",
    "PropertyResult",
    "Result",
    "Rooted",
    "Step",
    "Strategy",
    "Trace",
    "Verdict",
    "as_property",
    "canonical_bytes",
    "chain",
    "explore",
    "replay",
    "shortest_path_to",
    "stable_fingerprint",
]
