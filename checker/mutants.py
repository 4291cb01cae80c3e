"""The bug zoo: mutants of the replica core, each a known way to get VR wrong.

A checker is only as good as the bugs it can find. Each mutant here is the real ``Replica``
with one decision overridden, the smallest change that reproduces a defect found in the
paper's text or in a public implementation. The traps are numbered in spec/traps.md, and each
trap that has a mutant names it (e.g. trap 4 (spec/traps.md): ``recovering-replica-votes``).
The explorer and the simulator must catch every one of them, and the real core, under the
same bounds, must show nothing: the mutation score is the share of mutants caught.

Mutants subclass the core rather than patch it, so the core carries no test-only switches:
each decision a mutant overrides is a small named method of ``Replica`` that the real
protocol uses too.
"""

from __future__ import annotations

from vrref.core.messages import (
    Checkpoint,
    DoViewChange,
    Log,
    LogEntry,
    Prepare,
    PrepareOk,
    RecoveryResponse,
    Request,
    StartView,
)
from vrref.core.replica import Effect, Replica, Status, Timer


class CommitWithTooFewPrepareOks(Replica):
    """The primary commits once f-1 backups (instead of f) acknowledged."""

    def _quorum_op_number(self) -> int:
        acked = sorted(self.acks.values(), reverse=True)
        needed = self.config.f - 1
        if needed <= 0:
            return self.op_number
        return acked[needed - 1] if len(acked) >= needed else self.commit_number

    def on_request(self, message: Request) -> None:
        super().on_request(message)
        if self.config.f <= 1 and self.status is Status.NORMAL and self.is_primary:
            self._commit_up_to(self.op_number)  # no acknowledgement needed at all


class LogByOpNumberOnly(Replica):
    """The new primary takes the longest log, ignoring v' (the paper's rule matters)."""

    @staticmethod
    def choose_log(messages: list[DoViewChange]) -> DoViewChange:
        return max(messages, key=lambda m: (m.op_number, -m.replica))


class CommitFromChosenLog(Replica):
    """The new primary takes commit-number from the chosen DOVIEWCHANGE, not the largest
    received, and adopts it even below its own: committed ops then execute again."""

    def _new_view_commit_number(self, messages: list[DoViewChange]) -> int:
        chosen = self.choose_log(messages).commit_number
        self.commit_number = min(self.commit_number, chosen)
        return chosen


class AcceptPrepareWithGap(Replica):
    """A backup appends a PREPARE's entries even when earlier ones are missing."""

    def _on_prepare_gap(self, message: Prepare) -> None:
        self._log_changed_from(self.op_number + 1)
        self.log.extend(message.entries)
        self._commit_up_to(min(message.commit_number, self.op_number))
        self._send(
            self.primary, PrepareOk(view=self.view, op_number=self.op_number, replica=self.replica)
        )


class RecoveryIgnoresNonce(Replica):
    """A recovering replica counts responses to any recovery, old ones included."""

    def _nonce_matches(self, message: RecoveryResponse) -> bool:
        return True


class RecoveringReplicaVotes(Replica):
    """A replica that lost its state takes part in view changes (trap 4)."""

    def _may_vote(self) -> bool:
        return True

    def _start_view_change(self, view: int) -> None:
        if self.status is Status.RECOVERING:
            self.status = Status.VIEW_CHANGE  # forgets it lost its state
            self.timers.pop(Timer.RECOVERY, None)
        super()._start_view_change(view)


class PaperLiteralStateTransfer(Replica):
    """§5.2 as written (trap 1): on learning of a later view, truncate the log to the
    commit-number and move to that view at once, before any NEWSTATE arrives."""

    def _request_state(self, view: int) -> None:
        if view > self.view:
            self._log_changed_from(self.commit_number + 1)
            del self.log[self.commit_number - self.log_start :]
            self._vote_dirty = True
            self.view = view
            self.status = Status.NORMAL
            self.last_normal_view = view
            self.start_view_change_votes = set()
            self.do_view_changes = {}
            self._dvc_sent = False
            self.timers.pop(Timer.VIEW_CHANGE_RESEND, None)
            self.timers.pop(Timer.VIEW_CHANGE_STALLED, None)
            self._arm(Timer.PRIMARY)
        super()._request_state(view)


class CommitBackwardsOnStartView(Replica):
    """A replica takes STARTVIEW's commit-number even when its own is larger (trap 8)."""

    def on_start_view(self, message: StartView) -> None:
        super().on_start_view(message)
        if self.view == message.view and self.status is Status.NORMAL:
            self.commit_number = min(self.commit_number, message.commit_number)


class NoClientTable(Replica):
    """The primary does not consult the client-table: a resent request executes again."""

    def on_request(self, message: Request) -> None:
        if self.status is not Status.NORMAL or not self.is_primary:
            return self._ignore("request not at a normal primary")
        self._log_changed_from(self.op_number + 1)
        self.log.append(LogEntry(view=self.view, request=message))


class AcknowledgeBeforePersist(Replica):
    """The replica sends its messages (PREPAREOK, DOVIEWCHANGE, ...) before the persist
    effects of the same event: a crash in between loses what it acknowledged (R20)."""

    def _take_effects(self) -> list[Effect]:
        effects, self._effects = self._effects, []
        return effects + self._persist_effects()


class CheckpointDropsUncommitted(Replica):
    """A checkpoint truncates the log past the commit-number: the uncommitted entries it
    acknowledged are forgotten with the committed ones (R18)."""

    def _take_checkpoint(self) -> None:
        super()._take_checkpoint()
        if self.log:
            self._log_changed_from(self.log_start + 1)
            self.log.clear()


class SuffixWithoutCheckpointState(Replica):
    """A replica that takes a log starting after its commit-number (a new primary's chosen
    DOVIEWCHANGE, a STARTVIEW, a NEWSTATE) takes the suffix and the checkpoint's op-number
    but keeps its own, older service state and client-table (R19)."""

    def _install_log(self, log_start: int, log: Log, checkpoint: Checkpoint | None) -> None:
        if log_start > self.commit_number:
            self.checkpoint = checkpoint
            self.log_start = self.commit_number = log_start
            self.log = list(log)
            self._checkpoint_dirty = True
            self._log_changed_from(log_start + 1)
            return
        super()._install_log(log_start, log, checkpoint)


MUTANTS: dict[str, type[Replica]] = {
    "commit-too-few-prepareoks": CommitWithTooFewPrepareOks,
    "log-by-op-number": LogByOpNumberOnly,
    "commit-from-chosen-log": CommitFromChosenLog,
    "accept-prepare-gap": AcceptPrepareWithGap,
    "recovery-ignores-nonce": RecoveryIgnoresNonce,
    "recovering-replica-votes": RecoveringReplicaVotes,
    "paper-literal-state-transfer": PaperLiteralStateTransfer,
    "commit-backwards-on-startview": CommitBackwardsOnStartView,
    "no-client-table": NoClientTable,
    "acknowledge-before-persist": AcknowledgeBeforePersist,
    "checkpoint-drops-uncommitted": CheckpointDropsUncommitted,
    "suffix-without-checkpoint-state": SuffixWithoutCheckpointState,
}


def replica_class(name: str | None) -> type[Replica]:
    """The core to run: the real one for None, else the named mutant."""
    if name is None:
        return Replica
    try:
        return MUTANTS[name]
    except KeyError:
        raise ValueError(f"unknown mutant {name!r}; known: {', '.join(MUTANTS)}") from None
