"""One test per known trap of VR Revisited, named after its number in spec/traps.md.

Each drives the real core through the trap's scenario with the harness (which checks the
safety invariants after every event) and asserts the safe outcome.
"""

from __future__ import annotations

import pytest

from checker.mutants import (
    CommitBackwardsOnStartView,
    NoClientTable,
    PaperLiteralStateTransfer,
    RecoveringReplicaVotes,
    RecoveryIgnoresNonce,
)
from checker.sim.cluster import Cluster
from tests.conftest import cluster, to
from vrref.core.messages import (
    DoViewChange,
    GetState,
    LogEntry,
    NewState,
    Prepare,
    PrepareOk,
    Recovery,
    RecoveryResponse,
    Reply,
    Request,
    StartView,
    StartViewChange,
)
from vrref.core.replica import Config, Replica, Send, Status, Timer
from vrref.core.statemachine import EchoLog

A = Request(op="A", client_id=1, request_number=1)
ENTRY_A = LogEntry(view=0, request=A)


def commit_a_at_r0_and_r1_only(replica_class: type[Replica] = Replica) -> Cluster:
    """View 0: op A is prepared at r0 and r1 (r2 misses it), committed and acknowledged by
    r0; r1 has not yet heard that it committed."""
    c = cluster(3, replica_class=replica_class)
    c.submit(1, "A")
    c.run(drop=to(2, Prepare))
    assert c.result_of(1, 1) == "1:A"
    assert c.replica(1).commit_number == 0 and c.replica(1).op_number == 1
    assert c.replica(2).op_number == 0
    return c


def trap_1_scenario(replica_class: type[Replica], checkpoints: bool) -> Cluster:
    """The smallest case of trap 1 on 3 replicas: r1 holds the committed op A but a stale
    commit-number, and learns of view 2 from a heartbeat. Followed literally, §5.2 would make
    it truncate to commit-number 0 and adopt view 2; after r2 (the only other holder) dies,
    its DOVIEWCHANGE with v'=2 and an empty log would beat r0's v'=0 log, losing A. In the
    safe variant it keeps its log and v' until a NEWSTATE arrives, and A survives."""
    c = commit_a_at_r0_and_r1_only(replica_class)
    c.partition([1], [0, 2])
    # r2 suspects r0; views 1 (primary r1, unreachable) and 2 (primary r2) follow.
    c.timeout(2, Timer.PRIMARY)
    c.run()
    c.timeout(0, Timer.VIEW_CHANGE_STALLED)
    c.timeout(2, Timer.VIEW_CHANGE_STALLED)
    # r2 starts view 2 with r0's DOVIEWCHANGE; r0 never hears the STARTVIEW.
    c.run(drop=to(0, StartView))
    if checkpoints:
        assert c.replica(2).status is Status.NORMAL and c.replica(2).view == 2
        assert c.replica(0).status is Status.VIEW_CHANGE and c.replica(0).last_normal_view == 0
    # Heal; r2's heartbeat tells r1 (still normal in view 0) of view 2.
    c.heal()
    c.timeout(2, Timer.HEARTBEAT)
    c.deliver(next(i for i, m in enumerate(c.network) if m.dst == ("replica", 1)))
    if checkpoints:
        r1 = c.replica(1)
        assert r1.state_transfer_view == 2
        # The safe outcome: nothing adopted or truncated before NEWSTATE.
        assert (r1.view, r1.status, r1.last_normal_view, r1.op_number) == (
            0,
            Status.NORMAL,
            0,
            1,
        )
    # r2 dies before answering; r0 and r1 change to view 3 (primary r0).
    c.crash(2)
    c.run()
    c.timeout(0, Timer.VIEW_CHANGE_STALLED)
    c.run()
    return c


def test_trap_1_learning_of_a_later_view_does_not_truncate_the_log() -> None:
    c = trap_1_scenario(Replica, checkpoints=True)
    r0, r1 = c.replica(0), c.replica(1)
    assert r0.status is Status.NORMAL and r0.view == 3
    assert r0.log[0].request == A and r1.log[0].request == A
    c.tick(c.config.heartbeat_ticks)
    assert r1.commit_number == 1


def test_trap_1_the_paper_literal_state_transfer_loses_the_committed_op() -> None:
    with pytest.raises(AssertionError, match=r"committed op is missing|acknowledged"):
        trap_1_scenario(PaperLiteralStateTransfer, checkpoints=False)


def test_trap_1_newstate_in_the_same_view_never_drops_acknowledged_entries() -> None:
    r = Replica(Config(replica_count=3), 1, EchoLog)
    entries = tuple(
        LogEntry(view=0, request=Request(op=f"op{i}", client_id=1, request_number=i))
        for i in range(1, 4)
    )
    r.on_message(Prepare(view=0, entries=entries, op_number=3, commit_number=0))
    assert r.op_number == 3
    # A gap makes it ask for state; an answer from a lagging replica must not shorten the log.
    r.on_message(Prepare(view=0, entries=entries[:1], op_number=5, commit_number=0))
    assert r.state_transfer_view == 0
    r.on_message(
        NewState(
            checkpoint=None,
            view=0,
            after_op_number=1,
            entries=entries[1:2],
            op_number=2,
            commit_number=0,
        )
    )
    assert r.op_number == 3 and tuple(r.log) == entries


def test_trap_2_a_stalled_view_change_is_resent_and_completes() -> None:
    c = cluster(3)
    c.submit(1, "a")
    c.run()
    c.crash(0)
    c.timeout(1, Timer.PRIMARY)
    # Every STARTVIEWCHANGE and DOVIEWCHANGE of the first round is lost.
    dropped = c.drop(lambda m: isinstance(m.message, (StartViewChange, DoViewChange)))
    c.run(drop=lambda m: isinstance(m.message, (StartViewChange, DoViewChange)))
    assert dropped >= 1 and c.replica(1).status is Status.VIEW_CHANGE
    # The resend timer repeats the round; now it gets through.
    c.timeout(1, Timer.VIEW_CHANGE_RESEND)
    c.run()
    assert c.primary_normal() == 1 and c.replica(2).status is Status.NORMAL


def test_trap_2_do_view_changes_count_only_for_the_current_view() -> None:
    config = Config(replica_count=3)
    r = Replica(config, 1, EchoLog)  # primary of views 1 and 4
    r.on_message(StartViewChange(view=4, replica=2))
    assert r.view == 4 and r.status is Status.VIEW_CHANGE
    stale = DoViewChange(
        log_start=0,
        checkpoint=None,
        view=1,
        log=(),
        last_normal_view=0,
        op_number=0,
        commit_number=0,
        replica=0,
    )
    r.on_message(stale)
    assert r.do_view_changes.keys() == {1}  # only its own, for view 4
    assert r.ignored["doviewchange for an older view"] == 1
    current = DoViewChange(
        log_start=0,
        checkpoint=None,
        view=4,
        log=(ENTRY_A,),
        last_normal_view=0,
        op_number=1,
        commit_number=0,
        replica=0,
    )
    r.on_message(current)
    assert r.status is Status.NORMAL and r.view == 4 and r.log == [ENTRY_A]


def test_trap_2_a_view_change_whose_primary_is_down_moves_on() -> None:
    c = cluster(3)
    c.crash(0)
    c.partition([1], [2])
    c.timeout(2, Timer.PRIMARY)  # r2 wants view 1, whose primary r1 it cannot reach
    c.run()
    c.heal()
    assert c.run_until(lambda: c.primary_normal() is not None)
    assert c.replica(c.primary_normal() or 0).view >= 1


def test_trap_3_recovery_straddling_a_view_change_waits_for_the_latest_primary() -> None:
    c = cluster(3)
    c.submit(1, "a")
    c.run()
    c.crash(0)  # the primary of view 0
    c.restart(0)
    c.run()
    # f+1 responses came, but none from the primary of their view (r0 itself, view 0).
    r0 = c.replica(0)
    assert r0.status is Status.RECOVERING and len(r0.recovery_responses) == 2
    # r1 and r2 change view; r0's retry reaches the new primary and completes.
    assert c.run_until(lambda: c.replica(0).status is Status.NORMAL)
    assert c.replica(0).view >= 1 and c.replica(0).log[0].request.op == "a"


def test_trap_3_only_the_primary_response_of_the_highest_view_is_adopted() -> None:
    config = Config(replica_count=3)
    r, _ = Replica.recovering(config, 0, EchoLog, nonce=7)
    old_primary = RecoveryResponse(
        view=1,
        nonce=7,
        log_start=0,
        log=(ENTRY_A,),
        checkpoint=None,
        op_number=1,
        commit_number=1,
        replica=1,
    )
    newer_backup = RecoveryResponse(
        view=4,
        nonce=7,
        log_start=None,
        log=None,
        checkpoint=None,
        op_number=None,
        commit_number=None,
        replica=2,
    )
    r.on_message(old_primary)
    r.on_message(newer_backup)
    # f+1 answers, but the highest view is 4, whose primary (r1) answered only for view 1.
    assert r.status is Status.RECOVERING
    b = LogEntry(view=4, request=Request(op="B", client_id=2, request_number=1))
    r.on_message(
        RecoveryResponse(
            view=4,
            nonce=7,
            log_start=0,
            log=(ENTRY_A, b),
            checkpoint=None,
            op_number=2,
            commit_number=1,
            replica=1,
        )
    )
    assert r.status is Status.NORMAL and r.view == 4 and r.log == [ENTRY_A, b]
    assert r.commit_number == 1


def test_trap_4_a_recovering_replica_never_votes() -> None:
    config = Config(replica_count=3)
    r, _ = Replica.recovering(config, 2, EchoLog, nonce=1)
    before = r.state_key()
    for message in [
        StartViewChange(view=1, replica=1),
        DoViewChange(
            log_start=0,
            checkpoint=None,
            view=2,
            log=(),
            last_normal_view=0,
            op_number=0,
            commit_number=0,
            replica=1,
        ),
        StartView(
            log_start=0, checkpoint=None, view=1, log=(ENTRY_A,), op_number=1, commit_number=0
        ),
        Prepare(view=0, entries=(ENTRY_A,), op_number=1, commit_number=0),
        GetState(view=0, op_number=0, replica=1),
        Recovery(replica=1, nonce=3),
        A,
    ]:
        assert r.on_message(message) == []
    assert r.state_key() == before and r.status is Status.RECOVERING


def _trap_4_a_recovering_replica_cannot_complete_a_view_change(
    replica_class: type[Replica],
) -> None:
    c = cluster(3, replica_class=replica_class)
    c.submit(1, "a")
    c.run()
    c.crash(0)
    c.crash(2)
    c.restart(2)  # without its state: it must not stand in for its old vote
    c.tick(60)
    assert c.replica(1).status is Status.VIEW_CHANGE
    assert c.replica(2).status is Status.RECOVERING
    assert c.primary_normal() is None


def test_trap_4_a_recovering_replica_cannot_complete_a_view_change() -> None:
    _trap_4_a_recovering_replica_cannot_complete_a_view_change(Replica)


def test_trap_4_a_recovering_replica_cannot_complete_a_view_change_fails_for_its_mutant() -> None:
    with pytest.raises(AssertionError):
        _trap_4_a_recovering_replica_cannot_complete_a_view_change(RecoveringReplicaVotes)


def test_trap_5_when_every_replica_restarts_recovery_cannot_finish() -> None:
    c = cluster(3)
    c.submit(1, "a")
    c.run()
    for i in range(3):
        c.crash(i)
    for i in range(3):
        c.restart(i)
    c.tick(60)
    # No replica fabricates a state: all stay recovering (durable state would be needed).
    assert all(c.replica(i).status is Status.RECOVERING for i in range(3))
    assert all(c.replica(i).op_number == 0 for i in range(3))


def _trap_6_responses_to_an_earlier_recovery_are_ignored(replica_class: type[Replica]) -> None:
    c = cluster(3, replica_class=replica_class)
    c.submit(1, "a")
    c.run()
    c.crash(2)
    c.restart(2)
    stale = list(c.network)
    c.network.clear()
    c.crash(2)
    c.restart(2)  # a new recovery, a new nonce
    first_nonce, second_nonce = (
        next(m.message.nonce for m in stale if isinstance(m.message, Recovery)),
        c.replica(2).nonce,
    )
    assert first_nonce != second_nonce
    c.network.clear()
    # Answers to the first recovery arrive late: they prove nothing about this one.
    for responder in (0, 1):
        for effect in c.replica(responder).on_message(Recovery(replica=2, nonce=first_nonce)):
            assert isinstance(effect, Send)
            c.replica(2).on_message(effect.message)
    assert c.replica(2).status is Status.RECOVERING
    assert c.replica(2).ignored["recoveryresponse with another nonce"] == 2
    assert c.run_until(lambda: c.replica(2).status is Status.NORMAL)


def test_trap_6_responses_to_an_earlier_recovery_are_ignored() -> None:
    _trap_6_responses_to_an_earlier_recovery_are_ignored(Replica)


def test_trap_6_responses_to_an_earlier_recovery_are_ignored_fails_for_its_mutant() -> None:
    with pytest.raises(AssertionError):
        _trap_6_responses_to_an_earlier_recovery_are_ignored(RecoveryIgnoresNonce)


def test_trap_7_do_view_change_carries_the_log_to_a_new_primary_that_lacks_it() -> None:
    c = cluster(3)
    c.submit(1, "A")
    c.run(drop=to(1, Prepare))  # r0 and r2 hold A; r1, the next primary, does not
    assert c.result_of(1, 1) == "1:A" and c.replica(1).op_number == 0
    c.crash(0)
    c.timeout(1, Timer.PRIMARY)
    c.run()
    r1 = c.replica(1)
    assert r1.status is Status.NORMAL and r1.view == 1
    assert [e.request.op for e in r1.log] == ["A"]


def _trap_8_commit_number_never_goes_back_on_start_view(replica_class: type[Replica]) -> None:
    c = cluster(3, replica_class=replica_class)
    c.submit(1, "A")
    c.run(drop=to(2, Prepare))
    r0 = c.replica(0)
    assert r0.commit_number == 1 and c.replica(1).commit_number == 0
    # r1 and r2 change view without r0; the new primary's commit-number is still 0.
    c.partition([0], [1, 2])
    c.timeout(1, Timer.PRIMARY)
    c.run(drop=lambda m: isinstance(m.message, Prepare))
    start_view = StartView(
        log_start=0,
        checkpoint=None,
        view=1,
        log=tuple(c.replica(1).log),
        op_number=1,
        commit_number=0,
    )
    r0.on_message(start_view)  # the deposed primary hears of view 1
    assert r0.view == 1 and r0.status is Status.NORMAL
    assert r0.commit_number == 1
    assert isinstance(r0.service, EchoLog) and r0.service.ops == ("A",)


def test_trap_8_commit_number_never_goes_back_on_start_view() -> None:
    _trap_8_commit_number_never_goes_back_on_start_view(Replica)


def test_trap_8_commit_number_never_goes_back_on_start_view_fails_for_its_mutant() -> None:
    with pytest.raises(AssertionError):
        _trap_8_commit_number_never_goes_back_on_start_view(CommitBackwardsOnStartView)


def _trap_9_a_redelivered_request_executes_once(replica_class: type[Replica]) -> None:
    c = cluster(3, replica_class=replica_class)
    c.submit(1, "A")
    request = c.network[0]
    c.run()
    # The same request arrives again, twice, after it executed, and an older one too.
    c.network.extend([request, request])
    c.run(drop=lambda m: isinstance(m.message, Reply))
    c.submit(1, "B")
    c.run()
    c.network.append(request)
    c.run()
    c.tick(c.config.heartbeat_ticks)
    for i in range(3):
        service = c.replica(i).service
        assert isinstance(service, EchoLog) and service.ops == ("A", "B")
    assert c.replica(0).ignored["request older than the client-table entry"] == 1


def test_trap_9_a_redelivered_request_executes_once() -> None:
    _trap_9_a_redelivered_request_executes_once(Replica)


def test_trap_9_a_redelivered_request_executes_once_fails_for_its_mutant() -> None:
    with pytest.raises(AssertionError):
        _trap_9_a_redelivered_request_executes_once(NoClientTable)


def test_trap_9_clients_only_hear_of_views_that_started() -> None:
    c = cluster(3)
    c.submit(1, "a")
    c.run()
    c.crash(0)
    c.submit(1, "b")
    views_started: set[int] = set()

    def watch() -> bool:
        views_started.update(
            r.view for r in c.replicas if r is not None and r.status is Status.NORMAL
        )
        return c.result_of(1, 2) is not None

    assert c.run_until(watch)
    client = c.clients[1]
    assert client.view >= 1
    # The view the client now believes in is one a replica was normal in (it started).
    assert client.view in views_started
    new_primary = c.replica(client.view % 3)
    assert new_primary.last_normal_view >= client.view


def test_prepare_ok_is_cumulative() -> None:
    r = Replica(Config(replica_count=3), 0, EchoLog)
    r.on_messages([A, Request(op="B", client_id=2, request_number=1)])
    r.on_message(PrepareOk(view=0, op_number=2, replica=2))
    assert r.commit_number == 2
