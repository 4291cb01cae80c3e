"""Checkpoints, log suffixes and durable restarts of the real core, scenario by scenario
(spec/vr.md R18-R21), in the in-memory cluster with the invariants on after every event.

Each test is one situation the rules exist for: the log truncated at a checkpoint; a
backup behind the primary's checkpoint pulled up by state transfer; a new primary behind
the chosen DOVIEWCHANGE's checkpoint taking it; a STARTVIEW without a checkpoint refused
by a replica that needs it; persist effects ahead of every message; a whole cluster
crashed at once and restarted from its disks; a restarted primary that reuses no
op-number; and the same scenarios for the mutants that get them wrong.
"""

from __future__ import annotations

import pytest

from checker.mutants import MUTANTS
from checker.sim.cluster import Cluster, InvariantViolation
from tests.conftest import to
from vrref.core import durable
from vrref.core.durable import PersistCheckpoint, PersistLog, PersistVote
from vrref.core.messages import Commit, Prepare, Request, StartView
from vrref.core.replica import Config, Replica, Send, SendReply, Status
from vrref.core.statemachine import EchoLog


def cluster(
    checkpoint_ops: int = 2,
    *,
    n: int = 3,
    clients: tuple[int, ...] = (1,),
    durable_: bool = False,
    replica_class: type[Replica] = Replica,
) -> Cluster:
    return Cluster(
        Config(replica_count=n, checkpoint_ops=checkpoint_ops),
        client_ids=clients,
        durable=durable_,
        replica_class=replica_class,
    )


def submit_all(c: Cluster, ops: list[str], client: int = 1) -> None:
    for op in ops:
        c.submit(client, op)
        assert c.run_until(lambda: c.clients[client].outstanding is None), c.trace[-20:]


def converge(c: Cluster, ticks: int = 80) -> None:
    def converged() -> bool:
        live = [r for r in c.replicas if r is not None]
        return (
            len(live) == len(c.replicas)
            and all(r.status is Status.NORMAL for r in live)
            and len({(r.view, r.commit_number, r.op_number) for r in live}) == 1
            and live[0].commit_number == live[0].op_number
        )

    assert c.run_until(converged, ticks_max=ticks), "\n".join(c.trace[-40:])
    assert len({r.service.digest() for r in c.replicas if r is not None}) == 1


def ops_of(r: Replica) -> tuple[str, ...]:
    service = r.service
    assert isinstance(service, EchoLog)
    return service.ops


def test_a_checkpoint_truncates_the_log_and_op_numbers_stay_absolute() -> None:
    c = cluster(checkpoint_ops=2)
    submit_all(c, ["a", "b", "c", "d", "e"])
    converge(c)
    for r in c.replicas:
        assert r is not None
        assert r.op_number == 5 and r.commit_number == 5
        assert r.log_start == 4 and [e.request.op for e in r.log] == ["e"]
        assert r.checkpoint is not None and r.checkpoint.op_number == 4
        assert r.checkpoint.digest == "a|b|c|d" and ops_of(r) == ("a", "b", "c", "d", "e")
    # Every replica checkpointed at the same op-numbers: equal digests (checkpoints_agree).
    assert len({r.checkpoint for r in c.replicas if r is not None}) == 1


def test_a_backup_behind_the_checkpoint_gets_it_by_state_transfer() -> None:
    c = cluster(checkpoint_ops=2)
    lagging = 2
    for op in ["a", "b", "c", "d", "e"]:
        c.submit(1, op)
        c.run(drop=to(lagging))
    assert c.replica(lagging).op_number == 0
    primary = c.replica(0)
    assert primary.log_start == 4  # the entries the backup lacks are gone from the log
    converge(c)
    r = c.replica(lagging)
    assert ops_of(r) == ("a", "b", "c", "d", "e") and r.log_start == 4
    assert any("NEWSTATE" in line for line in c.trace)


def test_a_new_primary_behind_the_chosen_checkpoint_adopts_it() -> None:
    # Replica 1 holds op 1 but never learns it committed; replica 0 checkpoints it. In the
    # view change to view 1 (primary 1), replica 0's DOVIEWCHANGE wins the tie (v' and n
    # equal, lower id) and its log starts after its checkpoint at op 1: replica 1 must take
    # the checkpoint's state, or it would execute from an older one.
    c = cluster(checkpoint_ops=1)
    c.submit(1, "a")
    c.run(drop=lambda m: isinstance(m.message, Commit | Prepare) and m.dst != ("replica", 1))
    c.run(drop=lambda m: isinstance(m.message, Commit))
    assert c.replica(0).log_start == 1 and c.replica(1).commit_number == 0
    c.crash(2)
    c.timeout(1, c.replica(1).armed_timers()[0])  # its primary timer: view change
    c.run()
    assert c.replica(1).status is Status.NORMAL and c.replica(1).view == 1
    assert ops_of(c.replica(1)) == ("a",) and c.replica(1).log_start == 1
    submit_all(c, ["b"])
    assert ops_of(c.replica(1)) == ("a", "b")


def test_the_mutant_that_skips_the_checkpoint_state_is_caught() -> None:
    c = cluster(checkpoint_ops=1, replica_class=MUTANTS["suffix-without-checkpoint-state"])
    c.submit(1, "a")
    c.run(drop=lambda m: isinstance(m.message, Commit | Prepare) and m.dst != ("replica", 1))
    c.run(drop=lambda m: isinstance(m.message, Commit))
    c.crash(2)
    c.timeout(1, c.replica(1).armed_timers()[0])
    with pytest.raises(InvariantViolation, match="service_matches_committed_prefix"):
        c.run()


def test_a_start_view_after_the_commit_number_without_a_checkpoint_is_not_adopted() -> None:
    r = Replica(Config(replica_count=3, checkpoint_ops=1), 2, EchoLog)
    view = StartView(view=1, log_start=3, log=(), checkpoint=None, op_number=3, commit_number=3)
    effects = r.on_message(view)
    assert r.view == 0 and r.state_transfer_view == 1  # it asks for the state instead
    assert any(isinstance(e, Send) and e.message.__class__.__name__ == "GetState" for e in effects)


def test_persist_effects_come_ahead_of_every_message() -> None:
    c = cluster(checkpoint_ops=1, durable_=True)
    primary = c.replica(0)
    effects = primary.on_message(Request(op="a", client_id=1, request_number=1))
    kinds = [type(e) for e in effects]
    assert kinds[0] is PersistLog and all(k is Send for k in kinds[1:])
    backup = c.replica(1)
    prepare = next(e.message for e in effects if isinstance(e, Send) and e.to == 1)
    effects = backup.on_message(prepare)
    assert isinstance(effects[0], PersistLog) and isinstance(effects[-1], Send)
    vote = backup.on_timeout(backup.armed_timers()[0])  # primary timeout: a view change
    assert isinstance(vote[0], PersistVote) and vote[0].status == durable.VIEW_CHANGE
    assert all(isinstance(e, Send) for e in vote[1:])


def test_persist_effects_build_exactly_the_durable_state() -> None:
    c = cluster(checkpoint_ops=2, durable_=True, clients=(1, 2))
    for n in range(7):
        c.submit(1 + n % 2, f"op{n}")
        c.run()
    c.crash(0)
    submit_all(c, ["after"], client=1)
    live = [r for r in c.replicas if r is not None]
    for r in live:
        assert c.disks[r.replica] == r.durable()
    assert all(c.disks[r.replica].checkpoint is not None for r in live)


@pytest.mark.parametrize("n", [3, 5])
def test_the_whole_cluster_crashes_and_restarts_from_its_disks(n: int) -> None:
    c = cluster(checkpoint_ops=2, n=n, durable_=True)
    submit_all(c, ["a", "b", "c"])
    acknowledged = [completion.op for _, completion in c.completions]
    for i in range(n):
        c.crash(i)  # a power cut: every replica at once
    for i in range(n):
        c.restart(i)
    converge(c)
    for r in c.replicas:
        assert r is not None and ops_of(r)[: len(acknowledged)] == tuple(acknowledged)
    submit_all(c, ["d"])
    assert ops_of(c.replica(c.primary_normal() or 0))[-1] == "d"


def test_the_same_power_cut_without_disks_cannot_recover() -> None:
    c = cluster(checkpoint_ops=2)
    submit_all(c, ["a"])
    for i in range(3):
        c.crash(i)
    for i in range(3):
        c.restart(i)
    c.tick(40)
    assert all(r is not None and r.status is Status.RECOVERING for r in c.replicas)


def test_a_restarted_primary_reuses_no_op_number() -> None:
    # The primary prepares op 2, nobody acknowledges it, and it crashes: restarted from its
    # disk as primary of view 0, it still holds op 2 and re-prepares it; a new request
    # becomes op 3, never a second op 2.
    c = cluster(checkpoint_ops=8, durable_=True, clients=(1, 2))
    submit_all(c, ["a"])
    c.submit(1, "b")
    c.deliver(next(i for i, m in enumerate(c.network) if m.dst == ("replica", 0)))
    assert c.drop(lambda m: isinstance(m.message, Prepare)) == 2
    c.crash(0)
    c.restart(0)
    assert c.replica(0).status is Status.NORMAL and c.replica(0).op_number == 2
    c.submit(2, "c")
    c.run()
    assert c.run_until(lambda: c.result_of(2, 1) is not None and c.result_of(1, 2) is not None)
    assert ops_of(c.replica(0)) == ("a", "b", "c")
    converge(c)


def test_an_acknowledgement_before_its_write_loses_the_op_in_a_crash() -> None:
    """The simulator's crash between effects, by hand: the mutant's backup sends PREPAREOK
    for op 1 and crashes before its write; the primary commits and replies, and the op the
    client was told of is then on one disk where two are needed."""
    c = cluster(durable_=True, replica_class=MUTANTS["acknowledge-before-persist"])
    c.submit(1, "a")
    c.deliver(0)  # the request at the primary
    index = next(i for i, m in enumerate(c.network) if m.dst == ("replica", 1))
    c.drop(lambda m: m.dst == ("replica", 2))
    c.deliver(index, crash_after=1)  # sends PREPAREOK, crashes before the PersistLog
    assert c.replicas[1] is None and c.disks[1].op_number == 0
    with pytest.raises(InvariantViolation, match="acknowledged_ops_survive"):
        c.run()


def test_the_real_core_survives_the_same_crash() -> None:
    c = cluster(durable_=True)
    c.submit(1, "a")
    c.deliver(0)
    index = next(i for i, m in enumerate(c.network) if m.dst == ("replica", 1))
    c.drop(lambda m: m.dst == ("replica", 2))
    c.deliver(index, crash_after=1)  # the PersistLog is done, the PREPAREOK never sent
    assert c.replicas[1] is None and c.disks[1].op_number == 1
    c.run()
    assert c.result_of(1, 1) is None  # nothing acknowledged without a quorum
    c.restart(1)
    assert c.run_until(lambda: c.result_of(1, 1) is not None)


def test_replies_follow_the_checkpoint_that_covers_them() -> None:
    # With a checkpoint at every op, the entry a REPLY answers is gone from the log by the
    # time the event ends; the reply is still sent, once, and acknowledged at its position.
    c = cluster(checkpoint_ops=1)
    submit_all(c, ["a", "b"])
    assert [completion.result for _, completion in c.completions] == ["1:a", "2:b"]
    assert {str(r): p for r, p in c.acknowledged.items()} != {}
    assert sorted(c.acknowledged.values()) == [1, 2]
    effects = c.replica(0).on_message(Request(op="b", client_id=1, request_number=2))
    assert [type(e) for e in effects] == [SendReply]  # the client-table answers a resend


def test_a_checkpoint_effect_carries_what_a_restart_needs() -> None:
    r = Replica(Config(replica_count=1, checkpoint_ops=1), 0, EchoLog)
    effects = r.on_message(Request(op="a", client_id=7, request_number=1))
    checkpoint = next(e.checkpoint for e in effects if isinstance(e, PersistCheckpoint))
    disk = durable.apply_all(durable.EMPTY, effects)
    restarted, _ = Replica.restarted(r.config, 0, EchoLog, disk)
    assert disk.checkpoint == checkpoint and ops_of(restarted) == ("a",)
    assert restarted.client_table == {7: (1, "1:a")}
