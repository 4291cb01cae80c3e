"""The replicated state machine as the replica core sees it.

VRR (§4) keeps the service opaque: the replica orders operations and, once an operation is
committed, makes an up-call that executes it and returns a result for the client. This module
states that up-call as a Protocol so that the core stays independent of DNS: the DNS zone of
``vrref.dns.zone.Zone`` is one implementation; tests and the explorer may use tiny ones.

Operations and results are ``str``: a canonical encoding chosen by the service (the DNS
service uses compact JSON), so that log entries are hashable, comparable across replicas,
readable in traces and safe to put on the wire without pickle.

Everything here must be deterministic: the same operations applied in the same order to two
fresh instances give equal digests and equal results.
"""

from __future__ import annotations

from typing import Protocol


class StateMachine(Protocol):
    """A deterministic service replicated by VR."""

    def apply(self, op: str) -> str:
        """Executes one committed operation and returns its result (canonical text).

        Must never raise for any ``op``: a malformed operation yields an error result, since
        a crash here would crash every replica at the same log position.
        """
        ...

    def clone(self) -> StateMachine:
        """An independent copy (the explorer forks replica states)."""
        ...

    def digest(self) -> str:
        """A canonical digest of the whole state: equal states give equal digests."""
        ...

    def snapshot(self) -> str:
        """The whole state as text, for a checkpoint (VRR §5.1): ``restore`` of it gives a
        state with the same digest."""
        ...

    def restore(self, snapshot: str) -> StateMachine:
        """A new state machine holding the state ``snapshot`` describes (this one is only
        the factory's instance and is left unchanged). Raises ValueError on a snapshot it
        cannot read: the checkpoint came from the network or the disk."""
        ...


class EchoLog:
    """A minimal state machine for tests and the explorer: it remembers the operations.

    ``apply`` returns the operation's position and text, so results depend on the order of
    execution and a reordering or a double execution is visible to the client.
    """

    __slots__ = ("_ops",)

    def __init__(self, ops: tuple[str, ...] = ()) -> None:
        self._ops = ops

    def apply(self, op: str) -> str:
        self._ops = (*self._ops, op)
        return f"{len(self._ops)}:{op}"

    def clone(self) -> EchoLog:
        return EchoLog(self._ops)

    def digest(self) -> str:
        return "|".join(self._ops)

    def snapshot(self) -> str:
        """The digest: the ops, which the explorer's clients choose without a "|"."""
        return self.digest()

    def restore(self, snapshot: str) -> EchoLog:
        return EchoLog(tuple(snapshot.split("|")) if snapshot else ())

    @property
    def ops(self) -> tuple[str, ...]:
        return self._ops
