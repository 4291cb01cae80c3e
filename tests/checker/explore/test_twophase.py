"""TwoPhase against TLC's published figures, its symmetry reduction, and `vrref explore`."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest

from checker.cli.explore import main
from checker.explore.search import ExploreConfig, Explorer, Property, explore, replay
from checker.explore.twophase import Action, TwoPhase, TwoPhaseState, consistent

VENV_BIN = Path(sys.executable).parent


def quiet(**kwargs: object) -> ExploreConfig:
    return ExploreConfig(progress_seconds=None, **kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- TLC's figures


@pytest.mark.parametrize("strategy", ["bfs", "dfs"])
def test_three_rms_give_tlcs_figures(strategy: str) -> None:
    """TLC on tlaplus/Examples TwoPhase with RM = {r1, r2, r3}: 1146 states generated,
    288 distinct states found, depth of the complete state graph search 11."""
    result = explore(TwoPhase(3), quiet(strategy=strategy))
    assert (result.distinct, result.generated) == (288, 1146)
    if strategy == "bfs":
        assert result.depth == 11
    assert result.verdict == "ok" and result.complete
    assert result.deadlocks == 0  # receiving Commit or Abort again is always enabled


@pytest.mark.parametrize(
    ("rm_count", "figures"),
    [(1, (12, 20, 5)), (2, (56, 154, 8)), (4, (1568, 8258, 14))],
)
def test_other_sizes_compute(rm_count: int, figures: tuple[int, int, int]) -> None:
    """Pinned from this explorer (whose counting the 3- and 6-RM figures of TLC confirm)."""
    result = explore(TwoPhase(rm_count), quiet())
    assert (result.distinct, result.generated, result.depth) == figures
    assert result.verdict == "ok"


@pytest.mark.skipif(os.environ.get("VRREF_SLOW") != "1", reason="slow: set VRREF_SLOW=1")
@pytest.mark.slow
def test_six_rms_give_the_specs_published_count() -> None:
    """TwoPhase.tla's closing comment: six RMs, 50816 reachable states (about 9 s here)."""
    result = explore(TwoPhase(6), quiet())
    assert result.distinct == 50816 and result.verdict == "ok"


def test_six_rms_under_symmetry_cover_the_published_count() -> None:
    """The fast stand-in for the slow test: the orbits found under symmetry, expanded by
    every permutation of the six RMs, are exactly TLC's 50816 states."""
    model = TwoPhase(6)
    result = explore(model, quiet(symmetry=True))
    assert result.distinct == 553
    representatives = _reachable(model)
    assert len({model.canonical(s) for s in representatives}) == 553
    everything = {
        model.permute(s, p) for s in representatives for p in itertools.permutations(range(6))
    }
    assert len(everything) == 50816


def _reachable(model: TwoPhase) -> set[TwoPhaseState]:
    """Representatives of every orbit, by a symmetric search that keeps states (not
    fingerprints), independent of the explorer."""
    start = model.init_states()[0]
    seen = {model.canonical(start): start}
    frontier = [start]
    while frontier:
        state = frontier.pop()
        for action in model.actions(state):
            successor = model.next_state(state, action)
            if successor is not None and model.canonical(successor) not in seen:
                seen[model.canonical(successor)] = successor
                frontier.append(successor)
    return set(seen.values())


# ---------------------------------------------------------------------- properties


def test_a_broken_invariant_gets_a_shortest_counterexample() -> None:
    class NoCommit(TwoPhase):
        def properties(self) -> list[Property[TwoPhaseState]]:
            return [
                *super().properties(),
                Property.always("no RM ever commits", lambda s: "committed" not in s.rm_state),
            ]

    model = NoCommit(3)
    result = explore(model, quiet(graph=True))
    assert result.verdict == "violation"
    (violation,) = result.violations
    assert violation.name == "no RM ever commits" and violation.trace is not None
    # Three prepares, three receipts, TMCommit, one RM receives Commit: 8 steps, 9 states.
    assert len(violation.trace) == 9
    assert [str(s.action) for s in violation.trace][-2:] == ["TMCommit", "RMRcvCommitMsg(rm1)"]
    assert replay(model, [s.action for s in violation.trace[1:]]) == violation.trace  # type: ignore[misc]
    # And no shorter path exists: compare with networkx over the full graph.
    full = Explorer(TwoPhase(3), quiet(graph=True)).run().graph
    initial = next(n for n, data in full.nodes(data=True) if data["initial"])
    lengths = nx.single_source_shortest_path_length(full, initial)
    explorer = Explorer(model, quiet())
    committed = {
        f"{explorer.key(s):016x}" for s in _all_states(TwoPhase(3)) if "committed" in s.rm_state
    }
    assert min(lengths[n] for n in committed) == 8


def _all_states(model: TwoPhase) -> set[TwoPhaseState]:
    start = model.init_states()[0]
    seen, frontier = {start}, [start]
    while frontier:
        state = frontier.pop()
        for action in model.actions(state):
            successor = model.next_state(state, action)
            if successor is not None and successor not in seen:
                seen.add(successor)
                frontier.append(successor)
    return seen


def test_a_broken_protocol_violates_tc_consistent() -> None:
    """A TM that commits without waiting for every Prepared: TCConsistent fails, shortest
    trace: an RM aborts on its own, the TM commits, another RM receives Commit."""

    class Hasty(TwoPhase):
        def next_state(self, state: TwoPhaseState, action: Action) -> TwoPhaseState | None:
            if action.name == "TMCommit" and state.tm_state == "init":
                fake = TwoPhaseState(
                    rm_state=state.rm_state,
                    tm_state=state.tm_state,
                    tm_prepared=self.rms,
                    msgs=state.msgs,
                )
                result = super().next_state(fake, action)
                assert result is not None
                return TwoPhaseState(
                    rm_state=result.rm_state,
                    tm_state=result.tm_state,
                    tm_prepared=state.tm_prepared,
                    msgs=result.msgs,
                )
            return super().next_state(state, action)

    result = explore(Hasty(3), quiet())
    (violation,) = result.violations
    assert "TCConsistent" in violation.name and violation.trace is not None
    assert len(violation.trace) == 4
    assert not consistent(violation.trace[-1].state)


def test_every_sometimes_is_reached_with_a_witness() -> None:
    result = explore(TwoPhase(3), quiet())
    witnesses = {p.name: p.trace for p in result.properties if p.kind == "sometimes"}
    assert len(witnesses["some resource manager aborts"] or ()) == 2
    assert len(witnesses["some resource manager commits"] or ()) == 9


def test_type_ok_rejects_a_mistyped_state() -> None:
    model = TwoPhase(2)
    good = model.init_states()[0]
    assert model.type_ok(good)
    bad = TwoPhaseState(
        rm_state=("working", "asleep"),
        tm_state="init",
        tm_prepared=frozenset(),
        msgs=frozenset(),
    )
    assert not model.type_ok(bad)
    outside = TwoPhaseState(
        rm_state=good.rm_state, tm_state="init", tm_prepared=frozenset({5}), msgs=frozenset()
    )
    assert not model.type_ok(outside)


# ---------------------------------------------------------------------- symmetry


def test_canonical_is_a_true_canonical_form() -> None:
    """For every reachable state and permutation of three RMs: the permuted state has the
    same canonical form, and the canonical form is itself a permutation of the state."""
    model = TwoPhase(3)
    for state in _all_states(model):
        form = model.canonical(state)
        orbit = {model.permute(state, p) for p in itertools.permutations(range(3))}
        assert form in orbit
        assert {model.canonical(s) for s in orbit} == {form}


@pytest.mark.parametrize(
    ("rm_count", "plain", "reduced"),
    [(2, 56, 34), (3, 288, 80), (4, 1568, 166), (5, 8832, 314)],
)
def test_symmetry_reduction_effect(rm_count: int, plain: int, reduced: int) -> None:
    """The reduced search finds exactly one state per orbit of the plain one."""
    model = TwoPhase(rm_count)
    with_symmetry = explore(model, quiet(symmetry=True))
    without = explore(model, quiet())
    states = _all_states(model)
    assert (without.distinct, with_symmetry.distinct) == (plain, reduced)
    assert len(states) == plain
    assert len({model.canonical(s) for s in states}) == reduced
    assert with_symmetry.verdict == "ok"
    assert with_symmetry.depth == without.depth == 3 * rm_count + 2


# ---------------------------------------------------------------------- the command


def test_cli_prints_one_json_object(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--model", "twophase", "--rms", "3", "--json", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0 and out.count("\n") == 1
    document = json.loads(out)
    assert (document["distinct"], document["generated"], document["depth"]) == (288, 1146, 11)
    assert document["model"] == "twophase" and document["verdict"] == "ok"
    assert {p["name"] for p in document["properties"]} >= {"some resource manager commits"}


def test_cli_exit_codes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["--model", "twophase", "--bogus"]) == 2
    assert main(["--model", "nosuch"]) == 2
    assert main(["--model", "twophase", "--rms", "0"]) == 2
    assert main(["--model", "twophase", "--depth-max", "0"]) == 2
    # Depth 4 cannot commit: a SOMETIMES is unreached in a finished search, so it fails.
    assert main(["--model", "twophase", "--depth-max", "4", "--quiet"]) == 1
    # Interrupted by the state limit before reaching it: unknown.
    assert main(["--model", "twophase", "--states-max", "20", "--quiet"]) == 2
    out = tmp_path / "twophase.graphml"
    assert main(["--model", "twophase", "--rms", "2", "--graphml", str(out), "--quiet"]) == 0
    assert nx.read_graphml(out).number_of_nodes() == 56
    capsys.readouterr()
    assert main(["--model", "twophase", "--strategy", "dfs", "--symmetry", "--quiet"]) == 0
    assert "80 distinct states" in capsys.readouterr().out


def test_cli_random_walks_replay(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--model", "twophase", "--rms", "2", "--strategy", "random", "--json", "--quiet"]
    main([*argv, "--seed", "5", "--walks", "50"])
    first = json.loads(capsys.readouterr().out)
    main([*argv, "--seed", "5", "--walks", "50"])
    assert json.loads(capsys.readouterr().out)["properties"] == first["properties"]
    assert first["distinct"] > 1 and first["depth"] == 100


def test_vrref_explore_runs_as_a_command() -> None:
    done = subprocess.run(
        [str(VENV_BIN / "vrref"), "explore", "--model", "twophase", "--rms", "3", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert (document["distinct"], document["generated"], document["depth"]) == (288, 1146, 11)
