"""``make demo``: a real 3-replica cluster on 127.0.0.1, a killed primary, and a recovery.

It starts three ``vrref replica`` processes, applies updates with ``nsupdate`` and reads
with ``dig`` (dnspython when the tools are not installed), SIGKILLs the primary, shows
updates continuing after the view change, restarts the killed replica (it resumes from
its disk) and shows it catch up to the latest serial, then checks the recorded history
with ``vrref check`` and prints where it is. ``vrref demo --memory`` is the deterministic
in-memory version.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.tsigkeyring
import dns.update

from vrref import EXAMPLES_DIR
from vrref.runtime.launcher import key_line, replica_command, write_cluster_config

ZONE = EXAMPLES_DIR / "example.com.zone"
KEY = EXAMPLES_DIR / "update.key"
TOOLS = shutil.which("dig") is not None and shutil.which("nsupdate") is not None


def free_base_port() -> int:
    for _ in range(200):
        base = 20000 + int.from_bytes(os.urandom(2), "big") % 20000
        try:
            for port in [base + i for i in range(3)] + [base + 100 + i for i in range(3)]:
                for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                    with socket.socket(socket.AF_INET, kind) as s:
                        s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no free ports on 127.0.0.1")


def update(port: int, line: str) -> str:
    """Applies one ``update add ...`` line; returns the rcode the server answered."""
    if TOOLS:
        script = f"server 127.0.0.1 {port}\nzone example.com.\nupdate {line}\nsend\n"
        done = subprocess.run(
            ["nsupdate", "-v", "-t", "20", "-y", key_line(KEY)],
            input=script,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return "NOERROR" if done.returncode == 0 else (done.stdout + done.stderr).strip()
    _, name, ttl, rdtype, rdata = line.split(None, 4)
    algorithm, key_name, secret = key_line(KEY).split(":")
    message = dns.update.UpdateMessage(
        "example.com.",
        keyring=dns.tsigkeyring.from_text({key_name: secret}),
        keyalgorithm=algorithm,
    )
    message.add(name, int(ttl), rdtype, rdata)
    reply = dns.query.tcp(message, "127.0.0.1", port=port, timeout=20)
    return dns.rcode.to_text(reply.rcode())


def lookup(port: int, name: str, rdtype: str) -> str:
    if TOOLS:
        out = subprocess.run(
            ["dig", "@127.0.0.1", "-p", str(port), name, rdtype, "+short", "+norec", "+time=2"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
        return out.replace("\n", " ") or "(no answer)"
    reply = dns.query.udp(dns.message.make_query(name, rdtype), "127.0.0.1", port=port, timeout=2)
    texts = [rd.to_text() for rrset in reply.answer for rd in rrset]
    return " ".join(texts) or "(no answer)"


def serial(port: int) -> int:
    try:
        return int(lookup(port, "example.com.", "SOA").split()[2])
    except (IndexError, ValueError, OSError, dns.exception.DNSException):
        return -1


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def main(argv: list[str]) -> int:
    if argv:
        sys.stderr.write("usage: vrref demo [--memory]\n")
        return 2
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="vrref-demo-"))
    base = free_base_port()
    config = write_cluster_config(
        work, replicas=3, base_port=base, zone=ZONE, origin="example.com.", key_file=KEY
    )
    history = work / "history"
    history.mkdir()
    processes: dict[int, subprocess.Popen[bytes]] = {}

    def start(i: int) -> None:
        log = (work / f"replica-{i}.log").open("ab")
        processes[i] = subprocess.Popen(
            replica_command(config, i, work / "state", history), stdout=log, stderr=log
        )

    tools = "nsupdate and dig" if TOOLS else "dnspython (nsupdate/dig not installed)"
    print(f"vrref demo: 3 replicas on 127.0.0.1 ports {base}-{base + 2}, clients: {tools}")
    try:
        for i in range(3):
            start(i)
        ports = [base + i for i in range(3)]
        if not all(wait_until(lambda p=p: serial(p) > 0) for p in ports):  # type: ignore[misc]
            print("the replicas did not come up; logs in", work)
            return 1
        print(f"\n== the zone is up: serial {serial(ports[0])} on every replica")
        for n, port in enumerate((ports[1], ports[2], ports[0])):
            line = f"add demo{n}.example.com. 300 A 192.0.2.{100 + n}"
            print(f"   update via replica {port - base}: {line} -> {update(port, line)}")
        wait_until(lambda: len({serial(p) for p in ports}) == 1)
        for port in ports:
            demo2 = lookup(port, "demo2.example.com.", "A")
            print(f"   replica {port - base}: serial {serial(port)}, demo2 = {demo2}")

        print("\n== SIGKILL the primary (replica 0, view 0)")
        processes.pop(0).send_signal(signal.SIGKILL)
        killed = time.monotonic()
        line = "add after-kill.example.com. 300 A 192.0.2.200"
        rcode = update(ports[1], line)
        took = time.monotonic() - killed
        print(f"   update via replica 1: {line} -> {rcode}, {took:.2f}s after the kill")
        for n in range(2):
            line = f"add later{n}.example.com. 300 A 192.0.2.{210 + n}"
            print(f"   update via replica {2 - n}: {line} -> {update(ports[2 - n], line)}")
        latest = serial(ports[1])
        print(f"   replicas 1 and 2 (the new view) are at serial {latest}")

        print(
            "\n== restart replica 0: it resumes from its write-ahead log and checkpoint, then"
            " catches up from the others (spec/vr.md R21)"
        )
        start(0)
        recovered = wait_until(lambda: serial(ports[0]) == latest)
        verdict = "recovered" if recovered else "NOT recovered"
        print(f"   replica 0: serial {serial(ports[0])} ({verdict})")
        for port in ports:
            later1 = lookup(port, "later1.example.com.", "A")
            print(f"   replica {port - base}: later1 = {later1}")
    finally:
        for process in processes.values():
            process.send_signal(signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()

    print(f"\n== the history: {history}/replica-*.jsonl; vrref check {history}")
    check = subprocess.run(
        [sys.executable, "-m", "vrref.cli", "check", str(history)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    for text in check.stdout.splitlines():
        print(f"   {text}")
    print(f"\ndone in {time.monotonic() - started:.1f}s")
    return 0 if recovered and check.returncode == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
