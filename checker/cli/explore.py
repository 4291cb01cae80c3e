"""``vrref explore``: run the explorer on a registered model from the command line.

Models are registered in ``MODELS`` by name: each entry says how to add the model's own
flags to the parser (in an argument group of its own) and how to build the model from the
parsed flags. The search flags (strategy, seed, limits, GraphML output) are common to every
model and map one to one onto ``ExploreConfig``. Adding the VR model later is one entry:

    MODELS["vr"] = ModelEntry(
        help="the real replica core over a model network",
        add_arguments=add_vr_arguments,   # --replicas, --clients, --views, --mutant NAME, ...
        build=build_vr_model,             # Namespace -> checker.explore.vr.model.VRModel
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

from checker.explore.search import (
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
    from checker.explore.twophase import TwoPhase

    if args.rms < 1:
        raise UsageError(f"--rms must be at least 1, not {args.rms}")
    return TwoPhase(args.rms)


def _add_vr_arguments(group: argparse._ArgumentGroup) -> None:
    from checker.explore.vr.model import Bounds
    from checker.mutants import MUTANTS

    d = Bounds()
    group.add_argument("--replicas", type=int, default=d.replica_count, help="default 3")
    group.add_argument("--clients", type=int, default=d.client_count, help="default 1")
    group.add_argument(
        "--ops", type=int, default=d.ops_per_client, help="operations per client (default 2)"
    )
    group.add_argument(
        "--views", type=int, default=d.view_number_max, help="highest view number (default 1)"
    )
    group.add_argument("--crashes", type=int, default=d.crash_count_max, help="default 0")
    group.add_argument("--drops", type=int, default=d.drop_count_max, help="default 1")
    group.add_argument("--dups", type=int, default=d.duplicate_count_max, help="default 1")
    group.add_argument(
        "--resends",
        type=int,
        default=d.resend_count_max,
        help="firings of resending timers (heartbeat, resends, retries; default 1)",
    )
    group.add_argument(
        "--client-timeouts", action="store_true", help="clients may time out and resend"
    )
    group.add_argument(
        "--crash-replicas",
        type=_replica_list,
        metavar="I,J",
        help="only these replicas may crash (default any)",
    )
    group.add_argument(
        "--view-change-replicas",
        type=_replica_list,
        metavar="I,J",
        help="only these replicas' timers start view changes (default any)",
    )
    group.add_argument(
        "--checkpoint-ops",
        type=int,
        metavar="N",
        help="a checkpoint every N committed ops (default: the Config's, never reached)",
    )
    group.add_argument(
        "--durable",
        action="store_true",
        help="replicas persist: a crash keeps the disk, a restart resumes from it, and any"
        " number of replicas may be down at once",
    )
    group.add_argument(
        "--mutant",
        choices=sorted(MUTANTS),
        help="explore a known-buggy variant of the core (the bug zoo, checker/mutants.py)",
    )
    group.add_argument(
        "--history",
        metavar="OUT",
        help="write the first counterexample as a history file (replay: vrref replay OUT)",
    )


def _replica_list(text: str) -> tuple[int, ...]:
    try:
        ids = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of ids: {text!r}") from None
    if any(i < 0 for i in ids):
        raise argparse.ArgumentTypeError(f"replica ids are not negative: {text!r}")
    return ids


def _build_vr(args: argparse.Namespace) -> Model[Any, Any]:
    from checker.explore.vr.model import Bounds, VRModel
    from checker.mutants import replica_class

    counts = {
        "--replicas": args.replicas,
        "--clients": args.clients,
        "--ops": args.ops,
        "--views": args.views,
        "--crashes": args.crashes,
        "--drops": args.drops,
        "--dups": args.dups,
        "--resends": args.resends,
    }
    for flag, value in counts.items():
        if value < 0:
            raise UsageError(f"{flag} must not be negative, not {value}")
    if args.replicas < 1 or args.replicas % 2 == 0:
        raise UsageError(f"--replicas must be odd (2f+1), not {args.replicas}")
    for ids in (args.crash_replicas, args.view_change_replicas):
        if ids is not None and max(ids) >= args.replicas:
            raise UsageError(f"replica {max(ids)} is not among the {args.replicas} replicas")
    if args.clients < 1:
        raise UsageError(f"--clients must be at least 1, not {args.clients}")
    if args.checkpoint_ops is not None and args.checkpoint_ops < 1:
        raise UsageError(f"--checkpoint-ops must be at least 1, not {args.checkpoint_ops}")
    bounds = Bounds(
        checkpoint_ops=args.checkpoint_ops,
        durable=args.durable,
        replica_count=args.replicas,
        client_count=args.clients,
        ops_per_client=args.ops,
        view_number_max=args.views,
        crash_count_max=args.crashes,
        drop_count_max=args.drops,
        duplicate_count_max=args.dups,
        client_timeouts=args.client_timeouts,
        resend_count_max=args.resends,
        crash_replicas=args.crash_replicas,
        view_change_replicas=args.view_change_replicas,
    )
    return VRModel(
        bounds,
        replica_class(args.mutant),
        mutant=args.mutant,
        collect_garbage=not args.no_gc,
        check_reductions=args.check_reductions,
    )


# The registration point: name -> entry.
MODELS: dict[str, ModelEntry] = {
    "vr": ModelEntry(
        help="the real replica and client cores over a model network",
        add_arguments=_add_vr_arguments,
        build=_build_vr,
    ),
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
        "--no-gc",
        action="store_true",
        help="vr: keep messages the receiver can only ignore (no garbage collection)",
    )
    p.add_argument(
        "--check-reductions",
        action="store_true",
        help="vr: deliver each collected message to a clone of its receiver first and "
        "require it to be ignored (an ALWAYS property of its own)",
    )
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
    p.add_argument(
        "--goal",
        action="append",
        metavar="NAME",
        help="chained search: BFS to this goal of the model first, then on from there "
        "(repeatable; the vr model's goals: two-ops-at-one-replica-only, "
        "stale-log-outgrows-newer-view)",
    )
    p.add_argument(
        "--final-depth-max",
        type=int,
        help="chained search: states in the last leg, its root included",
    )
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
    if args.goal:
        return _run_chain(args, model, config)
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
        explain = getattr(model, "explain", None)
        sys.stdout.write(report(args.model, result, explain if callable(explain) else None))
    if args.model == "vr" and args.history is not None:
        code = _write_counterexample(model, result, args.history) or code
    return code


def _run_chain(args: argparse.Namespace, model: Model[Any, Any], config: ExploreConfig) -> int:
    import dataclasses

    from checker.explore.search import Explorer as _Explorer
    from checker.explore.search import chain

    hook = getattr(model, "goals", None)
    goals: dict[str, Any] = hook() if callable(hook) else {}
    unknown = [g for g in args.goal if g not in goals]
    if unknown:
        sys.stderr.write(
            f"vrref explore: error: unknown goal {unknown[0]!r}; the {args.model} model has: "
            f"{', '.join(goals) or 'none'}\n"
        )
        return 2
    final = dataclasses.replace(config, depth_max=args.final_depth_max)
    outcome = chain(model, [(g, goals[g]) for g in args.goal], config, final=final)
    legs = " + ".join(str(n) for n in outcome.legs)
    if outcome.missed is not None:
        print(f"{args.model}: chain: goal {outcome.missed!r} is not reached")
        return 1
    describe = _Explorer(model, config).describe
    last = outcome.final
    searched = "" if last is None else f"; last leg: {last.distinct:,} states, {last.verdict}"
    if outcome.broken is None:
        print(f"{args.model}: chain through {', '.join(args.goal)}: no violation{searched}")
        return 0 if last is None or last.stopped_by is None else 2
    print(
        f"{args.model}: chain: violation of {outcome.broken!r}, {len(outcome.trace)} states "
        f"(legs {legs}){searched}"
    )
    for i, step in enumerate(outcome.trace, 1):
        print(f"  {i} {'<initial>' if step.action is None else step.action}:")
        for line in describe(step.state).splitlines():
            print(f"      {line.strip()}")
    explain = getattr(model, "explain", None)
    if callable(explain):
        print("  broken at the last state:")
        for line in str(explain(outcome.trace[-1].state)).splitlines():
            print(f"    {line}")
    if args.model == "vr" and args.history is not None:
        from checker.explore.counterexamples import write_counterexample
        from checker.explore.vr.model import VRModel

        assert isinstance(model, VRModel)
        write_counterexample(args.history, model, outcome.trace, outcome.broken)
        sys.stderr.write(f"vrref explore: counterexample written to {args.history}\n")
    return 1


def _write_counterexample(model: Model[Any, Any], result: Result[Any, Any], path: str) -> int:
    from checker.explore.counterexamples import write_counterexample
    from checker.explore.vr.model import VRModel

    assert isinstance(model, VRModel)
    failing = next((p for p in result.violations if p.trace is not None), None)
    if failing is None or failing.trace is None:
        sys.stderr.write("vrref explore: no counterexample found, no history written\n")
        return 0
    write_counterexample(path, model, failing.trace, failing.name)
    sys.stderr.write(f"vrref explore: counterexample written to {path} (vrref replay {path})\n")
    return 0


def report(name: str, result: Result[Any, Any], explain: Callable[[Any], str] | None = None) -> str:
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
            if explain is not None and prop.kind == "always":
                lines.append("       broken at the last state:")
                lines.extend(
                    f"         {line}" for line in explain(prop.trace[-1].state).split("\n")
                )
    return "\n".join(lines) + "\n"
