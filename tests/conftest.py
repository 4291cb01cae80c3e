"""Shared fixtures and helpers for the tests."""

from __future__ import annotations

from collections.abc import Callable

from vrref.harness import Cluster, InFlight
from vrref.messages import Message
from vrref.replica import Config


def cluster(replica_count: int = 3, clients: tuple[int, ...] = (1,), **kwargs: object) -> Cluster:
    return Cluster(Config(replica_count=replica_count), client_ids=clients, **kwargs)  # type: ignore[arg-type]


def to(replica: int, kind: type[Message] | None = None) -> Callable[[InFlight], bool]:
    """A predicate: messages in flight to ``replica`` (of one kind, if given)."""
    return lambda m: m.dst == ("replica", replica) and (kind is None or isinstance(m.message, kind))


def from_(replica: int, kind: type[Message] | None = None) -> Callable[[InFlight], bool]:
    return lambda m: m.src == ("replica", replica) and (kind is None or isinstance(m.message, kind))
