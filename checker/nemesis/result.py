"""What a nemesis run is asked to do (``Options``) and what it found (``NemesisResult``):
shared by the runner (checker/nemesis/runner.py), the report (checker/nemesis/report.py)
and the command line, which import this and not each other."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from checker.mutants import MUTANTS
from checker.nemesis import checks as checking
from checker.nemesis.faults import FAULT_KINDS, Fault
from checker.nemesis.workload import OpRecord

RUNTIME_MUTANTS: Final = ("reply-before-recording",)
SERVER_MUTANTS: Final = (*MUTANTS, *RUNTIME_MUTANTS)
READ_MODES: Final = ("local", "linearizable", "alternate")
EXIT_PASS: Final = 0
EXIT_FAIL: Final = 1
EXIT_UNKNOWN: Final = 2


@dataclass(frozen=True, kw_only=True)
class Options:
    seconds: float = 60.0
    """How long the workload and the faults run (setup, settling and checks come on top)."""
    seed: int = 0
    clients: int = 8
    directory: Path | None = None
    report: Path | None = None
    """The HTML report; default DIR/report.html."""
    faults: tuple[str, ...] = FAULT_KINDS
    read_mode: str = "local"
    server_mutant: str | None = None
    diskless: bool = False
    op_timeout_s: float = 1.0
    think_s: float = 0.15
    """Mean pause of a client between operations (0: none)."""
    calm_s: tuple[float, float] = (2.0, 4.0)
    fault_s: tuple[float, float] = (1.0, 3.0)
    primary_share: float = 0.5
    check_timeout_s: float | None = 300.0
    settle_timeout_s: float = 30.0
    parallel_checks: bool = True
    """Check the clients' history in a process of its own, beside the servers'."""
    quiet: bool = False

    def validate(self) -> None:
        """Raises ValueError naming a bad option."""
        unknown = [f for f in self.faults if f not in FAULT_KINDS]
        if unknown:
            raise ValueError(f"unknown fault {unknown[0]!r}; known: {', '.join(FAULT_KINDS)}")
        if self.read_mode not in READ_MODES:
            raise ValueError(f"--read-mode must be one of {', '.join(READ_MODES)}")
        if self.server_mutant is not None and self.server_mutant not in SERVER_MUTANTS:
            raise ValueError(
                f"unknown server mutant {self.server_mutant!r}; known: {', '.join(SERVER_MUTANTS)}"
            )
        if self.seconds <= 0 or self.clients < 1:
            raise ValueError("--seconds and --clients must be positive")
        for low, high in (self.calm_s, self.fault_s):
            if not 0 < low <= high:
                raise ValueError("a duration range must be 0 < low <= high")


@dataclass
class NemesisResult:
    options: Options
    directory: Path
    status: str = "unknown"  # "pass", "fail", "unknown"
    exit_status: int = EXIT_UNKNOWN
    checks: list[checking.Check] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    ops: list[OpRecord] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    """What went wrong with the run itself (a replica that did not settle, say)."""
    error: str | None = None
    """Why the run could not be made (then there are no checks)."""
    started_ns: int = 0
    ended_ns: int = 0
    wall_s: float = 0.0
    run_s: float = 0.0
    settle_s: float | None = None
    check_s: float = 0.0
    longest_gap: checking.Gap | None = None
    gaps_per_fault: list[tuple[Fault, checking.Gap | None]] = field(default_factory=list)
    report_path: Path | None = None
    read_modes: list[tuple[int, str]] = field(default_factory=list)
    """(time, read mode) from the start and at each change."""

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    def check(self, name: str) -> checking.Check | None:
        return next((c for c in self.checks if c.name == name), None)

    def figures(self) -> dict[str, Any]:
        kinds: Counter[str] = Counter()
        for op in self.ops:
            kinds[f"{op.kind} {op.outcome}"] += 1
        rcodes = Counter(op.rcode or "-" for op in self.ops if op.f == "update")
        faults = Counter(f.kind for f in self.faults)
        per_kind: dict[str, float] = {}
        for fault, gap in self.gaps_per_fault:
            if gap is not None:
                per_kind[fault.kind] = max(per_kind.get(fault.kind, 0.0), gap.seconds)
        ok_updates = sum(1 for op in self.ops if op.f == "update" and op.outcome == "ok")
        return {
            "operations": len(self.ops),
            "operations per second": round(len(self.ops) / self.run_s, 1) if self.run_s else 0,
            "by kind and outcome": dict(sorted(kinds.items())),
            "update rcodes": dict(sorted(rcodes.items())),
            "answered updates": ok_updates,
            "faults": dict(sorted(faults.items())),
            "faults skipped": dict(self.skipped),
            "longest unavailability s": (
                round(self.longest_gap.seconds, 3) if self.longest_gap is not None else None
            ),
            "longest unavailability by fault s": {
                k: round(v, 3) for k, v in sorted(per_kind.items())
            },
            "wall s": round(self.wall_s, 1),
            "run s": round(self.run_s, 1),
            "settle s": None if self.settle_s is None else round(self.settle_s, 2),
            "check s": round(self.check_s, 1),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "exit_status": self.exit_status,
            "seed": self.options.seed,
            "seconds": self.options.seconds,
            "clients": self.options.clients,
            "read_mode": self.options.read_mode,
            "faults_enabled": list(self.options.faults),
            "server_mutant": self.options.server_mutant,
            "diskless": self.options.diskless,
            "figures": self.figures(),
            "checks": [c.to_json() for c in self.checks],
            "faults": [f.to_json() for f in self.faults],
            "problems": self.problems,
            "error": self.error,
        }

    def summary(self) -> str:
        """A short text summary."""
        o = self.options
        figures = self.figures()
        lines = [
            f"nemesis: {self.status.upper()} (exit {self.exit_status}) seed {o.seed}, "
            f"{o.clients} clients, {o.seconds:g} s, read mode {o.read_mode}"
            + (f", server mutant {o.server_mutant}" if o.server_mutant else "")
            + (", diskless" if o.diskless else ""),
            f"  directory: {self.directory}",
        ]
        if self.error is not None:
            lines.append(f"  could not run: {self.error}")
        by = figures["by kind and outcome"]
        lines.append(
            f"  operations: {figures['operations']} ({figures['operations per second']}/s): "
            + ", ".join(f"{k} {v}" for k, v in by.items())
        )
        lines.append(
            "  update rcodes: " + ", ".join(f"{k} {v}" for k, v in figures["update rcodes"].items())
        )
        lines.append(
            "  faults: "
            + (", ".join(f"{k} {v}" for k, v in figures["faults"].items()) or "none")
            + "".join(f"; {k} skipped: {why}" for k, why in self.skipped.items())
        )
        if self.longest_gap is not None:
            lines.append(
                f"  longest unavailability: {self.longest_gap.seconds:.2f} s; by fault: "
                + ", ".join(
                    f"{k} {v:.2f} s"
                    for k, v in figures["longest unavailability by fault s"].items()
                )
            )
        for check in self.checks:
            lines.append(f"  {check.status.upper():7} {check.title}: {check.summary}")
            for violation in check.violations[:8]:
                lines.append(f"          {violation[:300]}")
            if len(check.violations) > 8:
                lines.append(f"          ... {len(check.violations) - 8} more (see the report)")
        for problem in self.problems:
            lines.append(f"  problem: {problem}")
        lines.append(
            f"  wall time {self.wall_s:.1f} s (run {self.run_s:.1f} s, checks {self.check_s:.1f} s)"
        )
        if self.report_path is not None:
            lines.append(f"  report: {self.report_path}")
        return "\n".join(lines)
