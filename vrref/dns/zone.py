"""The replicated state machine: one authoritative DNS zone with RFC 2136 update semantics.

VR orders operations (``vrref/dns/ops.py``); this module executes them. Every replica applies
every committed update, so the cost of ``Zone.apply`` caps the update rate of the whole
cluster, and the explorer forks replica states often, so ``clone`` must be cheap. Both point to
the same shape, chosen by measurement (``bench/bench_service.py``): a plain ``dict`` from the
owner name's canonical text to an immutable node (a read-only mapping from type mnemonic to a
frozen ``RecordSet`` of canonical rdata texts, ``vrref/dns/canonical.py``). A change builds new
nodes for the names it touches and never mutates a published one, so ``clone`` copies two
dicts of references and the clones share every node. The digest is an additive multiset hash
(the sum modulo 2**256 of a SHA-256 per record) kept up to date on every change, so
``digest()`` costs nothing per update at any zone size. dnspython is used at the edges only: to
parse zone files and to build the rrsets the frontend renders. The order in which an update is
executed (decode, zone, prerequisites, prescan, updates, serial) and how a query is answered
are in ``spec/dns.md``; the code cites the RFC section wherever it applies one of those rules.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import dns.exception
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zone

from vrref.dns.canonical import (
    SERIAL_MODULUS,
    Record,
    ancestors,
    canonical_rdata_of,
    in_zone,
    minimum_of,
    name_text,
    serial_gt,
    serial_of,
    type_kind,
    type_text,
    with_serial,
)
from vrref.dns.ops import (
    Change,
    Malformed,
    QueryOp,
    QueryResult,
    UpdateOp,
    decode_op,
    encode_query_result,
    field_name,
    field_rdata,
    field_ttl,
    field_type,
    to_rrsets,
    update_result,
)

CNAME_CHAIN_MAX: Final = 8  # CNAME links followed in one answer (loops stop earlier)
_HASH_MODULUS: Final = 1 << 256
# Types that hold a single record: an add replaces the RRset (dnspython's singletons; SOA and
# CNAME have rules of their own).
_SINGLETON_TYPES: Final = frozenset({"DNAME", "NSEC", "NXT"})
_EMPTY_NODE: Final[Mapping[str, RecordSet]] = {}


class ZoneLoadError(ValueError):
    """The zone text or records cannot be served (syntax, missing SOA/NS, CNAME conflicts)."""


def _record_hash(name: str, rdtype: str, ttl: int, rdata: str) -> int:
    text = f"{name}\t{rdtype}\t{ttl}\t{rdata}".encode()
    return int.from_bytes(hashlib.sha256(text).digest(), "big")


def _name_order(name: str) -> tuple[bytes, ...]:
    """The sort key of RFC 4034 §6.1 (canonical name order) for a canonical name: its labels
    from the root down, as octet strings (canonical names are lowercase ASCII already)."""
    if name == ".":
        return ()
    if "\\" in name:  # escaped octets (and dots inside labels): let dnspython decode them
        return tuple(reversed(dns.name.from_text(name).labels[:-1]))
    return tuple(label.encode() for label in reversed(name[:-1].split(".")))


@functools.lru_cache(maxsize=1024)
def _type_order(rdtype: str) -> int:
    """The sort key of a type in a snapshot: the SOA first, then by type number."""
    return -1 if rdtype == "SOA" else int(dns.rdatatype.from_text(rdtype))


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
        origin_text = name_text(origin)
        checked: list[Record] = []
        try:
            for name, rdtype, ttl, rdata in records:
                field_name(name)
                field_type(rdtype)
                field_ttl(ttl)
                field_rdata(rdtype, rdata)
                if not in_zone(name, origin_text):
                    raise ZoneLoadError(f"{name} is outside {origin_text}")
                checked.append((name, rdtype, ttl, rdata))
        except Malformed as error:
            raise ZoneLoadError(str(error)) from None
        zone = cls(origin_text, checked)
        zone._check_loadable()
        return zone

    @classmethod
    def from_text(
        cls,
        text: str,
        origin: dns.name.Name | str | None,
        *,
        allow_directives: bool | Iterable[str] = True,
    ) -> Zone:
        """A zone from master-file text (RFC 1035 §5) for ``origin`` (or its $ORIGIN).

        ``allow_directives`` is dnspython's: True, False or the directives allowed ($INCLUDE
        is refused in any case)."""
        try:
            parsed = dns.zone.from_text(
                text, origin, relativize=False, allow_directives=allow_directives
            )
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
                    text = canonical_rdata_of(rdata, parsed.origin)
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
        """Executes one operation (the contract of ``vrref/dns/ops.py``); never raises."""
        try:
            decoded = decode_op(op)
        except Malformed:
            return update_result("FORMERR", self.serial)
        if isinstance(decoded, QueryOp):
            return encode_query_result(self._answer(decoded.name, decoded.rdtype))
        return update_result(self._update(decoded), self.serial)

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

    def snapshot(self) -> str:
        """The whole zone as a master file (RFC 1035 §5), for a checkpoint: a ``$ORIGIN``
        line, then one line per record (absolute owner, TTL, class IN, type, canonical rdata),
        the SOA first and then RFC 4034 §6 order: names in canonical order, types by number,
        rdata texts sorted. The same records give the same text; ``restore`` reads it back.

        The canonical rdata texts are dnspython's presentation format, escapes and quotes
        included, and the names are absolute, so each line stands alone."""
        lines = [f"$ORIGIN {self._origin}"]
        nodes = self._nodes
        for name in sorted(nodes, key=_name_order):
            node = nodes[name]
            for rdtype in sorted(node, key=_type_order):
                rs = node[rdtype]
                head = f"{name} {rs.ttl} IN {rdtype} "
                lines.extend([head + rdata for rdata in sorted(rs.rdatas)])
        lines.append("")
        return "\n".join(lines)

    def restore(self, snapshot: str) -> Zone:
        """A new zone (of this zone's origin) from a ``snapshot`` text; this one is unchanged.

        Raises ZoneLoadError (a ValueError) on a text that does not load or is not a zone that
        ``from_records`` accepts. Only ``$ORIGIN`` and ``$TTL`` are read: a checkpoint comes
        from the network or the disk, and ``$GENERATE`` (or ``$INCLUDE``) has no place in one."""
        return Zone.from_text(snapshot, self._origin, allow_directives=("$ORIGIN", "$TTL"))

    def __repr__(self) -> str:
        return f"Zone({self._origin} serial={self.serial} names={len(self._nodes)})"

    # ------------------------------------------------------------------ reading

    @property
    def origin(self) -> dns.name.Name:
        return dns.name.from_text(self._origin)

    @property
    def serial(self) -> int:
        return serial_of(self._soa_text())

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
        return self._answer(name_text(name), type_text(rdtype))

    def _soa_text(self) -> str:
        (soa,) = self._nodes[self._origin]["SOA"].rdatas
        return soa

    def _answer(self, qname: str, qtype: str) -> QueryResult:
        if not in_zone(qname, self._origin):
            return QueryResult(rcode="REFUSED", aa=False)
        if type_kind(qtype) == "meta" and qtype != "ANY":
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
            if target in seen or not in_zone(target, self._origin):
                break
            current = target
        return QueryResult(rcode="NOERROR", aa=True, answer=tuple(sorted(answer)))

    def _delegation(self, name: str, qtype: str) -> str | None:
        """The topmost zone cut at or above ``name`` (a DS query at a cut is answered here)."""
        for above in reversed(ancestors(name, self._origin)[:-1]):
            if "NS" in self._nodes.get(above, _EMPTY_NODE):
                return above
        if name != self._origin and qtype != "DS" and "NS" in self._nodes.get(name, _EMPTY_NODE):
            return name
        return None

    def _wildcard(self, name: str) -> Mapping[str, RecordSet] | None:
        """RFC 4592 §3.3.1: the source of synthesis at the closest encloser, if it owns data.

        An empty non-terminal wildcard gives an empty node (NODATA)."""
        for encloser in ancestors(name, self._origin):
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
            if in_zone(target, self._origin):
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
        ttl = min(soa_rs.ttl, minimum_of(soa))
        return QueryResult(
            rcode=rcode,
            aa=True,
            answer=tuple(sorted(answer)),
            authority=((self._origin, "SOA", ttl, soa),),
        )

    # ------------------------------------------------------------------ updating

    def _update(self, op: UpdateOp) -> str:
        """RFC 2136 §3.2-§3.4 on a decoded update; returns the rcode mnemonic."""
        if op.zone != self._origin:
            return "REFUSED"
        nodes = self._nodes
        for kind, name, rdtype, rdatas in op.prereq:
            if not in_zone(name, self._origin):
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
            if not in_zone(name, self._origin):
                return "NOTZONE"
        serial_before = self.serial
        work: dict[str, dict[str, RecordSet]] = {}
        for change in op.update:
            self._change(work, change)
        if self._commit(work) and self.serial == serial_before:
            soa = self._nodes[self._origin]["SOA"]
            bumped = with_serial(self._soa_text(), (serial_before + 1) % SERIAL_MODULUS)
            apex = dict(self._nodes[self._origin])
            apex["SOA"] = RecordSet(soa.ttl, frozenset({bumped}))
            self._commit({self._origin: apex})
        return "NOERROR"

    def _change(self, work: dict[str, dict[str, RecordSet]], change: Change) -> None:
        """One update RR of RFC 2136 §3.4.2, applied to the working copies in ``work``."""
        kind, name, rdtype, ttl, rdata = change
        node = work.get(name)
        if node is None:
            node = work[name] = dict(self._nodes.get(name, _EMPTY_NODE))
        apex = name == self._origin
        if kind == "add":
            if rdtype == "SOA":
                old = node.get("SOA")
                if old is None or not serial_gt(serial_of(rdata), serial_of(min(old.rdatas))):
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
                    for above in ancestors(name, self._origin)[:-1]:
                        self._below[above] = self._below.get(above, 0) + 1
                self._nodes[name] = new
            else:
                del self._nodes[name]
                for above in ancestors(name, self._origin)[:-1]:
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
