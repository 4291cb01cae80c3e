"""Linearizability checking: Wing-Gong search with Lowe's memoization, by partitions.

A history of client operations is linearizable when each operation can be given a single
instant between its invocation and its completion such that, taken in the order of those
instants, the operations are a legal run of the sequential specification (the model) and
every operation returns what the client saw (Herlihy & Wing 1990).

The search is Wing & Gong's (1993) as refined by Lowe ("Testing for linearizability",
2017). The invocations and completions sit in one doubly linked list in real-time order.
Scanning from the head, an invocation whose operation the model accepts in the current
state is *lifted* (its two entries unlinked, pushed on a stack) and the scan restarts; a
completion reached before its operation was lifted means the current prefix cannot be
extended, so the last lifted operation is put back and the scan resumes after it. Lowe's
memoization makes this practical: the pair (set of lifted operations as a bitset, model
state) is remembered, and a pair already seen is never explored again, since what can
follow depends on nothing else. Model steps are pure, so a state is a hashable value.

Two reductions keep it fast, both sound (they never discard the only witness):

* P-compositionality (Horn & Kroening 2015; Herlihy & Wing's locality): operations on
  independent parts of the state are checked separately. The model declares what each
  operation reads and writes (a *footprint*, over keys it chooses); union-find joins every
  operation that touches a key someone writes, so an operation touching several keys joins
  their partitions, and a footprint of ``None`` (unsure) joins everything.
* A definite read (an operation that changes no state, whatever the state) that the model
  accepts here is linearized at once and never tried later: any linearization from here
  can be rearranged to place it first, because everything that had to precede it is
  already placed and it changes nothing for those that follow. This holds for reads only:
  a write that happens to change nothing here (writing the current value) may change the
  state later, after another write, so it is tried in every position like any write. An
  indeterminate operation that would not change the state here is skipped here: not
  placing it at all leaves every continuation open.

Indeterminate operations (Jepsen's ``info``, a timed-out read, an invocation that never
completed) have no completion entry: their return is at +infinity, so they may be lifted
whenever they are invoked, and the search succeeds once every *definite* operation is
lifted, which is "take effect later or never". Definite failures never reach this module:
the model's conversion drops them.

Partitions are searched round-robin with a step budget that doubles each round, smallest
first: an illegal partition ends the whole check after about as many steps as its own
refutation costs times the number of live partitions, even when another partition's search
would take hours. A deadline and a cap on memo entries (summed over live partitions) turn
the verdict into Unknown instead of a hang or an exhausted memory.

The result is three-valued: Ok (with, on request, a witness linearization per partition and
a merged one, replayed through the unpartitioned model as a self-check of the partitioning),
Illegal (the partition, the longest partial linearizations found, and the operation that
cannot be placed after them), or Unknown (why).
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol

TIMEOUT_S_DEFAULT: Final = 60.0
MEMO_ENTRIES_MAX_DEFAULT: Final = 20_000_000  # ~3 GB in CPython at worst; the CLI lowers it
STEP_BUDGET_FIRST: Final = 2_000  # per partition, first round; doubles each round
STEP_BUDGET_MAX: Final = 200_000
ADVANCE_S_MAX: Final = 0.1  # budgets shrink when one partition's turn takes longer
LONGEST_KEPT_MAX: Final = 3
DESCRIBED_STATES_MAX: Final = 2_000  # states along the longest prefix kept for reports


class _Unknown:
    """The output of an indeterminate operation: whatever the model computes is accepted."""

    _instance: _Unknown | None = None

    def __new__(cls) -> _Unknown:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNKNOWN"

    def __reduce__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Final = _Unknown()


@dataclass(frozen=True, slots=True, kw_only=True)
class Operation:
    """One client operation as the search sees it.

    ``call`` and ``ret`` are positions in the real-time order of all events (distinct
    integers); ``ret`` is None for an indeterminate operation, whose output is UNKNOWN.
    ``id`` is the operation's index in the checked history; ``process`` and ``source``
    (file lines, times) are for reports only.
    """

    id: int
    process: int | str
    input: Any
    output: Any
    call: int
    ret: int | None
    source: Any = None

    @property
    def definite(self) -> bool:
        return self.ret is not None


@dataclass(frozen=True, slots=True)
class Footprint:
    """What an operation may touch, in any state of the model, over keys the model chooses.

    ``writes``: the keys whose value it may change. ``reads``: the keys whose value may
    influence its output or what it writes to *other* keys. A read-modify-write of one key
    (an append, a counter bump) only writes it: its dependence on the old value matters only
    if someone observes the key, and then that observer joins every writer anyway.
    """

    reads: frozenset[Hashable]
    writes: frozenset[Hashable]


class Model(Protocol):
    """A sequential specification: pure functions over hashable states."""

    name: str

    def init(self) -> Hashable:
        """The initial state."""
        ...

    def init_for(self, keys: frozenset[Hashable] | None) -> Hashable:
        """The initial state for a partition whose operations touch only ``keys`` (None:
        anything). A model may leave out what those operations never read (a DNS zone
        keeps only their names), which makes steps cheaper; or just return ``init()``."""
        ...

    def step(self, state: Any, input: Any, output: Any) -> tuple[bool, Any]:
        """(accepted, next state): does ``input`` in ``state`` return ``output``?

        ``output`` is UNKNOWN for an indeterminate operation: accept, and return the state
        the operation would leave.
        """
        ...

    def footprints(self, ops: Sequence[Operation]) -> Sequence[Footprint | None]:
        """Per operation (the whole history is given, for context): its footprint, or None
        when unsure, which joins it with everything."""
        ...

    def read_only(self, input: Any) -> bool:
        """Does ``input`` leave every state unchanged (a read)? Only then may the search
        place it as soon as it fits without trying it later (see the module docstring)."""
        ...

    def describe_operation(self, input: Any, output: Any) -> str: ...

    def describe_state(self, state: Any) -> str: ...


# ---------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True, kw_only=True)
class Stats:
    operations: int
    partitions: int
    steps: int
    memo_entries_max: int
    elapsed_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Ok:
    """Linearizable. With a witness: one linearization per partition, and a merged one."""

    stats: Stats
    partitions: tuple[tuple[Operation, ...], ...] | None = None
    linearization: tuple[Operation, ...] | None = None
    certified: bool = False  # the merged linearization passed the unpartitioned model
    verdict: Literal["linearizable"] = "linearizable"


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidate:
    op: Operation
    why: Literal["wrong output", "dead end"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Illegal:
    """Not linearizable: the partition that fails and what the search learned about it.

    ``longest`` are the longest partial linearizations found (most informative first);
    ``blocking`` is the operation that had to be placed next after ``longest[0]`` (the
    first to complete among those not yet placed) and could not be; ``candidates`` are the
    operations that could have come next there, and why each one fails.
    """

    stats: Stats
    partition: tuple[Operation, ...]
    longest: tuple[tuple[Operation, ...], ...]
    blocking: Operation | None
    candidates: tuple[Candidate, ...]
    state_after: str
    states: tuple[str, ...] = ()  # described, along longest[0], the initial state first
    verdict: Literal["not linearizable"] = "not linearizable"


@dataclass(frozen=True, slots=True, kw_only=True)
class Unknown:
    """No verdict within the limits: ``reason`` is "timeout" or "memory"."""

    stats: Stats
    reason: Literal["timeout", "memory"]
    detail: str
    partitions_done: int
    verdict: Literal["unknown"] = "unknown"


Result = Ok | Illegal | Unknown


class PartitioningError(AssertionError):
    """The merged witness fails in the unpartitioned model: the model's footprints are wrong.

    This is a bug in a model, never a property of the history; it is raised rather than
    reporting a verdict that may be wrong.
    """


# ---------------------------------------------------------------------------- partitioning


def partition(
    ops: Sequence[Operation], footprints: Sequence[Footprint | None]
) -> list[list[Operation]]:
    """Groups operations so that every key someone reads and someone writes lies in one group.

    A key nobody writes is a constant, and a key nobody reads is invisible (its writers'
    order cannot show in any output): neither creates a dependency. A footprint of None
    joins its operation with every other. Groups keep the order of ``ops``.
    """
    assert len(ops) == len(footprints)
    parent = list(range(len(ops)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)

    written: set[Hashable] = set()
    read: set[Hashable] = set()
    for fp in footprints:
        if fp is not None:
            written.update(fp.writes)
            read.update(fp.reads)
    shared = written & read
    owner: dict[Hashable, int] = {}
    everything: int | None = None
    for i, fp in enumerate(footprints):
        if fp is None:
            if everything is None:
                everything = i
            continue
        for key in fp.reads | fp.writes:
            if key in shared:
                first = owner.setdefault(key, i)
                union(first, i)
    if everything is not None:
        for i in range(len(ops)):
            union(everything, i)
    groups: dict[int, list[Operation]] = {}
    for i, op in enumerate(ops):
        groups.setdefault(find(i), []).append(op)
    return list(groups.values())


# ---------------------------------------------------------------------------- the search

_Status = Literal["ok", "illegal", "memory"]


class _Search:
    """The WGL search over one partition, resumable: ``advance`` runs a bounded number of
    model steps and returns a status once it knows one."""

    def __init__(self, model: Model, ops: Sequence[Operation], initial: Hashable) -> None:
        self.model = model
        self.initial = initial
        self.ops = list(ops)
        count = len(self.ops)
        entries: list[tuple[int, int, bool]] = []
        for i, op in enumerate(self.ops):
            assert op.ret is None or op.call < op.ret, f"operation {op.id} returns before call"
            entries.append((op.call, i, True))
            if op.ret is not None:
                entries.append((op.ret, i, False))
        entries.sort()
        size = len(entries)
        # Entry 0 is the head sentinel, 1..size the events, size + 1 the tail sentinel.
        self.nxt = [*range(1, size + 2), size + 1]
        self.prv = [0, *range(0, size + 1)]
        self.entry_op = [-1] * (size + 2)
        self.entry_is_call = [False] * (size + 2)
        self.call_entry = [0] * count
        self.ret_entry = [-1] * count
        for e, (_, i, is_call) in enumerate(entries, start=1):
            self.entry_op[e] = i
            self.entry_is_call[e] = is_call
            if is_call:
                self.call_entry[i] = e
            else:
                self.ret_entry[i] = e
        self.tail = size + 1
        self.inputs = [op.input for op in self.ops]
        self.outputs = [op.output for op in self.ops]
        self.definite = [op.ret is not None for op in self.ops]
        self.read_only = [op.ret is not None and model.read_only(op.input) for op in self.ops]
        self.remaining = sum(self.definite)
        self.cache: set[tuple[int, Hashable]] = set()
        self.stack: list[tuple[int, Any, bool]] = []  # (op, state before it, forced)
        self.bits = 0
        self.state: Any = initial
        self.entry = self.nxt[0]
        self.steps = 0
        self.longest: list[tuple[int, ...]] = []
        self.longest_depth = -1
        self.peak_pending = True
        self.status: _Status | None = "ok" if self.remaining == 0 else None

    def advance(self, budget: int, memo_limit: int) -> _Status | None:
        """Runs at most ``budget`` model steps; the status once known, else None."""
        if self.status is not None:
            return self.status
        step = self.model.step
        nxt, prv = self.nxt, self.prv
        entry_op, entry_is_call = self.entry_op, self.entry_is_call
        call_entry, ret_entry = self.call_entry, self.ret_entry
        inputs, outputs, definite = self.inputs, self.outputs, self.definite
        read_only = self.read_only
        cache, stack = self.cache, self.stack
        bits, state, e, remaining = self.bits, self.state, self.entry, self.remaining
        steps = 0
        status: _Status | None = None
        while steps < budget:
            dead = not entry_is_call[e]  # the completion of an unplaced op: a dead end
            if not dead:
                op = entry_op[e]
                steps += 1
                accepted, after = step(state, inputs[op], outputs[op])
                if accepted:
                    unchanged = after is state or after == state
                    if definite[op] or not unchanged:
                        forced = read_only[op]
                        key = (bits | (1 << op), after)
                        if key not in cache:
                            cache.add(key)
                            stack.append((op, state, forced))
                            # lift: unlink the call entry and the return entry
                            p, n = prv[e], nxt[e]
                            nxt[p], prv[n] = n, p
                            r = ret_entry[op]
                            if r >= 0:
                                p, n = prv[r], nxt[r]
                                nxt[p], prv[n] = n, p
                                remaining -= 1
                            bits, state = key
                            self.peak_pending = True
                            if remaining == 0:
                                status = "ok"
                                break
                            if len(cache) > memo_limit:
                                status = "memory"
                                break
                            e = nxt[0]
                            continue
                        # A forced op whose successor is known dead: so is this prefix.
                        dead = forced
                if not dead:
                    e = nxt[e]
                    continue
            if self.peak_pending:
                self.peak_pending = False
                self._note_peak()
            while True:
                if not stack:
                    status = "illegal"
                    break
                op, state, forced = stack.pop()
                bits ^= 1 << op
                r = ret_entry[op]
                if r >= 0:
                    nxt[prv[r]] = r
                    prv[nxt[r]] = r
                    remaining += 1
                c = call_entry[op]
                nxt[prv[c]] = c
                prv[nxt[c]] = c
                if not forced:
                    break
            if status is not None:
                break
            e = nxt[call_entry[op]]
        self.bits, self.state, self.entry, self.remaining = bits, state, e, remaining
        self.steps += steps
        self.status = status if status != "memory" else None
        return status

    def _note_peak(self) -> None:
        depth = len(self.stack)
        if depth < self.longest_depth:
            return
        ops = tuple(op for op, _, _ in self.stack)
        if depth > self.longest_depth:
            self.longest_depth = depth
            self.longest = [ops]
        elif len(self.longest) < LONGEST_KEPT_MAX and all(
            set(ops) != set(kept) for kept in self.longest
        ):
            self.longest.append(ops)

    def witness(self) -> tuple[Operation, ...]:
        assert self.status == "ok"
        return tuple(self.ops[op] for op, _, _ in self.stack)

    def explain(self, stats: Stats) -> Illegal:
        """What the search learned about this (illegal) partition."""
        assert self.status == "illegal"
        longest = self.longest or [()]
        prefix = longest[0]
        state = self.initial
        described = [self.model.describe_state(state)]
        for op in prefix:
            accepted, state = self.model.step(state, self.inputs[op], self.outputs[op])
            assert accepted, "a recorded prefix must replay"
            if len(described) <= DESCRIBED_STATES_MAX:
                described.append(self.model.describe_state(state))
        placed = set(prefix)
        unplaced = [i for i in range(len(self.ops)) if i not in placed]
        definite_unplaced = [i for i in unplaced if self.definite[i]]
        blocking: int | None = None
        candidates: list[Candidate] = []
        if definite_unplaced:
            blocking = min(definite_unplaced, key=lambda i: self.ops[i].ret or 0)
            deadline = self.ops[blocking].ret
            assert deadline is not None
            for i in unplaced:
                if self.ops[i].call < deadline:
                    accepted, _ = self.model.step(state, self.inputs[i], self.outputs[i])
                    why: Literal["wrong output", "dead end"] = (
                        "dead end" if accepted else "wrong output"
                    )
                    candidates.append(Candidate(op=self.ops[i], why=why))
        return Illegal(
            stats=stats,
            partition=tuple(self.ops),
            longest=tuple(tuple(self.ops[i] for i in ops) for ops in longest),
            blocking=self.ops[blocking] if blocking is not None else None,
            candidates=tuple(candidates),
            state_after=self.model.describe_state(state),
            states=tuple(described),
        )


# ---------------------------------------------------------------------------- the driver

Progress = Callable[[int, int, int], None]  # (partitions done, partitions, steps so far)


def check(
    model: Model,
    ops: Sequence[Operation],
    *,
    timeout_s: float | None = TIMEOUT_S_DEFAULT,
    memo_entries_max: int = MEMO_ENTRIES_MAX_DEFAULT,
    witness: bool = False,
    certify: bool = True,
    partitioned: bool = True,
    progress: Progress | None = None,
) -> Result:
    """Is ``ops`` (one history, definite failures already removed) linearizable in ``model``?

    Never runs much past ``timeout_s`` (None: no limit) and never keeps more than about
    ``memo_entries_max`` memo entries; either limit gives Unknown. With ``witness``, an Ok
    carries the linearizations, and with ``certify`` the merged one has been replayed
    through the unpartitioned model (PartitioningError if it fails: a model bug).
    """
    started = time.monotonic()
    deadline = None if timeout_s is None else started + timeout_s
    groups: list[tuple[list[Operation], frozenset[Hashable] | None]] = []
    if partitioned:
        footprints = model.footprints(ops)
        where = {op.id: fp for op, fp in zip(ops, footprints, strict=True)}
        for group in partition(ops, footprints):
            keys: set[Hashable] | None = set()
            for op in group:
                fp = where[op.id]
                if fp is None or keys is None:
                    keys = None
                else:
                    keys |= fp.reads | fp.writes
            groups.append((group, None if keys is None else frozenset(keys)))
    elif ops:
        groups.append((list(ops), None))
    searches = sorted(
        (_Search(model, group, model.init_for(keys)) for group, keys in groups),
        key=lambda s: len(s.ops),
    )
    live = [s for s in searches if s.status is None]
    done = len(searches) - len(live)
    budget = STEP_BUDGET_FIRST
    memo_max = 0

    def stats() -> Stats:
        return Stats(
            operations=len(ops),
            partitions=len(groups),
            steps=sum(s.steps for s in searches),
            memo_entries_max=memo_max,
            elapsed_s=time.monotonic() - started,
        )

    held_total = 0  # memo entries held by live partitions
    while live:
        still: list[_Search] = []
        for search in live:
            held = held_total - len(search.cache)
            began = time.monotonic()
            status = search.advance(budget, max(0, memo_entries_max - held))
            took = time.monotonic() - began
            if took > ADVANCE_S_MAX and budget > STEP_BUDGET_FIRST:
                budget //= 2  # a slow model: look at the deadline more often
            held_total = held + len(search.cache)
            memo_max = max(memo_max, held_total)
            if status == "illegal":
                return search.explain(stats())
            if status == "memory":
                return Unknown(
                    stats=stats(),
                    reason="memory",
                    detail=f"more than {memo_entries_max} memo entries",
                    partitions_done=done,
                )
            if status == "ok":
                done += 1
                if not witness:
                    search.stack.clear()
                held_total -= len(search.cache)
                search.cache.clear()  # a finished partition's memo is garbage now
            else:
                still.append(search)
            if deadline is not None and done < len(searches) and time.monotonic() > deadline:
                return Unknown(
                    stats=stats(),
                    reason="timeout",
                    detail=f"no verdict within {timeout_s:g} s",
                    partitions_done=done,
                )
        live = still
        if progress is not None:
            progress(done, len(searches), sum(s.steps for s in searches))
        budget = min(budget * 2, STEP_BUDGET_MAX)
    if not witness:
        return Ok(stats=stats())
    per_partition = tuple(s.witness() for s in searches)
    merged = merge_linearizations(per_partition)
    if certify:
        try:
            replay(model, merged, deadline=deadline)
        except _Late:
            return Unknown(
                stats=stats(),
                reason="timeout",
                detail=f"every partition is linearizable, but replaying the witness through "
                f"the unpartitioned model did not finish within {timeout_s:g} s",
                partitions_done=done,
            )
    return Ok(stats=stats(), partitions=per_partition, linearization=merged, certified=certify)


def merge_linearizations(
    parts: Sequence[Sequence[Operation]],
) -> tuple[Operation, ...]:
    """One linearization of the whole history from one per independent partition.

    Repeatedly takes the next operation of the partition holding the unplaced definite
    operation that completes first: that partition's next operation was invoked before
    every unplaced completion (its own linearization respects real time), so appending it
    keeps the real-time order. Indeterminate leftovers go last. A heap over the partitions'
    earliest unplaced completions makes it O(n log partitions).
    """
    inf = float("inf")
    suffix_min: list[list[float]] = []  # per partition, the earliest completion from i on
    for part in parts:
        mins = [inf] * (len(part) + 1)
        for i in range(len(part) - 1, -1, -1):
            ret = part[i].ret
            mins[i] = min(mins[i + 1], inf if ret is None else ret)
        suffix_min.append(mins)
    heap = [(suffix_min[k][0], k) for k, part in enumerate(parts) if part]
    heapq.heapify(heap)
    heads = [0] * len(parts)
    merged: list[Operation] = []
    while heap:
        _, k = heapq.heappop(heap)
        merged.append(parts[k][heads[k]])
        heads[k] += 1
        if heads[k] < len(parts[k]):
            heapq.heappush(heap, (suffix_min[k][heads[k]], k))
    assert len(merged) == sum(len(p) for p in parts)
    return tuple(merged)


class _Late(Exception):
    """The deadline passed during a replay."""


def replay(
    model: Model,
    linearization: Sequence[Operation],
    *,
    states: bool = False,
    deadline: float | None = None,
) -> list[Any]:
    """Runs ``linearization`` through the unpartitioned model from ``init()``, checking the
    real-time order and every output; raises PartitioningError when it is not a legal
    witness. Returns the states along it (initial first) if ``states``, else the last one."""
    state = model.init()
    kept = [state]
    min_ret_after: list[float] = [float("inf")] * (len(linearization) + 1)
    for i in range(len(linearization) - 1, -1, -1):
        ret = linearization[i].ret
        min_ret_after[i] = min(min_ret_after[i + 1], float("inf") if ret is None else ret)
    for i, op in enumerate(linearization):
        if deadline is not None and i % 256 == 255 and time.monotonic() > deadline:
            raise _Late
        if min_ret_after[i + 1] < op.call:
            raise PartitioningError(f"witness breaks real-time order at operation {op.id}")
        accepted, state = model.step(state, op.input, op.output)
        if not accepted:
            raise PartitioningError(
                f"witness fails in the unpartitioned model at operation {op.id}: "
                f"{model.describe_operation(op.input, op.output)}"
            )
        if states:
            kept.append(state)
    return kept if states else [state]
