"""Canonical texts: the one spelling of every name, type, rdata and serial the zone stores.

Everything the replicated zone keeps, compares and hashes is text in a single canonical form:
a name is absolute, lowercase, with a trailing dot, as dnspython's ``to_text`` spells it; a
type is its mnemonic; an rdata is dnspython's text with absolute names, lowercased wherever
DNSSEC canonical form lowercases them. So equality of records is equality of strings, and an
operation, a result, a history and the independent model (``spec/dns_model.py``) can all
carry records as plain text. Text rather than ``dns.name.Name`` because a ``Name`` hashes in
pure Python (about 3 µs a lookup, against 0.06 µs for a ``str``) and a query walks several
names. dnspython is used here only to check and produce these texts; the checks are pure, so
they are cached. The rules are in ``spec/dns.md`` ("Operations"); SOA serials follow RFC 1982.
"""

from __future__ import annotations

import functools
import json
from typing import Final, TypeAlias

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype

Record: TypeAlias = tuple[str, str, int, str]
"""One resource record in canonical text: (owner name, type mnemonic, TTL, rdata)."""

SERIAL_MODULUS: Final = 1 << 32  # RFC 1982, SERIAL_BITS = 32

# The checks below are pure, so their answers are cached: a replica meets the same names and
# rdatas again and again. Long texts are not cached, to bound the caches' memory.
_CACHED_CHARS_MAX: Final = 256


@functools.lru_cache(maxsize=1 << 14)
def is_canonical_name(text: str) -> bool:
    try:
        name = dns.name.from_text(text, None)
    except Exception:  # dnspython raises many kinds (and IDNA errors) on bad names
        return False
    return name.is_absolute() and name.canonicalize().to_text() == text


@functools.lru_cache(maxsize=1024)
def type_kind(text: str) -> str | None:
    """Classifies a type mnemonic: "data", "meta", or None when it is not canonical."""
    try:
        rdtype = dns.rdatatype.from_text(text)
    except Exception:  # unknown mnemonics, out-of-range TYPEnnn
        return None
    if dns.rdatatype.to_text(rdtype) != text:
        return None
    return "meta" if rdtype == 0 or dns.rdatatype.is_metatype(rdtype) else "data"


def canonical_rdata_of(rdata: dns.rdata.Rdata, origin: dns.name.Name | None = None) -> str:
    """The canonical text of an rdata: absolute names, lowercased where DNSSEC canonical form
    lowercases them (a round trip through ``to_digestable``)."""
    wire = rdata.to_digestable(origin)
    plain = dns.rdata.from_wire(dns.rdataclass.IN, rdata.rdtype, wire, 0, len(wire))
    return plain.to_text()


def is_canonical_rdata(rdtype: str, text: str) -> bool:
    if len(text) <= _CACHED_CHARS_MAX:
        return is_canonical_rdata_cached(rdtype, text)
    return _check_rdata(rdtype, text)


@functools.lru_cache(maxsize=1 << 14)
def is_canonical_rdata_cached(rdtype: str, text: str) -> bool:
    return _check_rdata(rdtype, text)


def _check_rdata(rdtype: str, text: str) -> bool:
    try:
        parsed = dns.rdata.from_text(
            dns.rdataclass.IN, rdtype, text, origin=dns.name.root, relativize=False
        )
        return canonical_rdata_of(parsed) == text
    except Exception:  # dnspython raises many kinds on bad rdata text
        return False


@functools.lru_cache(maxsize=1 << 16)
def _labels_text(labels: tuple[bytes, ...]) -> str:
    """Canonical text of an absolute name's labels (cached: hashing a tuple of bytes is fast,
    hashing a ``dns.name.Name`` is not)."""
    return dns.name.Name(labels).canonicalize().to_text()


def name_text(name: dns.name.Name | str) -> str:
    """Canonical text of a name given as a Name or as (absolute) text."""
    if isinstance(name, str):
        name = dns.name.from_text(name, None)
    if not name.is_absolute():
        raise ValueError(f"the name {name} is not absolute")
    return _labels_text(name.labels)


@functools.lru_cache(maxsize=1024)
def _type_number_text(rdtype: int) -> str:
    return dns.rdatatype.to_text(dns.rdatatype.RdataType.make(rdtype))


def type_text(rdtype: dns.rdatatype.RdataType | str | int) -> str:
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
def ancestors(name: str, origin: str) -> tuple[str, ...]:
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


def in_zone(name: str, origin: str) -> bool:
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


def serial_of(soa: str) -> int:
    return int(soa.split(" ")[2])


def minimum_of(soa: str) -> int:
    return int(soa.split(" ")[6])


def with_serial(soa: str, serial: int) -> str:
    fields = soa.split(" ")
    fields[2] = str(serial)
    return " ".join(fields)


def serial_gt(a: int, b: int) -> bool:
    """RFC 1982 §3.2: ``a`` is greater than ``b`` in 32-bit serial arithmetic."""
    half = SERIAL_MODULUS >> 1
    return (a < b and b - a > half) or (a > b and a - b < half)


def dumps(obj: object) -> str:
    """Canonical JSON: compact, keys sorted (the spelling of every op and result text)."""
    return json.dumps(obj, separators=(",", ":"), sort_keys=True)
