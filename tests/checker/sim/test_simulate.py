"""The swarm simulator: a few hundred seeds of the real core pass; a seed replays exactly;
the bug zoo's mutants are caught, each by the first failing seed measured for it, and the
replay command a failure prints reproduces the same violation."""

from __future__ import annotations

import json

import pytest

from checker.cli import simulate as simulate_cli
from checker.sim import simulate


@pytest.mark.heavy
def test_300_seeds_pass(capsys: pytest.CaptureFixture[str]) -> None:
    assert simulate_cli.main(["--seeds", "300", "--jobs", "2"]) == 0
    assert "300/300 seeds" in capsys.readouterr().err


def test_a_seed_replays_exactly(capsys: pytest.CaptureFixture[str]) -> None:
    assert simulate_cli.main(["--seed", "7", "--json"]) == 0
    first = capsys.readouterr().out
    assert simulate_cli.main(["--seed", "7", "--json"]) == 0
    assert capsys.readouterr().out == first
    summary = json.loads(first)
    assert summary["verdict"] == "ok" and summary["ops"] == summary["completed"] > 0
    assert set(summary) >= {"events", "ops", "faults", "history_digest", "replicas"}


@pytest.mark.parametrize(
    "mutant", sorted(m for m, s in simulate.SEEDS_TO_CATCH.items() if s is not None)
)
def test_mutant_caught_at_its_measured_seed(mutant: str) -> None:
    seed = simulate.SEEDS_TO_CATCH[mutant]
    assert seed is not None
    outcome = simulate.run_seed(seed, mutant)
    assert not outcome.passed and outcome.problem is not None
    assert simulate.run_seed(seed).passed  # the real core, same world: no violation


@pytest.mark.parametrize(
    "mutant", sorted(m for m, s in simulate.DURABLE_SEEDS_TO_CATCH.items() if s is not None)
)
def test_durable_mutant_caught_at_its_measured_seed(mutant: str) -> None:
    seed = simulate.DURABLE_SEEDS_TO_CATCH[mutant]
    assert seed is not None
    outcome = simulate.run_seed(seed, mutant, durable_world=True)
    assert not outcome.passed and outcome.problem is not None
    assert simulate.run_seed(seed, durable_world=True).passed


@pytest.mark.heavy
def test_100_durable_seeds_pass(capsys: pytest.CaptureFixture[str]) -> None:
    # 300 pass too (vrref simulate --seeds 300 --jobs 2 --durable); CI runs a third.
    assert simulate_cli.main(["--seeds", "100", "--start", "40", "--jobs", "2", "--durable"]) == 0
    assert "100/100 seeds" in capsys.readouterr().err


def test_durable_worlds_crash_whole_clusters_and_mid_event() -> None:
    faults: dict[str, int] = {}
    for seed in range(40):
        summary = simulate.run_seed(seed, durable_world=True).summary
        assert summary["verdict"] == "ok", seed
        for kind, count in summary["faults"].items():
            faults[kind] = faults.get(kind, 0) + count
    assert faults.get("power_loss", 0) > 0 and faults.get("crash_mid_event", 0) > 0


def test_failure_prints_replay_command_and_replay_reproduces(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert simulate_cli.main(["--seed", "0", "--mutant", "accept-prepare-gap"]) == 1
    err = capsys.readouterr().err
    assert "replay: vrref simulate --seed 0 --mutant accept-prepare-gap" in err
    problem = next(line for line in err.splitlines() if "FAILED" in line)
    assert simulate_cli.main(["--seed", "0", "--mutant", "accept-prepare-gap"]) == 1
    assert problem in capsys.readouterr().err
    assert "history: " in err


@pytest.mark.parametrize(
    "argv",
    [[], ["--seeds", "0"], ["--seeds", "3", "--jobs", "0"], ["--seed", "1", "--mutant", "nope"]],
)
def test_bad_flags_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert simulate_cli.main(argv) == 2
    assert "usage" in capsys.readouterr().err


def test_every_mutant_has_a_measured_entry() -> None:
    from checker.mutants import MUTANTS

    tables = {**simulate.SEEDS_TO_CATCH, **simulate.DURABLE_SEEDS_TO_CATCH}
    assert set(tables) == set(MUTANTS)
    assert not set(simulate.SEEDS_TO_CATCH) & set(simulate.DURABLE_SEEDS_TO_CATCH)
    caught = sum(1 for s in tables.values() if s is not None)
    assert caught == 12  # the mutation score of simulation: 12 of 12 (checker/sim/simulate.py)
