"""Shared fixtures and helpers for the tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from checker.sim.cluster import Cluster, InFlight
from vrref.core.messages import Message
from vrref.core.replica import Config


def cluster(replica_count: int = 3, clients: tuple[int, ...] = (1,), **kwargs: object) -> Cluster:
    return Cluster(Config(replica_count=replica_count), client_ids=clients, **kwargs)  # type: ignore[arg-type]


def to(replica: int, kind: type[Message] | None = None) -> Callable[[InFlight], bool]:
    """A predicate: messages in flight to ``replica`` (of one kind, if given)."""
    return lambda m: m.dst == ("replica", replica) and (kind is None or isinstance(m.message, kind))


def from_(replica: int, kind: type[Message] | None = None) -> Callable[[InFlight], bool]:
    return lambda m: m.src == ("replica", replica) and (kind is None or isinstance(m.message, kind))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Heavy tests first (a stable sort, the same on every xdist worker): with
    ``--dist worksteal`` an idle worker takes the queued ones, so the long explorations
    run beside the rest of the suite instead of after it."""
    items.sort(key=lambda item: item.get_closest_marker("heavy") is None)
