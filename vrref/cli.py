"""The ``vrref`` command: the composition root that dispatches subcommands.

Each subcommand lives in its own module and exposes ``main(argv: list[str]) -> int``; this
file only maps names to modules and imports the chosen one lazily, so ``vrref`` never pays
for (or depends on) the checker unless a checker subcommand runs. That keeps the import
direction stated in README.md ("What is here"): ``vrref`` does not import ``checker`` except
here, inside the subcommand that needs it.

Exit codes follow the checkers' convention: 0 good, 1 a violation found, 2 unknown or a usage
error.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence

# name -> ("module" or "module:function", one-line help); the function defaults to main.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "cluster": (
        "vrref.runtime.launcher:cluster_main",
        "start a local cluster, one process a replica",
    ),
    "replica": (
        "vrref.runtime.launcher:replica_main",
        "run one replica of a cluster (cluster.toml)",
    ),
    "demo": ("vrref.cli:demo_main", "a 3-replica cluster, a killed primary, a recovery (--memory)"),
    "check": ("checker.cli.check", "check a history: linearizability (and invariants)"),
    "view": ("checker.cli.view", "write a self-contained HTML view of a history"),
    "explore": ("checker.cli.explore", "explicit-state exploration of a model"),
    "replay": ("checker.cli.replay", "re-run a counterexample history against the current core"),
    "simulate": ("checker.cli.simulate", "seeded swarm simulation of the real core with faults"),
    "nemesis": ("checker.cli.nemesis", "faults against a real cluster, its histories checked"),
}

USAGE = "usage: vrref <command> [options]\n\ncommands:\n" + "".join(
    f"  {name:<10} {help_}\n" for name, (_, help_) in SUBCOMMANDS.items()
)


def demo_main(argv: list[str]) -> int:
    """``vrref demo``: the networked demo; ``--memory`` the deterministic in-memory one,
    which runs on the simulator's in-memory cluster (checker/sim), so it is imported only
    here."""
    if argv[:1] == ["--memory"]:
        from checker.sim import demo as memory_demo

        return memory_demo.main(argv[1:])
    from vrref.runtime import demo

    return demo.main(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        sys.stdout.write(USAGE)
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in SUBCOMMANDS:
        sys.stderr.write(f"vrref: unknown command {name!r}\n{USAGE}")
        return 2
    module_name, _, function = SUBCOMMANDS[name][0].partition(":")
    module = importlib.import_module(module_name)
    entry: Callable[[list[str]], int] = getattr(module, function or "main")
    return entry(rest)


if __name__ == "__main__":
    raise SystemExit(main())
