"""The z3 proofs of spec/proofs.py: every claim proved, every weakened claim refuted."""

from __future__ import annotations

import subprocess
import sys

import pytest

from spec import proofs


@pytest.mark.parametrize("f", range(1, proofs.QUORUM_F_MAX + 1))
def test_quorums_of_f_plus_one_intersect(f: int) -> None:
    result = proofs.quorum_intersection(f)
    assert result.proved, result.detail
    assert result.detail.startswith("unsat")


@pytest.mark.parametrize("f", range(1, proofs.QUORUM_F_MAX + 1))
def test_quorums_of_f_need_not_intersect(f: int) -> None:
    result = proofs.quorum_intersection(f, quorum_size=f)
    assert not result.proved
    assert result.detail.startswith("counterexample: disjoint quorums")


@pytest.mark.parametrize("replica_count", proofs.VIEW_CHANGE_REPLICA_COUNTS)
@pytest.mark.parametrize("log_length", range(1, proofs.VIEW_CHANGE_LOG_LENGTH_MAX + 1))
def test_view_change_lemma_is_proved(replica_count: int, log_length: int) -> None:
    result = proofs.view_change_lemma(replica_count, log_length)
    assert result.proved, result.detail
    consistent = proofs.view_change_axioms_consistent(replica_count, log_length)
    assert consistent.proved, consistent.detail
    assert "v'=" in consistent.detail  # a concrete model, printed


@pytest.mark.parametrize("replica_count", proofs.VIEW_CHANGE_REPLICA_COUNTS)
@pytest.mark.parametrize("mutation", proofs.MUTATIONS)
def test_every_weakening_has_a_counterexample(replica_count: int, mutation: str) -> None:
    result = proofs.view_change_lemma(replica_count, 2, mutation)
    assert not result.proved
    assert result.detail.startswith("counterexample:") and "CHOSEN" in result.detail


def test_the_op_number_rule_picks_a_stale_log() -> None:
    """The refutation of "largest op-number ignoring v'" is the paper's reason for v': the
    chosen sender's last normal view is older than the view that committed the op."""
    result = proofs.view_change_lemma(3, 2, "select_by_op_number")
    assert not result.proved
    committed_in = int(result.detail.split("committed in view ")[1].split(",")[0])
    chosen = next(part for part in result.detail.split("; ") if "CHOSEN" in part)
    assert int(chosen.split("v'=")[1].split()[0]) < committed_in


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        proofs.view_change_lemma(4, 2)
    with pytest.raises(ValueError):
        proofs.view_change_lemma(3, 2, "no_such_mutation")


def test_main_reports_success() -> None:
    assert proofs.main() == 0


def test_spec_proofs_imports_neither_vrref_nor_checker() -> None:
    program = (
        "import sys, spec.proofs;"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('vrref', 'checker')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
