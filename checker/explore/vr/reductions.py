"""Checking the explorer's message garbage collection against the real core.

The VR model removes from the network every message its receiver can only ignore
(``model._obsolete``): a reduction, sound only if delivering such a message really would
change nothing. Each rule of ``_obsolete`` is an argument about a handler of the core; an
argument can be wrong, and a wrong one hides exactly the states in which a bug would show.
So the model has a checking mode (``VRModel(..., check_reductions=True)``, ``vrref explore
--check-reductions``): every message it collects is first delivered to a clone of its
receiver, and the clone must produce no effect and end in the same protocol state
(``state_key``) as the receiver. A message that does anything breaks the ALWAYS property
``garbage_collection_removes_only_ignored_messages`` with the message and what it changed.

This checks "ignored now"; "ignored forever" rests on the monotonicity each rule names
(views, acknowledgements and commit-numbers never decrease while a replica keeps its state),
which the step invariant ``views_and_commits_never_decrease`` of spec/invariants.py checks in
every explored transition.

The other reduction, client symmetry, is checked by comparison: the same bounds explored
with and without it must give the same verdict and the same counterexample length
(tests/checker/explore/test_reductions.py does this, and the same for garbage collection,
on the bug zoo).
"""

from __future__ import annotations

from collections.abc import Sequence

from checker.sim.cluster import describe
from vrref.core.client import Client
from vrref.core.messages import Message, Reply
from vrref.core.replica import Replica

Item = tuple[tuple[str, int], Message]
"""A message in the model's network: (("replica" | "client", id), message)."""

PROPERTY = "garbage_collection_removes_only_ignored_messages"
"""The ALWAYS property a collected message that is not ignored breaks."""


def collected_but_not_ignored(
    item: Item, replicas: Sequence[Replica | None], clients: Sequence[Client]
) -> str | None:
    """``None`` when delivering ``item`` to a clone of its receiver has no effect and leaves
    its protocol state unchanged; otherwise a sentence saying what the delivery did."""
    (kind, dst), message = item
    where = f"{describe(message)} to {'r' if kind == 'replica' else 'c'}{dst}"
    if kind == "client":
        client = next(c for c in clients if c.client_id == dst)
        assert isinstance(message, Reply)
        copy = client.clone()
        completion = copy.on_reply(message)
        if completion is not None:
            return f"collected {where}, which completes a request"
        if copy.state_key() != client.state_key():
            return f"collected {where}, which changes the client's state"
        return None
    receiver = replicas[dst]
    assert receiver is not None, "the collector never looks at a crashed receiver"
    twin = receiver.clone()
    effects = twin.on_message(message)
    if effects:
        return f"collected {where}, whose delivery has {len(effects)} effect(s)"
    if twin.state_key() != receiver.state_key():
        return f"collected {where}, which changes r{dst}'s protocol state"
    return None
