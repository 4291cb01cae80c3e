"""``vrref cluster`` and ``vrref replica``: run replicas as processes.

``vrref replica --config cluster.toml --id I`` runs one replica of a cluster whose members
may sit on different hosts. ``vrref cluster`` is the local convenience: it writes a
cluster.toml for N replicas on 127.0.0.1 (DNS on base-port + i, peers on base-port + 100 +
i), starts one ``vrref replica`` process per replica, prints the ports and ready-to-paste
dig and nsupdate lines, and stops them all on Ctrl-C.

Each process is a separate failure domain: SIGKILL one and restart it with the same
command, and it resumes from its write-ahead log and checkpoint in the state directory; so
does a whole cluster started again on the same ``--state-dir``. With ``--diskless``
(VRR's model) nothing is on disk and a restarted replica recovers from its peers (§4.3).
"""

from __future__ import annotations

import argparse
import base64
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from vrref import EXAMPLES_DIR
from vrref.core.replica import Config
from vrref.runtime.node import ClusterConfig, ReplicaAddress, run_replica

EXAMPLES = EXAMPLES_DIR
PEER_PORT_OFFSET = 100


def replica_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="vrref replica", description="run one replica")
    parser.add_argument("--config", type=Path, required=True, help="cluster.toml")
    parser.add_argument("--id", type=int, required=True, help="this replica's number (0-based)")
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(".vrref-state"),
        help="the replica's write-ahead log and checkpoints (replica-<id>/ in it)",
    )
    parser.add_argument(
        "--diskless",
        action="store_true",
        help="keep nothing on disk (VRR's model): a restart recovers from the peers",
    )
    parser.add_argument(
        "--history",
        type=Path,
        default=None,
        help="append this replica's history (JSON Lines) to this file",
    )
    args = parser.parse_args(argv)
    try:
        return run_replica(
            args.config, args.id, args.state_dir, args.history, diskless=args.diskless
        )
    except ValueError as error:
        print(f"vrref replica: {error}", file=sys.stderr)
        return 2


def write_cluster_config(
    directory: Path,
    *,
    replicas: int,
    base_port: int,
    zone: Path,
    origin: str,
    key_file: Path,
    read_mode: str = "local",
    tick_ms: int = 50,
    host: str = "127.0.0.1",
    protocol: Config | None = None,
) -> Path:
    """Writes cluster.toml for a local cluster and returns its path (``protocol``: the
    core's settings, by default ``Config``'s for this many replicas)."""
    config = ClusterConfig(
        replicas=tuple(
            ReplicaAddress(
                host=host, peer_port=base_port + PEER_PORT_OFFSET + i, dns_port=base_port + i
            )
            for i in range(replicas)
        ),
        key=os.urandom(32),
        zone_file=zone.resolve(),
        origin=origin,
        tsig_key_file=key_file.resolve(),
        read_mode=read_mode,
        tick_ms=tick_ms,
        protocol=protocol or Config(replica_count=replicas),
    )
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "cluster.toml"
    path.write_text(config.dump())
    return path


def replica_command(
    config: Path, i: int, state_dir: Path, history_dir: Path | None, *, diskless: bool = False
) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "vrref.cli",
        "replica",
        "--config",
        str(config),
        "--id",
        str(i),
        "--state-dir",
        str(state_dir),
    ]
    if history_dir is not None:
        command += ["--history", str(history_dir / f"replica-{i}.jsonl")]
    if diskless:
        command.append("--diskless")
    return command


def key_line(key_file: Path) -> str:
    """The -y argument for dig and nsupdate from a BIND key file."""
    from vrref.dns.keys import load_keyring

    keyring = load_keyring(key_file)
    name, key = next(iter(keyring.items()))
    secret = key.secret if isinstance(key.secret, str) else base64.b64encode(key.secret).decode()
    return f"hmac-sha256:{name.to_text().rstrip('.')}:{secret}"


def cluster_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="vrref cluster", description="start a local cluster, one process a replica"
    )
    parser.add_argument("--replicas", type=int, default=3, help="2f+1 replicas (default 3)")
    parser.add_argument("--zone", type=Path, default=EXAMPLES / "example.com.zone")
    parser.add_argument("--origin", default="example.com.")
    parser.add_argument(
        "--key", type=Path, default=EXAMPLES / "update.key", help="BIND-format TSIG key for updates"
    )
    parser.add_argument("--base-port", type=int, default=5300)
    parser.add_argument("--history-dir", type=Path, default=None)
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="the replicas' logs and checkpoints; start again on it to resume"
        " (default: a fresh directory under /tmp)",
    )
    parser.add_argument(
        "--diskless", action="store_true", help="keep nothing on disk (VRR's model)"
    )
    parser.add_argument("--read-mode", choices=("local", "linearizable"), default="local")
    args = parser.parse_args(argv)
    if args.replicas < 1 or args.replicas % 2 == 0:
        parser.error("--replicas must be odd (2f+1)")
    if not 1024 <= args.base_port <= 65535 - PEER_PORT_OFFSET - args.replicas:
        parser.error("--base-port out of range")
    state_dir = args.state_dir or Path(f"/tmp/vrref-{os.getpid()}")
    if args.history_dir is not None:
        args.history_dir.mkdir(parents=True, exist_ok=True)
    config = write_cluster_config(
        state_dir,
        replicas=args.replicas,
        base_port=args.base_port,
        zone=args.zone,
        origin=args.origin,
        key_file=args.key,
        read_mode=args.read_mode,
    )
    processes = [
        subprocess.Popen(
            replica_command(config, i, state_dir, args.history_dir, diskless=args.diskless)
        )
        for i in range(args.replicas)
    ]
    y = key_line(args.key)
    print(f"cluster of {args.replicas} replicas; config {config}")
    for i in range(args.replicas):
        print(f"  replica {i}: DNS 127.0.0.1:{args.base_port + i} (pid {processes[i].pid})")
    port = args.base_port
    print("\ntry:")
    print(f"  dig @127.0.0.1 -p {port} www.{args.origin} A +norec")
    print(
        f"  printf 'server 127.0.0.1 {port + 1}\\nzone {args.origin}\\n"
        f"update add new.{args.origin} 300 A 192.0.2.99\\nsend\\n' | nsupdate -y {y}"
    )
    print(f"  dig @127.0.0.1 -p {port + 2} new.{args.origin} A +norec")
    if args.history_dir is not None:
        print(f"\nhistory: {args.history_dir}/replica-*.jsonl")
    print("Ctrl-C stops the cluster.", flush=True)
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        del signum, frame
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while not stopping and all(p.poll() is None for p in processes):
        time.sleep(0.2)
    for p in processes:
        if p.poll() is None:
            p.terminate()
    for p in processes:
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
    failed = [i for i, p in enumerate(processes) if p.returncode not in (0, -signal.SIGTERM)]
    if failed and not stopping:
        print(f"replica(s) {failed} exited unexpectedly", file=sys.stderr)
        return 1
    return 0
