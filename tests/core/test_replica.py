"""Scenario tests of the replica core through the in-memory harness, for f=1 and f=2.

The harness checks the safety invariants of spec/invariants.py after every event, so each
scenario also asserts that nothing unsafe happened on the way.
"""

from __future__ import annotations

import random

import pytest

from checker.sim.cluster import Cluster
from tests.conftest import cluster, to
from vrref.core.messages import (
    Commit,
    DoViewChange,
    Prepare,
    PrepareOk,
    Reply,
    Request,
    StartView,
    StartViewChange,
)
from vrref.core.replica import Config, Replica, Send, SendReply, Status, Timer
from vrref.core.statemachine import EchoLog

SIZES = [3, 5]


def converge(c: Cluster, ticks: int = 60) -> None:
    """Heals and ticks until every live replica is normal in one view with equal state."""

    def converged() -> bool:
        live = [r for r in c.replicas if r is not None]
        return (
            all(r.status is Status.NORMAL for r in live)
            and len({(r.view, r.commit_number, r.op_number) for r in live}) == 1
            and live[0].commit_number == live[0].op_number
        )

    assert c.run_until(converged, ticks_max=ticks), "\n".join(c.trace[-40:])
    digests = {r.service.digest() for r in c.replicas if r is not None}
    assert len(digests) == 1


@pytest.mark.parametrize("n", SIZES)
def test_normal_operation_commits_in_order_everywhere(n: int) -> None:
    c = cluster(n, clients=(1, 2, 3))
    for round_ in range(3):
        for client in (1, 2, 3):
            c.submit(client, f"op{client}.{round_}")
        c.run()
    assert len(c.completions) == 9
    converge(c)
    ops = c.replica(0).service
    assert isinstance(ops, EchoLog)
    assert len(ops.ops) == 9
    # Results reveal the order: position i executed op i.
    for _, completion in c.completions:
        position, op = completion.result.split(":", 1)
        assert ops.ops[int(position) - 1] == op == completion.op


@pytest.mark.parametrize("n", SIZES)
def test_primary_crash_view_change_keeps_committed_ops(n: int) -> None:
    c = cluster(n, clients=(1, 2))
    c.submit(1, "a")
    c.submit(2, "b")
    c.run()
    assert len(c.completions) == 2
    c.crash(0)
    c.submit(1, "c")
    assert c.run_until(lambda: c.result_of(1, 2) is not None)
    primary = c.primary_normal()
    assert primary is not None and primary != 0
    assert c.replica(primary).view >= 1
    converge(c)
    ops = c.replica(1).service
    assert isinstance(ops, EchoLog) and ops.ops == ("a", "b", "c")


@pytest.mark.parametrize("n", SIZES)
def test_backup_crash_and_recovery(n: int) -> None:
    c = cluster(n)
    c.submit(1, "a")
    c.run()
    c.crash(n - 1)
    c.submit(1, "b")
    c.run()
    assert c.result_of(1, 2) is not None  # f failures do not stop progress
    c.restart(n - 1)
    assert c.run_until(lambda: c.replica(n - 1).status is Status.NORMAL)
    converge(c)
    recovered = c.replica(n - 1).service
    assert isinstance(recovered, EchoLog) and recovered.ops == ("a", "b")


@pytest.mark.parametrize("n", SIZES)
def test_f_crashes_at_once_then_recover_one_by_one(n: int) -> None:
    f = (n - 1) // 2
    c = cluster(n)
    c.submit(1, "a")
    c.run()
    for i in range(f):  # including the primary
        c.crash(i)
    c.submit(1, "b")
    assert c.run_until(lambda: c.result_of(1, 2) is not None)
    for i in range(f):
        c.restart(i)
        assert c.run_until(lambda i=i: c.replica(i).status is Status.NORMAL)
    converge(c)


@pytest.mark.parametrize("n", SIZES)
def test_lagging_backup_catches_up_by_state_transfer(n: int) -> None:
    c = cluster(n)
    lagging = n - 1
    # The lagging backup misses every PREPARE and COMMIT of the first five ops.
    for i in range(5):
        c.submit(1, f"op{i}")
        c.run(drop=to(lagging, Prepare))
    assert c.replica(lagging).op_number == 0
    c.submit(1, "last")
    c.run()
    # The PREPARE for op 6 revealed the gap; GETSTATE/NEWSTATE filled it.
    r = c.replica(lagging)
    assert r.op_number == 6
    assert r.ignored.get("newstate not asked for", 0) == 0
    assert any("GETSTATE" in line for line in c.trace) and any(
        "NEWSTATE" in line for line in c.trace
    )
    converge(c)


def test_heartbeat_repairs_a_lost_last_prepare() -> None:
    c = cluster(3)
    c.submit(1, "a")
    c.run(drop=to(2, Prepare))
    assert c.replica(2).op_number == 0
    c.tick(c.config.heartbeat_ticks)
    assert c.replica(2).op_number == 1


@pytest.mark.parametrize("n", SIZES)
def test_duplicated_and_reordered_messages_change_nothing(n: int) -> None:
    for seed in range(20):
        c = cluster(n, clients=(1, 2, 3), seed=seed)
        rng = random.Random(seed)
        for round_ in range(3):
            for client in (1, 2, 3):
                c.submit(client, f"{client}.{round_}")
            # Duplicate a random half of everything in flight, then deliver in random order.
            c.duplicate(lambda _m, rng=rng: rng.random() < 0.5)
            c.run()
        assert len(c.completions) == 9
        converge(c)
        ops = c.replica(0).service
        assert isinstance(ops, EchoLog) and len(ops.ops) == 9 == len(set(ops.ops))


def test_old_view_messages_are_ignored() -> None:
    c = cluster(3)
    c.submit(1, "a")
    c.run()
    c.crash(0)
    c.tick(c.config.primary_timeout_ticks + 2)
    assert c.replica(1).view == 1 and c.replica(1).status is Status.NORMAL
    backup = c.replica(2)
    before = backup.state_key()
    stale = [
        Prepare(view=0, entries=(), op_number=1, commit_number=1),
        Commit(view=0, commit_number=1),
        StartViewChange(view=0, replica=1),
        StartView(log_start=0, checkpoint=None, view=0, log=(), op_number=0, commit_number=0),
        PrepareOk(view=0, op_number=1, replica=1),
    ]
    for message in stale:
        assert backup.on_message(message) == []
    assert backup.state_key() == before


@pytest.mark.parametrize("n", SIZES)
def test_client_retry_executes_once(n: int) -> None:
    c = cluster(n)
    c.submit(1, "a")
    # The reply is lost; the client times out and resends to everyone.
    c.run(drop=lambda m: isinstance(m.message, Reply))
    assert c.result_of(1, 1) is None
    assert c.run_until(lambda: c.result_of(1, 1) is not None)
    converge(c)
    ops = c.replica(0).service
    assert isinstance(ops, EchoLog) and ops.ops == ("a",)
    assert c.result_of(1, 1) == "1:a"


@pytest.mark.parametrize("n", SIZES)
def test_view_change_while_requests_in_flight(n: int) -> None:
    c = cluster(n, clients=(1, 2, 3))
    c.submit(1, "a")
    c.run()
    # Requests reach the primary and its PREPAREs are sent, then it dies before any commit.
    c.submit(2, "b")
    c.submit(3, "c")
    c.deliver()
    c.deliver()
    c.crash(0)
    assert c.run_until(lambda: len(c.completions) == 3, ticks_max=100)
    converge(c)
    ops = c.replica(1).service
    assert isinstance(ops, EchoLog)
    assert sorted(ops.ops) == ["a", "b", "c"] and ops.ops[0] == "a"


def test_batching_puts_several_requests_in_one_prepare() -> None:
    config = Config(replica_count=3)
    primary = Replica(config, 0, EchoLog)
    effects = primary.on_messages(
        Request(op=f"op{i}", client_id=i, request_number=1) for i in range(1, 6)
    )
    prepares = [e for e in effects if isinstance(e, Send) and isinstance(e.message, Prepare)]
    assert len(prepares) == 2  # one per backup
    assert all(len(p.message.entries) == 5 for p in prepares if isinstance(p.message, Prepare))
    # One cumulative PREPAREOK commits the whole batch.
    effects = primary.on_message(PrepareOk(view=0, op_number=5, replica=1))
    assert primary.commit_number == 5
    assert len([e for e in effects if isinstance(e, SendReply)]) == 5


def test_prepare_batches_are_split_at_the_bound() -> None:
    config = Config(replica_count=3, prepare_entries_max=2)
    primary = Replica(config, 0, EchoLog)
    effects = primary.on_messages(
        Request(op="x", client_id=i, request_number=1) for i in range(1, 6)
    )
    to_1 = [e.message for e in effects if isinstance(e, Send) and e.to == 1]
    assert [len(p.entries) for p in to_1 if isinstance(p, Prepare)] == [2, 2, 1]


def test_single_replica_commits_alone() -> None:
    c = cluster(1)
    c.submit(1, "solo")
    c.run()
    assert c.result_of(1, 1) == "1:solo"


def test_pipeline_bound_drops_excess_requests() -> None:
    config = Config(replica_count=3, pipeline_max=2)
    primary = Replica(config, 0, EchoLog)
    primary.on_messages(Request(op="x", client_id=i, request_number=1) for i in range(1, 5))
    assert primary.op_number == 2
    assert primary.ignored["pipeline full"] == 2


def test_view_change_needs_a_quorum() -> None:
    c = cluster(3)
    c.crash(0)
    c.partition([1], [2])
    c.tick(80)
    for i in (1, 2):
        assert c.replica(i).status is Status.VIEW_CHANGE
    c.heal()
    assert c.run_until(lambda: c.primary_normal() is not None)


def test_deposed_primary_learns_of_the_new_view() -> None:
    c = cluster(3)
    c.submit(1, "a")
    c.run()
    c.partition([0], [1, 2])
    c.tick(c.config.primary_timeout_ticks + 4)
    assert c.replica(1).view >= 1 and c.replica(1).status is Status.NORMAL
    assert c.replica(0).view == 0  # still believes it is primary
    c.heal()
    c.tick(c.config.heartbeat_ticks + 1)
    converge(c)
    assert c.replica(0).view == c.replica(1).view


def test_do_view_change_to_a_started_view_gets_the_start_view_again() -> None:
    c = cluster(3)
    c.crash(0)
    c.tick(c.config.primary_timeout_ticks + 2)
    primary = c.replica(1)
    assert primary.status is Status.NORMAL and primary.view == 1
    late = DoViewChange(
        log_start=0,
        checkpoint=None,
        view=1,
        log=(),
        last_normal_view=0,
        op_number=0,
        commit_number=0,
        replica=2,
    )
    effects = primary.on_message(late)
    assert [type(e.message) for e in effects if isinstance(e, Send)] == [StartView]


def test_messages_from_the_network_never_crash_a_replica() -> None:
    # Inconsistent numbers in peer messages are ignored with a reason, not asserted on.
    r = Replica(Config(replica_count=3), 1, EchoLog)
    bad = [
        Prepare(view=0, entries=(), op_number=0, commit_number=5),
        StartView(log_start=0, checkpoint=None, view=3, log=(), op_number=2, commit_number=0),
        DoViewChange(
            log_start=0,
            checkpoint=None,
            view=1,
            log=(),
            last_normal_view=0,
            op_number=3,
            commit_number=0,
            replica=2,
        ),
        Reply(view=0, client_id=1, request_number=1, result="x"),
    ]
    for message in bad:
        r.on_message(message)
    assert r.status is Status.NORMAL and r.op_number == 0


def test_clone_is_independent_and_fingerprint_stable() -> None:
    c = cluster(3)
    c.submit(1, "a")
    c.run()
    original = c.replica(1)
    copy = original.clone()
    assert copy.fingerprint() == original.fingerprint()
    copy.on_timeout(Timer.PRIMARY)
    assert copy.fingerprint() != original.fingerprint()
    assert original.status is Status.NORMAL


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("seed", range(40))
def test_random_faults_are_safe_and_heal(n: int, seed: int) -> None:
    """Random schedules of loss, duplication, reordering, crashes (at most f) and restarts:
    the invariants hold after every event, and once healed every request completes."""
    rng = random.Random(seed)
    f = (n - 1) // 2
    c = cluster(n, clients=(1, 2), seed=seed)
    submitted = {1: 0, 2: 0}
    for _ in range(60):
        for client_id, client in c.clients.items():
            if client.outstanding is None and submitted[client_id] < 4 and rng.random() < 0.3:
                submitted[client_id] += 1
                c.submit(client_id, f"{client_id}.{submitted[client_id]}")
        action = rng.random()
        if c.network and action < 0.55:
            c.deliver(rng.randrange(len(c.network)))
        elif c.network and action < 0.65:
            c.network.pop(rng.randrange(len(c.network)))
        elif c.network and action < 0.7:
            c.network.append(c.network[rng.randrange(len(c.network))])
        elif action < 0.9:
            c.tick(run=False)
        else:
            down = [i for i, r in enumerate(c.replicas) if r is None]
            recovering = [
                i
                for i, r in enumerate(c.replicas)
                if r is not None and r.status is Status.RECOVERING
            ]
            if down and rng.random() < 0.6:
                c.restart(rng.choice(down))
            elif len(down) + len(recovering) < f:
                c.crash(rng.randrange(n))
    for i, r in enumerate(c.replicas):
        if r is None:
            c.restart(i)
    assert c.run_until(
        lambda: all(cl.outstanding is None for cl in c.clients.values()), ticks_max=300
    ), "\n".join(c.trace[-60:])
    converge(c, ticks=200)
    ops = c.replica(0).service
    assert isinstance(ops, EchoLog)
    assert len(ops.ops) == len(set(ops.ops)) == sum(submitted.values())
