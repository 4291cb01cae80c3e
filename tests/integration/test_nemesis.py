"""The nemesis (checker/nemesis/) against real replica processes on 127.0.0.11-13.

- A minute of every fault (SIGKILL, SIGSTOP, an iptables partition, the whole cluster
  restarted, with the read mode flipped at each restart) on the real code: every check
  passes. Only the partition needs iptables (root): without it that fault is skipped and
  the test says so; the rest of the run is the same.
- Slow (``VRREF_SLOW=1``): the runtime mutant ``reply-before-recording`` (the history no
  longer written ahead of the wire) under SIGKILLs every ~3 s is caught: the cross-check
  finds an acknowledged update the servers' history lost, or the servers' history is not
  linearizable. And the core mutant ``commit-too-few-prepareoks`` under partitions and
  SIGKILLs of the primary is caught by the clients' own history.

Each test leaves no process and no iptables rule behind, whatever happens: ``run`` kills
what it started and removes its chain in a ``finally``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from checker.nemesis import NemesisResult, Options, run
from checker.nemesis.cluster import soa_serial
from checker.nemesis.faults import FAULT_KINDS
from checker.nemesis.partition import Partitioner, PartitionError, chain_exists
from vrref.runtime.node import ClusterConfig

ROOT = Path(__file__).resolve().parents[2]
SLOW = pytest.mark.skipif(os.environ.get("VRREF_SLOW") != "1", reason="slow: set VRREF_SLOW=1")
SEED = 3
"""Its schedule, over a minute, holds every kind of fault (measured: 6 kills, 4 pauses, a
partition, a whole-cluster restart)."""


def partitions_usable() -> str | None:
    """None when iptables can make a partition here, else why not."""
    try:
        partitioner = Partitioner.open(f"VRREF-NEM-T{os.getpid()}")
    except PartitionError as error:
        return str(error)
    partitioner.close()
    return None


def assert_left_nothing(result: NemesisResult) -> None:
    assert not chain_exists(f"VRREF-NEM-{os.getpid()}"), "the iptables chain is still there"
    config = ClusterConfig.load(result.directory / "cluster.toml")
    for i, replica in enumerate(config.replicas):
        assert soa_serial(replica.host, replica.dns_port, timeout=0.3) is None, f"{i} answers"


def report(result: NemesisResult) -> str:
    return result.summary() + "\n" + "\n".join(c.text for c in result.checks if c.text)


@pytest.mark.heavy
def test_a_minute_of_every_fault_on_the_real_code_passes_every_check(tmp_path: Path) -> None:
    reason = partitions_usable()
    faults = FAULT_KINDS if reason is None else tuple(f for f in FAULT_KINDS if f != "partition")
    if reason is not None:
        print(f"partitions skipped: {reason}")
    result = run(
        Options(seconds=60, seed=SEED, directory=tmp_path, faults=faults, read_mode="alternate")
    )
    assert_left_nothing(result)
    assert result.error is None, result.error
    figures = result.figures()
    for kind in faults:
        assert figures["faults"].get(kind, 0) >= 1, (kind, figures["faults"])
    assert figures["operations"] >= 600, figures
    assert figures["answered updates"] >= 300, figures
    assert {mode for _, mode in result.read_modes} == {"local", "linearizable"}
    assert result.passed, report(result)
    assert result.exit_status == 0
    page = (tmp_path / "report.html").read_text()
    assert "<svg" in page and "<script src" not in page and "https://" not in page


def test_the_command_line_rejects_bad_options() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "vrref.cli", "nemesis", "--faults", "kill,flood"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 2
    assert "unknown fault 'flood'" in done.stderr


@SLOW
def test_replies_before_the_history_is_written_are_caught_under_sigkills(tmp_path: Path) -> None:
    result = run(
        Options(
            seconds=25,
            seed=7,
            directory=tmp_path,
            faults=("kill",),
            calm_s=(1.5, 2.5),
            fault_s=(0.5, 1.0),
            think_s=0.05,  # busier: more replies in flight at each kill
            server_mutant="reply-before-recording",
        )
    )
    assert_left_nothing(result)
    assert result.error is None, result.error
    assert result.exit_status == 1, report(result)
    acknowledged, servers = result.check("acknowledged"), result.check("servers")
    assert acknowledged is not None and servers is not None
    assert acknowledged.status == "fail" or servers.status == "fail", report(result)


@SLOW
def test_a_primary_that_commits_alone_is_caught_by_the_clients_history(tmp_path: Path) -> None:
    reason = partitions_usable()
    faults = ("partition", "kill") if reason is None else ("kill",)
    if reason is not None:
        print(f"partitions skipped: {reason}")
    result = run(
        Options(
            seconds=25,
            seed=5,
            directory=tmp_path,
            faults=faults,
            primary_share=1.0,
            server_mutant="commit-too-few-prepareoks",
        )
    )
    assert_left_nothing(result)
    assert result.error is None, result.error
    assert result.exit_status == 1, report(result)
    if reason is None:
        clients = result.check("clients")
        assert clients is not None and clients.status == "fail", report(result)
