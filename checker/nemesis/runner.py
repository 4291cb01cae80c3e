"""One nemesis run, start to verdict: ``run(Options(...)) -> NemesisResult``.

1. DIR (a fresh temporary directory unless given) gets cluster.toml for three replicas on
   127.0.0.11-13 (checker/nemesis/cluster.py), and the replicas start.
2. K client threads run the workload (checker/nemesis/workload.py) into DIR/clients.jsonl
   while the nemesis injects faults on its seeded schedule (checker/nemesis/faults.py) into
   DIR/nemesis.jsonl.
3. At the end: the last fault healed, any replica down started, the cluster left to settle
   (every replica answering the same SOA serial for a second), then one TSIG-signed AXFR a
   replica, each written as a ``final`` event into the client history; the replicas are then
   stopped with SIGTERM (each records its own final state on a clean stop).
4. The checks (checker/nemesis/checks.py), the HTML report (checker/nemesis/report.py), a
   text summary.

Verdict: pass iff the clients' history, the servers' history and the cross-check all pass;
exit status 0 pass, 1 a violation, 2 could not run (or a check could not decide).
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Final

from checker.nemesis import checks as checking
from checker.nemesis import dnsclient
from checker.nemesis.cluster import KEY, ORIGIN, ZONE, Cluster
from checker.nemesis.faults import Nemesis, Schedule
from checker.nemesis.partition import Partitioner, PartitionError
from checker.nemesis.result import (
    EXIT_FAIL,
    EXIT_PASS,
    EXIT_UNKNOWN,
    NemesisResult,
    Options,
)
from checker.nemesis.workload import ReadMode, Recorder, Workload
from vrref import history as hist

START_TIMEOUT_S: Final = 30.0
SETTLE_STABLE_S: Final = 1.0
AXFR_TIMEOUT_S: Final = 10.0


def _settle(cluster: Cluster, timeout_s: float) -> tuple[bool, float, list[int | None]]:
    """Waits until every replica answers the same SOA serial for SETTLE_STABLE_S."""
    started = time.monotonic()
    stable_since: float | None = None
    last: list[int | None] = []
    while True:
        serials = [cluster.serial(i, 0.5) for i in range(len(cluster.hosts))]
        now = time.monotonic()
        agreed = None not in serials and len(set(serials)) == 1
        if agreed and serials == last:
            if stable_since is not None and now - stable_since >= SETTLE_STABLE_S:
                return True, now - started, serials
        else:
            stable_since = now if agreed else None
        last = serials
        if now - started > timeout_s:
            return False, now - started, serials
        time.sleep(0.1)


def _finals(cluster: Cluster, recorder: Recorder, problems: list[str]) -> None:
    """One AXFR a replica, each written as a ``final`` into the client history."""
    signer = dnsclient.Signer.from_file(KEY)
    for i in range(len(cluster.hosts)):
        host, port = cluster.address(i)
        since = recorder.now()
        try:
            records = dnsclient.axfr(host, port, ORIGIN, signer, AXFR_TIMEOUT_S)
        except Exception as error:  # the transfer failed: no final state for this replica
            problems.append(f"replica {i}: the final AXFR failed: {error!r}")
            continue
        recorder.write(hist.FinalZone(replica=i, records=records, since=since, time=recorder.now()))


def run(options: Options, say: Callable[[str], None] | None = None) -> NemesisResult:
    """A whole nemesis run: raises ValueError on bad options, else returns the result (a
    run that could not be made has ``error`` set and exit status 2)."""
    options.validate()
    wall_start = time.monotonic()
    if say is None:
        say = (lambda _: None) if options.quiet else (lambda line: print(line, flush=True))
    directory = options.directory or Path(tempfile.mkdtemp(prefix="vrref-nemesis-"))
    directory.mkdir(parents=True, exist_ok=True)
    result = NemesisResult(options=options, directory=directory)
    skipped: dict[str, str] = {}
    partitioner: Partitioner | None = None
    if "partition" in options.faults:
        try:
            partitioner = Partitioner.open()
        except PartitionError as error:
            skipped["partition"] = f"iptables not usable: {error}"
    if options.diskless and "restart-all" in options.faults:
        skipped["restart-all"] = (
            "diskless replicas cannot all restart at once: each would recover from peers "
            "that lost their state too (spec/traps.md, trap 5)"
        )
    alternate = options.read_mode == "alternate"
    cluster = Cluster(
        directory,
        diskless=options.diskless,
        mutant=options.server_mutant,
        read_mode="local" if alternate else options.read_mode,
    )
    read_mode = ReadMode(cluster.read_mode)
    nemesis: Nemesis | None = None
    workload: Workload | None = None
    recorder: Recorder | None = None
    say(
        f"nemesis: {directory}: replicas on "
        + ", ".join(f"{h}:{cluster.dns_port(i)}" for i, h in enumerate(cluster.hosts))
        + f", seed {options.seed}, {options.clients} clients, {options.seconds:g} s, faults "
        + ",".join(options.faults)
        + (f", server mutant {options.server_mutant}" if options.server_mutant else "")
    )
    try:
        for i in range(len(cluster.hosts)):
            cluster.start(i)
        if not cluster.wait_answering(list(range(len(cluster.hosts))), START_TIMEOUT_S):
            result.error = f"the replicas did not all answer within {START_TIMEOUT_S:g} s"
            return _finish(result, cluster, partitioner, wall_start, say)
        recorder = Recorder(directory / "clients.jsonl", ZONE, read_mode=options.read_mode)
        result.started_ns = time.monotonic_ns()
        result.read_modes.append((result.started_ns, read_mode.mode))
        nemesis = Nemesis(
            cluster,
            kinds=options.faults,
            schedule=Schedule(
                options.seed,
                calm_s=options.calm_s,
                fault_s=options.fault_s,
                primary_share=options.primary_share,
            ),
            log_path=directory / "nemesis.jsonl",
            started_ns=result.started_ns,
            read_mode=read_mode,
            alternate=alternate,
            partitioner=partitioner,
            say=say,
        )
        for kind, reason in skipped.items():
            nemesis.skip(kind, reason)
        workload = Workload(
            cluster,
            recorder,
            options.clients,
            options.seed,
            read_mode,
            timeout_s=options.op_timeout_s,
            think_s=options.think_s,
            on_error=say,
        )
        workload.start()
        nemesis.run(time.monotonic() + options.seconds)
        result.ended_ns = workload.stop()  # the end of the workload: no new operation after
        result.run_s = (result.ended_ns - result.started_ns) / 1e9
        nemesis.heal()
        settled, took, serials = _settle(cluster, options.settle_timeout_s)
        result.settle_s = took
        if not settled:
            result.problems.append(
                f"the cluster did not settle within {options.settle_timeout_s:g} s "
                f"(SOA serials {serials})"
            )
        say(f"nemesis: settled={settled} in {took:.2f} s, SOA serials {serials}")
        _finals(cluster, recorder, result.problems)
        recorder.close()
        codes = cluster.stop()
        unclean = {i: c for i, c in codes.items() if c != 0}
        if unclean:
            result.problems.append(f"replicas that did not stop cleanly on SIGTERM: {unclean}")
        result.faults = list(nemesis.faults)
        result.skipped = dict(nemesis.skipped)
        result.ops = sorted(workload.records, key=lambda r: r.invoke_ns)
        result.problems.extend(workload.errors)
        for fault in nemesis.faults:
            if fault.kind == "restart-all" and fault.end_ns is not None and alternate:
                mode = "linearizable" if "linearizable" in fault.detail else "local"
                result.read_modes.append((fault.end_ns, mode))
    except BaseException:
        if workload is not None:
            workload.stop()
        raise
    finally:
        if nemesis is not None:
            nemesis.close()
        if recorder is not None:
            with contextlib.suppress(Exception):
                recorder.close()
        cluster.kill_all()
        if partitioner is not None:
            partitioner.close()
    return _judge(result, cluster, wall_start, say)


def _finish(
    result: NemesisResult,
    cluster: Cluster,
    partitioner: Partitioner | None,
    wall_start: float,
    say: Callable[[str], None],
) -> NemesisResult:
    cluster.kill_all()
    if partitioner is not None:
        partitioner.close()
    result.wall_s = time.monotonic() - wall_start
    result.status, result.exit_status = "unknown", EXIT_UNKNOWN
    say(result.summary())
    return result


def _judge(
    result: NemesisResult, cluster: Cluster, wall_start: float, say: Callable[[str], None]
) -> NemesisResult:
    from checker.nemesis import report

    options = result.options
    clients = result.directory / "clients.jsonl"
    say("nemesis: checking ...")
    started = time.monotonic()
    client_args = (
        "clients",
        "(a) the clients' history: linearizability, local reads, final states",
        [str(clients)],
        options.check_timeout_s,
    )
    server_args = (
        "servers",
        "(b) the servers' history: linearizability, local reads, trace, invariants, finals",
        [str(cluster.history_dir)],
        options.check_timeout_s,
    )
    client: checking.Check | None = None
    if options.parallel_checks:
        # (a) in a process of its own while this one does (b) and (c): two cores, half the
        # wait (spawned, not forked: this process has run threads).
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            future = pool.submit(checking.check_history, *client_args)
            server = checking.check_history(*server_args)
            acknowledged = checking.check_acknowledged(clients, cluster.history_dir)
            try:
                client = future.result()
            except BrokenProcessPool as error:  # the child died: check here instead
                say(f"nemesis: the checking process failed ({error}); checking here")
    else:
        server = checking.check_history(*server_args)
        acknowledged = checking.check_acknowledged(clients, cluster.history_dir)
    if client is None:
        client = checking.check_history(*client_args)
    result.checks += [client, server, acknowledged]
    successes = [op.complete_ns for op in result.ops if op.f == "update" and op.outcome == "ok"]
    availability, longest, per_fault = checking.check_availability(
        successes, result.faults, result.started_ns, result.ended_ns
    )
    result.checks.append(availability)
    result.longest_gap, result.gaps_per_fault = longest, per_fault
    result.check_s = time.monotonic() - started
    judged = [c for c in result.checks if c.name in ("clients", "servers", "acknowledged")]
    missing_final = [p for p in result.problems if "final AXFR" in p]
    if any(c.status == "fail" for c in judged):
        result.status, result.exit_status = "fail", EXIT_FAIL
    elif (
        any(c.status != "pass" for c in judged)
        or missing_final
        or result.error
        or any("stopped:" in p for p in result.problems)  # a client thread of ours failed
    ):
        result.status, result.exit_status = "unknown", EXIT_UNKNOWN
    else:
        result.status, result.exit_status = "pass", EXIT_PASS
    result.wall_s = time.monotonic() - wall_start
    with contextlib.suppress(OSError):
        (result.directory / "result.json").write_text(
            json.dumps(result.to_json(), indent=1, sort_keys=True) + "\n"
        )
    path = options.report or result.directory / "report.html"
    try:
        report.write(result, path)
        result.report_path = path
    except OSError as error:
        result.problems.append(f"the report could not be written: {error}")
    say(result.summary())
    return result
