"""Differential test: vrref.dns.zone.Zone against the independent model spec.dns_model.

The zone (dicts, dnspython at the edges, incremental digests) and the model (set
comprehensions over a frozenset of records) implement the same operation contract separately.
Hypothesis drives both with the same random sequences of operations over a small alphabet
chosen to reach every rule: wildcards and empty non-terminals, CNAMEs (chains, loops, targets
outside the zone), a delegation with glue, DS at the cut, apex SOA and NS edits, serials near
the RFC 1982 wrap, every prerequisite kind, other zones, names outside the zone and malformed
operations. Every result must be the same text, and the records must agree after every step.

A small alphabet makes collisions likely (the same name, type and rdata met again), which is
where the rules live; the zone and the model agree only if each rule is implemented twice the
same way. The test has been seen to fail when a rule of the zone is broken on purpose.
"""

from __future__ import annotations

import json

import dns.rdatatype
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spec import dns_model
from vrref.dns.canonical import Record
from vrref.dns.ops import make_query_op
from vrref.dns.zone import Zone

ORIGIN = "example.com."
SOA = "ns1.example.com. hostmaster.example.com. {} 3600 900 604800 {}"
SERIALS = [1, 2, 5, 2024010101, 2**31 - 1, 2**31, 2**31 + 1, 2**32 - 2, 2**32 - 1, 0]

NAMES = [
    ORIGIN,
    "a.example.com.",
    "b.a.example.com.",
    "c.example.com.",
    "*.w.example.com.",
    "w.example.com.",  # an empty non-terminal (above *.w and y.z.w)
    "x.w.example.com.",
    "z.w.example.com.",  # an empty non-terminal
    "y.z.w.example.com.",
    "sub.example.com.",
    "ns.sub.example.com.",
    "ns1.example.com.",
    "*.example.com.",
    "n.*.example.com.",  # makes *.example.com. an empty non-terminal wildcard
    "loop.example.com.",
    "www.example.net.",  # outside the zone
]
QUERY_NAMES = [
    *NAMES,
    "q.w.example.com.",
    "q.r.w.example.com.",
    "q.z.w.example.com.",
    "q.e.example.com.",  # below e: the wildcard *.e is an empty non-terminal
    "q.deep.sub.example.com.",  # below two cuts: the topmost one refers
    "nope.example.com.",
    "deep.sub.example.com.",
    "q.a.example.com.",
    "com.",
]
RDATA = {
    "A": ["192.0.2.1", "192.0.2.2"],
    "AAAA": ["2001:db8::1"],
    "NS": ["ns1.example.com.", "ns.sub.example.com.", "ns.example.net."],
    "CNAME": [
        "a.example.com.",
        "c.example.com.",
        "x.w.example.com.",
        "q.w.example.com.",
        "nope.example.com.",
        "deep.sub.example.com.",
        "loop.example.com.",
        "www.example.net.",
    ],
    "SOA": [SOA.format(s, m) for s in SERIALS for m in (300, 30)],
    "MX": ["10 a.example.com."],
    "TXT": ['"t1"', '"t2"'],
    "DS": ["12345 8 2 " + "49fd46e6c4b45c55d4ac69cbd3cd34ac1afe51de49fd46e6c4b45c55d4ac69cb"],
}
TYPES = sorted(RDATA)
TTLS = [0, 60, 3600]

BASE: list[Record] = [
    (ORIGIN, "NS", 3600, "ns1.example.com."),
    ("ns1.example.com.", "A", 3600, "192.0.2.1"),
    ("a.example.com.", "A", 300, "192.0.2.1"),
    ("a.example.com.", "A", 300, "192.0.2.2"),
    ("c.example.com.", "CNAME", 300, "a.example.com."),
    ("*.w.example.com.", "A", 300, "192.0.2.2"),
    ("y.z.w.example.com.", "TXT", 300, '"t1"'),
    ("sub.example.com.", "NS", 3600, "ns.sub.example.com."),
    ("ns.sub.example.com.", "A", 3600, "192.0.2.2"),
    ("deep.sub.example.com.", "NS", 3600, "ns.example.net."),  # occluded by sub's cut
    ("n.*.e.example.com.", "TXT", 300, '"t2"'),
    ("loop.example.com.", "CNAME", 300, "loop.example.com."),
]

names = st.sampled_from(NAMES)
types = st.sampled_from(TYPES)
# Half the time an entry names a record of the base zone, so that deletes, duplicates, TTL
# changes and prerequisites about existing data (the apex NS above all) are common.
base_records = st.sampled_from(BASE)


def dumps(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True)


@st.composite
def triples(draw: st.DrawFn) -> tuple[str, str, str]:
    """(name, type, rdata): from the base zone, at the apex, or anywhere in the alphabet."""
    source = draw(st.sampled_from(["base", "apex", "any"]))
    if source == "base":
        name, rdtype, _, rdata = draw(base_records)
        return name, rdtype, rdata
    rdtype = draw(types)
    name = ORIGIN if source == "apex" else draw(names)
    return name, rdtype, draw(st.sampled_from(RDATA[rdtype]))


@st.composite
def prereqs(draw: st.DrawFn) -> list[object]:
    kind = draw(st.sampled_from(["yxdomain", "nxdomain", "yxrrset", "nxrrset", "yxrrset_exact"]))
    name, rdtype, rdata = draw(triples())
    if kind in ("yxdomain", "nxdomain"):
        return [kind, name]
    if kind != "yxrrset_exact":
        return [kind, name, rdtype]
    values = draw(st.sets(st.sampled_from(RDATA[rdtype]), max_size=2)) | {rdata}
    return [kind, name, rdtype, sorted(values)]


@st.composite
def changes(draw: st.DrawFn) -> list[object]:
    kind = draw(st.sampled_from(["add", "add", "add", "delete_rrset", "delete_name", "delete_rr"]))
    name, rdtype, rdata = draw(triples())
    if kind == "delete_name":
        return [kind, name]
    if kind == "delete_rrset":
        return [kind, name, rdtype]
    if kind == "delete_rr":
        return [kind, name, rdtype, rdata]
    return [kind, name, rdtype, draw(st.sampled_from(TTLS)), rdata]


def update_op(prereq: list[list[object]], update: list[list[object]], zone: str = ORIGIN) -> str:
    return dumps({"t": "update", "zone": zone, "prereq": prereq, "update": update})


MALFORMED = [
    "",
    "{",
    "[]",
    '{"t":"update"}',
    update_op([], [["upsert", "a.example.com.", "A", 60, "192.0.2.1"]]),
    update_op([], [["add", "A.example.com.", "A", 60, "192.0.2.1"]]),
    update_op([], [["add", "a.example.com", "A", 60, "192.0.2.1"]]),
    update_op([], [["add", "a.example.com.", "a", 60, "192.0.2.1"]]),
    update_op([], [["add", "a.example.com.", "ANY", 60, "192.0.2.1"]]),
    update_op([], [["add", "a.example.com.", "A", -1, "192.0.2.1"]]),
    update_op([], [["add", "a.example.com.", "A", 2**31, "192.0.2.1"]]),
    update_op([], [["delete_name"]]),
    update_op([["yxrrset_exact", "a.example.com.", "A", []]], []),
    update_op([["yxrrset_exact", "a.example.com.", "A", ["192.0.2.2", "192.0.2.1"]]], []),
    update_op([["nxrrset", "a.example.com.", "AXFR"]], []),
    dumps({"t": "query", "name": "a.example.com.", "type": "A", "extra": 0}),
]

updates = st.builds(
    update_op,
    st.lists(prereqs(), max_size=3),
    st.lists(changes(), min_size=1, max_size=4),
    st.sampled_from([ORIGIN] * 15 + ["example.org."]),
)
queries = st.builds(
    make_query_op,
    st.sampled_from(QUERY_NAMES),
    st.sampled_from([*TYPES, "A", "A", "DS", "ANY", "MAILA", "TYPE0"]),
)
operations = st.one_of(
    updates,
    queries,
    st.sampled_from(MALFORMED),
    st.text(max_size=12),
)


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    serial=st.sampled_from(SERIALS),
    minimum=st.sampled_from([300, 30]),
    ops=st.lists(operations, min_size=1, max_size=25),
)
def test_zone_and_model_agree_on_every_result(serial: int, minimum: int, ops: list[str]) -> None:
    records = [(ORIGIN, "SOA", 3600, SOA.format(serial, minimum)), *BASE]
    zone = Zone.from_records(ORIGIN, records)
    state = dns_model.initial_state(records)
    assert zone.records() == dns_model.records(state)
    for op in ops:
        state, expected = dns_model.step(state, op)
        assert zone.apply(op) == expected, op
        assert zone.records() == dns_model.records(state), op
    assert Zone.from_records(ORIGIN, zone.records()).digest() == zone.digest()


def test_the_alphabet_is_canonical() -> None:
    """Every rdata of the alphabet is in the one canonical spelling the zone accepts."""
    records = [(ORIGIN, "SOA", 3600, SOA.format(1, 300)), *BASE]
    records += [
        (f"r{i}.{t.lower()}.example.com.", t, 60, r)
        for t in TYPES
        if t != "SOA"
        for i, r in enumerate(RDATA[t])
    ]
    Zone.from_records(ORIGIN, records)  # raises ZoneLoadError on a non-canonical rdata


def test_zone_and_model_classify_every_canonical_type_mnemonic_alike() -> None:
    """Data, meta (allowed in queries only) or invalid: the same for all 65536 type numbers."""
    state = dns_model.initial_state([(ORIGIN, "SOA", 3600, SOA.format(1, 300)), *BASE])
    zone = Zone.from_records(ORIGIN, sorted(state))
    for number in range(65536):
        rdtype = dns.rdatatype.RdataType.make(number)
        mnemonic = dns.rdatatype.to_text(rdtype)
        meta = number == 0 or dns.rdatatype.is_metatype(rdtype)
        assert (mnemonic in dns_model.META_TYPES) == meta, mnemonic
        if number < 300 or number % 257 == 0:  # a sample through both (changes nothing)
            for op in (
                make_query_op(ORIGIN, number),
                update_op([["nxrrset", ORIGIN, mnemonic]], []),
            ):
                assert zone.apply(op) == dns_model.step(state, op)[1], mnemonic
