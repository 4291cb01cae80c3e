"""The sans-I/O VR client proxy (VRR §4, Fig. 2: the client side).

A client proxy hides replication from the code that uses it: it numbers the requests of
one client (client-id, request-number), remembers the view it believes in, sends each
request to that view's primary, and, when no reply comes in time, resends it to every
replica (§4.1), because the primary may have changed. At most one request is outstanding,
which is what lets the replicas' client-table give at-most-once execution: a resent
request carries the same request-number, and a primary that already executed it answers
from the table instead of executing it again.

Like the replica it does no I/O: ``submit`` and the handlers return effects (messages to
send), ``on_tick`` counts time, and the completed result is handed back to the caller.
The client-id is the driver's to choose; it must be unique in the cluster and must not be
reused by a client that lost its request-number.
"""

from __future__ import annotations

from dataclasses import dataclass

from vrref.core.messages import Reply, Request
from vrref.core.replica import ClientRenaming, Send


@dataclass(frozen=True, slots=True, kw_only=True)
class Completion:
    """A request's result, as learned from the REPLY of the primary of ``view``."""

    request_number: int
    op: str
    result: str
    view: int


@dataclass(frozen=True, slots=True)
class ClientKey:
    """A client's protocol state, frozen (the explorer's view): what ``Client.state_key``
    returns. The resend countdown is abstracted away (the explorer times a client out
    whenever a request is outstanding), and ``ignored`` is an observation."""

    client_id: int
    view: int
    request_number: int
    outstanding: Request | None

    def relabel(self, rename: ClientRenaming) -> ClientKey:
        """This key with the clients renamed (the explorer's client symmetry)."""
        outstanding = self.outstanding
        if outstanding is not None:
            outstanding = Request(
                op=rename.op(outstanding.op),
                client_id=rename.client_id(outstanding.client_id),
                request_number=outstanding.request_number,
            )
        return ClientKey(
            client_id=rename.client_id(self.client_id),
            view=self.view,
            request_number=self.request_number,
            outstanding=outstanding,
        )


class Client:
    """One VR client: client-id, request-number, the view it believes in."""

    __slots__ = (
        "_cached_key",
        "client_id",
        "ignored",
        "outstanding",
        "replica_count",
        "request_number",
        "resend_ticks",
        "ticks_left",
        "view",
    )

    def __init__(
        self, client_id: int, replica_count: int, *, resend_ticks: int = 6, request_number: int = 0
    ) -> None:
        if resend_ticks < 1:
            raise ValueError("resend_ticks must be at least 1")
        self.client_id = client_id
        self.replica_count = replica_count
        self.resend_ticks = resend_ticks
        self.view = 0
        self.request_number = request_number
        self.outstanding: Request | None = None
        self.ticks_left = 0
        self.ignored = 0
        self._cached_key: ClientKey | None = None  # cleared by every entry point

    @property
    def primary(self) -> int:
        return self.view % self.replica_count

    def submit(self, op: str) -> list[Send]:
        """Starts a request; the previous one must have completed."""
        if self.outstanding is not None:
            raise RuntimeError("a request is already outstanding (at most one per client)")
        self._cached_key = None
        self.request_number += 1
        self.outstanding = Request(
            op=op, client_id=self.client_id, request_number=self.request_number
        )
        self.ticks_left = self.resend_ticks
        return [Send(to=self.primary, message=self.outstanding)]

    def on_reply(self, reply: Reply) -> Completion | None:
        """Returns the completion if ``reply`` answers the outstanding request."""
        self._cached_key = None
        request = self.outstanding
        if (
            request is None
            or reply.client_id != self.client_id
            or reply.request_number != request.request_number
        ):
            self.ignored += 1
            return None
        assert reply.request_number == self.request_number
        # Replies come only from a primary in status normal, so this view has started.
        self.view = max(self.view, reply.view)
        self.outstanding = None
        return Completion(
            request_number=reply.request_number,
            op=request.op,
            result=reply.result,
            view=reply.view,
        )

    def on_tick(self) -> list[Send]:
        self._cached_key = None
        if self.outstanding is None:
            return []
        self.ticks_left -= 1
        if self.ticks_left > 0:
            return []
        return self.on_timeout()

    def on_timeout(self) -> list[Send]:
        """No reply in time: resend the same request to every replica (§4.1)."""
        self._cached_key = None
        if self.outstanding is None:
            return []
        self.ticks_left = self.resend_ticks
        return [Send(to=r, message=self.outstanding) for r in range(self.replica_count)]

    def state_key(self) -> ClientKey:
        """The client's protocol state, frozen (cached until the next event)."""
        key = self._cached_key
        if key is None:
            key = self._cached_key = ClientKey(
                client_id=self.client_id,
                view=self.view,
                request_number=self.request_number,
                outstanding=self.outstanding,
            )
        return key

    def clone(self) -> Client:
        other = Client(
            self.client_id,
            self.replica_count,
            resend_ticks=self.resend_ticks,
            request_number=self.request_number,
        )
        other.view = self.view
        other.outstanding = self.outstanding
        other.ticks_left = self.ticks_left
        other.ignored = self.ignored
        return other
