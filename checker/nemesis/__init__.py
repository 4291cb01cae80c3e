"""The nemesis: a Jepsen-style test of the real cluster (``vrref nemesis``).

Three real replica processes on distinct loopback addresses, K concurrent clients that
record their own history, faults on a seeded schedule (SIGKILL, SIGSTOP, iptables
partitions, whole-cluster restarts), the replicas' final states by AXFR, and four checks:
the clients' history, the servers' history, every acknowledged update in the servers'
history, and the longest unavailability. ``run(Options(...))`` is the library;
checker/cli/nemesis.py the command line. The modules, in the order a run uses them:

- cluster.py: the replica processes, their files, ports and who is primary;
- partition.py: the iptables chain that cuts a replica off;
- dnsclient.py: UPDATE messages and their canonical op texts, reads and their results;
- workload.py: the client threads and the client history;
- faults.py: the schedule and the faults;
- checks.py: the four checks;
- report.py: the HTML report;
- runner.py: ``run``;
- serve.py: a replica process with a mutant (``--server-mutant``).
"""

from checker.nemesis.result import NemesisResult, Options
from checker.nemesis.runner import run

__all__ = ["NemesisResult", "Options", "run"]
