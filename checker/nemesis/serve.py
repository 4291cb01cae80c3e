"""A replica process running a mutant: ``python -m checker.nemesis.serve --mutant NAME
<the arguments of vrref replica>``.

It patches the runtime, then calls the normal replica main
(vrref.runtime.launcher.replica_main), so everything but the mutated decision is the code
that ships. No file of vrref/ carries a switch for this.

- A core mutant of checker/mutants.py (``MUTANTS``): ``vrref.runtime.node.Replica`` is
  replaced by the mutant subclass, so the node's ``Replica(...)``, ``Replica.recovering``
  and ``Replica.restarted`` (classmethods: they build ``cls``) all build the mutant.
- ``reply-before-recording``, a runtime mutant: the history is no longer written ahead.
  ``Node._handle_batch`` handles the batch and flushes the history only when the batch held
  a tick (no flush of the submissions' invokes before they can commit, none after the
  batch), and ``DnsFrontend._after_history`` runs its action (the reply) at once, before
  the completion it follows has reached the file.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

RUNTIME_MUTANTS = ("reply-before-recording",)


def _reply_before_recording() -> None:
    from vrref.runtime import frontend, node

    def handle_batch(self: node.Node, batch: list[tuple[Any, ...]]) -> None:
        self._handle_events(batch)
        if self.history is not None and any(event[0] == "tick" for event in batch):
            self.history.flush()

    def after_history(self: frontend.DnsFrontend, action: Callable[[], None]) -> None:
        del self
        action()

    node.Node._handle_batch = handle_batch  # type: ignore[method-assign]
    frontend.DnsFrontend._after_history = after_history  # type: ignore[method-assign]


def patch(name: str) -> None:
    """Installs mutant ``name`` in this process; ValueError when there is none of that name."""
    if name == "reply-before-recording":
        _reply_before_recording()
        return
    from checker.mutants import MUTANTS
    from vrref.runtime import node

    try:
        mutant = MUTANTS[name]
    except KeyError:
        known = ", ".join((*MUTANTS, *RUNTIME_MUTANTS))
        raise ValueError(f"unknown mutant {name!r}; known: {known}") from None
    setattr(node, "Replica", mutant)  # noqa: B010 - the node builds what this name holds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m checker.nemesis.serve",
        description="run one replica (vrref replica's arguments) with a mutant",
    )
    parser.add_argument("--mutant", required=True, help="a core mutant or reply-before-recording")
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    try:
        patch(args.mutant)
    except ValueError as error:
        print(f"checker.nemesis.serve: {error}", file=sys.stderr)
        return 2
    from vrref.runtime.launcher import replica_main

    print(f"checker.nemesis.serve: running with the mutant {args.mutant}", flush=True)
    return replica_main(rest)


if __name__ == "__main__":
    raise SystemExit(main())
