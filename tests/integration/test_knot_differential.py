"""Differential test: the same dig and nsupdate steps against Knot and against vrref.

Knot DNS (knotd) is started on 127.0.0.1 with a configuration written here from scratch: it
serves a copy of examples/example.com.zone with the same TSIG key allowed to update and to
transfer, keeps its journal in a temporary directory and never writes the zone file back.
The vrref frontend serves the same zone over a fake backend that applies each operation at
once, as a committed VR log would. Every step runs the real tool against both servers, in
order (updates change what later queries see), and requires the same rcode, the same AA and
TC flags and the same answer, authority and additional sections, compared as sets of RRs
(case-folded: both servers spell an owner in the case of the question, by compression).

A few steps differ on purpose; each says so in ``differs`` and asserts both sides exactly,
so a change on either side is noticed:

- Additional-section processing: Knot adds the addresses of MX and NS targets; vrref adds
  glue to referrals only (``vrref.dns.zone`` keeps answers to what correctness needs).
- Unsigned UPDATE: Knot answers NOTAUTH, vrref REFUSED (BIND's answer to an update that the
  policy refuses; the brief asks for it, and RFC 2136 §3.3 lets the server choose).
- qtype ANY: Knot gives one RRset (RFC 8482 minimal ANY); vrref every RRset of the name.
- Meta qtypes other than ANY (MAILB): Knot answers NODATA, vrref NOTIMP.
- NOTIFY: Knot (not a secondary) answers NOTAUTH, vrref NOTIMP for every opcode it lacks.
- AXFR: the same records, but not in the same order (compared as sets), and Knot puts every
  record of the answer in one message while vrref packs ~60 KB a message (one here).

The SOA serial is never ignored: both servers increment it by one on every change.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest

from tests.runtime.test_dnsfront import (
    KEY_NAME,
    WRONG_KEYRING,
    ZONE_FILE,
    Dig,
    FakeBackend,
    dig,
    example_zone,
    key_argument,
    key_secret_b64,
    make_frontend,
    nsupdate,
    run_tool,
)
from vrref.runtime.frontend import DnsFrontend

pytestmark = pytest.mark.skipif(
    shutil.which("knotd") is None
    or shutil.which("dig") is None
    or shutil.which("nsupdate") is None,
    reason="knotd, dig and nsupdate are needed",
)

KNOT_START_SECONDS_MAX = 15.0


# ---------------------------------------------------------------------------- Knot


def _free_port(rng: random.Random) -> int:
    """A port in 20000-60000 free for both UDP and TCP on 127.0.0.1 right now."""
    for _ in range(100):
        port = rng.randrange(20000, 60000)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
            try:
                udp.bind(("127.0.0.1", port))
                tcp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port found")


def knot_config(directory: Path, port: int) -> str:
    return f"""\
server:
    listen: 127.0.0.1@{port}
    rundir: {directory}/run
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1

database:
    storage: {directory}/db

log:
  - target: stderr
    any: info

key:
  - id: {KEY_NAME.to_text()}
    algorithm: hmac-sha256
    secret: {key_secret_b64()}

acl:
  - id: signed
    key: {KEY_NAME.to_text()}
    action: [update, transfer]

zone:
  - domain: example.com.
    file: {directory}/example.com.zone
    journal-content: changes
    zonefile-sync: -1
    zonefile-load: whole
    semantic-checks: off
    serial-policy: increment
    acl: signed
"""


def _answers(port: int) -> bool:
    try:
        reply = dns.query.udp(
            dns.message.make_query("example.com.", "SOA"), "127.0.0.1", port=port, timeout=0.5
        )
    except Exception:  # not listening yet
        return False
    return reply.rcode() == dns.rcode.NOERROR and bool(reply.answer)


@contextlib.contextmanager
def running_knot(directory: Path) -> Iterator[int]:
    """knotd serving a copy of the example zone; yields its port; always stops it."""
    (directory / "run").mkdir()
    (directory / "db").mkdir()
    shutil.copy(ZONE_FILE, directory / "example.com.zone")
    rng = random.Random()
    for _ in range(5):
        port = _free_port(rng)
        config = directory / "knot.conf"
        config.write_text(knot_config(directory, port))
        log = (directory / "knotd.log").open("w")
        process = subprocess.Popen(
            ["knotd", "-c", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + KNOT_START_SECONDS_MAX
            while time.monotonic() < deadline and process.poll() is None:
                if _answers(port):
                    break
                time.sleep(0.1)
            if process.poll() is None and _answers(port):
                yield port
                return
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()
    raise RuntimeError(f"knotd did not start: {(directory / 'knotd.log').read_text()[-2000:]}")


@dataclass
class Servers:
    knot: int
    vrref: int
    front: DnsFrontend
    backend: FakeBackend


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    front, backend = make_frontend(FakeBackend(example_zone()))
    front.start()
    try:
        with running_knot(tmp_path_factory.mktemp("knot")) as knot_port:
            yield Servers(knot=knot_port, vrref=front.port, front=front, backend=backend)
    finally:
        front.stop()


# ---------------------------------------------------------------------------- steps


@dataclass(frozen=True)
class Step:
    """One tool invocation. ``dig``: arguments after the server; ``update``: nsupdate input
    (server line and send added); ``key``: "good", "wrong" or "none"; ``differs``: why the
    two servers answer differently (then ``knot_status``/``vrref_status`` say how)."""

    name: str
    dig: tuple[str, ...] = ()
    update: str = ""
    key: str = "good"
    tcp: bool = False
    differs: str = ""
    knot_status: str = ""
    vrref_status: str = ""


STEPS: list[Step] = [
    Step("a", dig=("www.example.com", "A")),
    Step("aaaa", dig=("www.example.com", "AAAA")),
    Step("mx", dig=("example.com", "MX"), differs="additional"),
    Step("ns", dig=("example.com", "NS"), differs="additional"),
    Step("soa", dig=("example.com", "SOA")),
    Step("txt-wildcard", dig=("anything.wild.example.com", "TXT")),
    Step("a-wildcard-deep", dig=("a.b.wild.example.com", "A")),
    Step("wildcard-nodata", dig=("x.wild.example.com", "MX")),
    Step("cname-chain", dig=("web.example.com", "A")),
    Step("cname-itself", dig=("alias.example.com", "CNAME")),
    Step("cname-to-nodata", dig=("web.example.com", "MX")),
    Step("nxdomain", dig=("nope.example.com", "A")),
    Step("nodata", dig=("www.example.com", "MX")),
    Step("ent", dig=("deep.ent.example.com", "A")),
    Step("below-ent", dig=("host.deep.ent.example.com", "A")),
    Step("referral", dig=("www.sub.example.com", "A")),
    Step("referral-at-cut", dig=("sub.example.com", "NS")),
    Step("ds-at-cut", dig=("sub.example.com", "DS")),
    Step("refused", dig=("example.org", "A")),
    Step("case", dig=("WwW.ExAmPlE.CoM", "A")),
    Step("truncated", dig=("big.example.com", "TXT", "+noedns", "+ignore")),
    Step("truncated-edns", dig=("big.example.com", "TXT", "+bufsize=1232", "+ignore")),
    Step("big-tcp", dig=("big.example.com", "TXT", "+tcp")),
    Step("badvers", dig=("www.example.com", "A", "+edns=1", "+noednsnegotiation")),
    Step("any", dig=("www.example.com", "ANY"), differs="minimal ANY"),
    Step("mailb", dig=("www.example.com", "MAILB"), differs="meta qtype"),
    Step("notify", dig=("example.com", "SOA", "+opcode=notify"), differs="notify"),
    Step("axfr", dig=("example.com", "AXFR"), differs="order"),
    Step("update-add", update="zone example.com\nupdate add n1.example.com 60 A 10.0.0.1"),
    Step("after-add", dig=("n1.example.com", "A")),
    Step("serial-after-add", dig=("example.com", "SOA")),
    Step(
        "update-cas",
        update="zone example.com\nprereq yxrrset www.example.com A 192.0.2.10\n"
        "update delete www.example.com A\nupdate add www.example.com 300 A 192.0.2.11",
    ),
    Step("after-cas", dig=("www.example.com", "A")),
    Step(
        "update-cas-stale",
        update="zone example.com\nprereq yxrrset www.example.com A 192.0.2.10\n"
        "update delete www.example.com A\nupdate add www.example.com 300 A 192.0.2.12",
    ),
    Step("after-cas-stale", dig=("www.example.com", "A")),
    Step(
        "update-yxdomain",
        update="zone example.com\nprereq nxdomain www.example.com\n"
        "update add www.example.com 300 A 192.0.2.13",
    ),
    Step(
        "update-nxdomain",
        update="zone example.com\nprereq yxdomain nope.example.com\n"
        "update add nope.example.com 300 A 192.0.2.14",
    ),
    Step(
        "update-yxrrset",
        update="zone example.com\nprereq nxrrset www.example.com A\n"
        "update add www.example.com 300 A 192.0.2.15",
    ),
    Step(
        "update-nxrrset-type",
        update="zone example.com\nprereq yxrrset www.example.com MX\n"
        "update add www.example.com 300 A 192.0.2.16",
    ),
    Step("after-failures", dig=("www.example.com", "A")),
    Step(
        "update-notzone",
        update="zone example.com\nupdate add x.example.org 60 A 10.0.0.2",
    ),
    Step(
        "update-wrong-key",
        update="zone example.com\nupdate add n2.example.com 60 A 10.0.0.2",
        key="wrong",
    ),
    Step(
        "update-unsigned",
        update="zone example.com\nupdate add n2.example.com 60 A 10.0.0.2",
        key="none",
        differs="unsigned update",
        knot_status="NOTAUTH",
        vrref_status="REFUSED",
    ),
    Step("after-refusals", dig=("n2.example.com", "A")),
    Step("update-no-zone-line", update='update add n3.example.com 60 TXT "no zone line"'),
    Step("after-no-zone-line", dig=("n3.example.com", "TXT")),
    Step(
        "update-tcp",
        update="zone example.com\nupdate add n1.example.com 60 A 10.0.0.5",
        tcp=True,
    ),
    Step("after-tcp", dig=("n1.example.com", "A")),
    Step(
        "update-delete-apex-ns-and-soa",
        update="zone example.com\nupdate delete example.com NS\nupdate delete example.com SOA",
    ),
    Step("apex-ns-kept", dig=("example.com", "NS"), differs="additional"),
    Step(
        "update-delete-name",
        update="zone example.com\nprereq yxdomain n1.example.com\nupdate delete n1.example.com",
    ),
    Step("after-delete-name", dig=("n1.example.com", "A")),
    Step(
        "update-cname-over-data-ignored",
        update="zone example.com\nupdate add mail.example.com 60 CNAME www.example.com.",
    ),
    Step("after-cname-ignored", dig=("mail.example.com", "A")),
    Step(
        "update-new-delegation",
        update="zone example.com\nupdate add deleg.example.com 60 NS ns.deleg.example.com.\n"
        "update add ns.deleg.example.com 60 A 192.0.2.77",
    ),
    Step("after-new-delegation", dig=("host.deleg.example.com", "A")),
    Step("serial-at-end", dig=("example.com", "SOA")),
    Step("axfr-at-end", dig=("example.com", "AXFR"), differs="order"),
]


def _key(step: Step) -> str | None:
    return {"good": key_argument(), "wrong": key_argument(WRONG_KEYRING), "none": None}[step.key]


def _fold(lines: frozenset[str]) -> set[str]:
    return {line.lower() for line in lines}


def _axfr_records(port: int) -> list[str]:
    done = run_tool(
        ["dig", "@127.0.0.1", "-p", str(port), "-y", key_argument(), "example.com", "AXFR"]
    )
    assert "Transfer failed" not in done.stdout and "failure" not in done.stdout, done.stdout
    lines = [" ".join(line.split()).lower() for line in done.stdout.splitlines()]
    return [line for line in lines if line and not line.startswith(";") and " tsig " not in line]


def test_there_are_enough_steps() -> None:
    assert len(STEPS) >= 30
    assert len({step.name for step in STEPS}) == len(STEPS)


@pytest.mark.parametrize("step", STEPS, ids=[step.name for step in STEPS])
def test_step(servers: Servers, step: Step) -> None:
    if step.update:
        knot_code, knot_out = nsupdate(servers.knot, step.update, key=_key(step), tcp=step.tcp)
        ours_code, ours_out = nsupdate(servers.vrref, step.update, key=_key(step), tcp=step.tcp)
        if step.differs:
            assert knot_code == ours_code == 2
            assert f"update failed: {step.knot_status}" in knot_out, knot_out
            assert f"update failed: {step.vrref_status}" in ours_out, ours_out
            return
        assert knot_code == ours_code, (knot_out, ours_out)
        knot_failure = [line for line in knot_out.splitlines() if "update failed" in line]
        ours_failure = [line for line in ours_out.splitlines() if "update failed" in line]
        assert knot_failure == ours_failure, (knot_out, ours_out)
        return
    if step.differs == "order":
        knot_records, ours_records = _axfr_records(servers.knot), _axfr_records(servers.vrref)
        assert knot_records[0] == knot_records[-1] == ours_records[0] == ours_records[-1]
        assert sorted(knot_records) == sorted(ours_records)
        return
    knot, ours = dig(servers.knot, *step.dig), dig(servers.vrref, *step.dig)
    if step.differs == "meta qtype":
        assert (knot.status, ours.status) == ("NOERROR", "NOTIMP"), (knot.output, ours.output)
        return
    if step.differs == "notify":
        assert (knot.status, ours.status) == ("NOTAUTH", "NOTIMP"), (knot.output, ours.output)
        return
    assert knot.status == ours.status, (knot.output, ours.output)
    assert knot.flags == ours.flags, (knot.output, ours.output)
    if step.differs == "minimal ANY":
        assert len(_fold(knot.answer)) == 1 and _fold(knot.answer) < _fold(ours.answer)
        return
    assert _fold(knot.answer) == _fold(ours.answer), (knot.output, ours.output)
    assert _fold(knot.authority) == _fold(ours.authority), (knot.output, ours.output)
    if step.differs == "additional":
        assert _fold(ours.additional) == set()
        assert _fold(knot.additional) > set(), knot.output
    else:
        assert _fold(knot.additional) == _fold(ours.additional), (knot.output, ours.output)
    _check_not_vacuous(step, ours)


def _check_not_vacuous(step: Step, ours: Dig) -> None:
    """The steps that are meant to have answers have them (a silent server would agree)."""
    assert ours.status, ours.output
    if step.name in ("a", "cname-chain", "after-add", "after-cas", "big-tcp", "after-tcp"):
        assert ours.answer, ours.output


def test_zones_agree_at_the_end(servers: Servers) -> None:
    """After all the steps, both servers hold the same zone (the final AXFRs agree too)."""
    ours = sorted(
        f"{name} {ttl} in {rdtype} {rdata}".lower()
        for name, rdtype, ttl, rdata in servers.backend.zone().records()
    )
    knot = sorted(_axfr_records(servers.knot)[:-1])
    assert [" ".join(line.split()) for line in ours] == knot
