"""Counterexamples as history files, and ``vrref replay``: any counterexample becomes a test.

``vrref explore --model vr --history OUT`` writes the first counterexample it finds as a
history (vrref/history.py format). The header names where it came from: ``"source":
"vrref explore"``, the explorer's ``"bounds"``, the ``"mutant"`` explored (null for the real
core) and the ``"property"`` broken; ``"model": "echo-log"`` is the client operations'
sequential specification (checker/lin/models.py), so ``vrref check`` and ``vrref view`` read the
same file. Each step of the trace is one event, named as in the paper::

    {"type":"invoke","process":100,"f":"append","value":"c0.1"}        a client request
    {"type":"deliver","replica":0,"message":{"type":"REQUEST",...}}   a message delivered
    {"type":"drop","replica":2,"message":{...}}                       lost in the network
    {"type":"duplicate","client":100,"message":{...}}                 delivered, kept in flight
    {"type":"timeout","replica":1,"timer":"primary"}                  a timer fired
    {"type":"timeout","client":100}                                   a client resent
    {"type":"crash","replica":0}   {"type":"restart","replica":0,"nonce":1000}
    {"type":"ok","process":100,"f":"append","value":"1:c0.1"}          a reply completed an op
    {"type":"state","replica":0,"status":"normal","view":0,"op_number":1,"commit_number":1,
     "log":["c0.1"]}                                                   after a step, if changed
    {"type":"note","violation":"...","explain":"..."}                 the last line

``vrref replay FILE [--mutant NAME | --core]`` feeds the events, in order, to the real
replica and client cores in the explorer's model (by default the core the file was found
with; ``--core`` the real one; ``--mutant`` another), checks every ALWAYS property after
each step and compares each recorded ``state`` and ``ok`` with what the code now does.
It prints the trace in the paper's words and exits 1 when a property breaks (the
counterexample still reproduces), 0 when none does (the trace either runs to its end or
stops being possible under this code: the first step that no longer applies is printed),
and 2 when the file cannot be read. So a stored counterexample replayed with ``--core`` is
a regression test of the real core: it must exit 0.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any, assert_never

from checker.explore.search import Step, as_property
from checker.explore.vr.model import (
    Action,
    Bounds,
    ClientRequest,
    ClientTimeout,
    Crash,
    Deliver,
    Drop,
    Duplicate,
    Restart,
    Timeout,
    VRModel,
    VRState,
)
from checker.mutants import MUTANTS, replica_class
from vrref import history as hist
from vrref.core.messages import CodecError, from_json, to_json
from vrref.core.replica import Replica, Timer
from vrref.history import ClientEvent, HistoryWriter, ReplicaEvent

SOURCE = "vrref explore"


def _state_fields(replica: Replica | None) -> dict[str, Any]:
    """What a state event records of a replica of the model: vrref/history.py's
    replica_state with the log's ops, or only the status "crashed"."""
    if replica is None:
        return {"status": hist.CRASHED}
    return hist.replica_state(replica, log=True)


def _address(dst: tuple[str, int]) -> dict[str, int]:
    return {"replica" if dst[0] == "replica" else "client": dst[1]}


def step_events(before: VRState, action: Action, after: VRState) -> list[dict[str, Any]]:
    """The history events of one explorer step."""
    events: list[dict[str, Any]] = []
    match action:
        case Deliver() | Drop() | Duplicate():
            events.append(
                {"type": action.verb, **_address(action.to), "message": to_json(action.message)}
            )
        case Timeout(replica=i, timer=timer):
            events.append({"type": "timeout", "replica": i, "timer": timer.value})
        case ClientTimeout(client=c):
            events.append({"type": "timeout", "client": before.clients[c].client_id})
        case Crash(replica=i):
            events.append({"type": "crash", "replica": i})
        case Restart(replica=i):
            events.append({"type": "restart", "replica": i, "nonce": 1000 + before.crashes})
        case ClientRequest(client=c, op=op):
            client_id = before.clients[c].client_id
            events.append({"type": "invoke", "process": client_id, "f": "append", "value": op})
        case _:
            assert_never(action)
    for kind, client_id, text in after.client_events[len(before.client_events) :]:
        if kind == "ok":
            events.append({"type": "ok", "process": client_id, "f": "append", "value": text})
    for i, (old, new) in enumerate(zip(before.replicas, after.replicas, strict=True)):
        fields = _state_fields(new)
        if _state_fields(old) != fields:
            events.append({"type": "state", "replica": i, **fields})
    return events


def write_counterexample(
    path: str | Path, model: VRModel, trace: Sequence[Step[VRState, Action]], broken: str
) -> None:
    """Writes a trace of the VR model as a history file that ``vrref replay`` re-runs
    (replacing the file: a history writer would append to it)."""
    Path(path).unlink(missing_ok=True)
    with HistoryWriter(
        path,
        model="echo-log",
        source=SOURCE,
        bounds=dataclasses.asdict(model.bounds),
        mutant=model.mutant,
        property=broken,
    ) as out:
        for previous, step in itertools.pairwise(trace):
            assert step.action is not None
            for event in step_events(previous.state, step.action, step.state):
                out.write(event)  # parsed by the writer: a malformed event raises here
        out.write(hist.Note(violation=broken, explain=model.explain(trace[-1].state)))


class ReplayError(Exception):
    """A counterexample file that is not one: names the file and line."""


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """What replaying a file did: the states visited, the property broken (if any), and the
    first step that no longer applies under this code (if any)."""

    steps: tuple[Step[VRState, Action], ...]
    broken: str | None
    explain: str | None
    diverged: str | None


_ON_MESSAGE: dict[str, type[Deliver | Drop | Duplicate]] = {
    kind.verb: kind for kind in (Deliver, Drop, Duplicate)
}
"""The in-flight actions by their history event type."""


def _action_of(event: ReplicaEvent | ClientEvent, state: VRState, where: str) -> Action | None:
    """The explorer action an event stands for (None for events that only report)."""
    if isinstance(event, ClientEvent):
        if event.type != "invoke":
            return None
        index = next((i for i, c in enumerate(state.clients) if c.client_id == event.process), None)
        if index is None or not isinstance(event.value, str):
            raise ReplayError(f"{where}: no client {event.process!r} with a string op")
        return ClientRequest(index, event.value)
    f = event.fields
    try:
        match event.type:
            case "deliver" | "drop" | "duplicate":
                to: tuple[str, int] = (
                    ("replica", int(f["replica"]))
                    if "replica" in f
                    else ("client", int(f["client"]))
                )
                on_message = _ON_MESSAGE[event.type]
                return on_message(to, from_json(f["message"]))
            case "timeout":
                if "client" in f:
                    index = next(
                        i for i, c in enumerate(state.clients) if c.client_id == int(f["client"])
                    )
                    return ClientTimeout(index)
                return Timeout(int(f["replica"]), Timer(str(f["timer"])))
            case "crash":
                return Crash(int(f["replica"]))
            case "restart":
                return Restart(int(f["replica"]))
            case "state" | "note":
                return None
    except (KeyError, TypeError, ValueError, StopIteration, CodecError) as error:
        raise ReplayError(f"{where}: malformed {event.type} event: {error}") from None
    raise ReplayError(f"{where}: a {event.type!r} event has no place in a counterexample")


def replay_file(path: str | Path, mutant: str | bool | None = False) -> Outcome:
    """Re-runs a counterexample file. ``mutant``: False for the core it was found with, None
    for the real core, or a bug-zoo name."""
    name = str(path)
    lines = list(hist.iter_lines(path))  # first: a line that is not JSON is named as such
    if not lines:
        raise hist.HistoryError(name, None, "empty history: no header line")
    head = hist.parse_header(lines[0][1], name, lines[0][0])
    if head.get("source") != SOURCE or not isinstance(head.get("bounds"), dict):
        raise ReplayError(f"{path}:1: not a counterexample of vrref explore (no bounds)")
    events = [hist.parse_event(obj, name, number) for number, obj in lines[1:]]
    try:
        fields: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in head["bounds"].items()
        }
        bounds = Bounds(**fields)
    except TypeError as error:
        raise ReplayError(f"{path}:1: bad bounds: {error}") from None
    chosen = head.get("mutant") if mutant is False else mutant
    if chosen is not None and chosen not in MUTANTS:
        raise ReplayError(f"{path}:1: unknown mutant {chosen!r}")
    model = VRModel(bounds, replica_class(chosen), mutant=chosen)
    always = [p for p in map(as_property, model.properties()) if p.kind == "always"]
    state = model.init_states()[0]
    steps: list[Step[VRState, Action]] = [Step(None, state)]

    def broken(s: VRState) -> str | None:
        return next((p.name for p in always if not p.predicate(s)), None)

    for event in events:
        where = f"{path}:{event.line}"
        if isinstance(event, ClientEvent) and event.type == "ok":
            seen = ("ok", event.process, event.value)
            if seen not in state.client_events:
                return Outcome(
                    tuple(steps),
                    None,
                    None,
                    f"{where}: the reply {event.value!r} "
                    f"to client {event.process} is not what this code returns",
                )
            continue
        if isinstance(event, ReplicaEvent) and isinstance(event.record, hist.State):
            record = event.record
            i = record.replica
            if not 0 <= i < len(state.replicas):
                raise ReplayError(f"{where}: no replica {i}")
            missing = list(record.missing())
            if not record.crashed and hist.STATE_LOG not in record.values:
                missing.append(hist.STATE_LOG)
            if missing:
                raise ReplayError(f"{where}: a state with no {', '.join(missing)}")
            recorded = dict(record.values)
            now = _state_fields(state.replicas[i])
            if recorded != now:
                return Outcome(
                    tuple(steps),
                    None,
                    None,
                    f"{where}: r{i} is now {now}, the file recorded {recorded}",
                )
            continue
        action = _action_of(event, state, where)
        if action is None:
            continue
        successor = model.next_state(state, action)
        if successor is None:
            return Outcome(
                tuple(steps), None, None, f"{where}: '{action}' is not possible under this code"
            )
        state = successor
        steps.append(Step(action, state))
        problem = broken(state)
        if problem is not None:
            return Outcome(tuple(steps), problem, model.explain(state), None)
    return Outcome(tuple(steps), None, None, None)
