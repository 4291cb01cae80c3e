"""The operation contract: the texts VR orders and the texts the zone answers with.

An operation is canonical JSON text, and a result is too: text is what a VR log entry carries,
what a history records and what an independent model (``spec/dns_model.py``) can execute
without sharing a line of code with this one, so the encoding is a contract, not a detail.
This module writes operations (``make_update_op``, ``make_query_op``), decodes them into
plain tuples of canonical texts (``decode_op``, which raises ``Malformed`` and nothing else,
so the zone can answer any text with FORMERR), and encodes and decodes results. Every rule
lives in ``spec/dns.md`` ("Operations"): the shapes of operations and results and the size
bound an op shares with the peers' codec (``vrref.core.messages.OP_BYTES_MAX``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, TypeAlias

import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from vrref.core.messages import op_fits
from vrref.dns.canonical import (
    Record,
    dumps,
    is_canonical_name,
    is_canonical_rdata,
    name_text,
    type_kind,
    type_text,
)

OP_ENTRIES_MAX: Final = 65535  # RFC 1035 section counts are 16-bit
TTL_MAX: Final = (1 << 31) - 1  # RFC 2181 §8

RCODES_UPDATE: Final = frozenset(
    {"NOERROR", "NXDOMAIN", "YXDOMAIN", "NXRRSET", "YXRRSET", "NOTZONE", "REFUSED", "FORMERR"}
)
RCODES_QUERY: Final = frozenset({"NOERROR", "NXDOMAIN", "REFUSED", "NOTIMP"})


class Malformed(Exception):
    """An operation text that does not decode (the result is FORMERR)."""


# ---------------------------------------------------------------------- operations


def make_update_op(
    zone: dns.name.Name | str,
    prereq: Iterable[Sequence[object]] = (),
    update: Iterable[Sequence[object]] = (),
) -> str:
    """The canonical update op. Names may be Names or text in any case; yxrrset_exact rdata
    lists are sorted and deduplicated; everything else must already be canonical.

    Raises ValueError when the result would not decode (so a client learns of it early).
    """

    def fix(entry: Sequence[object]) -> list[object]:
        out: list[object] = list(entry)
        if len(out) >= 2 and isinstance(out[1], dns.name.Name | str):
            out[1] = name_text(out[1])
        if out and out[0] == "yxrrset_exact" and len(out) == 4 and isinstance(out[3], list):
            out[3] = sorted(set(out[3]))
        return out

    op = dumps(
        {
            "t": "update",
            "zone": name_text(zone),
            "prereq": [fix(p) for p in prereq],
            "update": [fix(u) for u in update],
        }
    )
    try:
        decode_op(op)
    except Malformed as error:
        raise ValueError(f"not a valid update op: {error}") from None
    return op


def make_query_op(name: dns.name.Name | str, rdtype: dns.rdatatype.RdataType | str | int) -> str:
    """The canonical query op for ``name`` and ``rdtype``."""
    return dumps({"t": "query", "name": name_text(name), "type": type_text(rdtype)})


query_op = make_query_op


# Decoded operations: plain tuples of canonical texts.
Prereq: TypeAlias = tuple[str, str, str, frozenset[str]]  # kind, name, type ("" if none), rdatas
Change: TypeAlias = tuple[str, str, str, int, str]  # kind, name, type, ttl, rdata ("", 0, "")


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateOp:
    zone: str
    prereq: tuple[Prereq, ...]
    update: tuple[Change, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class QueryOp:
    name: str
    rdtype: str


def field_name(value: object) -> str:
    if not isinstance(value, str) or len(value) > 1024 or not is_canonical_name(value):
        raise Malformed(f"not a canonical absolute name: {value!r}")
    return value


def field_type(value: object, *, meta_ok: bool = False) -> str:
    if not isinstance(value, str):
        raise Malformed(f"not a type mnemonic: {value!r}")
    kind = type_kind(value)
    if kind is None or (kind == "meta" and not meta_ok):
        raise Malformed(f"not a data type mnemonic: {value!r}")
    return value


def field_ttl(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= TTL_MAX:
        raise Malformed(f"not a TTL: {value!r}")
    return value


def field_rdata(rdtype: str, value: object) -> str:
    if not isinstance(value, str) or not is_canonical_rdata(rdtype, value):
        raise Malformed(f"not canonical {rdtype} rdata: {value!r}")
    return value


def _decode_prereq(entry: object) -> Prereq:
    if not isinstance(entry, list) or not entry:
        raise Malformed("a prerequisite is a non-empty list")
    kind, args = entry[0], entry[1:]
    if kind in ("yxdomain", "nxdomain") and len(args) == 1:
        return (kind, field_name(args[0]), "", frozenset())
    if kind in ("yxrrset", "nxrrset") and len(args) == 2:
        return (kind, field_name(args[0]), field_type(args[1]), frozenset())
    if kind == "yxrrset_exact" and len(args) == 3:
        rdtype = field_type(args[1])
        values = args[2]
        if not isinstance(values, list) or not values:
            raise Malformed("yxrrset_exact needs a non-empty list of rdata")
        rdatas = [field_rdata(rdtype, v) for v in values]
        if rdatas != sorted(set(rdatas)):
            raise Malformed("yxrrset_exact rdata must be sorted and distinct")
        return (kind, field_name(args[0]), rdtype, frozenset(rdatas))
    raise Malformed(f"unknown prerequisite {entry!r:.80}")


def _decode_change(entry: object) -> Change:
    if not isinstance(entry, list) or not entry:
        raise Malformed("an update is a non-empty list")
    kind, args = entry[0], entry[1:]
    if kind == "add" and len(args) == 4:
        rdtype = field_type(args[1])
        return (
            kind,
            field_name(args[0]),
            rdtype,
            field_ttl(args[2]),
            field_rdata(rdtype, args[3]),
        )
    if kind == "delete_rrset" and len(args) == 2:
        return (kind, field_name(args[0]), field_type(args[1]), 0, "")
    if kind == "delete_name" and len(args) == 1:
        return (kind, field_name(args[0]), "", 0, "")
    if kind == "delete_rr" and len(args) == 3:
        rdtype = field_type(args[1])
        return (kind, field_name(args[0]), rdtype, 0, field_rdata(rdtype, args[2]))
    raise Malformed(f"unknown update {entry!r:.80}")


def decode_op(text: str) -> UpdateOp | QueryOp:
    """Decodes an operation's text; raises Malformed (never anything else)."""
    if not isinstance(text, str) or not op_fits(text):
        raise Malformed("not an operation text of acceptable size")
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        raise Malformed("not JSON") from None
    if not isinstance(obj, dict):
        raise Malformed("not a JSON object")
    if obj.get("t") == "query" and obj.keys() == {"t", "name", "type"}:
        return QueryOp(name=field_name(obj["name"]), rdtype=field_type(obj["type"], meta_ok=True))
    if obj.get("t") != "update" or obj.keys() != {"t", "zone", "prereq", "update"}:
        raise Malformed("neither an update nor a query")
    prereq, update = obj["prereq"], obj["update"]
    if not isinstance(prereq, list) or not isinstance(update, list):
        raise Malformed("prereq and update are lists")
    if len(prereq) > OP_ENTRIES_MAX or len(update) > OP_ENTRIES_MAX:
        raise Malformed("too many entries")
    return UpdateOp(
        zone=field_name(obj["zone"]),
        prereq=tuple(_decode_prereq(p) for p in prereq),
        update=tuple(_decode_change(u) for u in update),
    )


# ---------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True, kw_only=True)
class QueryResult:
    """The answer to one query as canonical records; each section is sorted.

    ``rcode`` is a mnemonic of RCODES_QUERY; ``aa`` is the Authoritative Answer flag. The
    frontend renders it with ``rrsets(section)``.
    """

    rcode: str
    aa: bool
    answer: tuple[Record, ...] = ()
    authority: tuple[Record, ...] = ()
    additional: tuple[Record, ...] = ()

    def __post_init__(self) -> None:
        assert self.rcode in RCODES_QUERY, self.rcode
        for section in (self.answer, self.authority, self.additional):
            assert list(section) == sorted(section), "sections are sorted"

    @property
    def rcode_value(self) -> dns.rcode.Rcode:
        return dns.rcode.from_text(self.rcode)

    def rrsets(self, section: str) -> list[dns.rrset.RRset]:
        """One of "answer", "authority", "additional" as dnspython RRsets."""
        records: tuple[Record, ...] = getattr(self, section)
        return to_rrsets(records)


def to_rrsets(records: Iterable[Record]) -> list[dns.rrset.RRset]:
    """Groups canonical records into dnspython RRsets (class IN), in order of appearance."""
    groups: dict[tuple[str, str], dns.rrset.RRset] = {}
    for name, rdtype, ttl, rdata in records:
        rrset = groups.get((name, rdtype))
        if rrset is None:
            rrset = dns.rrset.RRset(
                dns.name.from_text(name), dns.rdataclass.IN, dns.rdatatype.from_text(rdtype)
            )
            groups[(name, rdtype)] = rrset
        rrset.add(dns.rdata.from_text(dns.rdataclass.IN, rrset.rdtype, rdata), ttl)
    return list(groups.values())


def encode_query_result(result: QueryResult) -> str:
    """The canonical result text of a query."""
    return dumps(
        {
            "rcode": result.rcode,
            "aa": result.aa,
            "answer": [list(r) for r in result.answer],
            "authority": [list(r) for r in result.authority],
            "additional": [list(r) for r in result.additional],
        }
    )


def decode_query_result(text: str) -> QueryResult:
    """The inverse of ``encode_query_result``; raises ValueError on anything else."""
    obj = json.loads(text)
    if not isinstance(obj, dict) or obj.keys() != {
        "rcode",
        "aa",
        "answer",
        "authority",
        "additional",
    }:
        raise ValueError("not a query result")
    if obj["rcode"] not in RCODES_QUERY or not isinstance(obj["aa"], bool):
        raise ValueError("bad rcode or aa")

    def section(value: object) -> tuple[Record, ...]:
        if not isinstance(value, list):
            raise ValueError("a section is a list")
        out: list[Record] = []
        for r in value:
            if not (
                isinstance(r, list)
                and len(r) == 4
                and isinstance(r[0], str)
                and isinstance(r[1], str)
                and isinstance(r[2], int)
                and isinstance(r[3], str)
            ):
                raise ValueError(f"not a record: {r!r:.80}")
            out.append((r[0], r[1], r[2], r[3]))
        if out != sorted(out):
            raise ValueError("a section must be sorted")
        return tuple(out)

    return QueryResult(
        rcode=obj["rcode"],
        aa=obj["aa"],
        answer=section(obj["answer"]),
        authority=section(obj["authority"]),
        additional=section(obj["additional"]),
    )


def result_rcode(text: str) -> dns.rcode.Rcode:
    """The rcode of any result text (update or query)."""
    obj = json.loads(text)
    if not isinstance(obj, dict) or not isinstance(obj.get("rcode"), str):
        raise ValueError("not a result")
    return dns.rcode.from_text(obj["rcode"])


def update_result(rcode: str, serial: int) -> str:
    assert rcode in RCODES_UPDATE, rcode
    return dumps({"rcode": rcode, "serial": serial})
