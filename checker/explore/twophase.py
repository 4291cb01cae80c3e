"""Two-phase commit, as in tlaplus/Examples TwoPhase.tla: the explorer's conformance model.

This module restates Lamport's TwoPhase specification (specifications/transaction_commit in
the tlaplus/Examples repository) action for action, so that the explorer can be held to
TLC's published figures: with three resource managers TLC reports 288 distinct states,
1,146 states generated and depth 11; the spec's closing comment gives 50,816 reachable
states for six. Reproducing those exactly checks the explorer's counting conventions, not
just its search.

The state is the spec's four variables: ``rm_state`` (each RM working, prepared, committed
or aborted), ``tm_state`` (init, committed, aborted), ``tm_prepared`` (the RMs whose
Prepared message the TM has received) and ``msgs`` (every message ever sent; messages are
never removed, so receiving one is enabled by its presence, and receiving it twice changes
nothing). RMs are numbered from 0 and printed rm1, rm2, ... like TLC's model values.

The actions keep the spec's names and guards: TMRcvPrepared(rm), TMCommit, TMAbort,
RMPrepare(rm), RMChooseToAbort(rm), RMRcvCommitMsg(rm), RMRcvAbortMsg(rm). As in TLC, an
action whose result equals its source state (an RM receiving Commit twice) is still a
successor and still counted as generated.

RMs are interchangeable, so ``canonical`` gives a true canonical form under their
permutations (TLC's SYMMETRY over RM): each RM's local view is the triple (its state,
whether the TM holds its Prepared, whether its Prepared is in flight), the rest of the state
does not mention RMs, so sorting the triples and renumbering the RMs in that order maps two
states to the same form exactly when a permutation maps one to the other.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from checker.explore.search import Property

RM_STATES = ("working", "prepared", "committed", "aborted")
TM_STATES = ("init", "committed", "aborted")
MESSAGE_TYPES = ("Prepared", "Commit", "Abort")


@dataclass(frozen=True, slots=True)
class Message:
    """[type |-> "Prepared", rm |-> rm], or [type |-> "Commit"] / [type |-> "Abort"]."""

    type: str
    rm: int | None = None

    def __str__(self) -> str:
        return self.type if self.rm is None else f"{self.type}(rm{self.rm + 1})"


COMMIT = Message("Commit")
ABORT = Message("Abort")


@dataclass(frozen=True, slots=True, kw_only=True)
class TwoPhaseState:
    rm_state: tuple[str, ...]
    tm_state: str
    tm_prepared: frozenset[int]
    msgs: frozenset[Message]

    def __str__(self) -> str:
        rms = ", ".join(f"rm{i + 1}={s}" for i, s in enumerate(self.rm_state))
        prepared = ",".join(f"rm{i + 1}" for i in sorted(self.tm_prepared))
        msgs = ",".join(sorted(str(m) for m in self.msgs))
        return f"[{rms}] tm={self.tm_state} tmPrepared={{{prepared}}} msgs={{{msgs}}}"


@dataclass(frozen=True, slots=True)
class Action:
    name: str
    rm: int | None = None

    def __str__(self) -> str:
        return self.name if self.rm is None else f"{self.name}(rm{self.rm + 1})"


class TwoPhase:
    """The TwoPhase spec over ``rm_count`` resource managers (an explorer ``Model``)."""

    def __init__(self, rm_count: int) -> None:
        if rm_count < 1:
            raise ValueError(f"rm_count must be at least 1, not {rm_count}")
        self.rm_count = rm_count
        self.rms = frozenset(range(rm_count))

    def init_states(self) -> list[TwoPhaseState]:
        """TPInit."""
        return [
            TwoPhaseState(
                rm_state=("working",) * self.rm_count,
                tm_state="init",
                tm_prepared=frozenset(),
                msgs=frozenset(),
            )
        ]

    def actions(self, state: TwoPhaseState) -> Iterator[Action]:
        """Every disjunct of TPNext, for every RM (disabled ones included)."""
        yield Action("TMCommit")
        yield Action("TMAbort")
        for rm in range(self.rm_count):
            for name in (
                "TMRcvPrepared",
                "RMPrepare",
                "RMChooseToAbort",
                "RMRcvCommitMsg",
                "RMRcvAbortMsg",
            ):
                yield Action(name, rm)

    def next_state(self, state: TwoPhaseState, action: Action) -> TwoPhaseState | None:
        rm = action.rm
        match action.name:
            case "TMRcvPrepared":
                assert rm is not None
                if state.tm_state != "init" or Message("Prepared", rm) not in state.msgs:
                    return None
                return _with(state, tm_prepared=state.tm_prepared | {rm})
            case "TMCommit":
                if state.tm_state != "init" or state.tm_prepared != self.rms:
                    return None
                return _with(state, tm_state="committed", msgs=state.msgs | {COMMIT})
            case "TMAbort":
                if state.tm_state != "init":
                    return None
                return _with(state, tm_state="aborted", msgs=state.msgs | {ABORT})
            case "RMPrepare":
                assert rm is not None
                if state.rm_state[rm] != "working":
                    return None
                return _with(
                    state,
                    rm_state=_set(state.rm_state, rm, "prepared"),
                    msgs=state.msgs | {Message("Prepared", rm)},
                )
            case "RMChooseToAbort":
                assert rm is not None
                if state.rm_state[rm] != "working":
                    return None
                return _with(state, rm_state=_set(state.rm_state, rm, "aborted"))
            case "RMRcvCommitMsg":
                assert rm is not None
                if COMMIT not in state.msgs:
                    return None
                return _with(state, rm_state=_set(state.rm_state, rm, "committed"))
            case "RMRcvAbortMsg":
                assert rm is not None
                if ABORT not in state.msgs:
                    return None
                return _with(state, rm_state=_set(state.rm_state, rm, "aborted"))
        raise AssertionError(f"unknown action {action}")

    def properties(self) -> list[Property[TwoPhaseState]]:
        return [
            Property.always("every variable has its declared type (TPTypeOK)", self.type_ok),
            Property.always(
                "no resource manager has committed while another has aborted (TCConsistent)",
                consistent,
            ),
            Property.sometimes(
                "some resource manager commits", lambda s: "committed" in s.rm_state
            ),
            Property.sometimes("some resource manager aborts", lambda s: "aborted" in s.rm_state),
        ]

    def type_ok(self, state: TwoPhaseState) -> bool:
        """TPTypeOK."""
        return (
            len(state.rm_state) == self.rm_count
            and all(s in RM_STATES for s in state.rm_state)
            and state.tm_state in TM_STATES
            and state.tm_prepared <= self.rms
            and all(
                (m.type == "Prepared" and m.rm in self.rms)
                or (m.type in ("Commit", "Abort") and m.rm is None)
                for m in state.msgs
            )
        )

    def canonical(self, state: TwoPhaseState) -> TwoPhaseState:
        """The representative of the state's orbit under permutations of the RMs."""
        local = sorted(
            (s, rm in state.tm_prepared, Message("Prepared", rm) in state.msgs)
            for rm, s in enumerate(state.rm_state)
        )
        return TwoPhaseState(
            rm_state=tuple(s for s, _, _ in local),
            tm_state=state.tm_state,
            tm_prepared=frozenset(i for i, (_, held, _) in enumerate(local) if held),
            msgs=frozenset(
                [m for m in state.msgs if m.rm is None]
                + [Message("Prepared", i) for i, (_, _, sent) in enumerate(local) if sent]
            ),
        )

    def permute(self, state: TwoPhaseState, permutation: tuple[int, ...]) -> TwoPhaseState:
        """The state with RM ``i`` renamed ``permutation[i]`` (for testing ``canonical``)."""
        rm_state = [""] * self.rm_count
        for rm, s in enumerate(state.rm_state):
            rm_state[permutation[rm]] = s
        return TwoPhaseState(
            rm_state=tuple(rm_state),
            tm_state=state.tm_state,
            tm_prepared=frozenset(permutation[rm] for rm in state.tm_prepared),
            msgs=frozenset(
                m if m.rm is None else Message(m.type, permutation[m.rm]) for m in state.msgs
            ),
        )

    def describe(self, state: TwoPhaseState) -> str:
        return str(state)


def consistent(state: TwoPhaseState) -> bool:
    """TCConsistent: no RM has committed while another has aborted."""
    return not ("committed" in state.rm_state and "aborted" in state.rm_state)


def _set(values: tuple[str, ...], index: int, value: str) -> tuple[str, ...]:
    return (*values[:index], value, *values[index + 1 :])


def _with(
    state: TwoPhaseState,
    *,
    rm_state: tuple[str, ...] | None = None,
    tm_state: str | None = None,
    tm_prepared: frozenset[int] | None = None,
    msgs: frozenset[Message] | None = None,
) -> TwoPhaseState:
    return TwoPhaseState(
        rm_state=state.rm_state if rm_state is None else rm_state,
        tm_state=state.tm_state if tm_state is None else tm_state,
        tm_prepared=state.tm_prepared if tm_prepared is None else tm_prepared,
        msgs=state.msgs if msgs is None else msgs,
    )
