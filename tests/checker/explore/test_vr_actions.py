"""The VR model's actions, one dataclass each: how they print (counterexample traces and
tests read these lines), that every kind survives the trip through a history file and
back, and the client renaming the symmetry reduction applies to replica keys."""

from __future__ import annotations

import random
import typing
from pathlib import Path

from checker.explore import counterexamples as replay
from checker.explore.search import Step
from checker.explore.vr.model import (
    Action,
    Bounds,
    ClientPermutation,
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
from vrref.core.messages import Reply, Request
from vrref.core.replica import Config, Replica, Timer
from vrref.core.statemachine import EchoLog

REQUEST = Request(op="c0.1", client_id=100, request_number=1)
REPLY = Reply(view=0, client_id=100, request_number=1, result="1:c0.1")
KINDS = typing.get_args(Action)


def test_actions_print_as_before() -> None:
    assert str(Deliver(("replica", 0), REQUEST)) == "deliver REQUEST<c=100 s=1 op=c0.1> to r0"
    dropped = str(Drop(("client", 100), REPLY))
    assert dropped.startswith("drop REPLY<") and dropped.endswith("> to c100")
    assert str(Duplicate(("replica", 2), REQUEST)).startswith("duplicate REQUEST<")
    assert str(Timeout(1, Timer.VIEW_CHANGE_STALLED)) == "r1 view_change_stalled timeout"
    assert str(Crash(0)) == "crash r0"
    assert str(Restart(2)) == "restart r2"
    assert str(ClientRequest(1, "c1.2")) == "c1 request 'c1.2'"
    assert str(ClientTimeout(0)) == "client_timeout c0"


def test_actions_are_values() -> None:
    assert Deliver(("replica", 0), REQUEST) == Deliver(("replica", 0), REQUEST)
    assert Deliver(("replica", 0), REQUEST) != Duplicate(("replica", 0), REQUEST)
    assert len({Crash(0), Crash(0), Restart(0)}) == 2


def walk_covering_every_kind(model: VRModel, seed: int, steps: int) -> list[Step[VRState, Action]]:
    """A random walk that takes an action of a kind not taken yet whenever one is enabled."""
    rng = random.Random(seed)
    state = model.init_states()[0]
    trace: list[Step[VRState, Action]] = [Step(None, state)]
    taken: set[type] = set()
    for _ in range(steps):
        enabled = list(model.actions(state))
        if not enabled:
            break
        new = [a for a in enabled if type(a) not in taken]
        action = rng.choice(new or enabled)
        successor = model.next_state(state, action)
        if successor is None:
            continue
        taken.add(type(action))
        state = successor
        trace.append(Step(action, state))
    return trace


def test_every_kind_of_action_survives_a_history_file(tmp_path: Path) -> None:
    model = VRModel(
        Bounds(
            ops_per_client=2,
            crash_count_max=1,
            client_timeouts=True,
            drop_count_max=2,
            duplicate_count_max=2,
            resend_count_max=2,
        )
    )
    covered: set[type] = set()
    for seed in range(6):
        trace = walk_covering_every_kind(model, seed, 40)
        path = tmp_path / f"walk{seed}.jsonl"
        replay.write_counterexample(path, model, trace, "none: a walk")
        outcome = replay.replay_file(path)
        assert outcome.diverged is None and outcome.broken is None
        assert [s.action for s in outcome.steps] == [s.action for s in trace]
        covered |= {type(s.action) for s in trace[1:]}
    assert covered == set(KINDS)


def test_client_permutation_renames_a_replica_key_as_executing_the_renamed_ops_would() -> None:
    config = Config(replica_count=1)  # commits at once: the client-table and service fill
    ops = [("c0.1", 100, 1), ("c1.1", 101, 1), ("c0.2", 100, 2)]
    plain, swapped = Replica(config, 0, EchoLog), Replica(config, 0, EchoLog)
    rename = ClientPermutation((1, 0))
    for op, client_id, number in ops:
        plain.on_message(Request(op=op, client_id=client_id, request_number=number))
        swapped.on_message(
            Request(op=rename.op(op), client_id=rename.client_id(client_id), request_number=number)
        )
    assert plain.commit_number == 3
    assert plain.state_key().relabel(rename) == swapped.state_key()
    assert plain.state_key().relabel(ClientPermutation((0, 1))) == plain.state_key()
    assert rename.client_id(7) == 7 and rename.op("x.1") == "x.1"
    assert rename.result("3:c1.2") == "3:c0.2"
