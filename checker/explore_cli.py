"""``vrref explore``: run the explorer on a registered model from the command line.

Models are registered in ``MODELS`` by name: each entry says how to add the model's own
flags to the parser (in an argument group of its own) and how to build the model from the
parsed flags. The search flags (strategy, seed, limits, GraphML output) are common to every
model and map one to one onto ``ExploreConfig``. Adding the VR model later is one entry:

    MODELS["vr"] = ModelEntry(
        help="the real replica core over a model network",
        add_arguments=add_vr_arguments,   # --replicas, --clients, --views, --mutant NAME, ...
        build=build_vr_model,             # Namespace -> checker.vr_model.VRModel
    )

The output is one JSON object with ``--json`` (the counts, the verdict, every property with
its trace), or a short readable report otherwise. Exit codes follow the checkers' convention:
0 no violation and every SOMETIMES reached, 1 a violation (or a SOMETIMES never reached: the
check was vacuous), 2 unknown (``--timeout`` or ``--states-max`` cut the search short, so the
absence of a violation proves nothing) or a usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from checker.explore import (
    EXIT_CODES,
    GRAPH_STATE_COUNT_MAX,
    STRATEGIES,
    ExploreConfig,
    Explorer,
    Model,
    Result,
)


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """A model the command can run: its help line, its flags, and its factory."""

    help: str
    add_arguments: Callable[[argparse._ArgumentGroup], None]
    build: Callable[[argparse.Namespace], Model[Any, Any]]


class UsageError(Exception):
    """The flags parse but do not make sense together (exit 2)."""


def _add_twophase_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--rms", type=int, default=3, help="resource managers (default 3)")


def _build_twophase(args: argparse.Namespace) -> Model[Any, Any]:
    from checker.twophase import TwoPhase

    if args.rms < 1:
        raise UsageError(f"--rms must be at least 1, not {args.rms}")
    return TwoPhase(args.rms)


# The registration point: name -> entry. The VR model goes here.
MODELS: dict[str, ModelEntry] = {
    "twophase": ModelEntry(
        help="two-phase commit (tlaplus/Examples TwoPhase.tla)",
        add_arguments=_add_twophase_arguments,
        build=_build_twophase,
    ),
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vrref explore",
        description="Explicit-state exploration of a model: BFS, DFS or seeded random walks.",
    )
    p.add_argument("--model", required=True, choices=sorted(MODELS), help="the model to explore")
    p.add_argument("--strategy", choices=STRATEGIES, default="bfs", help="default bfs")
    p.add_argument("--seed", type=int, default=0, help="random walks: walk i uses seed + i")
    p.add_argument("--walks", type=int, default=100, help="random walks to run (default 100)")
    p.add_argument("--walk-depth-max", type=int, default=100, help="states per walk (100)")
    p.add_argument("--depth-max", type=int, help="do not expand states at this depth")
    p.add_argument("--states-max", type=int, help="stop after this many distinct states")
    p.add_argument("--timeout", type=float, help="stop after this many seconds")
    p.add_argument("--symmetry", action="store_true", help="reduce by the model's symmetry")
    p.add_argument(
        "--all-violations",
        action="store_true",
        help="keep going after a violation to find one per property",
    )
    p.add_argument(
        "--graphml",
        metavar="OUT",
        help=f"write the explored graph as GraphML (runs up to {GRAPH_STATE_COUNT_MAX:,} states)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    for name, entry in sorted(MODELS.items()):
        entry.add_arguments(p.add_argument_group(f"{name} model ({entry.help})"))
    return p


def main(argv: list[str]) -> int:
    p = parser()
    try:
        args = p.parse_args(argv)
    except SystemExit as exit_:  # argparse already printed usage (or help)
        return exit_.code if isinstance(exit_.code, int) else 2
    try:
        model = MODELS[args.model].build(args)
        config = ExploreConfig(
            strategy=args.strategy,
            depth_max=args.depth_max,
            state_count_max=args.states_max,
            time_seconds_max=args.timeout,
            walk_count=args.walks,
            walk_depth_max=args.walk_depth_max,
            seed=args.seed,
            symmetry=args.symmetry,
            stop_on_violation=not args.all_violations,
            graph=args.graphml is not None,
            progress_seconds=None if args.quiet else 5.0,
        )
        explorer = Explorer(model, config)
    except (UsageError, ValueError) as error:
        p.print_usage(sys.stderr)
        sys.stderr.write(f"vrref explore: error: {error}\n")
        return 2
    result = explorer.run()
    code = EXIT_CODES[result.verdict]
    if args.graphml is not None:
        if result.graph is None:
            sys.stderr.write(
                f"vrref explore: graph not written: {result.distinct:,} states exceed "
                f"{GRAPH_STATE_COUNT_MAX:,} (or the strategy keeps no graph)\n"
            )
            code = code or 2
        else:
            result.write_graphml(args.graphml)
    if args.json:
        document = {"model": args.model, **result.to_json()}
        sys.stdout.write(json.dumps(document) + "\n")
    else:
        sys.stdout.write(report(args.model, result))
    return code


def report(name: str, result: Result[Any, Any]) -> str:
    lines = [
        f"{name}: {result.verdict} ({result.config.strategy}): {result.distinct:,} distinct "
        f"states, {result.generated:,} generated, depth {result.depth}, "
        f"{result.elapsed_seconds:.2f}s ({result.states_per_second:,.0f} states/s)"
        + ("" if result.stopped_by is None else f", stopped by {result.stopped_by}")
    ]
    for prop in result.properties:
        mark = "ok  " if prop.holds else "FAIL"
        lines.append(f"  {mark} {prop.kind:<9} {prop.name}")
        if prop.trace is not None and not prop.holds:
            seed = "" if prop.walk_seed is None else f" (replay: --seed {prop.walk_seed} --walks 1)"
            lines.append(f"       counterexample, {len(prop.trace)} states{seed}:")
            lines.extend(f"         {line}" for line in result.trace_lines(prop.trace))
    return "\n".join(lines) + "\n"
