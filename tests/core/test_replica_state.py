"""The replica's state is declared once (vrref/core/replica.py's PROTOCOL_STATE), and every
slot of a Replica is accounted for: protocol state, which ``state_key`` (and so the
fingerprint), ``clone`` and ``ReplicaKey.relabel`` all cover, or one of the kinds that
NON_PROTOCOL_SLOTS lists. A slot added without a place in either breaks the tests below;
so does a protocol variable that a key, a clone or a fingerprint would miss.
"""

from __future__ import annotations

import dataclasses
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import cluster
from vrref.core.messages import (
    Checkpoint,
    ClientRecord,
    DoViewChange,
    LogEntry,
    RecoveryResponse,
    Request,
)
from vrref.core.replica import (
    NON_PROTOCOL_SLOTS,
    PROTOCOL_STATE,
    TIMERS,
    Config,
    Replica,
    ReplicaKey,
    Status,
    Timer,
)
from vrref.core.statemachine import EchoLog

ROOT = Path(__file__).resolve().parents[2]
KINDS = {"configuration", "observation", "scratch", "cache"}

# Client data that the mutations below put into the state wherever it can hold some, so
# that relabeling can be checked to reach every one of them.
CLIENT = 4242
OP = "op-of-4242"
ENTRY = LogEntry(view=0, request=Request(op=OP, client_id=CLIENT, request_number=1))


def checkpoint(op_number: int) -> Checkpoint:
    """A checkpoint naming the marked client in its service, digest and client-table."""
    return Checkpoint(
        op_number=op_number,
        service=OP,
        digest=OP,
        client_table=(ClientRecord(client_id=CLIENT, request_number=1, result=f"1:{OP}"),),
    )


def _arm_another_timer(r: Replica) -> None:
    r.timers[next(t for t in Timer if t not in r.timers)] = 1


def _execute_an_op(r: Replica) -> None:
    r.service.apply(OP)


# One in-place change per protocol variable (a container is changed, not replaced, so that
# a clone sharing it would show). Each changes the state again when applied again.
MUTATIONS: dict[str, Callable[[Replica], None]] = {
    "replica": lambda r: setattr(r, "replica", (r.replica + 1) % r.config.replica_count),
    "status": lambda r: setattr(
        r, "status", Status.RECOVERING if r.status is Status.NORMAL else Status.NORMAL
    ),
    "view": lambda r: setattr(r, "view", r.view + 1),
    "last_normal_view": lambda r: setattr(r, "last_normal_view", r.last_normal_view + 1),
    "log_start": lambda r: setattr(r, "log_start", r.log_start + 1),
    "log": lambda r: r.log.append(ENTRY),
    "checkpoint": lambda r: setattr(
        r, "checkpoint", checkpoint(1 + (0 if r.checkpoint is None else r.checkpoint.op_number))
    ),
    "commit_number": lambda r: setattr(r, "commit_number", r.commit_number + 1),
    "client_table": lambda r: r.client_table.__setitem__(
        CLIENT + len(r.client_table), (1, f"1:{OP}")
    ),
    "acks": lambda r: r.acks.__setitem__(len(r.acks) + 10, 1),
    "start_view_change_votes": lambda r: r.start_view_change_votes.add(
        len(r.start_view_change_votes) + 10
    ),
    "do_view_changes": lambda r: r.do_view_changes.__setitem__(
        len(r.do_view_changes) + 10,
        DoViewChange(
            view=1,
            log_start=1,
            log=(ENTRY,),
            checkpoint=checkpoint(1),
            last_normal_view=0,
            op_number=2,
            commit_number=1,
            replica=1,
        ),
    ),
    "_dvc_sent": lambda r: setattr(r, "_dvc_sent", not r._dvc_sent),
    "nonce": lambda r: setattr(r, "nonce", (r.nonce or 0) + 1),
    "recovery_responses": lambda r: r.recovery_responses.__setitem__(
        len(r.recovery_responses) + 10,
        RecoveryResponse(
            view=0,
            nonce=7,
            log_start=1,
            log=(ENTRY,),
            checkpoint=checkpoint(1),
            op_number=2,
            commit_number=1,
            replica=0,
        ),
    ),
    "state_transfer_view": lambda r: setattr(
        r, "state_transfer_view", (r.state_transfer_view or 0) + 1
    ),
    "_state_transfer_attempt": lambda r: setattr(
        r, "_state_transfer_attempt", r._state_transfer_attempt + 1
    ),
    "timers": _arm_another_timer,
    "service": _execute_an_op,
}


def replica() -> Replica:
    """A primary with one request in its log."""
    r = Replica(Config(replica_count=3), 0, EchoLog)
    r.on_message(Request(op="c0.1", client_id=100, request_number=1))
    assert r.op_number == 1
    return r


def all_slots() -> list[str]:
    return [s for cls in Replica.__mro__ for s in getattr(cls, "__slots__", ())]


def attribute(r: Replica, attr: str) -> object:
    """A slot's value, comparable: a service by its digest."""
    value = getattr(r, attr)
    return value.digest() if attr == "service" else value


def fresh_key(r: Replica) -> ReplicaKey:
    r._invalidate()
    return r.state_key()


# ---------------------------------------------------------------------- classification


def test_every_slot_is_classified_once() -> None:
    protocol = [v.attr for v in PROTOCOL_STATE]
    slots = all_slots()
    assert len(slots) == len(set(slots))
    assert len(protocol) == len(set(protocol))
    assert set(protocol).isdisjoint(NON_PROTOCOL_SLOTS)
    assert set(slots) == set(protocol) | set(NON_PROTOCOL_SLOTS)
    assert set(NON_PROTOCOL_SLOTS.values()) <= KINDS
    assert not hasattr(replica(), "__dict__")  # no attribute can live outside the slots


def test_key_fields_are_the_protocol_state_in_order() -> None:
    assert [f.name for f in dataclasses.fields(ReplicaKey)] == [v.key for v in PROTOCOL_STATE]


def test_every_protocol_variable_has_a_mutation_here() -> None:
    assert set(MUTATIONS) == {v.attr for v in PROTOCOL_STATE}


@pytest.mark.parametrize(
    "make",
    [
        replica,
        lambda: replica().clone(),
        lambda: Replica.recovering(Config(replica_count=3), 1, EchoLog, nonce=5)[0],
    ],
    ids=["new", "clone", "recovering"],
)
def test_every_slot_is_set(make: Callable[[], Replica]) -> None:
    r = make()
    for slot in all_slots():
        getattr(r, slot)  # AttributeError: a constructor or clone misses the slot
    r.state_key()
    r.snapshot()
    r.fingerprint()


# ---------------------------------------------------------------------- protocol state


@pytest.mark.parametrize("attr", [v.attr for v in PROTOCOL_STATE])
def test_protocol_variable_is_in_the_key_and_carried_by_clone(attr: str) -> None:
    original = replica()
    key, fingerprint = original.state_key(), original.fingerprint()
    value = attribute(original, attr)

    changed = original.clone()
    assert changed.state_key() == key and changed.fingerprint() == fingerprint
    changed._invalidate()
    MUTATIONS[attr](changed)
    assert attribute(changed, attr) != value
    assert changed.state_key() != key, f"{attr} is not in state_key"
    assert changed.fingerprint() != fingerprint, f"{attr} is not in the fingerprint"
    # The original is untouched: the clone shares no mutable value with it.
    assert attribute(original, attr) == value
    assert fresh_key(original) == key

    copy = changed.clone()
    assert attribute(copy, attr) == attribute(changed, attr), f"clone drops {attr}"
    assert copy.state_key() == changed.state_key()
    assert copy.fingerprint() == changed.fingerprint()
    changed_key = changed.state_key()
    MUTATIONS[attr](copy)
    assert attribute(copy, attr) != attribute(changed, attr)
    assert fresh_key(changed) == changed_key, f"clone shares {attr} with its original"


def test_timer_countdowns_are_abstracted_but_cloned() -> None:
    r = replica()
    key = r.state_key()
    (timer,) = r.timers
    r.timers[timer] += 5
    assert fresh_key(r) == key
    assert r.clone().timers == r.timers


def test_key_is_a_function_of_the_state_not_of_its_history() -> None:
    """Maps and sets are frozen canonically: insertion order does not matter."""
    a, b = replica(), replica()
    for i in (2, 1):
        a.acks[i] = i
        a.start_view_change_votes.add(i)
    for i in (1, 2):
        b.acks[i] = i
        b.start_view_change_votes.add(i)
    assert fresh_key(a) == fresh_key(b)
    assert a.fingerprint() == b.fingerprint()


def test_fingerprint_and_snapshot_are_those_of_the_key() -> None:
    r = replica()
    key = r.state_key()
    assert r.fingerprint() == key.fingerprint()
    assert r.snapshot() == key.snapshot()
    assert r.snapshot().op_number == r.op_number and r.snapshot().status == "normal"


def test_fingerprint_is_the_same_in_every_process() -> None:
    program = (
        "from tests.core.test_replica_state import replica, MUTATIONS;"
        "r = replica();"
        "[MUTATIONS[a](r) for a in sorted(MUTATIONS)];"
        "r._invalidate();"
        "print(r.fingerprint())"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", program],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
            env={"PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)},
        ).stdout.strip()
        for seed in ("1", "2")
    }
    r = replica()
    for attr in sorted(MUTATIONS):
        MUTATIONS[attr](r)
    r._invalidate()
    assert outputs == {str(r.fingerprint())}


# ---------------------------------------------------------------------- client symmetry


@dataclasses.dataclass(frozen=True)
class Everything:
    """A renaming that renames every client, op and result to one marker."""

    def client_id(self, client_id: int) -> int:
        return 7

    def op(self, op: str) -> str:
        return "renamed"

    def result(self, result: str) -> str:
        return "renamed"

    def service_digest(self, digest: str) -> str:
        return "renamed"

    def service_snapshot(self, snapshot: str) -> str:
        return "renamed"


@dataclasses.dataclass(frozen=True)
class Nothing:
    def client_id(self, client_id: int) -> int:
        return client_id

    def op(self, op: str) -> str:
        return op

    def result(self, result: str) -> str:
        return result

    def service_digest(self, digest: str) -> str:
        return digest

    def service_snapshot(self, snapshot: str) -> str:
        return snapshot


def test_relabel_reaches_every_value_that_names_a_client() -> None:
    r = replica()
    for attr in MUTATIONS:
        MUTATIONS[attr](r)
    key = fresh_key(r)
    assert str(CLIENT) in repr(key) and OP in repr(key)
    relabeled = repr(key.relabel(Everything()))
    assert str(CLIENT) not in relabeled and OP not in relabeled
    assert "c0.1" not in relabeled and "100" not in relabeled
    assert key.relabel(Nothing()) == key


# ---------------------------------------------------------------------- the other slots


def test_observations_are_not_state_but_are_cloned() -> None:
    r = replica()
    key = r.state_key()
    r.on_message(Request(op="c0.1", client_id=100, request_number=0))  # too old: ignored
    assert r.ignored and r.state_key() == key
    copy = r.clone()
    assert copy.ignored == r.ignored
    copy.ignored.clear()
    assert r.ignored


def test_clone_shares_the_configuration_and_caches_nothing() -> None:
    r = replica()
    r.fingerprint()
    copy = r.clone()
    assert copy.config is r.config and copy._service_factory is r._service_factory
    caches = [slot for slot, kind in NON_PROTOCOL_SLOTS.items() if kind == "cache"]
    assert caches and all(getattr(copy, slot) is None for slot in caches)


@pytest.mark.parametrize("seed", range(5))
def test_scratch_is_a_function_of_the_state_between_events(seed: int) -> None:
    """Scratch slots are not in the key: between events they must hold nothing that the
    protocol state does not determine."""
    rng = random.Random(seed)
    c = cluster(3, clients=(1, 2), seed=seed)
    for step in range(80):
        if rng.random() < 0.2:
            client = rng.choice((1, 2))
            if c.clients[client].outstanding is None:
                c.submit(client, f"{client}.{step}")
        if c.network and rng.random() < 0.7:
            c.deliver(rng.randrange(len(c.network)))
        else:
            c.tick(run=False)
        if step == 30:
            c.crash(0)
        if step == 60:
            c.restart(0)
        for r in c.replicas:
            if r is not None:
                assert r._effects == []
                assert r._prepare_from == r.op_number + 1


# ---------------------------------------------------------------------- timers


def test_every_timer_has_a_duration_and_a_handler() -> None:
    assert set(TIMERS) == set(Timer)
    config = Config(replica_count=3)
    for timer in Timer:
        assert config.timer_ticks(timer) >= 1
        assert callable(getattr(Replica, f"on_{timer.value}_timeout"))


def test_timers_are_their_names() -> None:
    r = replica()
    assert r.armed_timers() == (Timer.HEARTBEAT,)
    assert r.armed_timers() == ("heartbeat",) and f"{Timer.HEARTBEAT}" == "heartbeat"
    backup = Replica(Config(replica_count=3), 1, EchoLog)
    assert backup.on_timeout("primary")  # a name is accepted: it starts a view change
    assert backup.status is Status.VIEW_CHANGE
    with pytest.raises(ValueError, match="not armed"):
        backup.on_timeout(Timer.HEARTBEAT)
    with pytest.raises(ValueError):
        backup.on_timeout("no-such-timer")
