"""Fuzzing the DNS frontend: whatever arrives, no crash, no hang, a lawful reply or silence.

Over 100,000 packets go through ``DnsFrontend.handle_sync`` (no sockets, for speed) and a few
thousand more through the real UDP server. They are pure random bytes, or valid requests
(queries of every kind, with and without EDNS, signed and unsigned; zone transfers; updates
signed with our key, with a wrong key and unsigned; other opcodes) mutated bit-wise and
structurally: bit flips, byte overwrites, truncation, extension, insertion, deletion,
duplication of a slice, header counts set to odd values, compression pointers planted,
splices of two requests, and stacks of these.

What is allowed, precisely (``check_reply``):

- Silence if and only if the packet is shorter than a header or has QR set (a response).
- Otherwise exactly one reply (several only for a transfer over TCP), each parsing as a DNS
  message with QR set, the request's ID and the request's opcode.
- rcode FORMERR, NOTIMP, REFUSED or NOTAUTH: always allowed.
- BADVERS: only when the request parses and carries EDNS version >= 1.
- NOERROR or NXDOMAIN to a QUERY: only when the packet still parses as a query (with a valid
  TSIG or none) of one question, and the answer is right: rcode, AA and the three sections
  equal what ``Zone.query`` says for that question (compared as sets of records; sections of
  a truncated reply need only be subsets). This also checks the reply cache, which answers
  many mutated-but-equivalent packets by patching an ID into a stored reply. A transfer is
  allowed only over TCP to a request that verifies with our key.
- Any rcode to an UPDATE that became an operation (``submit`` was called): only when the
  packet verifies with our key. TSIG covers every octet but the ID, so such a packet is a
  seed update with another ID; every signed seed update fails its prerequisites, and so must
  change nothing.
- SERVFAIL never (it means an internal error here: the backend never times out).

Then the zone's digest must equal the initial one: the unsigned and wrongly signed seed
updates would change the zone if the frontend let any variant of them through.
"""

from __future__ import annotations

import os
import random
import socket
import struct
import time
from collections import Counter
from collections.abc import Callable

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdatatype
import dns.rrset
import dns.update

from tests.runtime.test_dnsfront import (
    KEYRING,
    UNKNOWN_KEYRING,
    WRONG_KEYRING,
    FakeBackend,
    example_zone,
    make_frontend,
)
from vrref.runtime.frontend import DnsFrontend

SEED = int(os.environ.get("VRREF_FUZZ_SEED", "20261124"))
HANDLE_PACKETS = int(os.environ.get("VRREF_FUZZ_PACKETS", "100000"))
SOCKET_PACKETS = 3000
HANDLE_SECONDS_MAX = 1.0  # one packet taking longer than this is a hang
ALWAYS_ALLOWED = frozenset(
    {dns.rcode.FORMERR, dns.rcode.NOTIMP, dns.rcode.REFUSED, dns.rcode.NOTAUTH}
)


# ---------------------------------------------------------------------------- seeds


def seed_requests() -> list[bytes]:
    """Valid requests of every kind the frontend distinguishes."""
    seeds: list[bytes] = []
    names = [
        "example.com.",
        "www.example.com.",
        "WWW.Example.COM.",
        "web.example.com.",
        "x.wild.example.com.",
        "deep.ent.example.com.",
        "a.sub.example.com.",
        "big.example.com.",
        "nope.example.com.",
        "example.org.",
        ".",
    ]
    types = ["A", "AAAA", "MX", "TXT", "NS", "SOA", "ANY", "CNAME", "DS", "TYPE65000"]
    for name in names:
        for rdtype in types:
            seeds.append(dns.message.make_query(name, rdtype).to_wire())
        seeds.append(dns.message.make_query(name, "A", use_edns=0, payload=4096).to_wire())
        seeds.append(dns.message.make_query(name, "TXT", want_dnssec=True).to_wire())
    seeds.append(dns.message.make_query("www.example.com.", "A", use_edns=1).to_wire())
    seeds.append(dns.message.make_query("www.example.com.", "A", rdclass="CH").to_wire())
    for rdtype in ("A", "AXFR", "IXFR"):
        signed = dns.message.make_query("example.com.", rdtype)
        signed.use_tsig(KEYRING)
        seeds.append(signed.to_wire())
    seeds.append(dns.message.make_query("example.com.", "AXFR").to_wire())
    for opcode in (dns.opcode.NOTIFY, dns.opcode.IQUERY, dns.opcode.STATUS, 7):
        other = dns.message.make_query("example.com.", "SOA")
        other.set_opcode(dns.opcode.Opcode.make(opcode))
        seeds.append(other.to_wire())

    def update(keyring: object, build: Callable[[dns.update.UpdateMessage], object]) -> bytes:
        message = dns.update.UpdateMessage("example.com.")
        build(message)
        if keyring is not None:
            message.use_tsig(keyring)
        return message.to_wire()

    def changes(u: dns.update.UpdateMessage) -> None:
        u.add("fuzz", 60, "A", "10.9.9.9")
        u.delete("www", "A")
        u.replace("mail", 60, "MX", "5 www.example.com.")

    def failing(u: dns.update.UpdateMessage) -> None:
        u.present("nope", "A")  # fails NXRRSET: the update must change nothing
        changes(u)

    for keyring in (None, WRONG_KEYRING, UNKNOWN_KEYRING):
        seeds.append(update(keyring, changes))  # would change the zone if let through
    seeds.append(update(KEYRING, failing))

    def name_in_use(u: dns.update.UpdateMessage) -> None:
        u.absent("www")  # fails YXDOMAIN
        u.delete("www")

    def stale_value(u: dns.update.UpdateMessage) -> None:
        u.present("www", "A", "1.2.3.4")  # fails NXRRSET
        u.delete("@")

    seeds.append(update(KEYRING, name_in_use))
    seeds.append(update(KEYRING, stale_value))
    return seeds


# ---------------------------------------------------------------------------- mutations


def mutate(rng: random.Random, wire: bytes, seeds: list[bytes]) -> bytes:
    data = bytearray(wire)
    kind = rng.randrange(11)
    if kind == 0 and data:  # flip bits
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(data) * 8)
            data[at // 8] ^= 1 << (at % 8)
    elif kind == 1 and data:  # overwrite bytes
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif kind == 2:  # truncate
        del data[rng.randrange(len(data) + 1) :]
    elif kind == 3:  # extend
        data.extend(rng.randbytes(rng.randint(1, 40)))
    elif kind == 4:  # insert
        at = rng.randrange(len(data) + 1)
        data[at:at] = rng.randbytes(rng.randint(1, 8))
    elif kind == 5 and data:  # delete a slice
        at = rng.randrange(len(data))
        del data[at : at + rng.randint(1, 8)]
    elif kind == 6 and data:  # duplicate a slice
        at = rng.randrange(len(data))
        piece = data[at : at + rng.randint(1, 16)]
        to = rng.randrange(len(data) + 1)
        data[to:to] = piece
    elif kind == 7 and len(data) >= 12:  # odd section counts
        field = 4 + 2 * rng.randrange(4)
        data[field : field + 2] = struct.pack("!H", rng.choice([0, 1, 2, 3, 255, 65535]))
    elif kind == 8 and len(data) > 12:  # plant a compression pointer (maybe a loop)
        at = rng.randrange(12, len(data))
        target = rng.choice([12, at, rng.randrange(len(data) + 4)])
        data[at : at + 2] = struct.pack("!H", 0xC000 | (target & 0x3FFF))
    elif kind == 9:  # splice with another request
        other = rng.choice(seeds)
        data = data[: rng.randrange(len(data) + 1)] + other[rng.randrange(len(other) + 1) :]
    else:  # flags and opcode
        if len(data) >= 4:
            data[2] = rng.randrange(256) & 0x7F if rng.random() < 0.9 else rng.randrange(256)
            data[3] = rng.randrange(256)
    return bytes(data)


def next_packet(rng: random.Random, seeds: list[bytes]) -> bytes:
    roll = rng.random()
    if roll < 0.15:
        return rng.randbytes(rng.choice([rng.randrange(14), rng.randrange(600)]))
    wire = rng.choice(seeds)
    if roll < 0.20:
        return wire  # the seeds themselves, now and then with new IDs
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        wire = mutate(rng, wire, seeds)
    if roll < 0.30 and len(wire) >= 2:
        wire = rng.randbytes(2) + wire[2:]  # a new ID
    return wire


# ---------------------------------------------------------------------------- the oracle


def _records(section: list[dns.rrset.RRset]) -> set[tuple[str, int, int, bytes]]:
    """Records in canonical form: compression may spell names in the question's case."""
    return {
        (rrset.name.canonicalize().to_text(), rrset.rdtype, rrset.ttl, rdata.to_digestable())
        for rrset in section
        for rdata in rrset
    }


def _parses(wire: bytes, keyring: object) -> dns.message.Message | None:
    try:
        return dns.message.from_wire(wire, keyring=keyring)
    except Exception:  # anything dnspython rejects
        return None


def check_reply(
    front: DnsFrontend,
    backend: FakeBackend,
    wire: bytes,
    replies: list[bytes],
    tcp: bool,
    submitted: bool,
    tally: Counter[str],
) -> None:
    """Fails the test unless ``replies`` is a lawful answer to ``wire`` (module docstring)."""
    silent = len(wire) < 12 or bool(wire[2] & 0x80)
    assert (replies == []) == silent, f"silence iff short or a response: {wire.hex()}"
    if silent:
        tally["silence"] += 1
        return
    assert len(replies) == 1 or tcp, f"several replies over UDP to {wire.hex()}"
    for reply_wire in replies:
        reply = dns.message.from_wire(reply_wire, keyring=False)
        assert reply.flags & dns.flags.QR
        assert reply.id == struct.unpack_from("!H", wire)[0]
        assert reply.opcode() == (wire[2] >> 3) & 0xF
    reply = dns.message.from_wire(replies[0], keyring=False)
    rcode = reply.rcode()
    tally[dns.rcode.to_text(rcode)] += 1
    if submitted:
        verified = _parses(wire, KEYRING)
        assert verified is not None and verified.had_tsig, f"unverified op: {wire.hex()}"
        assert verified.opcode() == dns.opcode.UPDATE
        assert rcode != dns.rcode.NOERROR, "every signed seed update fails a prerequisite"
        tally["verified update"] += 1
        return
    if rcode in ALWAYS_ALLOWED:
        return
    if rcode == dns.rcode.BADVERS:
        request = _parses(wire, False)
        assert request is not None and request.edns > 0, f"BADVERS to {wire.hex()}"
        return
    assert rcode in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN), f"{rcode!r} to {wire.hex()}"
    request = _parses(wire, KEYRING)
    assert request is not None, f"an answer to a packet that does not parse: {wire.hex()}"
    assert request.opcode() == dns.opcode.QUERY and len(request.question) == 1
    question = request.question[0]
    if question.rdtype in (dns.rdatatype.AXFR, dns.rdatatype.IXFR):
        assert request.had_tsig and (tcp or question.rdtype == dns.rdatatype.IXFR)
        tally["transfer"] += 1
        return
    expected = backend.zone().query(question.name, question.rdtype)
    assert rcode == expected.rcode_value
    assert bool(reply.flags & dns.flags.AA) == expected.aa
    for got, want in (
        (reply.answer, expected.rrsets("answer")),
        (reply.authority, expected.rrsets("authority")),
        (reply.additional, expected.rrsets("additional")),
    ):
        if reply.flags & dns.flags.TC:
            assert _records(got) <= _records(want)
        else:
            assert _records(got) == _records(want), f"wrong answer to {wire.hex()}"
    tally["answer"] += 1


# ---------------------------------------------------------------------------- the tests


def test_random_and_mutated_packets_through_handle() -> None:
    rng = random.Random(SEED)
    front, backend = make_frontend(FakeBackend(example_zone()))
    digest = backend.zone().digest()
    seeds = seed_requests()
    tally: Counter[str] = Counter()
    slowest_s = 0.0
    started = time.monotonic()
    for index in range(HANDLE_PACKETS):
        wire = next_packet(rng, seeds)
        tcp = rng.random() < 0.3
        submitted_before = len(backend.submitted)
        began = time.perf_counter()
        try:
            replies = front.handle_sync(wire, tcp=tcp)
        except Exception as error:
            raise AssertionError(f"packet {index} (seed {SEED}) raised: {wire.hex()}") from error
        elapsed_s = time.perf_counter() - began
        slowest_s = max(slowest_s, elapsed_s)
        assert elapsed_s < HANDLE_SECONDS_MAX, f"packet {index} took {elapsed_s:.3f} s"
        submitted = len(backend.submitted) > submitted_before
        check_reply(front, backend, wire, replies, tcp, submitted, tally)
    assert backend.zone().digest() == digest
    assert front.counters["internal_error"] == 0
    print(
        f"{HANDLE_PACKETS} packets in {time.monotonic() - started:.1f} s, slowest"
        f" {slowest_s * 1000:.1f} ms: {dict(tally.most_common())}"
    )
    # Not vacuous: every kind of outcome the oracle distinguishes was met.
    for outcome in ("silence", "FORMERR", "NOTIMP", "REFUSED", "NOTAUTH", "BADVERS", "answer"):
        assert tally[outcome] > 0, outcome
    assert tally["verified update"] > 0 and tally["transfer"] > 0


def test_random_and_mutated_packets_through_the_udp_server() -> None:
    rng = random.Random(SEED + 1)
    backend = FakeBackend(example_zone())
    front, _ = make_frontend(backend)
    digest = backend.zone().digest()
    seeds = seed_requests()
    tally: Counter[str] = Counter()
    front.start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(3)
            server = ("127.0.0.1", front.port)
            for _ in range(SOCKET_PACKETS):
                wire = next_packet(rng, seeds)
                submitted_before = len(backend.submitted)
                sock.sendto(wire, server)
                silent = len(wire) < 12 or bool(wire[2] & 0x80)
                replies = [] if silent else [sock.recv(65535)]
                submitted = len(backend.submitted) > submitted_before
                check_reply(front, backend, wire, replies, False, submitted, tally)
            # Silence really was silence, and the server still answers.
            probe = dns.message.make_query("www.example.com.", "A")
            sock.sendto(probe.to_wire(), server)
            reply = dns.message.from_wire(sock.recv(65535))
            assert reply.id == probe.id and reply.rcode() == dns.rcode.NOERROR
    finally:
        front.stop()
    assert backend.zone().digest() == digest
    assert tally["silence"] > 0 and tally["FORMERR"] > 0 and tally["answer"] > 0
