"""`make demo` runs end to end: the networked demo (real processes on 127.0.0.1) and the
deterministic in-memory one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vrref.cli", "demo", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def test_networked_demo_kills_the_primary_and_recovers() -> None:
    done = run()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SIGKILL the primary" in done.stdout
    assert "(recovered)" in done.stdout
    assert "verdict: LINEARIZABLE" in done.stdout


def test_in_memory_demo() -> None:
    done = run("--memory")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "all replicas hold the same zone: True" in done.stdout


def test_demo_bad_flag_is_usage() -> None:
    done = run("--bogus")
    assert done.returncode == 2 and "usage" in done.stderr
