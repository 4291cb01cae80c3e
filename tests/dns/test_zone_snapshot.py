"""Zone.snapshot and Zone.restore: the checkpoint of the DNS state machine (VRR §5.1).

A snapshot is a master file (RFC 1035 §5) with absolute names, explicit TTLs and class IN,
the SOA first and the rest in RFC 4034 §6 order. These tests check that restoring it gives
the same records (hence the same digest) for any zone: generated records whose names and TXT
strings are arbitrary octets (quotes, backslashes, dots inside labels, non-ASCII), every type
dnspython knows a presentation format for, wildcards, delegations with glue and CNAMEs, and
zones reached by sequences of update ops. BIND's ``named-checkzone`` reads the snapshots
too, so the text is a master file for other software and not only for dnspython.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.dns.test_dns_model_differential import BASE, NAMES, RDATA, SOA, TTLS, operations
from vrref.dns.canonical import Record, canonical_rdata_of, in_zone, name_text
from vrref.dns.ops import make_query_op, make_update_op
from vrref.dns.zone import Zone, ZoneLoadError

ORIGIN = "example.com."
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "example.com.zone"
APEX: list[Record] = [
    (ORIGIN, "SOA", 3600, SOA.format(2024010101, 300)),
    (ORIGIN, "NS", 3600, "ns1.example.com."),
    ("ns1.example.com.", "A", 3600, "192.0.2.1"),
]
NAMED_CHECKZONE = shutil.which("named-checkzone") or shutil.which("/usr/sbin/named-checkzone")
needs_named_checkzone = pytest.mark.skipif(
    NAMED_CHECKZONE is None,
    reason="named-checkzone (BIND, Debian package bind9) is not installed",
)


def rdata(rdtype: str, text: str) -> str:
    parsed = dns.rdata.from_text(
        dns.rdataclass.IN, rdtype, text, origin=dns.name.root, relativize=False
    )
    return canonical_rdata_of(parsed)


# Presentation formats that need care: quoting and escapes in character strings, names inside
# rdata, base64 and hex split in chunks, type bitmaps (a type dnspython names as TYPEnnn),
# SVCB parameters, LOC, APL, and RFC 3597 generic rdata (for a type with no mnemonic, and for
# types whose text dnspython does not know: MB, MINFO...). NSEC3 owners must be hashes for
# BIND, so NSEC3 has its own names below.
RICH_TEXTS: dict[str, list[str]] = {
    "A": ["192.0.2.1", "198.51.100.7"],
    "AAAA": ["2001:db8::1", "::ffff:192.0.2.1"],
    "NS": ["ns1.example.com.", "ns.example.net."],
    "CNAME": ["a.example.com.", "t.example.net."],
    "DNAME": ["example.net."],
    "PTR": ["p.example.net."],
    "MX": ["10 mail.example.net.", "0 ."],
    "TXT": [
        '"hello world"',
        '"a \\"quoted\\" word" "back\\\\slash"',
        '"caf\\195\\169 \\240\\159\\140\\141"',
        '""',
        '"semi;colon (paren) $dollar @at"',
        '"tab\\009newline\\010nul\\000"',
    ],
    "SPF": ['"v=spf1 -all"'],
    "HINFO": ['"PC Intel" "Linux 6"'],
    "RP": ["admin.example.net. txt.example.net."],
    "AFSDB": ["1 afs.example.net."],
    "RT": ["10 relay.example.net."],
    "NSAP": ["0x47000580005a0000000001e133ffffff00016100"],
    "PX": ["10 a.example.net. b.example.net."],
    "GPOS": ["-32.6882 116.8652 10.0"],
    "LOC": [
        "60 9 0.000 N 24 39 0.000 E 10.00m 20.00m 2000.00m 20.00m",
        "52 22 23.123 S 4 53 32.5 W -2m",
    ],
    "SRV": ["0 5 5060 sip.example.net."],
    "NAPTR": ['100 10 "U" "E2U+sip" "!^.*$!sip:info@example.net!" .'],
    "KX": ["10 kdc.example.net."],
    "CERT": ["PKIX 65535 RSASHA256 MxFcby9k/yvedMfQgKzhH5er0Mu/vILz45IkskceFGgiWCn/GxHhai6V"],
    "APL": ["1:192.168.32.0/21 !1:192.168.38.0/28", "2:ff00::/8"],
    "DS": ["60485 5 1 2bb183af5f22588179a53b0a98631fad1a292118"],
    "SSHFP": ["1 1 aa549bfe898489c02d1715d97d79c57ba2fa76ab"],
    "IPSECKEY": ["10 1 2 192.0.2.38 AQNRU3mG7TVTO2BkR47usntb102uFJtugbo6BSGvgqt4AQ=="],
    "RRSIG": [
        "A 8 3 86400 20300101000000 20000101000000 2143 example.com. "
        "KRCyIOzG2ITyZDcIFtYqyhCrXrVP6JOjbTTzOHS4IiLy1+/5Y6IAirdK 8Eem9U5WzhVjTePu2hDYXdVRnp2tjQ==",
        "MX 8 3 86400 20300101000000 20000101000000 2143 example.com. AAAA",
    ],
    "NSEC": ["host.example.com. A MX RRSIG NSEC TYPE1234"],
    "DNSKEY": ["257 3 8 AwEAAagAIKlVZrpC6Ia7gEzahOR+9W29euxhJhVVLOyQbSEW0O8gcCjF"],
    "DHCID": ["AAIBY2/AuCccgoJbsaxcQc9TUapptP69lOjxfNuVAA2kjEA="],
    "NSEC3PARAM": ["1 0 1 -", "1 1 12 aabbccdd"],
    "TLSA": ["3 1 1 0c72ac70b745ac19998811b131d662c9ac69dbdbe7cb23e5b514b56664c5d3d6"],
    "OPENPGPKEY": ["mQINBFit2jsBEADrbl5vjVxYeAE0g0IDYCBpHirv1Sjlqxx5gjtPhb2YhvyDMXjq"],
    "CSYNC": ["66 3 A NS AAAA"],
    "ZONEMD": ["2018031900 1 1 " + "c68090d90a7aed716bc459f9340e3d7c1370d4d24b7e2fc3" * 2],
    "SVCB": [
        "1 . alpn=h2,h3 port=443",
        "0 svc.example.net.",
        "16 foo.example.org. key65333=ex1 key65444=ex2 mandatory=key65444,key65333",
        '1 . alpn="h2,h3\\\\,x" ipv4hint=192.0.2.1,192.0.2.2 ipv6hint=2001:db8::1',
        '1 . dohpath="/dns-query{?dns}" key667="hello world; (x)"',
    ],
    "HTTPS": ["1 . alpn=h2 no-default-alpn", "0 www.example.net."],
    "NID": ["10 0014:4fff:ff20:ee64"],
    "L32": ["10 10.1.2.0"],
    "L64": ["10 2001:0db8:1140:1000"],
    "LP": ["10 l64-subnet1.example.net."],
    "EUI48": ["00-00-5e-00-53-2a"],
    "EUI64": ["00-00-5e-ef-10-00-00-2a"],
    "URI": ['10 1 "ftp://ftp1.example.com/public"'],
    "CAA": ['0 issue "ca.example.net; account=230123"', '128 tbs "Unknown"'],
    "AMTRELAY": ["0 0 0 .", "128 1 2 2001:db8::15", "10 0 3 amtrelays.example.net."],
    "WKS": ["192.0.2.1 6 25 80"],
    "NULL": ["\\# 4 01020304"],
    "MB": ["\\# 3 016d00"],
    "TYPE65280": ["\\# 4 0a000001", "\\# 0"],
}
RICH: dict[str, list[str]] = {t: [rdata(t, x) for x in texts] for t, texts in RICH_TEXTS.items()}
NSEC3 = [
    (
        "2t7b4g4vsa5smi47k61mv5bv1a22bojr.example.com.",
        "1 1 12 aabbccdd 2vptu5timamqttgl4luu9kg21e0aor3s A RRSIG",
    ),
    ("2vptu5timamqttgl4luu9kg21e0aor3s.example.com.", "1 0 0 - 2t7b4g4vsa5smi47k61mv5bv1a22bojr"),
]
# Owner names that need escapes in a master file, and names that look like other fields.
ODD_NAMES = [
    name_text(dns.name.from_text(text, dns.name.from_text(ORIGIN)))
    for text in [
        "a\\032b",
        "\\@",
        "\\$dollar",
        'q\\"uote',
        "semi\\;colon",
        "par\\(en\\)",
        "back\\\\slash",
        "dot\\.inside",
        "\\200\\255\\000",
        "*",
        "*.w",
        "n.*",
        "xn--bcher-kva",
        "_sip._tcp",
        "in",
        "60",
        "txt",
        "soa",
        "$ttl",
    ]
]
SINGLETONS = ("CNAME", "DNAME", "NSEC", "NXT")


def loadable(records: Iterable[Record]) -> list[Record]:
    """Generated records made into a zone ``from_records`` accepts (with the apex of APEX):
    names in the zone, one TTL per RRset, no SOA but the apex one, a CNAME alone at its
    name, one record in a singleton type."""
    rrsets: dict[tuple[str, str], tuple[int, set[str]]] = {}
    for name, rdtype, ttl, text in [*APEX, *records]:
        if not in_zone(name, ORIGIN) or (rdtype == "SOA" and (name, rdtype) in rrsets):
            continue
        rrsets.setdefault((name, rdtype), (ttl, set()))[1].add(text)
    types_at: dict[str, set[str]] = {}
    for name, rdtype in rrsets:
        types_at.setdefault(name, set()).add(rdtype)
    out: list[Record] = []
    for (name, rdtype), (ttl, texts) in rrsets.items():
        if rdtype == "SOA" and name != ORIGIN:
            continue
        if rdtype == "CNAME" and len(types_at[name]) > 1:
            continue
        kept = [min(texts)] if rdtype in SINGLETONS else sorted(texts)
        out.extend((name, rdtype, ttl, text) for text in kept)
    return out


def round_trip(zone: Zone) -> Zone:
    text = zone.snapshot()
    restored = zone.restore(text)
    assert restored.records() == zone.records()
    assert restored.digest() == zone.digest()
    assert restored.snapshot() == text
    return restored


def check_with_bind(tmp_path: Path, zone: Zone, name: str = "zone.db") -> None:
    """named-checkzone on the snapshot. ``-i local``: the integrity checks of names in the
    zone only, since checking out-of-zone MX, SRV and NS targets resolves them over the
    network (minutes offline for a large zone)."""
    assert NAMED_CHECKZONE is not None
    path = tmp_path / name
    path.write_text(zone.snapshot())
    origin = zone.origin.to_text()
    done = subprocess.run(
        [NAMED_CHECKZONE, "-i", "local", origin, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


# ---------------------------------------------------------------------- generators

labels = st.binary(min_size=1, max_size=8)
any_names = st.lists(labels, min_size=1, max_size=3).map(
    lambda ls: name_text(dns.name.Name([*ls, *dns.name.from_text(ORIGIN).labels]))
)
names = st.one_of(
    st.sampled_from([n for n in NAMES if in_zone(n, ORIGIN)]),
    st.sampled_from(ODD_NAMES),
    any_names,
)
txt_rdata = st.lists(st.binary(max_size=24), min_size=1, max_size=3).map(
    lambda strings: canonical_rdata_of(
        dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, strings)
    )
)
generic_rdata = st.binary(max_size=16).map(lambda b: f"\\# {len(b)} {b.hex()}".rstrip())
ttls = st.sampled_from([*TTLS, 1, 86400, 2**31 - 1])


@st.composite
def typed_rdata(draw: st.DrawFn) -> tuple[str, str]:
    kind = draw(st.sampled_from(["rich", "rich", "small", "txt", "generic"]))
    if kind == "txt":
        return "TXT", draw(txt_rdata)
    if kind == "generic":
        rdtype = draw(st.sampled_from(["TYPE65280", "TYPE65534", "NULL"]))
        return rdtype, rdata(rdtype, draw(generic_rdata))
    table = RICH if kind == "rich" else RDATA
    rdtype = draw(st.sampled_from(sorted(table)))
    return rdtype, draw(st.sampled_from(table[rdtype]))


@st.composite
def records(draw: st.DrawFn) -> Record:
    rdtype, text = draw(typed_rdata())
    return draw(names), rdtype, draw(ttls), text


@st.composite
def rich_changes(draw: st.DrawFn) -> list[object]:
    """An update entry over the generated records (adds mostly, and deletes of them)."""
    name, rdtype, ttl, text = draw(records())
    kind = draw(st.sampled_from(["add", "add", "add", "delete_rr", "delete_rrset", "delete_name"]))
    if kind == "add":
        return [kind, name, rdtype, ttl, text]
    if kind == "delete_rr":
        return [kind, name, rdtype, text]
    if kind == "delete_rrset":
        return [kind, name, rdtype]
    return [kind, name]


rich_updates = st.lists(rich_changes(), min_size=1, max_size=4).map(
    lambda update: make_update_op(ORIGIN, (), update)
)


# ---------------------------------------------------------------------- round trips


def test_the_rich_alphabet_is_canonical_and_loads() -> None:
    extra = [
        (f"r{i}.{t.lower()}.example.com.", t, 60, text)
        for t, texts in RICH.items()
        for i, text in enumerate(texts)
    ]
    nsec3 = [(name, "NSEC3", 60, rdata("NSEC3", text)) for name, text in NSEC3]
    zone = Zone.from_records(ORIGIN, [*APEX, *extra, *nsec3])
    round_trip(zone)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(records(), max_size=40), st.randoms(use_true_random=False))
def test_any_zone_of_generated_records_round_trips(recs: list[Record], rnd: random.Random) -> None:
    wanted = loadable(recs)
    zone = Zone.from_records(ORIGIN, wanted)
    restored = round_trip(zone)
    # Deterministic: the same records in another order give the same text.
    rnd.shuffle(wanted)
    assert Zone.from_records(ORIGIN, wanted).snapshot() == zone.snapshot()
    assert restored.query(ORIGIN, "SOA") == zone.query(ORIGIN, "SOA")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    serial=st.sampled_from([1, 2**31, 2**32 - 1, 0]),
    ops=st.lists(st.one_of(operations, rich_updates), min_size=1, max_size=20),
)
def test_zones_reached_by_update_ops_round_trip(serial: int, ops: list[str]) -> None:
    zone = Zone.from_records(ORIGIN, [(ORIGIN, "SOA", 3600, SOA.format(serial, 300)), *BASE])
    for op in ops:
        zone.apply(op)
        restored = round_trip(zone)
        # The restored zone is the same state machine: the next op gives the same result.
        assert restored.apply(op) == zone.clone().apply(op)


def test_the_example_zone_round_trips_with_the_soa_first() -> None:
    zone = Zone.from_file(EXAMPLE, ORIGIN)
    text = round_trip(zone).snapshot()
    lines = text.splitlines()
    assert lines[0] == f"$ORIGIN {ORIGIN}"
    assert lines[1] == f"{ORIGIN} 3600 IN SOA {SOA.format(2024010101, 300)}"
    assert text.endswith("\n") and len(lines) == 1 + len(zone.records())
    for line in lines[1:]:
        owner, ttl, rdclass, rdtype, _ = line.split(" ", 4)
        assert dns.name.from_text(owner).is_absolute() and owner.endswith(".")
        assert int(ttl) >= 0 and rdclass == "IN" and dns.rdatatype.from_text(rdtype)


def test_records_follow_rfc4034_canonical_order() -> None:
    """Names in DNSSEC canonical order (dnspython's Name ordering), then types by number,
    then rdata texts: ``b.a`` sorts after ``z`` below the apex, ``\\000`` before ``a``."""
    odd = [(name, "TXT", 60, '"x"') for name in ODD_NAMES if name != "soa.example.com."]
    more = [
        ("z.example.com.", "A", 60, "192.0.2.9"),
        ("b.a.example.com.", "A", 60, "192.0.2.9"),
        ("a.example.com.", "MX", 60, "10 z.example.net."),
        ("a.example.com.", "MX", 60, "1 z.example.net."),
        ("a.example.com.", "A", 60, "192.0.2.9"),
        ("a.example.com.", "AAAA", 60, "2001:db8::9"),
    ]
    zone = Zone.from_records(ORIGIN, [*APEX, *odd, *more])
    lines = [line.split(" ", 4) for line in round_trip(zone).snapshot().splitlines()[1:]]
    keys = [
        (dns.name.from_text(owner), dns.rdatatype.from_text(rdtype), text)
        for owner, _, _, rdtype, text in lines[1:]
    ]
    assert keys == sorted(keys)
    assert lines[0][3] == "SOA"
    owners = [owner for owner, *_ in lines]
    assert owners.index("a.example.com.") < owners.index("b.a.example.com.")
    assert owners.index("b.a.example.com.") < owners.index("z.example.com.")


@pytest.mark.parametrize("origin", [".", "a\\032b.example.", "xn--bcher-kva.example."])
def test_other_origins_round_trip(origin: str) -> None:
    apex = [
        (origin, "SOA", 60, f"ns.{origin} h.{origin} 7 1 2 3 4".replace("..", ".")),
        (origin, "NS", 60, f"ns.{origin}".replace("..", ".")),
        (f"ns.{origin}".replace("..", "."), "A", 60, "192.0.2.1"),
        (f"*.{origin}".replace("..", "."), "TXT", 60, '"w i l d"'),
    ]
    zone = Zone.from_records(origin, apex)
    assert zone.snapshot().startswith(f"$ORIGIN {origin}\n{origin} 60 IN SOA ")
    round_trip(zone)


def test_a_large_zone_snapshots_in_well_under_a_second() -> None:
    recs = [
        *APEX,
        *(
            (f"h{i}.d{i % 97}.example.com.", "TXT", 300, f'"rec {i} \\"q\\" \\\\"')
            for i in range(10_000)
        ),
    ]
    zone = Zone(ORIGIN, recs)  # the unchecked constructor: these records are canonical
    start = time.perf_counter()
    text = zone.snapshot()
    elapsed = time.perf_counter() - start
    assert text.count("\n") == len(recs) + 1
    assert elapsed < 0.5, elapsed


# ---------------------------------------------------------------------- BIND reads snapshots


@needs_named_checkzone
def test_named_checkzone_accepts_the_example_zone_snapshot(tmp_path: Path) -> None:
    check_with_bind(tmp_path, Zone.from_file(EXAMPLE, ORIGIN))


@needs_named_checkzone
def test_named_checkzone_accepts_a_snapshot_of_every_type_and_escape(tmp_path: Path) -> None:
    """Every rich rdata and odd owner name (BIND refuses some zones dnspython loads: NSEC3
    owners that are not hashes, MD and MF; this zone avoids them, as a loadable zone does)."""
    extra = [
        (f"r{i}.{t.lower()}.example.com.", t, 60, text)
        for t, texts in RICH.items()
        for i, text in enumerate(texts)
    ]
    nsec3 = [(name, "NSEC3", 60, rdata("NSEC3", text)) for name, text in NSEC3]
    odd = [(name, "TXT", 60, RICH["TXT"][i % 6]) for i, name in enumerate(ODD_NAMES)]
    glue = [
        ("sub.example.com.", "NS", 60, "ns.sub.example.com."),
        ("ns.sub.example.com.", "A", 60, "192.0.2.53"),
        ("alias.example.com.", "CNAME", 60, "ns1.example.com."),
    ]
    zone = Zone.from_records(ORIGIN, [*APEX, *extra, *nsec3, *odd, *glue])
    check_with_bind(tmp_path, zone)


@needs_named_checkzone
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.lists(st.tuples(any_names, txt_rdata, ttls), max_size=12))
def test_named_checkzone_accepts_arbitrary_octets_in_names_and_txt(
    tmp_path: Path, recs: list[tuple[str, str, int]]
) -> None:
    zone = Zone.from_records(ORIGIN, loadable((name, "TXT", ttl, text) for name, text, ttl in recs))
    check_with_bind(tmp_path, zone)


@needs_named_checkzone
def test_named_checkzone_accepts_a_zone_after_updates(tmp_path: Path) -> None:
    zone = Zone.from_file(EXAMPLE, ORIGIN)
    for update in (
        [["add", "new.example.com.", "TXT", 60, '"with \\"quotes\\" and \\\\"']],
        [["add", "*.new.example.com.", "A", 60, "192.0.2.77"]],
        [["add", "web.example.com.", "A", 60, "192.0.2.1"]],  # beside a CNAME: ignored
        [["delete_name", "www.example.com."], ["add", "www.example.com.", "A", 9, "192.0.2.9"]],
        [["add", "sub2.example.com.", "NS", 60, "ns.sub2.example.com."]],
        [["add", "ns.sub2.example.com.", "AAAA", 60, "2001:db8::53"]],
    ):
        zone.apply(make_update_op(ORIGIN, (), update))
    check_with_bind(tmp_path, round_trip(zone))


# ---------------------------------------------------------------------- refusals, isolation

GOOD = Zone.from_file(EXAMPLE, ORIGIN).snapshot()
GARBAGE = [
    "",
    "garbage",
    "\x00\xff\x80 not a zone",
    GOOD[: GOOD.index(" IN SOA ") + 12],  # truncated inside the SOA
    GOOD.split("\n", 2)[0] + "\n" + GOOD.split("\n", 2)[1],  # an SOA and no NS
    GOOD.replace(" IN SOA ", " IN SOA (", 1),  # an unclosed parenthesis
    GOOD.replace("example.com.", "example.org."),  # another zone's snapshot
    GOOD.replace(" IN ", " CH ", 1),
    GOOD + "web.example.com. 60 IN A 192.0.2.1\n",  # a CNAME and other data
    GOOD + "a.example.com. 60 IN A 192.0.2.1\na.example.com. 60 IN A not-an-address\n",
    GOOD + "$INCLUDE /etc/hosts\n",
    GOOD + "$GENERATE 1-100000000 h$ 60 IN A 192.0.2.1\n",
    GOOD + "x.example.com. 60 IN TYPE65280 \\# 4 00\n",
]


@pytest.mark.parametrize("text", GARBAGE)
def test_restore_of_garbage_raises_value_error(text: str) -> None:
    zone = Zone.from_file(EXAMPLE, ORIGIN)
    assert issubclass(ZoneLoadError, ValueError)
    with pytest.raises(ValueError):
        zone.restore(text)
    with pytest.raises(ZoneLoadError):
        zone.restore(text)


def test_restore_leaves_the_original_unchanged_and_gives_an_independent_zone() -> None:
    zone = Zone.from_file(EXAMPLE, ORIGIN)
    digest, recs, text = zone.digest(), zone.records(), zone.snapshot()
    other = text + "extra.example.com. 60 IN A 192.0.2.99\n"
    restored = zone.restore(other)
    assert restored is not zone
    assert ("extra.example.com.", "A", 60, "192.0.2.99") in restored.records()
    assert (zone.digest(), zone.records(), zone.snapshot()) == (digest, recs, text)
    # Updates on either side stay on that side.
    restored.apply(make_update_op(ORIGIN, (), [["delete_name", "www.example.com."]]))
    zone.apply(make_update_op(ORIGIN, (), [["add", "mine.example.com.", "A", 60, "192.0.2.3"]]))
    assert "NXDOMAIN" in restored.apply(make_query_op("www.example.com.", "A"))
    assert "NXDOMAIN" in restored.apply(make_query_op("mine.example.com.", "A"))
    assert "NOERROR" in zone.apply(make_query_op("www.example.com.", "A"))
    # A failed restore changes nothing either.
    before = zone.digest()
    with pytest.raises(ValueError):
        zone.restore("garbage")
    assert zone.digest() == before
