"""The sequential specification of the DNS service: what one zone does with one operation.

The linearizability checker needs a model of the service that is small enough to trust by
reading and pure enough to search with: a state is a frozenset of records ``(name, type, ttl,
rdata)`` and nothing else (the origin is the owner of the SOA), and ``step(state, op)``
returns the next state and the result text. It implements the operation contract of
``vrref/dns/ops.py`` as ``vrref/dns/zone.py`` executes it (RFC 2136 prerequisites and updates,
RFC 1982 serials, RFC 1034/2308/4592 answers) again, from the RFCs, with no dnspython and no
import of ``vrref``: every rule is a set comprehension over the records, written for reading,
not for speed. The tests run it
side by side with ``vrref.dns.zone.Zone`` and demand identical results.

What it does not check, and so assumes: rdata texts and type mnemonics are canonical (it
compares rdata as opaque text, reads only the fields of SOA, CNAME and NS rdata, and knows the
meta types by a fixed list, which a test compares with dnspython's), and names use no
backslash escapes (such names are FORMERR here, where the zone accepts them).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

Record = tuple[str, str, int, str]
State = frozenset[Record]

CNAME_CHAIN_MAX = 8  # an answer holds at most CNAME_CHAIN_MAX + 1 CNAMEs, as in the service
TTL_MAX = 2**31 - 1
SERIAL_MODULUS = 2**32
META_TYPES = frozenset(
    {"TYPE0", "OPT", "NXNAME", "TKEY", "TSIG", "IXFR", "AXFR", "MAILB", "MAILA", "ANY"}
    | {f"TYPE{n}" for n in range(128, 256)}
)
SINGLETON_TYPES = frozenset({"DNAME", "NSEC", "NXT"})  # an add replaces the RRset
_LABEL = re.compile(r"[!#%&'*+,/0-9:<=>?\[\]^_`a-z{|}~-]{1,63}")  # printable, not special


class Malformed(Exception):
    """The operation text does not decode: the result is FORMERR."""


def initial_state(records: Iterable[Record]) -> State:
    state = frozenset(records)
    assert len([r for r in state if r[1] == "SOA"]) == 1, "a zone has exactly one SOA"
    return state


def records(state: State) -> tuple[Record, ...]:
    return tuple(sorted(state))


# ---------------------------------------------------------------------- names and records


def origin_of(state: State) -> str:
    return next(r[0] for r in state if r[1] == "SOA")


def soa_of(state: State) -> Record:
    return next(r for r in state if r[1] == "SOA")


def serial_of(state: State) -> int:
    return int(soa_of(state)[3].split(" ")[2])


def labels(name: str) -> list[str]:
    return [] if name == "." else name[:-1].split(".")


def parent(name: str) -> str:
    return ".".join(labels(name)[1:]) + "." if len(labels(name)) > 1 else "."


def is_below_or_at(name: str, ancestor: str) -> bool:
    tail = labels(ancestor)
    return not tail or labels(name)[-len(tail) :] == tail


def ancestors(name: str, origin: str) -> list[str]:
    """The proper ancestors of an in-zone name, from its parent up to the origin."""
    out = []
    while name != origin:
        name = parent(name)
        out.append(name)
    return out


def rrset(state: State, name: str, rdtype: str) -> set[Record]:
    return {r for r in state if r[0] == name and r[1] == rdtype}


def exists(state: State, name: str) -> bool:
    """The name owns records, or is an empty non-terminal (a descendant owns records)."""
    return any(is_below_or_at(r[0], name) for r in state)


def serial_gt(a: int, b: int) -> bool:
    """RFC 1982: a > b in 32-bit sequence space (undefined half-way pairs are not greater)."""
    return (a < b and b - a > 2**31) or (a > b and a - b < 2**31)


# ---------------------------------------------------------------------- decoding


def _name(v: object) -> str:
    if not isinstance(v, str) or not v.endswith(".") or len(v) > 254:
        raise Malformed(f"name {v!r}")
    if v != "." and not all(_LABEL.fullmatch(label) for label in v[:-1].split(".")):
        raise Malformed(f"name {v!r}")
    return v


def _type(v: object, meta_ok: bool = False) -> str:
    if not isinstance(v, str) or not re.fullmatch(r"[A-Z][A-Z0-9-]*", v):
        raise Malformed(f"type {v!r}")
    if v in META_TYPES and not meta_ok:
        raise Malformed(f"meta type {v!r}")
    return v


def _ttl(v: object) -> int:
    if type(v) is not int or not 0 <= v <= TTL_MAX:
        raise Malformed(f"ttl {v!r}")
    return v


def _rdata(v: object) -> str:
    if not isinstance(v, str):
        raise Malformed(f"rdata {v!r}")
    return v


@dataclass(frozen=True)
class Entry:
    """One prerequisite or update of an update op (unused fields keep their defaults)."""

    kind: str
    name: str
    rdtype: str = ""
    ttl: int = 0
    rdata: str = ""
    values: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Update:
    zone: str
    prereq: tuple[Entry, ...]
    update: tuple[Entry, ...]


@dataclass(frozen=True)
class Query:
    name: str
    rdtype: str


PREREQ_LENGTHS = {"yxdomain": 2, "nxdomain": 2, "yxrrset": 3, "nxrrset": 3, "yxrrset_exact": 4}
UPDATE_LENGTHS = {"add": 5, "delete_rrset": 3, "delete_name": 2, "delete_rr": 4}


def _entry(e: object, lengths: dict[str, int]) -> Entry:
    if not isinstance(e, list) or not e or lengths.get(e[0]) != len(e):
        raise Malformed(f"entry {e!r:.60}")
    kind, name = e[0], _name(e[1])
    if kind in ("yxdomain", "nxdomain", "delete_name"):
        return Entry(kind, name)
    rdtype = _type(e[2])
    if kind == "add":
        return Entry(kind, name, rdtype, ttl=_ttl(e[3]), rdata=_rdata(e[4]))
    if kind == "delete_rr":
        return Entry(kind, name, rdtype, rdata=_rdata(e[3]))
    if kind == "yxrrset_exact":
        values = e[3]
        if not isinstance(values, list) or not values:
            raise Malformed("yxrrset_exact values")
        if [_rdata(v) for v in values] != sorted(set(values)):
            raise Malformed("yxrrset_exact values are sorted and distinct")
        return Entry(kind, name, rdtype, values=frozenset(values))
    return Entry(kind, name, rdtype)


def decode(text: str) -> Update | Query:
    """The operation with checked fields; raises Malformed."""
    try:
        op = json.loads(text)
    except ValueError:
        raise Malformed("not JSON") from None
    if isinstance(op, dict) and op.get("t") == "query" and set(op) == {"t", "name", "type"}:
        return Query(_name(op["name"]), _type(op["type"], meta_ok=True))
    if not isinstance(op, dict) or op.get("t") != "update":
        raise Malformed("not an op")
    if set(op) != {"t", "zone", "prereq", "update"}:
        raise Malformed("keys")
    if not isinstance(op["prereq"], list) or not isinstance(op["update"], list):
        raise Malformed("lists")
    return Update(
        _name(op["zone"]),
        tuple(_entry(p, PREREQ_LENGTHS) for p in op["prereq"]),
        tuple(_entry(u, UPDATE_LENGTHS) for u in op["update"]),
    )


# ---------------------------------------------------------------------- the step


def step(state: State, op_text: str) -> tuple[State, str]:
    """Executes one operation: the next state and the canonical result text."""
    try:
        op = decode(op_text)
    except Malformed:
        return state, dumps({"rcode": "FORMERR", "serial": serial_of(state)})
    if isinstance(op, Query):
        return state, dumps(query(state, op.name, op.rdtype))
    new_state, rcode = update(state, op)
    return new_state, dumps({"rcode": rcode, "serial": serial_of(new_state)})


def dumps(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True)


def update(state: State, op: Update) -> tuple[State, str]:
    """RFC 2136 §3.2 (prerequisites), §3.4.1 (prescan), §3.4.2 (updates), RFC 1982 serial."""
    origin = origin_of(state)
    if op.zone != origin:
        return state, "REFUSED"
    for p in op.prereq:
        if not is_below_or_at(p.name, origin):
            return state, "NOTZONE"
        owned = {r for r in state if r[0] == p.name}
        values = {r[3] for r in owned if r[1] == p.rdtype}
        rcode, failed = {
            "yxdomain": ("NXDOMAIN", not owned),
            "nxdomain": ("YXDOMAIN", bool(owned)),
            "yxrrset": ("NXRRSET", not values),
            "nxrrset": ("YXRRSET", bool(values)),
            "yxrrset_exact": ("NXRRSET", values != p.values),
        }[p.kind]
        if failed:
            return state, rcode
    if any(not is_below_or_at(u.name, origin) for u in op.update):
        return state, "NOTZONE"
    zone = set(state)
    for u in op.update:
        apply_change(zone, origin, u)
    new = frozenset(zone)
    if new != state and serial_of(new) == serial_of(state):
        name, _, ttl, soa = soa_of(new)
        fields = soa.split(" ")
        fields[2] = str((int(fields[2]) + 1) % SERIAL_MODULUS)
        new = (new - {soa_of(new)}) | {(name, "SOA", ttl, " ".join(fields))}
    return new, "NOERROR"


def apply_change(zone: set[Record], origin: str, u: Entry) -> None:
    """One update RR, RFC 2136 §3.4.2, on a mutable working copy of the records."""
    apex = u.name == origin
    old = {r for r in zone if r[0] == u.name and r[1] == u.rdtype}
    if u.kind == "add":
        present = {r[1] for r in zone if r[0] == u.name}
        if u.rdtype == "SOA":  # only replaces the apex SOA, and only with a greater serial
            if not old or not serial_gt(int(u.rdata.split(" ")[2]), serial_of(frozenset(old))):
                return
            zone -= old
        elif u.rdtype == "CNAME":  # no CNAME beside other data; a CNAME replaces a CNAME
            if present - {"CNAME"}:
                return
            zone -= old
        elif "CNAME" in present:
            return
        elif u.rdtype in SINGLETON_TYPES:
            zone -= old
        else:  # join the RRset, which takes the new TTL
            zone -= old
            zone |= {(u.name, u.rdtype, u.ttl, r[3]) for r in old}
        zone.add((u.name, u.rdtype, u.ttl, u.rdata))
    elif u.kind == "delete_rrset":
        if not (apex and u.rdtype in ("SOA", "NS")):
            zone -= old
    elif u.kind == "delete_name":
        zone -= {r for r in zone if r[0] == u.name and not (apex and r[1] in ("SOA", "NS"))}
    elif u.kind == "delete_rr":
        if u.rdtype == "SOA" or (apex and u.rdtype == "NS" and len(old) == 1):
            return
        zone -= {r for r in old if r[3] == u.rdata}


def query(state: State, qname: str, qtype: str) -> dict[str, object]:
    """RFC 1034 §4.3.2 with RFC 4592 wildcards and RFC 2308 negative answers."""
    origin = origin_of(state)

    def result(
        rcode: str,
        aa: bool,
        answer: Iterable[Record] = (),
        authority: Iterable[Record] = (),
        additional: Iterable[Record] = (),
    ) -> dict[str, object]:
        return {
            "rcode": rcode,
            "aa": aa,
            "answer": sorted(answer),
            "authority": sorted(authority),
            "additional": sorted(additional),
        }

    def negative(rcode: str, answer: list[Record]) -> dict[str, object]:
        name, _, ttl, soa = soa_of(state)
        return result(rcode, True, answer, [(name, "SOA", min(ttl, int(soa.split(" ")[6])), soa)])

    if not is_below_or_at(qname, origin):
        return result("REFUSED", False)
    if qtype in META_TYPES and qtype != "ANY":
        return result("NOTIMP", False)
    answer: list[Record] = []
    seen = set()
    name = qname
    for _ in range(CNAME_CHAIN_MAX + 1):
        seen.add(name)
        path = [*reversed(ancestors(name, origin)[:-1]), name] if name != origin else []
        for cut in path:  # the topmost zone cut at or above the name
            if rrset(state, cut, "NS") and not (cut == name and qtype == "DS"):
                ns = rrset(state, cut, "NS")
                glue = {
                    r
                    for r in state
                    if r[1] in ("A", "AAAA")
                    and r[0] in {n[3] for n in ns}
                    and is_below_or_at(r[0], origin)
                }
                return result("NOERROR", bool(answer), answer, ns, glue)
        owned = [r for r in state if r[0] == name]
        if not owned:
            if exists(state, name):
                return negative("NOERROR", answer)
            encloser = next(a for a in ancestors(name, origin) if exists(state, a))
            source = "*." + encloser if encloser != "." else "*."
            if not exists(state, source):
                return negative("NXDOMAIN", answer)
            owned = [(name, t, ttl, rd) for (n, t, ttl, rd) in state if n == source]
            if not owned:
                return negative("NOERROR", answer)
        matching = [r for r in owned if qtype in ("ANY", r[1])]
        if matching:
            return result("NOERROR", True, answer + matching)
        cnames = [r for r in owned if r[1] == "CNAME"]
        if not cnames:
            return negative("NOERROR", answer)
        answer += cnames
        target = cnames[0][3]
        if target in seen or not is_below_or_at(target, origin):
            break
        name = target
    return result("NOERROR", True, answer)
