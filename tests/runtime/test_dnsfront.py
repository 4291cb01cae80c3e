"""Tests of vrref.runtime.frontend: the DNS wire protocol of a replica, without and with sockets.

The unit tests drive ``DnsFrontend.handle`` / ``handle_sync`` with packets built by dnspython
(or by hand, when the point is that dnspython would not build them) against a fake backend
that applies operations to a ``vrref.dns.zone.Zone`` directly, as a committed VR log would. The
integration tests at the end start the UDP and TCP servers on 127.0.0.1 and talk to them with
the real tools (dig, kdig, nsupdate), skipping only when a binary is missing.

``FakeBackend`` is shared with tests/integration/test_dns_fuzz.py and
tests/integration/test_knot_differential.py.
"""

from __future__ import annotations

import base64
import re
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.tsig
import dns.update
import pytest

from vrref.dns import ops
from vrref.dns.canonical import Record
from vrref.dns.keys import load_keyring
from vrref.dns.zone import Zone
from vrref.runtime import frontend as dnsfront
from vrref.runtime.frontend import (
    UDP_PAYLOAD_OURS,
    DnsFrontend,
    Pending,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ZONE_FILE = EXAMPLES / "example.com.zone"
KEY_FILE = EXAMPLES / "update.key"
ORIGIN = dns.name.from_text("example.com.")
KEYRING = load_keyring(KEY_FILE)
KEY_NAME, KEY = next(iter(KEYRING.items()))
WRONG_KEYRING = {KEY_NAME: dns.tsig.Key(KEY_NAME, b"\x01" * 32, dns.tsig.HMAC_SHA256)}
UNKNOWN_KEYRING = {
    dns.name.from_text("stranger."): dns.tsig.Key("stranger.", KEY.secret, KEY.algorithm)
}


def key_secret_b64() -> str:
    secret = KEY.secret
    return secret if isinstance(secret, str) else base64.b64encode(secret).decode()


def key_argument(keyring: dict[dns.name.Name, dns.tsig.Key] = KEYRING) -> str:
    """The -y argument of dig and nsupdate for the (first) key of ``keyring``."""
    name, key = next(iter(keyring.items()))
    secret = key.secret if isinstance(key.secret, str) else base64.b64encode(key.secret).decode()
    return f"hmac-sha256:{name.to_text().rstrip('.')}:{secret}"


def example_zone() -> Zone:
    return Zone.from_file(ZONE_FILE, ORIGIN)


class FakeBackend:
    """A committed VR log in miniature: ``submit`` applies the op to a clone of the zone in
    another thread, publishes the clone and reports the result. ``commit=False`` reports
    None instead (not committed in time); ``answer=False`` never calls ``done`` at all."""

    def __init__(
        self, zone: Zone, read_mode: str = "local", *, commit: bool = True, answer: bool = True
    ) -> None:
        self.read_mode = read_mode
        self.commit = commit
        self.answer = answer
        self.submitted: list[str] = []
        self._zone = zone
        self._lock = threading.Lock()

    def zone(self) -> Zone:
        return self._zone

    def submit(self, op: str, done: Callable[[str | None], None]) -> None:
        self.submitted.append(op)
        if not self.answer:
            return

        def run() -> None:
            if not self.commit:
                done(None)
                return
            with self._lock:
                new = self._zone.clone()
                result = new.apply(op)
                self._zone = new
            done(result)

        threading.Thread(target=run, daemon=True).start()


def make_frontend(
    backend: FakeBackend | None = None,
    history: Callable[[dict[str, object]], None] | None = None,
    update_timeout_s: float = 5.0,
    life: str = "",
) -> tuple[DnsFrontend, FakeBackend]:
    backend = backend or FakeBackend(example_zone())
    front = DnsFrontend(
        backend,
        host="127.0.0.1",
        port=0,
        keyring=KEYRING,
        origin=ORIGIN,
        history=history,
        update_timeout_s=update_timeout_s,
        life=life,
    )
    return front, backend


def ask(
    front: DnsFrontend,
    request: dns.message.Message | bytes,
    *,
    tcp: bool = False,
    keyring: object = False,
) -> dns.message.Message:
    """One reply message to ``request`` (TSIG not verified unless ``keyring`` is given)."""
    wire = request if isinstance(request, bytes) else request.to_wire()
    replies = front.handle_sync(wire, tcp=tcp)
    assert len(replies) == 1, replies
    mac = b"" if isinstance(request, bytes) else (request.mac or b"")
    return dns.message.from_wire(replies[0], keyring=keyring, request_mac=mac)


def query(name: str, rdtype: str, **kwargs: object) -> dns.message.Message:
    message = dns.message.make_query(name, rdtype, **kwargs)  # type: ignore[arg-type]
    message.flags &= ~dns.flags.RD
    return message


def texts(section: list[dns.rrset.RRset]) -> set[str]:
    """A section as a set of one-RR texts (order and grouping ignored)."""
    return {
        f"{rrset.name} {rrset.ttl} {dns.rdatatype.to_text(rrset.rdtype)} {rdata.to_text()}"
        for rrset in section
        for rdata in rrset
    }


SOA_NEGATIVE = (
    "example.com. 300 SOA ns1.example.com. hostmaster.example.com. 2024010101 3600 900 604800 300"
)


def name_wire(text: str) -> bytes:
    """An absolute name in uncompressed wire form."""
    return dns.name.from_text(text).to_digestable()


def signed_update(
    build: Callable[[dns.update.UpdateMessage], object],
    keyring: dict[dns.name.Name, dns.tsig.Key] | None = KEYRING,
    zone: str = "example.com.",
) -> dns.update.UpdateMessage:
    update = dns.update.UpdateMessage(zone)
    build(update)
    if keyring is not None:
        update.use_tsig(keyring)
    return update


# ---------------------------------------------------------------------------- queries


def test_a_answer_is_authoritative_and_minimal() -> None:
    front, _ = make_frontend()
    reply = ask(front, query("www.example.com.", "A"))
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.AA and reply.flags & dns.flags.QR
    assert not reply.flags & dns.flags.TC
    assert texts(reply.answer) == {"www.example.com. 300 A 192.0.2.10"}
    assert reply.authority == [] and reply.additional == []


@pytest.mark.parametrize(
    ("name", "rdtype", "expected"),
    [
        ("www.example.com.", "AAAA", {"www.example.com. 300 AAAA 2001:db8::10"}),
        ("example.com.", "MX", {"example.com. 3600 MX 10 mail.example.com."}),
        (
            "example.com.",
            "NS",
            {"example.com. 3600 NS ns1.example.com.", "example.com. 3600 NS ns2.example.com."},
        ),
        ("x.wild.example.com.", "A", {"x.wild.example.com. 3600 A 203.0.113.7"}),
        ("a.b.wild.example.com.", "A", {"a.b.wild.example.com. 3600 A 203.0.113.7"}),
        ("host.deep.ent.example.com.", "A", {"host.deep.ent.example.com. 3600 A 203.0.113.20"}),
    ],
)
def test_positive_answers(name: str, rdtype: str, expected: set[str]) -> None:
    front, _ = make_frontend()
    reply = ask(front, query(name, rdtype))
    assert reply.rcode() == dns.rcode.NOERROR and reply.flags & dns.flags.AA
    assert texts(reply.answer) == expected


def test_cname_chain_is_followed_and_rendered_in_chain_order() -> None:
    front, _ = make_frontend()
    reply = ask(front, query("web.example.com.", "A"))
    assert reply.rcode() == dns.rcode.NOERROR and reply.flags & dns.flags.AA
    assert [(str(r.name), dns.rdatatype.to_text(r.rdtype)) for r in reply.answer] == [
        ("web.example.com.", "CNAME"),
        ("alias.example.com.", "CNAME"),
        ("www.example.com.", "A"),
    ]
    cname = ask(front, query("web.example.com.", "CNAME"))
    assert texts(cname.answer) == {"web.example.com. 3600 CNAME alias.example.com."}


@pytest.mark.parametrize(
    ("name", "rdtype", "rcode"),
    [
        ("nope.example.com.", "A", dns.rcode.NXDOMAIN),
        ("www.example.com.", "MX", dns.rcode.NOERROR),  # NODATA
        ("deep.ent.example.com.", "A", dns.rcode.NOERROR),  # an empty non-terminal: NODATA
        ("ent.example.com.", "TXT", dns.rcode.NOERROR),
        ("x.wild.example.com.", "MX", dns.rcode.NOERROR),  # wildcard NODATA
        ("nope.deep.ent.example.com.", "A", dns.rcode.NXDOMAIN),
    ],
)
def test_negative_answers_carry_the_soa_with_the_negative_ttl(
    name: str, rdtype: str, rcode: dns.rcode.Rcode
) -> None:
    front, _ = make_frontend()
    reply = ask(front, query(name, rdtype))
    assert reply.rcode() == rcode
    assert reply.flags & dns.flags.AA
    assert reply.answer == []
    assert texts(reply.authority) == {SOA_NEGATIVE}  # TTL min(3600, MINIMUM 300)


def test_soa_query_for_a_new_name_is_negative_with_the_soa() -> None:
    """What nsupdate asks first when its input has no ``zone`` line."""
    front, _ = make_frontend()
    reply = ask(front, query("brand-new.example.com.", "SOA"))
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert texts(reply.authority) == {SOA_NEGATIVE}


def test_delegation_is_a_referral_with_aa_clear_and_glue() -> None:
    front, _ = make_frontend()
    for name in ("www.sub.example.com.", "sub.example.com."):
        reply = ask(front, query(name, "A"))
        assert reply.rcode() == dns.rcode.NOERROR
        assert not reply.flags & dns.flags.AA
        assert reply.answer == []
        assert texts(reply.authority) == {
            "sub.example.com. 3600 NS ns1.sub.example.com.",
            "sub.example.com. 3600 NS ns2.sub.example.com.",
        }
        assert texts(reply.additional) == {
            "ns1.sub.example.com. 3600 A 203.0.113.53",
            "ns2.sub.example.com. 3600 A 203.0.113.54",
            "ns2.sub.example.com. 3600 AAAA 2001:db8:2::54",
        }


@pytest.mark.parametrize(
    ("name", "rdclass"), [("example.org.", "IN"), ("com.", "IN"), ("www.example.com.", "CH")]
)
def test_other_zones_and_classes_are_refused_without_aa(name: str, rdclass: str) -> None:
    front, _ = make_frontend()
    reply = ask(front, query(name, "A", rdclass=rdclass))
    assert reply.rcode() == dns.rcode.REFUSED
    assert not reply.flags & dns.flags.AA
    assert reply.answer == []


def test_question_case_is_kept_and_answers_match() -> None:
    front, _ = make_frontend()
    reply = ask(front, query("WwW.ExAmPlE.cOm.", "A"))
    assert reply.question[0].name.to_text() == "WwW.ExAmPlE.cOm."
    assert {t.lower() for t in texts(reply.answer)} == {"www.example.com. 300 a 192.0.2.10"}


def test_a_signed_query_gets_a_signed_answer() -> None:
    front, _ = make_frontend()
    request = query("www.example.com.", "A")
    request.use_tsig(KEYRING)
    reply = ask(front, request, keyring=KEYRING)  # raises unless the TSIG verifies
    assert reply.had_tsig and reply.tsig_error == 0
    assert texts(reply.answer) == {"www.example.com. 300 A 192.0.2.10"}


def test_rd_is_echoed_and_ra_is_never_set() -> None:
    front, _ = make_frontend()
    reply = ask(front, dns.message.make_query("www.example.com.", "A"))
    assert reply.flags & dns.flags.RD and not reply.flags & dns.flags.RA


# ---------------------------------------------------------------------------- malformed input


@pytest.mark.parametrize("length", range(12))
def test_shorter_than_a_header_is_silence(length: int) -> None:
    front, _ = make_frontend()
    assert front.handle(b"\x12" * length, tcp=False) == []
    assert front.handle(b"\x12" * length, tcp=True) == []


def test_a_response_is_never_answered() -> None:
    front, _ = make_frontend()
    response = dns.message.make_response(query("www.example.com.", "A"))
    assert front.handle(response.to_wire(), tcp=False) == []
    assert front.handle(b"\x00\x01\x80\x00" + bytes(8), tcp=False) == []


def test_trailing_junk_is_formerr_with_the_question_salvaged() -> None:
    front, _ = make_frontend()
    request = query("www.example.com.", "A")
    reply = ask(front, request.to_wire() + b"junk")
    assert reply.id == request.id
    assert reply.rcode() == dns.rcode.FORMERR
    assert reply.question[0].name == dns.name.from_text("www.example.com.")


def test_an_unparsable_question_is_formerr_with_the_header_alone() -> None:
    front, _ = make_frontend()
    wire = struct.pack("!HHHHHH", 0xBEEF, 0x0100, 1, 0, 0, 0) + b"\x40broken"
    (reply_wire,) = front.handle_sync(wire, tcp=False)
    (reply_id, flags, qd, an, ns, ar) = struct.unpack("!HHHHHH", reply_wire)
    assert reply_id == 0xBEEF and flags & 0x8000 and flags & 0x0100
    assert flags & 0xF == dns.rcode.FORMERR and (qd, an, ns, ar) == (0, 0, 0, 0)


@pytest.mark.parametrize("qdcount", [0, 2])
def test_a_query_without_exactly_one_question_is_formerr(qdcount: int) -> None:
    front, _ = make_frontend()
    question = name_wire("www.example.com.") + struct.pack("!HH", 1, 1)
    wire = struct.pack("!HHHHHH", 7, 0, qdcount, 0, 0, 0) + question * qdcount
    assert ask(front, wire).rcode() == dns.rcode.FORMERR


def test_a_compression_loop_is_formerr() -> None:
    front, _ = make_frontend()
    wire = struct.pack("!HHHHHH", 9, 0, 1, 0, 0, 0) + b"\xc0\x0c" + struct.pack("!HH", 1, 1)
    assert ask(front, wire).rcode() == dns.rcode.FORMERR


@pytest.mark.parametrize("opcode", [1, 2, 3, 4, 6, 7, 8, 15])
def test_other_opcodes_are_notimp(opcode: int) -> None:
    front, _ = make_frontend()
    request = query("example.com.", "SOA")
    request.set_opcode(dns.opcode.Opcode.make(opcode))
    reply = ask(front, request)
    assert reply.rcode() == dns.rcode.NOTIMP
    assert reply.opcode() == opcode and reply.id == request.id


def test_meta_qtypes_other_than_any_are_notimp() -> None:
    front, _ = make_frontend()
    for rdtype in ("MAILB", "TSIG", "OPT"):
        assert ask(front, query("www.example.com.", rdtype)).rcode() == dns.rcode.NOTIMP


# ---------------------------------------------------------------------------- EDNS and sizes


def test_edns_version_1_is_badvers_with_an_edns0_opt() -> None:
    front, _ = make_frontend()
    reply = ask(front, query("www.example.com.", "A", use_edns=1))
    assert reply.rcode() == dns.rcode.BADVERS
    assert reply.edns == 0
    assert reply.answer == []


def test_edns_answers_advertise_1232() -> None:
    front, _ = make_frontend()
    reply = ask(front, query("www.example.com.", "A", use_edns=0, payload=4096))
    assert reply.edns == 0 and reply.payload == UDP_PAYLOAD_OURS
    assert ask(front, query("www.example.com.", "A")).edns == -1  # no EDNS asked, none given


@pytest.mark.parametrize(
    ("edns", "payload", "limit"), [(-1, 512, 512), (0, 512, 512), (0, 4096, UDP_PAYLOAD_OURS)]
)
def test_an_answer_too_big_for_udp_is_truncated(edns: int, payload: int, limit: int) -> None:
    front, _ = make_frontend()
    request = query("big.example.com.", "TXT", use_edns=edns, payload=payload)
    (wire,) = front.handle_sync(request.to_wire(), tcp=False)
    assert len(wire) <= limit
    reply = dns.message.from_wire(wire)
    assert reply.flags & dns.flags.TC and reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.AA


def test_the_same_answer_over_tcp_is_whole() -> None:
    front, _ = make_frontend()
    reply = ask(front, query("big.example.com.", "TXT", use_edns=0, payload=512), tcp=True)
    assert not reply.flags & dns.flags.TC
    assert len(texts(reply.answer)) == 3


def test_tcp_answers_may_use_the_whole_64k() -> None:
    names = "\n".join(f'many 60 IN TXT "{i:04d} {"x" * 200}"' for i in range(250))
    text = ZONE_FILE.read_text() + names + "\n"
    front, _ = make_frontend(FakeBackend(Zone.from_text(text, ORIGIN)))
    (wire,) = front.handle_sync(
        query("many.example.com.", "TXT", use_edns=0, payload=1232).to_wire(), tcp=True
    )
    assert 50_000 < len(wire) <= 65535
    reply = dns.message.from_wire(wire)
    assert not reply.flags & dns.flags.TC and len(texts(reply.answer)) == 250


# ---------------------------------------------------------------------------- the reply cache


def test_replies_differing_only_in_id_come_from_the_cache() -> None:
    front, _ = make_frontend()
    first = query("www.example.com.", "A")
    second = dns.message.from_wire(first.to_wire())
    second.id = (first.id + 1) % 65536
    (a,) = front.handle_sync(first.to_wire(), tcp=False)
    with mock.patch.object(Zone, "query", side_effect=AssertionError("not cached")):
        (b,) = front.handle_sync(second.to_wire(), tcp=False)
    assert a[2:] == b[2:] and b[:2] == second.to_wire()[:2]


def test_a_new_snapshot_invalidates_the_cache() -> None:
    front, _ = make_frontend()
    request = query("n1.example.com.", "A")
    assert ask(front, request).rcode() == dns.rcode.NXDOMAIN
    update = signed_update(lambda u: u.add("n1", 60, "A", "10.0.0.1"))
    assert ask(front, update).rcode() == dns.rcode.NOERROR
    reply = ask(front, request)  # the very same wire as before
    assert reply.rcode() == dns.rcode.NOERROR
    assert texts(reply.answer) == {"n1.example.com. 60 A 10.0.0.1"}
    assert texts(ask(front, query("example.com.", "SOA")).answer) == {
        "example.com. 3600 SOA ns1.example.com. hostmaster.example.com. "
        "2024010102 3600 900 604800 300"
    }


def test_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dnsfront, "CACHE_ENTRIES_MAX", 100)
    front, _ = make_frontend()
    sizes = []
    for i in range(250):
        front.handle(query(f"n{i}.example.com.", "A").to_wire(), tcp=False)
        sizes.append(len(front._cache_udp))
    assert max(sizes) == 100 and sizes[-1] == 250 % 100
    assert ask(front, query("www.example.com.", "A")).rcode() == dns.rcode.NOERROR


def test_udp_and_tcp_replies_are_cached_apart() -> None:
    front, _ = make_frontend()
    wire = query("big.example.com.", "TXT").to_wire()
    for _ in range(2):
        (udp,) = front.handle_sync(wire, tcp=False)
        (tcp,) = front.handle_sync(wire, tcp=True)
        assert dns.message.from_wire(udp).flags & dns.flags.TC
        assert not dns.message.from_wire(tcp).flags & dns.flags.TC


# ---------------------------------------------------------------------------- UPDATE


def digest_after(
    front: DnsFrontend, request: dns.message.Message
) -> tuple[dns.message.Message, str]:
    reply = ask(front, request, keyring=KEYRING if request.had_tsig else False)
    backend = front.backend
    assert isinstance(backend, FakeBackend)
    return reply, backend.zone().digest()


def test_a_signed_update_with_a_met_prerequisite_commits() -> None:
    front, backend = make_frontend()

    def build(u: dns.update.UpdateMessage) -> None:
        u.present("www", "A", "192.0.2.10")
        u.delete("www", "A")
        u.add("www", 300, "A", "192.0.2.11")

    request = signed_update(build)
    reply = ask(front, request, keyring=KEYRING)  # the reply verifies with our key
    assert reply.rcode() == dns.rcode.NOERROR and reply.had_tsig
    assert reply.opcode() == dns.opcode.UPDATE
    assert len(backend.submitted) == 1
    assert texts(ask(front, query("www.example.com.", "A")).answer) == {
        "www.example.com. 300 A 192.0.2.11"
    }
    assert backend.zone().serial == 2024010102


@pytest.mark.parametrize(
    ("build", "rcode"),
    [
        (
            lambda u: (u.present("www", "A", "192.0.2.99"), u.add("x", 60, "A", "10.0.0.1")),
            "NXRRSET",
        ),
        (lambda u: (u.absent("www"), u.add("x", 60, "A", "10.0.0.1")), "YXDOMAIN"),
        (lambda u: (u.present("nope"), u.add("x", 60, "A", "10.0.0.1")), "NXDOMAIN"),
        (lambda u: (u.absent("www", "A"), u.add("x", 60, "A", "10.0.0.1")), "YXRRSET"),
        (lambda u: u.add("x.example.org.", 60, "A", "10.0.0.1"), "NOTZONE"),
    ],
)
def test_a_failed_update_answers_its_rcode_and_changes_nothing(
    build: Callable[[dns.update.UpdateMessage], object], rcode: str
) -> None:
    front, backend = make_frontend()
    before = backend.zone().digest()
    reply, after = digest_after(front, signed_update(build))
    assert dns.rcode.to_text(reply.rcode()) == rcode
    assert reply.had_tsig
    assert after == before


def test_an_unsigned_update_is_refused_and_changes_nothing() -> None:
    front, backend = make_frontend()
    before = backend.zone().digest()
    reply, after = digest_after(
        front, signed_update(lambda u: u.add("x", 60, "A", "10.0.0.1"), keyring=None)
    )
    assert reply.rcode() == dns.rcode.REFUSED
    assert after == before and backend.submitted == []


@pytest.mark.parametrize(
    ("keyring", "tsig_error"),
    [(WRONG_KEYRING, dns.rcode.BADSIG), (UNKNOWN_KEYRING, dns.rcode.BADKEY)],
)
def test_a_bad_key_is_notauth_unsigned_and_changes_nothing(
    keyring: dict[dns.name.Name, dns.tsig.Key], tsig_error: int
) -> None:
    front, backend = make_frontend()
    before = backend.zone().digest()
    request = signed_update(lambda u: u.add("x", 60, "A", "10.0.0.1"), keyring=keyring)
    reply = ask(front, request)
    assert reply.rcode() == dns.rcode.NOTAUTH
    assert reply.tsig_error == tsig_error
    assert reply.mac == b""  # RFC 8945 §5.3.2: the error reply is not signed
    assert backend.zone().digest() == before and backend.submitted == []


def test_a_stale_signature_is_badtime_signed_with_our_clock() -> None:
    front, backend = make_frontend()
    request = dns.update.UpdateMessage("example.com.")
    request.add("x", 60, "A", "10.0.0.1")
    request.use_tsig(KEYRING)
    stale = time.time() - 3600
    with mock.patch.object(dns.message.time, "time", return_value=stale):  # type: ignore[attr-defined]
        wire = request.to_wire()
    (reply_wire,) = front.handle_sync(wire, tcp=False)
    with pytest.raises(dns.tsig.PeerBadTime):  # the reply is signed: dnspython checks it
        dns.message.from_wire(reply_wire, keyring=KEYRING, request_mac=request.mac)
    reply = dns.message.from_wire(reply_wire, keyring=False)
    assert reply.rcode() == dns.rcode.NOTAUTH and reply.tsig_error == dns.rcode.BADTIME
    assert reply.mac and len(reply.mac) == 32
    other = reply.tsig[0].other  # type: ignore[index]
    assert abs(int.from_bytes(other, "big") - time.time()) < 60
    assert backend.submitted == []


def test_an_update_for_another_zone_is_notauth() -> None:
    front, backend = make_frontend()
    for keyring in (KEYRING, None):
        request = signed_update(lambda u: u.add("x", 60, "A", "10.0.0.1"), keyring, "example.org.")
        assert ask(front, request).rcode() == dns.rcode.NOTAUTH
    assert backend.submitted == []


def test_a_malformed_zone_section_is_formerr() -> None:
    front, backend = make_frontend()
    soa_question = name_wire("example.com.") + struct.pack(
        "!HH", dns.rdatatype.SOA, dns.rdataclass.IN
    )
    a_question = name_wire("example.com.") + struct.pack("!HH", dns.rdatatype.A, dns.rdataclass.IN)
    update_flags = dns.opcode.to_flags(dns.opcode.UPDATE)
    for zocount, section in ((2, soa_question * 2), (1, a_question), (0, b"")):
        wire = struct.pack("!HHHHHH", 5, update_flags, zocount, 0, 0, 0) + section
        reply = ask(front, wire)
        assert reply.rcode() == dns.rcode.FORMERR and reply.opcode() == dns.opcode.UPDATE
    assert backend.submitted == []


def test_update_static_errors_are_answered_before_ordering() -> None:
    """A prerequisite with a TTL is FORMERR (RFC 2136 §3.2.1) and never reaches VR."""
    front, backend = make_frontend()
    request = dns.update.UpdateMessage("example.com.")
    request.prerequisite.append(dns.rrset.from_text("www.example.com.", 60, "IN", "A", "1.2.3.4"))
    request.use_tsig(KEYRING)
    reply = ask(front, request, keyring=KEYRING)
    assert reply.rcode() == dns.rcode.FORMERR and reply.had_tsig
    assert backend.submitted == []


def test_an_update_whose_op_the_peers_could_not_carry_is_formerr_and_never_ordered() -> None:
    """A TCP UPDATE under 64 KiB whose op is over OP_BYTES_MAX (vrref/core/messages.py): a
    PREPARE carrying it would be refused by every peer, so it is refused here instead."""
    front, backend = make_frontend()

    def build(update: dns.update.UpdateMessage) -> None:
        for i in range(280):
            update.add(f"t{i:05}", 60, "TXT", '"' + "a" * 190 + '"')

    request = signed_update(build)
    assert len(request.to_wire()) <= dnsfront.TCP_MESSAGE_BYTES_MAX
    reply = ask(front, request, tcp=True, keyring=KEYRING)
    assert reply.rcode() == dns.rcode.FORMERR and reply.had_tsig
    assert backend.submitted == []


def test_an_update_not_committed_in_time_is_servfail() -> None:
    front, _ = make_frontend(FakeBackend(example_zone(), commit=False))
    reply = ask(front, signed_update(lambda u: u.add("x", 60, "A", "10.0.0.1")), keyring=KEYRING)
    assert reply.rcode() == dns.rcode.SERVFAIL and reply.had_tsig


def test_a_backend_that_never_answers_meets_the_deadline_backstop() -> None:
    backend = FakeBackend(example_zone(), answer=False)
    front, _ = make_frontend(backend, update_timeout_s=0.1)
    started = time.monotonic()
    reply = ask(front, signed_update(lambda u: u.add("x", 60, "A", "10.0.0.1")))
    assert reply.rcode() == dns.rcode.SERVFAIL
    assert time.monotonic() - started < 5


# ---------------------------------------------------------------------------- read modes


def test_linearizable_reads_are_ordered_through_the_backend() -> None:
    backend = FakeBackend(example_zone(), read_mode="linearizable")
    front, _ = make_frontend(backend)
    request = query("web.example.com.", "A")
    outcome = front.handle(request.to_wire(), tcp=False)
    assert isinstance(outcome, Pending) and outcome.f == "read"
    assert outcome.op == ops.make_query_op("web.example.com.", "A")
    reply = ask(front, request)
    assert backend.submitted == [outcome.op]
    local, _ = make_frontend()
    assert reply.to_wire()[2:] == ask(local, request).to_wire()[2:]  # same bytes either way
    backend.commit = False
    assert ask(front, request).rcode() == dns.rcode.SERVFAIL


# ---------------------------------------------------------------------------- history


def test_history_records_client_operations_in_jepsen_shape() -> None:
    events: list[dict[str, object]] = []
    lock = threading.Lock()

    def record(event: dict[str, object]) -> None:
        with lock:
            events.append(event)

    front, _ = make_frontend(history=record)
    ask(front, query("www.example.com.", "A"))
    ask(front, query("www.example.com.", "A"))  # a cache hit is still a read
    ask(front, signed_update(lambda u: u.add("x", 60, "A", "10.0.0.1")))
    ask(front, query("example.org.", "A"))  # refused: not an operation on the zone
    assert [(e["type"], e["f"]) for e in events] == [
        ("invoke", "read"),
        ("ok", "read"),
        ("invoke", "read"),
        ("ok", "read"),
        ("invoke", "update"),
        ("ok", "update"),
    ]
    op = ops.make_query_op("www.example.com.", "A")
    assert events[0]["value"] == events[2]["value"] == op
    assert events[1]["value"] == events[3]["value"]
    assert ops.decode_query_result(str(events[1]["value"])).rcode == "NOERROR"
    assert events[1]["mode"] == "local" and events[5]["mode"] == "linearizable"
    assert ops.result_rcode(str(events[5]["value"])) == dns.rcode.NOERROR
    processes = [e["process"] for e in events]
    assert processes[0] == processes[1] != processes[2] == processes[3] != processes[4]
    assert all(isinstance(e["time"], int) for e in events)
    assert [e["time"] for e in events] == sorted(e["time"] for e in events)  # type: ignore[type-var]


def test_a_restarted_replica_names_its_operations_anew(tmp_path: Path) -> None:
    # The first life is killed with an update outstanding (an invoke, no completion); the
    # second life's operations get other process names, so the checker accepts the file
    # (before, both lives counted from HOST:PORT/0 and the checker refused it).
    events: list[dict[str, object]] = []
    first, _ = make_frontend(
        FakeBackend(example_zone(), answer=False), history=events.append, life="a1"
    )
    first.handle_async(
        signed_update(lambda u: u.add("x", 60, "A", "10.0.0.1")).to_wire(),
        tcp=False,
        respond=lambda messages: None,
    )  # never answered: the life ends with it open
    second, _ = make_frontend(history=events.append, life="b2")
    ask(second, signed_update(lambda u: u.add("y", 60, "A", "10.0.0.2")))
    assert [e["type"] for e in events] == ["invoke", "invoke", "ok"]
    assert events[0]["process"] != events[1]["process"]
    assert str(events[0]["process"]).endswith("/a1/0") and str(events[1]["process"]).endswith(
        "/b2/0"
    )
    from vrref import history as hist

    path = tmp_path / "client.jsonl"
    with hist.HistoryWriter(
        path, model="dns", initial={"records": []}, origin="example.com."
    ) as out:
        for event in events:
            out.write(event)
    from checker.lin.readers import read_vrref

    read = read_vrref([str(path)])  # raised "invokes while its operation ... is outstanding"
    assert len(read.ops) == 2


def test_history_marks_an_uncommitted_update_info() -> None:
    events: list[dict[str, object]] = []
    front, _ = make_frontend(FakeBackend(example_zone(), commit=False), history=events.append)
    ask(front, signed_update(lambda u: u.add("x", 60, "A", "10.0.0.1")))
    assert [e["type"] for e in events] == ["invoke", "info"]
    assert events[1]["value"] is None


# ---------------------------------------------------------------------------- zone transfers


def read_transfer(messages: list[bytes], request: dns.message.Message) -> list[dns.message.Message]:
    """Parses and TSIG-verifies a multi-message transfer as a client would."""
    out = []
    tsig_ctx = None
    for wire in messages:
        message = dns.message.from_wire(
            wire,
            keyring=KEYRING,
            request_mac=request.mac,
            xfr=True,
            tsig_ctx=tsig_ctx,
            multi=True,
        )
        tsig_ctx = message.tsig_ctx
        out.append(message)
    return out


def transfer_records(messages: list[dns.message.Message]) -> list[Record]:
    return [
        (rrset.name.to_text(), dns.rdatatype.to_text(rrset.rdtype), rrset.ttl, rdata.to_text())
        for message in messages
        for rrset in message.answer
        for rdata in rrset
    ]


@pytest.mark.parametrize(
    ("extra_names", "big_rrset"), [(0, 0), (3000, 0), (0, 400)], ids=["small", "many", "huge"]
)
def test_axfr_over_tcp_is_the_whole_zone_soa_to_soa(extra_names: int, big_rrset: int) -> None:
    """Several messages when the zone is large, even when one RRset alone exceeds 64 KiB."""
    text = ZONE_FILE.read_text() + "".join(
        f'h{i} 60 IN TXT "host number {i} {"y" * 40}"\n' for i in range(extra_names)
    )
    text += "".join(f'huge 60 IN TXT "{i:04d} {"z" * 200}"\n' for i in range(big_rrset))
    zone = Zone.from_text(text, ORIGIN)
    front, _ = make_frontend(FakeBackend(zone))
    request = query("example.com.", "AXFR")
    request.use_tsig(KEYRING)
    messages = read_transfer(front.handle_sync(request.to_wire(), tcp=True), request)
    assert (len(messages) > 1) == (extra_names + big_rrset > 0)
    assert all(m.rcode() == dns.rcode.NOERROR and m.flags & dns.flags.AA for m in messages)
    records = transfer_records(messages)
    soa = records[0]
    assert soa[1] == "SOA" and records[-1] == soa
    assert sorted(records[:-1]) == sorted(zone.records())


def test_ixfr_over_tcp_is_answered_with_the_full_zone() -> None:
    front, backend = make_frontend()
    request = query("example.com.", "IXFR")
    request.use_tsig(KEYRING)
    messages = read_transfer(front.handle_sync(request.to_wire(), tcp=True), request)
    assert sorted(transfer_records(messages)[:-1]) == sorted(backend.zone().records())


def test_ixfr_over_udp_is_the_soa_alone() -> None:
    front, _ = make_frontend()
    request = query("example.com.", "IXFR")
    request.use_tsig(KEYRING)
    reply = ask(front, request, keyring=KEYRING)
    assert [dns.rdatatype.to_text(r.rdtype) for r in reply.answer] == ["SOA"]


@pytest.mark.parametrize(
    ("name", "signed", "tcp", "rcode"),
    [
        ("example.com.", True, False, dns.rcode.NOTIMP),  # AXFR over UDP
        ("example.com.", False, True, dns.rcode.REFUSED),  # unsigned
        ("example.org.", True, True, dns.rcode.NOTAUTH),  # not our zone
        ("www.example.com.", True, True, dns.rcode.NOTAUTH),  # not a zone apex
    ],
)
def test_axfr_refusals(name: str, signed: bool, tcp: bool, rcode: dns.rcode.Rcode) -> None:
    front, _ = make_frontend()
    request = query(name, "AXFR")
    if signed:
        request.use_tsig(KEYRING)
    assert ask(front, request, tcp=tcp).rcode() == rcode


def test_axfr_with_a_wrong_key_is_notauth() -> None:
    front, _ = make_frontend()
    request = query("example.com.", "AXFR")
    request.use_tsig(WRONG_KEYRING)
    reply = ask(front, request, tcp=True)
    assert reply.rcode() == dns.rcode.NOTAUTH and reply.tsig_error == dns.rcode.BADSIG


# ---------------------------------------------------------------------- real sockets and tools


@pytest.fixture
def served() -> Iterator[tuple[DnsFrontend, FakeBackend]]:
    front, backend = make_frontend()
    front.start()
    try:
        yield front, backend
    finally:
        front.stop()


def needs(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed")


@dataclass(frozen=True)
class Dig:
    status: str
    flags: frozenset[str]
    answer: frozenset[str]
    authority: frozenset[str]
    additional: frozenset[str]
    output: str


def _section(output: str, title: str) -> frozenset[str]:
    match = re.search(rf";; {title} SECTION:\n(.*?)(?:\n\n|\Z)", output, re.DOTALL)
    if match is None:
        return frozenset()
    lines = (" ".join(line.split()) for line in match.group(1).splitlines())
    return frozenset(line for line in lines if " TSIG " not in line)


def run_tool(argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=30)


def dig(port: int, *args: str, tool: str = "dig") -> Dig:
    needs(tool)
    limits = ["+tries=1", "+time=3"] if tool == "dig" else ["+retry=0", "+timeout=3"]
    done = run_tool([tool, "@127.0.0.1", "-p", str(port), "+norec", *limits, *args])
    output = done.stdout
    status = re.search(r"status: (\w+)", output)
    flags = re.search(r";; flags:([^;]*);", output)
    return Dig(
        status=status.group(1) if status else "",
        flags=frozenset(flags.group(1).split()) if flags else frozenset(),
        answer=_section(output, "ANSWER"),
        authority=_section(output, "AUTHORITY"),
        additional=_section(output, "ADDITIONAL"),
        output=output + done.stderr,
    )


@pytest.mark.parametrize(
    ("name", "rdtype", "status", "answer"),
    [
        ("www.example.com", "A", "NOERROR", {"www.example.com. 300 IN A 192.0.2.10"}),
        ("www.example.com", "AAAA", "NOERROR", {"www.example.com. 300 IN AAAA 2001:db8::10"}),
        ("example.com", "MX", "NOERROR", {"example.com. 3600 IN MX 10 mail.example.com."}),
        (
            "web.example.com",
            "A",
            "NOERROR",
            {
                "web.example.com. 3600 IN CNAME alias.example.com.",
                "alias.example.com. 3600 IN CNAME www.example.com.",
                "www.example.com. 300 IN A 192.0.2.10",
            },
        ),
        ("nope.example.com", "A", "NXDOMAIN", set()),
        ("www.example.com", "MX", "NOERROR", set()),
    ],
)
def test_dig(
    served: tuple[DnsFrontend, FakeBackend],
    name: str,
    rdtype: str,
    status: str,
    answer: set[str],
) -> None:
    front, _ = served
    result = dig(front.port, name, rdtype)
    assert result.status == status, result.output
    assert "aa" in result.flags
    assert result.answer == answer
    if not answer:
        assert result.authority == {
            "example.com. 300 IN SOA ns1.example.com. hostmaster.example.com. "
            "2024010101 3600 900 604800 300"
        }


def test_kdig_over_tcp(served: tuple[DnsFrontend, FakeBackend]) -> None:
    front, _ = served
    result = dig(front.port, "+tcp", "www.example.com", "A", tool="kdig")
    assert result.status == "NOERROR", result.output
    assert "TCP" in result.output
    assert any("192.0.2.10" in line for line in result.output.splitlines())


def test_dig_truncation_without_edns(served: tuple[DnsFrontend, FakeBackend]) -> None:
    front, _ = served
    result = dig(front.port, "big.example.com", "TXT", "+noedns", "+ignore")
    assert result.status == "NOERROR" and "tc" in result.flags, result.output
    whole = dig(front.port, "big.example.com", "TXT", "+tcp")
    assert "tc" not in whole.flags and len(whole.answer) == 3


def test_dig_badvers(served: tuple[DnsFrontend, FakeBackend]) -> None:
    front, _ = served
    result = dig(front.port, "+edns=1", "+noednsnegotiation", "www.example.com", "A")
    assert result.status == "BADVERS", result.output
    negotiated = dig(front.port, "+edns=1", "www.example.com", "A")
    assert "BADVERS, retrying with EDNS version 0" in negotiated.output
    assert negotiated.status == "NOERROR"


def test_dig_axfr_with_tsig(served: tuple[DnsFrontend, FakeBackend]) -> None:
    front, backend = served
    needs("dig")
    done = run_tool(
        ["dig", "@127.0.0.1", "-p", str(front.port), "-y", key_argument(), "example.com", "AXFR"]
    )
    lines = [
        " ".join(line.split())
        for line in done.stdout.splitlines()
        if line and not line.startswith(";")
    ]
    signatures = [line for line in lines if " TSIG " in line]
    assert len(signatures) == 1 and "NOERROR" in signatures[0], done.stdout  # one message
    lines = [line for line in lines if " TSIG " not in line]
    assert len(lines) == len(backend.zone().records()) + 1, done.stdout
    assert "IN SOA" in lines[0] and lines[0] == lines[-1]
    assert "Transfer failed" not in done.stdout and "tsig verify failure" not in done.stdout


def nsupdate(port: int, body: str, *, key: str | None, tcp: bool = False) -> tuple[int, str]:
    needs("nsupdate")
    argv = ["nsupdate", *(["-y", key] if key else []), *(["-v"] if tcp else [])]
    done = run_tool(argv, stdin=f"server 127.0.0.1 {port}\n{body}\nsend\n")
    return done.returncode, done.stdout + done.stderr


def test_nsupdate_with_a_met_prerequisite(served: tuple[DnsFrontend, FakeBackend]) -> None:
    front, backend = served
    code, output = nsupdate(
        front.port,
        "zone example.com\n"
        "prereq yxrrset www.example.com A 192.0.2.10\n"
        "update delete www.example.com A\n"
        "update add www.example.com 300 A 192.0.2.11",
        key=key_argument(),
    )
    assert code == 0, output
    assert dig(front.port, "www.example.com", "A").answer == {
        "www.example.com. 300 IN A 192.0.2.11"
    }
    assert backend.zone().serial == 2024010102


def test_nsupdate_without_a_zone_line_over_tcp(served: tuple[DnsFrontend, FakeBackend]) -> None:
    """nsupdate first asks for the SOA of the name: the negative answer must carry it."""
    front, _ = served
    code, output = nsupdate(
        front.port, "update add fresh.example.com 60 A 10.0.0.9", key=key_argument(), tcp=True
    )
    assert code == 0, output
    assert dig(front.port, "fresh.example.com", "A").answer == {
        "fresh.example.com. 60 IN A 10.0.0.9"
    }


@pytest.mark.parametrize(
    ("prereq", "expected"),
    [
        ("prereq yxrrset www.example.com A 192.0.2.99", "NXRRSET"),
        ("prereq nxdomain www.example.com", "YXDOMAIN"),
    ],
)
def test_nsupdate_with_a_failed_prerequisite_changes_nothing(
    served: tuple[DnsFrontend, FakeBackend], prereq: str, expected: str
) -> None:
    front, backend = served
    before = backend.zone().digest()
    code, output = nsupdate(
        front.port,
        f"zone example.com\n{prereq}\nupdate add www.example.com 300 A 192.0.2.12",
        key=key_argument(),
    )
    assert code == 2 and f"update failed: {expected}" in output, output
    assert backend.zone().digest() == before


def test_nsupdate_with_a_wrong_key_is_notauth(served: tuple[DnsFrontend, FakeBackend]) -> None:
    front, backend = served
    before = backend.zone().digest()
    code, output = nsupdate(
        front.port,
        "zone example.com\nupdate add x.example.com 60 A 10.0.0.1",
        key=key_argument(WRONG_KEYRING),
    )
    assert code == 2 and "update failed: NOTAUTH(BADSIG)" in output, output
    assert backend.zone().digest() == before and backend.submitted == []


def test_nsupdate_unsigned_is_refused(served: tuple[DnsFrontend, FakeBackend]) -> None:
    front, backend = served
    before = backend.zone().digest()
    code, output = nsupdate(
        front.port, "zone example.com\nupdate add x.example.com 60 A 10.0.0.1", key=None
    )
    assert code == 2 and "update failed: REFUSED" in output, output
    assert backend.zone().digest() == before and backend.submitted == []


def test_servers_stop_and_free_the_port() -> None:
    front, _ = make_frontend()
    front.start()
    port = front.port
    reply = dns.query.udp(query("www.example.com.", "A"), "127.0.0.1", port=port, timeout=3)
    assert reply.rcode() == dns.rcode.NOERROR
    tcp_reply = dns.query.tcp(query("www.example.com.", "A"), "127.0.0.1", port=port, timeout=3)
    assert tcp_reply.answer == reply.answer
    front.stop()
    again, _ = make_frontend()
    again._port = port
    again.start()  # the same port binds again
    again.stop()


def test_tcp_pipelined_requests_are_all_answered() -> None:
    front, _ = make_frontend()
    front.start()
    try:
        requests = [query(f"n{i}.example.com.", "A") for i in range(20)]
        requests.append(signed_update(lambda u: u.add("n3", 60, "A", "10.0.0.3")))
        with socket.create_connection(("127.0.0.1", front.port), timeout=5) as sock:
            sock.sendall(b"".join(r.to_wire(prepend_length=True) for r in requests))
            sock.shutdown(socket.SHUT_WR)  # half-close: the update's answer must still come
            ids = set()
            for _ in requests:
                (length,) = struct.unpack("!H", _read(sock, 2))
                ids.add(dns.message.from_wire(_read(sock, length), keyring=False).id)
        assert ids == {r.id for r in requests}
    finally:
        front.stop()


def _read(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        assert chunk, "connection closed early"
        data += chunk
    return data


def test_tcp_connections_are_bounded_and_idle_ones_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dnsfront, "TCP_CONNECTIONS_MAX", 2)
    monkeypatch.setattr(dnsfront, "TCP_IDLE_TIMEOUT_S", 0.5)
    front, _ = make_frontend()
    front.start()
    try:
        address = ("127.0.0.1", front.port)
        with (
            socket.create_connection(address, timeout=5) as first,
            socket.create_connection(address, timeout=5) as second,
        ):
            time.sleep(0.1)  # both accepted and being served
            with socket.create_connection(address, timeout=5) as third:
                assert third.recv(1) == b""  # closed at once: no slot
            started = time.monotonic()
            assert first.recv(1) == b"" and second.recv(1) == b""  # idle: closed by the server
            assert time.monotonic() - started < 3
        with socket.create_connection(address, timeout=5) as fourth:  # slots came back
            fourth.sendall(query("www.example.com.", "A").to_wire(prepend_length=True))
            (length,) = struct.unpack("!H", _read(fourth, 2))
            assert dns.message.from_wire(_read(fourth, length)).rcode() == dns.rcode.NOERROR
    finally:
        front.stop()
