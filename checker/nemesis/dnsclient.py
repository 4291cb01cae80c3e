"""The workload's DNS side: UPDATE messages and their canonical op texts, queries and their
canonical result texts, sent with dnspython.

An update's op text is the one the server orders: ``update_op_from_message``
(vrref/dns/update.py) applied to the message as the server parses it, so the message is
rendered to wire (TSIG-signed) and parsed back before it is encoded. A read's op text is
``make_query_op`` and its result the canonical QueryResult text (vrref/dns/ops.py
``encode_query_result``) rebuilt from the reply: each section's records as (owner, type
mnemonic, TTL, canonical rdata), sorted; the AA flag; the rcode mnemonic; OPT and TSIG are
not records of a section in dnspython, so they are left out by construction.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rrset
import dns.tsig
import dns.update

from vrref.dns import ops
from vrref.dns.canonical import Record, canonical_rdata_of, dumps, name_text, type_text
from vrref.dns.keys import load_keyring
from vrref.dns.update import update_op_from_message
from vrref.dns.zone import Zone

TTL = 300


@dataclass(frozen=True, slots=True)
class Signer:
    """The TSIG key updates and transfers are signed with."""

    name: dns.name.Name
    key: dns.tsig.Key

    @classmethod
    def from_file(cls, path: Path) -> Signer:
        keyring = load_keyring(path)
        name, key = next(iter(keyring.items()))
        return cls(name, key)

    @property
    def keyring(self) -> dict[dns.name.Name, dns.tsig.Key]:
        return {self.name: self.key}


def txt(value: str) -> str:
    """The canonical rdata text of a one-string TXT record (values are plain tokens)."""
    return f'"{value}"'


def _rdata(rdtype: str, text: str) -> dns.rdata.Rdata:
    return dns.rdata.from_text(dns.rdataclass.IN, rdtype, text)


@dataclass(frozen=True, slots=True)
class Update:
    """An UPDATE ready to send and the canonical op text the server will order for it."""

    message: dns.update.UpdateMessage
    op: str


def _finish(message: dns.update.UpdateMessage, origin: dns.name.Name) -> Update:
    """The op text as the server makes it: from the message as it arrives (wire, parsed)."""
    wire = message.to_wire()
    parsed = dns.message.from_wire(wire, keyring=message.keyring, request_mac=b"")
    assert isinstance(parsed, dns.update.UpdateMessage)
    return Update(message, update_op_from_message(parsed, origin))


def _message(origin: dns.name.Name, signer: Signer) -> dns.update.UpdateMessage:
    return dns.update.UpdateMessage(origin, keyring=signer.key, keyname=signer.name)


def compare_and_set(
    origin: dns.name.Name, signer: Signer, name: str, expected: frozenset[str], new: str
) -> Update:
    """Prerequisite: ``name``'s TXT RRset is exactly ``expected`` (RFC 2136 §2.4.2, value
    dependent); then the RRset is replaced by the one record ``new``."""
    message = _message(origin, signer)
    owner = dns.name.from_text(name)
    rdataset = dns.rdataset.Rdataset(dns.rdataclass.IN, dns.rdatatype.TXT)
    for value in sorted(expected):
        rdataset.add(_rdata("TXT", value), 0)
    message.present(owner, rdataset)
    message.delete(owner, "TXT")
    message.add(owner, TTL, _rdata("TXT", new))
    return _finish(message, origin)


def blind_write(origin: dns.name.Name, signer: Signer, name: str, rdtype: str, new: str) -> Update:
    """No prerequisite: ``name``'s ``rdtype`` RRset is replaced by the one record ``new``."""
    message = _message(origin, signer)
    owner = dns.name.from_text(name)
    message.delete(owner, rdtype)
    message.add(owner, TTL, _rdata(rdtype, new))
    return _finish(message, origin)


def set_add(origin: dns.name.Name, signer: Signer, name: str, new: str) -> Update:
    """No prerequisite: one TXT record ``new`` added to ``name``'s TXT RRset."""
    message = _message(origin, signer)
    message.add(dns.name.from_text(name), TTL, _rdata("TXT", new))
    return _finish(message, origin)


def read_op(name: str, rdtype: str) -> str:
    return ops.make_query_op(name, rdtype)


def query(name: str, rdtype: str) -> dns.message.Message:
    """A plain query (no recursion desired, no EDNS: what the frontend caches)."""
    message = dns.message.make_query(name, rdtype)
    message.flags &= ~dns.flags.RD
    return message


def _records(rrsets: list[dns.rrset.RRset]) -> tuple[Record, ...]:
    out: list[Record] = []
    for rrset in rrsets:
        owner = name_text(rrset.name)
        rdtype = type_text(rrset.rdtype)
        out.extend((owner, rdtype, rrset.ttl, canonical_rdata_of(r)) for r in rrset)
    return tuple(sorted(out))


def query_result(reply: dns.message.Message) -> str:
    """The canonical result text (vrref/dns/ops.py) of a query's reply."""
    return ops.encode_query_result(
        ops.QueryResult(
            rcode=dns.rcode.to_text(reply.rcode()),
            aa=bool(reply.flags & dns.flags.AA),
            answer=_records(reply.answer),
            authority=_records(reply.authority),
            additional=_records(reply.additional),
        )
    )


def update_result(reply: dns.message.Message) -> tuple[str, str]:
    """(rcode mnemonic, the result text the checker reads: ``{"rcode": ...}``); the serial
    the server's result carries is not in the reply, and the model compares only the rcode
    of an update (checker/lin/models.py ``Dns``)."""
    rcode = dns.rcode.to_text(reply.rcode())
    return rcode, dumps({"rcode": rcode})


def exchange(
    message: dns.message.Message, host: str, port: int, timeout: float
) -> dns.message.Message:
    """One request over UDP and its reply, again over TCP when the reply is truncated (a
    read: an update's reply is never truncated). Raises what dnspython raises."""
    reply = dns.query.udp(message, host, port=port, timeout=timeout)
    if reply.flags & dns.flags.TC and message.opcode() == 0:
        reply = dns.query.tcp(message, host, port=port, timeout=timeout)
    return reply


def axfr(host: str, port: int, origin: str, signer: Signer, timeout: float) -> tuple[Record, ...]:
    """The zone by a TSIG-signed AXFR, as ``Zone.records()`` gives it (canonical, sorted, the
    closing SOA not twice)."""
    records: set[Record] = set()
    for reply in dns.query.xfr(
        host,
        origin,
        port=port,
        keyring=signer.keyring,
        keyname=signer.name,
        timeout=timeout,
        lifetime=timeout,
        relativize=False,
    ):
        records.update(_records(reply.answer))
    return Zone.from_records(origin, records).records()
