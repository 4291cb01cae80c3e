"""The replicated state machine: one authoritative DNS zone with RFC 2136 update semantics.

VR orders operations; this module executes them. Every replica applies every committed update,
so the cost of ``Zone.apply`` caps the update rate of the whole cluster, and the explorer forks
replica states often, so ``clone`` must be cheap. Both point to the same shape, chosen by
measurement (``bench/bench_service.py``): a plain ``dict`` from the owner name's canonical text
to an immutable node (a read-only mapping from type mnemonic to a frozen ``RecordSet`` of
canonical rdata texts). A change builds new nodes for the names it touches and never mutates a
published one, so ``clone`` copies two dicts of references and the clones share every node.
Keys are canonical text rather than ``dns.name.Name`` because a ``Name`` hashes in pure Python
(about 3 µs a lookup, against 0.06 µs for a ``str``) and a query walks several names. The
digest is an additive multiset hash (the sum modulo 2**256 of a SHA-256 per record) kept up to
date on every change, so ``digest()`` costs nothing per update at any zone size. dnspython is
used at the edges only: to parse zone files, to check that an operation's rdata is canonical,
to read UPDATE messages and to build the rrsets the frontend renders.

An operation is canonical JSON text, and a result is too: text is what a VR log entry carries,
what a history records and what an independent model (``spec/dns_model.py``) can execute
without sharing a line of code with this one, so the encoding is a contract, not a detail.
Every rule lives in ``spec/dns.md``: the shapes of operations and results, the order in which
an update is executed (decode, zone, prerequisites, prescan, updates, serial), what
``update_op_from_message`` checks before an update is ordered, how a query is answered, and
the size bound an op shares with the peers' codec (``vrref.core.messages.OP_BYTES_MAX``).
The code cites the RFC section wherever it applies one of those rules.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeAlias

import dns.exception
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rrset
import dns.update
import dns.zone

from vrref.core.messages import OP_BYTES_MAX, op_fits

Record: TypeAlias = tuple[str, str, int, str]
"""One resource record in canonical text: (owner name, type mnemonic, TTL, rdata)."""

CNAME_CHAIN_MAX: Final = 8  # CNAME links followed in one answer (loops stop earlier)
OP_ENTRIES_MAX: Final = 65535  # RFC 1035 section counts are 16-bit
TTL_MAX: Final = (1 << 31) - 1  # RFC 2181 §8
SERIAL_MODULUS: Final = 1 << 32  # RFC 1982, SERIAL_BITS = 32
_HASH_MODULUS: Final = 1 << 256

RCODES_UPDATE: Final = frozenset(
    {"NOERROR", "NXDOMAIN", "YXDOMAIN", "NXRRSET", "YXRRSET", "NOTZONE", "REFUSED", "FORMERR"}
)
RCODES_QUERY: Final = frozenset({"NOERROR", "NXDOMAIN", "REFUSED", "NOTIMP"})
# Types that hold a single record: an add replaces the RRset (dnspython's singletons; SOA and
# CNAME have rules of their own).
_SINGLETON_TYPES: Final = frozenset({"DNAME", "NSEC", "NXT"})
_EMPTY_NODE: Final[Mapping[str, RecordSet]] = {}


class ZoneLoadError(ValueError):
    """The zone text or records cannot be served (syntax, missing SOA/NS, CNAME conflicts)."""


class UpdateError(Exception):
    """An UPDATE message that cannot become an operation; ``rcode`` is the answer to send."""

    def __init__(self, rcode: dns.rcode.Rcode, reason: str) -> None:
        super().__init__(f"{dns.rcode.to_text(rcode)}: {reason}")
        self.rcode = rcode
        self.reason = reason


class _Malformed(Exception):
    """Internal: an operation text that does not decode (the result is FORMERR)."""


# ---------------------------------------------------------------------- canonical texts


# The checks below are pure, so their answers are cached: a replica meets the same names and
# rdatas again and again. Long texts are not cached, to bound the caches' memory.
_CACHED_CHARS_MAX: Final = 256


@functools.lru_cache(maxsize=1 << 14)
def _is_canonical_name(text: str) -> bool:
    try:
        name = dns.name.from_text(text, None)
    except Exception:  # dnspython raises many kinds (and IDNA errors) on bad names
        return False
    return name.is_absolute() and name.canonicalize().to_text() == text


@functools.lru_cache(maxsize=1024)
def _type_kind(text: str) -> str | None:
    """Classifies a type mnemonic: "data", "meta", or None when it is not canonical."""
    try:
        rdtype = dns.rdatatype.from_text(text)
    except Exception:  # unknown mnemonics, out-of-range TYPEnnn
        return None
    if dns.rdatatype.to_text(rdtype) != text:
        return None
    return "meta" if rdtype == 0 or dns.rdatatype.is_metatype(rdtype) else "data"


def _canonical_rdata_of(rdata: dns.rdata.Rdata, origin: dns.name.Name | None = None) -> str:
    """The canonical text of an rdata: absolute names, lowercased where DNSSEC canonical form
    lowercases them (a round trip through ``to_digestable``)."""
    wire = rdata.to_digestable(origin)
    plain = dns.rdata.from_wire(dns.rdataclass.IN, rdata.rdtype, wire, 0, len(wire))
    return plain.to_text()


def _is_canonical_rdata(rdtype: str, text: str) -> bool:
    if len(text) <= _CACHED_CHARS_MAX:
        return _is_canonical_rdata_cached(rdtype, text)
    return _check_rdata(rdtype, text)


@functools.lru_cache(maxsize=1 << 14)
def _is_canonical_rdata_cached(rdtype: str, text: str) -> bool:
    return _check_rdata(rdtype, text)


def _check_rdata(rdtype: str, text: str) -> bool:
    try:
        parsed = dns.rdata.from_text(
            dns.rdataclass.IN, rdtype, text, origin=dns.name.root, relativize=False
        )
        return _canonical_rdata_of(parsed) == text
    except Exception:  # dnspython raises many kinds on bad rdata text
        return False


@functools.lru_cache(maxsize=1 << 16)
def _labels_text(labels: tuple[bytes, ...]) -> str:
    """Canonical text of an absolute name's labels (cached: hashing a tuple of bytes is fast,
    hashing a ``dns.name.Name`` is not)."""
    return dns.name.Name(labels).canonicalize().to_text()


def _name_text(name: dns.name.Name | str) -> str:
    """Canonical text of a name given as a Name or as (absolute) text."""
    if isinstance(name, str):
        name = dns.name.from_text(name, None)
    if not name.is_absolute():
        raise ValueError(f"the name {name} is not absolute")
    return _labels_text(name.labels)


@functools.lru_cache(maxsize=1024)
def _type_number_text(rdtype: int) -> str:
    return dns.rdatatype.to_text(dns.rdatatype.RdataType.make(rdtype))


def _type_text(rdtype: dns.rdatatype.RdataType | str | int) -> str:
    if isinstance(rdtype, str):
        rdtype = dns.rdatatype.from_text(rdtype)
    return _type_number_text(int(rdtype))


def _dots(name: str) -> list[int]:
    """Positions of the unescaped dots of a canonical absolute name (each ends a label)."""
    if "\\" not in name:
        positions = []
        at = name.find(".")
        while at != -1:
            positions.append(at)
            at = name.find(".", at + 1)
        return positions
    positions = []
    i = 0
    while i < len(name):
        if name[i] == "\\":
            i += 2  # \X or the first digit of \DDD: never an unescaped dot
            continue
        if name[i] == ".":
            positions.append(i)
        i += 1
    return positions


@functools.lru_cache(maxsize=1 << 16)
def _ancestors(name: str, origin: str) -> tuple[str, ...]:
    """The proper ancestors of ``name`` from its parent up to ``origin`` (inclusive); ``name``
    must be in the zone."""
    if name == origin:
        return ()
    out = []
    for at in _dots(name):
        suffix = name[at + 1 :] or "."
        out.append(suffix)
        if suffix == origin:
            break
    return tuple(out)


def _in_zone(name: str, origin: str) -> bool:
    """Whether ``name`` is ``origin`` or below it (both canonical texts)."""
    if name == origin or origin == ".":
        return True
    cut = len(name) - len(origin) - 1
    if cut < 0 or not name.endswith(origin) or name[cut] != ".":
        return False
    backslashes = 0
    while cut - 1 - backslashes >= 0 and name[cut - 1 - backslashes] == "\\":
        backslashes += 1
    return backslashes % 2 == 0


def _serial_of(soa: str) -> int:
    return int(soa.split(" ")[2])


def _minimum_of(soa: str) -> int:
    return int(soa.split(" ")[6])


def _with_serial(soa: str, serial: int) -> str:
    fields = soa.split(" ")
    fields[2] = str(serial)
    return " ".join(fields)


def serial_gt(a: int, b: int) -> bool:
    """RFC 1982 §3.2: ``a`` is greater than ``b`` in 32-bit serial arithmetic."""
    half = SERIAL_MODULUS >> 1
    return (a < b and b - a > half) or (a > b and a - b < half)


def _record_hash(name: str, rdtype: str, ttl: int, rdata: str) -> int:
    text = f"{name}\t{rdtype}\t{ttl}\t{rdata}".encode()
    return int.from_bytes(hashlib.sha256(text).digest(), "big")


def _dumps(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True)


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
            out[1] = _name_text(out[1])
        if out and out[0] == "yxrrset_exact" and len(out) == 4 and isinstance(out[3], list):
            out[3] = sorted(set(out[3]))
        return out

    op = _dumps(
        {
            "t": "update",
            "zone": _name_text(zone),
            "prereq": [fix(p) for p in prereq],
            "update": [fix(u) for u in update],
        }
    )
    try:
        _decode(op)
    except _Malformed as error:
        raise ValueError(f"not a valid update op: {error}") from None
    return op


def make_query_op(name: dns.name.Name | str, rdtype: dns.rdatatype.RdataType | str | int) -> str:
    """The canonical query op for ``name`` and ``rdtype``."""
    return _dumps({"t": "query", "name": _name_text(name), "type": _type_text(rdtype)})


query_op = make_query_op


def update_op_from_message(msg: dns.update.UpdateMessage, zone_origin: dns.name.Name | str) -> str:
    """The update op for a parsed (or locally built) UPDATE, after RFC 2136's static checks.

    Raises UpdateError with FORMERR (zone section shape, classes, types, TTLs: §3.1.1,
    §3.2.1-3, §3.4.1.2-3), NOTAUTH (a zone other than ``zone_origin`` in class IN: §3.1.2) or
    NOTZONE (a name outside the zone: §3.2.5, §3.4.1.3). dnspython drops the TTL of the RRs
    without rdata (class ANY, and NONE in prerequisites) and zeroes TTLs above 2**31-1, so
    the "TTL must be 0" checks can only apply to the RRs that carry rdata.
    """
    origin = (
        zone_origin if isinstance(zone_origin, dns.name.Name) else dns.name.from_text(zone_origin)
    )
    if len(msg.zone) != 1 or msg.zone[0].rdtype != dns.rdatatype.SOA:
        raise UpdateError(dns.rcode.FORMERR, "the zone section must hold one SOA question")
    base = msg.origin if msg.origin is not None else origin
    zone_rrset = msg.zone[0]
    if zone_rrset.rdclass != dns.rdataclass.IN or zone_rrset.name.derelativize(base) != origin:
        raise UpdateError(dns.rcode.NOTAUTH, f"not authoritative for {zone_rrset.name}")

    def owner(rrset: dns.rrset.RRset) -> str:
        name = rrset.name.derelativize(base)
        if not name.is_subdomain(origin):
            raise UpdateError(dns.rcode.NOTZONE, f"{name} is outside {origin}")
        return name.canonicalize().to_text()

    def data_type(rrset: dns.rrset.RRset) -> str:
        rdtype = rrset.rdtype
        if rdtype == 0 or dns.rdatatype.is_metatype(rdtype):
            raise UpdateError(dns.rcode.FORMERR, f"type {rdtype.name} is not a data type")
        return dns.rdatatype.to_text(rdtype)

    def effective_class(rrset: dns.rrset.RRset) -> dns.rdataclass.RdataClass:
        # Parsed messages keep ANY/NONE in ``deleting``; dnspython's builders sometimes in
        # ``rdclass``. On the wire the class is ``deleting`` when set.
        rdclass = rrset.deleting if rrset.deleting is not None else rrset.rdclass
        if rdclass not in (dns.rdataclass.IN, dns.rdataclass.ANY, dns.rdataclass.NONE):
            raise UpdateError(dns.rcode.FORMERR, f"class {rdclass.name} in the zone's sections")
        return rdclass

    independent: list[list[object]] = []
    exact: dict[tuple[str, str], set[str]] = {}
    for rrset in msg.prerequisite:
        rdclass = effective_class(rrset)
        if len(rrset) and rrset.ttl != 0:
            raise UpdateError(dns.rcode.FORMERR, "prerequisite with a non-zero TTL")
        name = owner(rrset)
        if rdclass != dns.rdataclass.IN:  # class ANY or NONE: no rdata (§3.2.1, §3.2.2)
            if len(rrset):
                raise UpdateError(dns.rcode.FORMERR, "class ANY/NONE prerequisite with rdata")
            present = rdclass == dns.rdataclass.ANY
            if rrset.rdtype == dns.rdatatype.ANY:
                independent.append(["yxdomain" if present else "nxdomain", name])
            else:
                independent.append(["yxrrset" if present else "nxrrset", name, data_type(rrset)])
            continue
        rdtype = data_type(rrset)  # class IN: value-dependent (§3.2.3)
        if not len(rrset):
            raise UpdateError(dns.rcode.FORMERR, "class IN prerequisite without rdata")
        values = exact.setdefault((name, rdtype), set())
        values.update(_canonical_rdata_of(rdata, base) for rdata in rrset)
    dependent: list[list[object]] = [
        ["yxrrset_exact", n, t, sorted(v)] for (n, t), v in exact.items()
    ]

    updates: list[list[object]] = []
    for rrset in msg.update:
        rdclass = effective_class(rrset)
        name = owner(rrset)
        if rdclass == dns.rdataclass.ANY:  # §3.4.1.3: delete an RRset or a name
            if len(rrset):
                raise UpdateError(dns.rcode.FORMERR, "class ANY update with rdata")
            if rrset.rdtype == dns.rdatatype.ANY:
                updates.append(["delete_name", name])
            else:
                updates.append(["delete_rrset", name, data_type(rrset)])
            continue
        rdtype = data_type(rrset)
        if not len(rrset):
            raise UpdateError(dns.rcode.FORMERR, "update RR without rdata")
        if rdclass == dns.rdataclass.NONE:
            if rrset.ttl != 0:
                raise UpdateError(dns.rcode.FORMERR, "class NONE update with a non-zero TTL")
            updates.extend(
                ["delete_rr", name, rdtype, _canonical_rdata_of(rd, base)] for rd in rrset
            )
        else:
            if not 0 <= rrset.ttl <= TTL_MAX:
                raise UpdateError(dns.rcode.FORMERR, f"TTL {rrset.ttl} out of range")
            updates.extend(
                ["add", name, rdtype, rrset.ttl, _canonical_rdata_of(rd, base)] for rd in rrset
            )
    op = _dumps(
        {
            "t": "update",
            "zone": origin.canonicalize().to_text(),
            "prereq": independent + dependent,
            "update": updates,
        }
    )
    if not op_fits(op):  # the peers' codec would refuse to carry it (vrref/core/messages.py)
        raise UpdateError(
            dns.rcode.FORMERR, f"update too large: over {OP_BYTES_MAX} bytes as an op"
        )
    return op


# Decoded operations: plain tuples of canonical texts.
_Prereq: TypeAlias = tuple[str, str, str, frozenset[str]]  # kind, name, type ("" if none), rdatas
_Change: TypeAlias = tuple[str, str, str, int, str]  # kind, name, type, ttl, rdata ("", 0, "")


@dataclass(frozen=True, slots=True, kw_only=True)
class _UpdateOp:
    zone: str
    prereq: tuple[_Prereq, ...]
    update: tuple[_Change, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class _QueryOp:
    name: str
    rdtype: str


def _field_name(value: object) -> str:
    if not isinstance(value, str) or len(value) > 1024 or not _is_canonical_name(value):
        raise _Malformed(f"not a canonical absolute name: {value!r}")
    return value


def _field_type(value: object, *, meta_ok: bool = False) -> str:
    if not isinstance(value, str):
        raise _Malformed(f"not a type mnemonic: {value!r}")
    kind = _type_kind(value)
    if kind is None or (kind == "meta" and not meta_ok):
        raise _Malformed(f"not a data type mnemonic: {value!r}")
    return value


def _field_ttl(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= TTL_MAX:
        raise _Malformed(f"not a TTL: {value!r}")
    return value


def _field_rdata(rdtype: str, value: object) -> str:
    if not isinstance(value, str) or not _is_canonical_rdata(rdtype, value):
        raise _Malformed(f"not canonical {rdtype} rdata: {value!r}")
    return value


def _decode_prereq(entry: object) -> _Prereq:
    if not isinstance(entry, list) or not entry:
        raise _Malformed("a prerequisite is a non-empty list")
    kind, args = entry[0], entry[1:]
    if kind in ("yxdomain", "nxdomain") and len(args) == 1:
        return (kind, _field_name(args[0]), "", frozenset())
    if kind in ("yxrrset", "nxrrset") and len(args) == 2:
        return (kind, _field_name(args[0]), _field_type(args[1]), frozenset())
    if kind == "yxrrset_exact" and len(args) == 3:
        rdtype = _field_type(args[1])
        values = args[2]
        if not isinstance(values, list) or not values:
            raise _Malformed("yxrrset_exact needs a non-empty list of rdata")
        rdatas = [_field_rdata(rdtype, v) for v in values]
        if rdatas != sorted(set(rdatas)):
            raise _Malformed("yxrrset_exact rdata must be sorted and distinct")
        return (kind, _field_name(args[0]), rdtype, frozenset(rdatas))
    raise _Malformed(f"unknown prerequisite {entry!r:.80}")


def _decode_change(entry: object) -> _Change:
    if not isinstance(entry, list) or not entry:
        raise _Malformed("an update is a non-empty list")
    kind, args = entry[0], entry[1:]
    if kind == "add" and len(args) == 4:
        rdtype = _field_type(args[1])
        return (
            kind,
            _field_name(args[0]),
            rdtype,
            _field_ttl(args[2]),
            _field_rdata(rdtype, args[3]),
        )
    if kind == "delete_rrset" and len(args) == 2:
        return (kind, _field_name(args[0]), _field_type(args[1]), 0, "")
    if kind == "delete_name" and len(args) == 1:
        return (kind, _field_name(args[0]), "", 0, "")
    if kind == "delete_rr" and len(args) == 3:
        rdtype = _field_type(args[1])
        return (kind, _field_name(args[0]), rdtype, 0, _field_rdata(rdtype, args[2]))
    raise _Malformed(f"unknown update {entry!r:.80}")


def _decode(text: str) -> _UpdateOp | _QueryOp:
    """Decodes an operation's text; raises _Malformed (never anything else)."""
    if not isinstance(text, str) or not op_fits(text):
        raise _Malformed("not an operation text of acceptable size")
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        raise _Malformed("not JSON") from None
    if not isinstance(obj, dict):
        raise _Malformed("not a JSON object")
    if obj.get("t") == "query" and obj.keys() == {"t", "name", "type"}:
        return _QueryOp(
            name=_field_name(obj["name"]), rdtype=_field_type(obj["type"], meta_ok=True)
        )
    if obj.get("t") != "update" or obj.keys() != {"t", "zone", "prereq", "update"}:
        raise _Malformed("neither an update nor a query")
    prereq, update = obj["prereq"], obj["update"]
    if not isinstance(prereq, list) or not isinstance(update, list):
        raise _Malformed("prereq and update are lists")
    if len(prereq) > OP_ENTRIES_MAX or len(update) > OP_ENTRIES_MAX:
        raise _Malformed("too many entries")
    return _UpdateOp(
        zone=_field_name(obj["zone"]),
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
    return _dumps(
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


def _update_result(rcode: str, serial: int) -> str:
    assert rcode in RCODES_UPDATE, rcode
    return _dumps({"rcode": rcode, "serial": serial})


# ---------------------------------------------------------------------- the zone


@dataclass(frozen=True, slots=True)
class RecordSet:
    """The records of one name and type: one TTL, a set of canonical rdata texts."""

    ttl: int
    rdatas: frozenset[str]


class Zone:
    """One authoritative zone (class IN): the DNS service as a VR state machine.

    Invariants: every owner name is in the zone and owns at least one record; the apex owns
    an SOA and at least one NS; no name owns a CNAME and other data; ``_below[a]`` counts the
    owner names strictly below each proper-ancestor ``a`` under the apex; ``_hash`` is the
    sum of the record hashes.
    """

    __slots__ = ("_below", "_digest", "_hash", "_nodes", "_origin")

    def __init__(self, origin: str, records: Iterable[Record] = ()) -> None:
        """A zone from canonical records; prefer ``from_records``, which validates them."""
        self._origin = origin
        self._nodes: dict[str, Mapping[str, RecordSet]] = {}
        self._below: dict[str, int] = {}
        self._hash = 0
        self._digest: str | None = None
        work: dict[str, dict[str, RecordSet]] = {}
        for name, rdtype, ttl, rdata in records:
            node = work.setdefault(name, {})
            old = node.get(rdtype)
            if old is not None and old.ttl != ttl:
                raise ZoneLoadError(f"{name} {rdtype}: one RRset, two TTLs ({old.ttl}, {ttl})")
            node[rdtype] = RecordSet(ttl, (old.rdatas if old else frozenset()) | {rdata})
        self._commit(work)

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_records(cls, origin: dns.name.Name | str, records: Iterable[Record]) -> Zone:
        """A zone from canonical records, checked like an operation's fields would be."""
        origin_text = _name_text(origin)
        checked: list[Record] = []
        try:
            for name, rdtype, ttl, rdata in records:
                _field_name(name)
                _field_type(rdtype)
                _field_ttl(ttl)
                _field_rdata(rdtype, rdata)
                if not _in_zone(name, origin_text):
                    raise ZoneLoadError(f"{name} is outside {origin_text}")
                checked.append((name, rdtype, ttl, rdata))
        except _Malformed as error:
            raise ZoneLoadError(str(error)) from None
        zone = cls(origin_text, checked)
        zone._check_loadable()
        return zone

    @classmethod
    def from_text(cls, text: str, origin: dns.name.Name | str | None) -> Zone:
        """A zone from master-file text (RFC 1035 §5) for ``origin`` (or its $ORIGIN)."""
        try:
            parsed = dns.zone.from_text(text, origin, relativize=False)
        except (dns.exception.DNSException, ValueError, KeyError) as error:
            raise ZoneLoadError(f"cannot load the zone: {error}") from error
        return cls._from_dns_zone(parsed)

    @classmethod
    def from_file(cls, path: str | Path, origin: dns.name.Name | str | None = None) -> Zone:
        """A zone from a master file (RFC 1035 §5) for ``origin`` (or its $ORIGIN)."""
        try:
            parsed = dns.zone.from_file(str(path), origin, relativize=False)
        except (dns.exception.DNSException, ValueError, KeyError, OSError) as error:
            raise ZoneLoadError(f"cannot load the zone from {path}: {error}") from error
        return cls._from_dns_zone(parsed)

    @classmethod
    def _from_dns_zone(cls, parsed: dns.zone.Zone) -> Zone:
        assert parsed.origin is not None
        if parsed.rdclass != dns.rdataclass.IN:
            raise ZoneLoadError("only class IN zones are served")
        records: list[Record] = []
        for name, node in parsed.nodes.items():
            owner = name.canonicalize().to_text()
            for rdataset in node.rdatasets:
                rdtype = dns.rdatatype.to_text(rdataset.rdtype)
                for rdata in rdataset:
                    text = _canonical_rdata_of(rdata, parsed.origin)
                    records.append((owner, rdtype, rdataset.ttl, text))
        return cls.from_records(parsed.origin, records)

    def _check_loadable(self) -> None:
        apex = self._nodes.get(self._origin, _EMPTY_NODE)
        if "SOA" not in apex or len(apex["SOA"].rdatas) != 1:
            raise ZoneLoadError(f"the zone {self._origin} needs one SOA at its apex")
        if "NS" not in apex:
            raise ZoneLoadError(f"the zone {self._origin} needs an NS RRset at its apex")
        for name, node in self._nodes.items():
            if "CNAME" in node and len(node) > 1:
                raise ZoneLoadError(f"{name} owns a CNAME and other data")
            if "CNAME" in node and len(node["CNAME"].rdatas) > 1:
                raise ZoneLoadError(f"{name} owns more than one CNAME")
            for rdtype in ("SOA", *_SINGLETON_TYPES):
                if rdtype in node and (
                    len(node[rdtype].rdatas) > 1 or (name != self._origin and rdtype == "SOA")
                ):
                    raise ZoneLoadError(f"{name} {rdtype}: misplaced or not single")

    # ------------------------------------------------------------------ the StateMachine

    def apply(self, op: str) -> str:
        """Executes one operation (see the module docstring); never raises."""
        try:
            decoded = _decode(op)
        except _Malformed:
            return _update_result("FORMERR", self.serial)
        if isinstance(decoded, _QueryOp):
            return encode_query_result(self._answer(decoded.name, decoded.rdtype))
        return _update_result(self._update(decoded), self.serial)

    def clone(self) -> Zone:
        """An independent copy: two dict copies; nodes are immutable and shared."""
        other = Zone.__new__(Zone)
        other._origin = self._origin
        other._nodes = dict(self._nodes)
        other._below = dict(self._below)
        other._hash = self._hash
        other._digest = self._digest
        return other

    def digest(self) -> str:
        """SHA-256 (hex) of the origin and the records' multiset hash; cached until a change."""
        if self._digest is None:
            text = f"{self._origin}\t{self._hash:064x}".encode()
            self._digest = hashlib.sha256(text).hexdigest()
        return self._digest

    def __repr__(self) -> str:
        return f"Zone({self._origin} serial={self.serial} names={len(self._nodes)})"

    # ------------------------------------------------------------------ reading

    @property
    def origin(self) -> dns.name.Name:
        return dns.name.from_text(self._origin)

    @property
    def serial(self) -> int:
        return _serial_of(self._soa_text())

    def records(self) -> tuple[Record, ...]:
        """Every record of the zone, sorted."""
        return tuple(
            sorted(
                (name, rdtype, rs.ttl, rdata)
                for name, node in self._nodes.items()
                for rdtype, rs in node.items()
                for rdata in rs.rdatas
            )
        )

    def soa_rrset(self) -> dns.rrset.RRset:
        """The apex SOA as a dnspython RRset (AXFR starts and ends with it)."""
        soa = self._nodes[self._origin]["SOA"]
        return to_rrsets((self._origin, "SOA", soa.ttl, r) for r in soa.rdatas)[0]

    def rrsets(self) -> Iterator[dns.rrset.RRset]:
        """Every RRset as dnspython RRsets, sorted by name and type (for zone transfers)."""
        for name in sorted(self._nodes):
            node = self._nodes[name]
            for rdtype in sorted(node):
                rs = node[rdtype]
                yield from to_rrsets((name, rdtype, rs.ttl, r) for r in sorted(rs.rdatas))

    def query(
        self, name: dns.name.Name | str, rdtype: dns.rdatatype.RdataType | str | int
    ) -> QueryResult:
        """The answer to a query; the same as ``apply(make_query_op(name, rdtype))``."""
        return self._answer(_name_text(name), _type_text(rdtype))

    def _soa_text(self) -> str:
        (soa,) = self._nodes[self._origin]["SOA"].rdatas
        return soa

    def _answer(self, qname: str, qtype: str) -> QueryResult:
        if not _in_zone(qname, self._origin):
            return QueryResult(rcode="REFUSED", aa=False)
        if _type_kind(qtype) == "meta" and qtype != "ANY":
            return QueryResult(rcode="NOTIMP", aa=False)
        answer: list[Record] = []
        seen: set[str] = set()
        current = qname
        for _ in range(CNAME_CHAIN_MAX + 1):
            seen.add(current)
            cut = self._delegation(current, qtype)
            if cut is not None:
                return self._referral(cut, answer)
            node = self._nodes.get(current)
            if node is None:
                if current in self._below:  # an empty non-terminal
                    return self._negative("NOERROR", answer)
                node = self._wildcard(current)
                if node is None:
                    return self._negative("NXDOMAIN", answer)
                if not node:  # the source of synthesis is an empty non-terminal
                    return self._negative("NOERROR", answer)
            if qtype == "ANY":
                for rdtype, each in node.items():
                    answer.extend((current, rdtype, each.ttl, r) for r in each.rdatas)
                return QueryResult(rcode="NOERROR", aa=True, answer=tuple(sorted(answer)))
            rs = node.get(qtype)
            if rs is not None:
                answer.extend((current, qtype, rs.ttl, r) for r in rs.rdatas)
                return QueryResult(rcode="NOERROR", aa=True, answer=tuple(sorted(answer)))
            cname = node.get("CNAME")
            if cname is None:
                return self._negative("NOERROR", answer)
            (target,) = cname.rdatas
            answer.append((current, "CNAME", cname.ttl, target))
            if target in seen or not _in_zone(target, self._origin):
                break
            current = target
        return QueryResult(rcode="NOERROR", aa=True, answer=tuple(sorted(answer)))

    def _delegation(self, name: str, qtype: str) -> str | None:
        """The topmost zone cut at or above ``name`` (a DS query at a cut is answered here)."""
        for above in reversed(_ancestors(name, self._origin)[:-1]):
            if "NS" in self._nodes.get(above, _EMPTY_NODE):
                return above
        if name != self._origin and qtype != "DS" and "NS" in self._nodes.get(name, _EMPTY_NODE):
            return name
        return None

    def _wildcard(self, name: str) -> Mapping[str, RecordSet] | None:
        """RFC 4592 §3.3.1: the source of synthesis at the closest encloser, if it owns data.

        An empty non-terminal wildcard gives an empty node (NODATA)."""
        for encloser in _ancestors(name, self._origin):
            if encloser in self._nodes or encloser in self._below:
                source = "*." + encloser if encloser != "." else "*."
                if source in self._nodes:
                    return self._nodes[source]
                return _EMPTY_NODE if source in self._below else None
        raise AssertionError("the apex always exists")

    def _referral(self, cut: str, answer: list[Record]) -> QueryResult:
        ns = self._nodes[cut]["NS"]
        glue: list[Record] = []
        for target in ns.rdatas:
            if _in_zone(target, self._origin):
                node = self._nodes.get(target, _EMPTY_NODE)
                for rdtype in ("A", "AAAA"):
                    rs = node.get(rdtype)
                    if rs is not None:
                        glue.extend((target, rdtype, rs.ttl, r) for r in rs.rdatas)
        return QueryResult(
            rcode="NOERROR",
            aa=bool(answer),
            answer=tuple(sorted(answer)),
            authority=tuple(sorted((cut, "NS", ns.ttl, r) for r in ns.rdatas)),
            additional=tuple(sorted(glue)),
        )

    def _negative(self, rcode: str, answer: list[Record]) -> QueryResult:
        soa_rs = self._nodes[self._origin]["SOA"]
        soa = self._soa_text()
        ttl = min(soa_rs.ttl, _minimum_of(soa))
        return QueryResult(
            rcode=rcode,
            aa=True,
            answer=tuple(sorted(answer)),
            authority=((self._origin, "SOA", ttl, soa),),
        )

    # ------------------------------------------------------------------ updating

    def _update(self, op: _UpdateOp) -> str:
        """RFC 2136 §3.2-§3.4 on a decoded update; returns the rcode mnemonic."""
        if op.zone != self._origin:
            return "REFUSED"
        nodes = self._nodes
        for kind, name, rdtype, rdatas in op.prereq:
            if not _in_zone(name, self._origin):
                return "NOTZONE"
            node = nodes.get(name)
            if kind == "yxdomain" and node is None:
                return "NXDOMAIN"
            if kind == "nxdomain" and node is not None:
                return "YXDOMAIN"
            rs = node.get(rdtype) if node is not None and rdtype else None
            if kind == "yxrrset" and rs is None:
                return "NXRRSET"
            if kind == "nxrrset" and rs is not None:
                return "YXRRSET"
            if kind == "yxrrset_exact" and (rs is None or rs.rdatas != rdatas):
                return "NXRRSET"
        for _, name, _, _, _ in op.update:
            if not _in_zone(name, self._origin):
                return "NOTZONE"
        serial_before = self.serial
        work: dict[str, dict[str, RecordSet]] = {}
        for change in op.update:
            self._change(work, change)
        if self._commit(work) and self.serial == serial_before:
            soa = self._nodes[self._origin]["SOA"]
            bumped = _with_serial(self._soa_text(), (serial_before + 1) % SERIAL_MODULUS)
            apex = dict(self._nodes[self._origin])
            apex["SOA"] = RecordSet(soa.ttl, frozenset({bumped}))
            self._commit({self._origin: apex})
        return "NOERROR"

    def _change(self, work: dict[str, dict[str, RecordSet]], change: _Change) -> None:
        """One update RR of RFC 2136 §3.4.2, applied to the working copies in ``work``."""
        kind, name, rdtype, ttl, rdata = change
        node = work.get(name)
        if node is None:
            node = work[name] = dict(self._nodes.get(name, _EMPTY_NODE))
        apex = name == self._origin
        if kind == "add":
            if rdtype == "SOA":
                old = node.get("SOA")
                if old is None or not serial_gt(_serial_of(rdata), _serial_of(min(old.rdatas))):
                    return
                node["SOA"] = RecordSet(ttl, frozenset({rdata}))
            elif rdtype == "CNAME":
                if any(t != "CNAME" for t in node):
                    return
                node["CNAME"] = RecordSet(ttl, frozenset({rdata}))
            elif "CNAME" in node:
                return
            elif rdtype in _SINGLETON_TYPES:
                node[rdtype] = RecordSet(ttl, frozenset({rdata}))
            else:
                old = node.get(rdtype)
                node[rdtype] = RecordSet(ttl, (old.rdatas if old else frozenset()) | {rdata})
        elif kind == "delete_rrset":
            if not (apex and rdtype in ("SOA", "NS")):
                node.pop(rdtype, None)
        elif kind == "delete_name":
            for t in list(node):
                if not (apex and t in ("SOA", "NS")):
                    del node[t]
        else:
            assert kind == "delete_rr", kind
            old = node.get(rdtype)
            if rdtype == "SOA" or old is None or rdata not in old.rdatas:
                return
            if apex and rdtype == "NS" and len(old.rdatas) == 1:
                return
            if len(old.rdatas) == 1:
                del node[rdtype]
            else:
                node[rdtype] = RecordSet(old.ttl, old.rdatas - {rdata})

    def _commit(self, work: Mapping[str, dict[str, RecordSet]]) -> bool:
        """Publishes the working nodes; returns whether anything changed."""
        changed = False
        for name, new in work.items():
            old = self._nodes.get(name, _EMPTY_NODE)
            if new == old:
                continue
            changed = True
            for rdtype in old.keys() | new.keys():
                self._rehash(name, rdtype, old.get(rdtype), new.get(rdtype))
            if new:
                if not old:
                    for above in _ancestors(name, self._origin)[:-1]:
                        self._below[above] = self._below.get(above, 0) + 1
                self._nodes[name] = new
            else:
                del self._nodes[name]
                for above in _ancestors(name, self._origin)[:-1]:
                    count = self._below[above] - 1
                    if count:
                        self._below[above] = count
                    else:
                        del self._below[above]
        if changed:
            self._digest = None
        return changed

    def _rehash(self, name: str, rdtype: str, old: RecordSet | None, new: RecordSet | None) -> None:
        if old == new:
            return
        if old is not None and new is not None and old.ttl == new.ttl:
            gone, came = old.rdatas - new.rdatas, new.rdatas - old.rdatas
            ttl_old = ttl_new = old.ttl
        else:
            gone = old.rdatas if old is not None else frozenset()
            came = new.rdatas if new is not None else frozenset()
            ttl_old = old.ttl if old is not None else 0
            ttl_new = new.ttl if new is not None else 0
        total = self._hash
        for rdata in gone:
            total -= _record_hash(name, rdtype, ttl_old, rdata)
        for rdata in came:
            total += _record_hash(name, rdtype, ttl_new, rdata)
        self._hash = total % _HASH_MODULUS
