"""Unit tests of vrref.dns.zone, .ops and .update: the zone as a state machine, rule by rule.

Each RFC 2136 rule has a test that it holds and, where it can fail, a test of its failure;
each query case of spec/dns.md ("Must") has a test on examples/example.com.zone. Updates are written
as ops (the contract), and the UPDATE converter is tested on real dnspython messages, some of
them through the wire.
"""

from __future__ import annotations

import json
from pathlib import Path

import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.update
import pytest

from vrref.core.messages import (
    OP_BYTES_MAX,
    LogEntry,
    Prepare,
    Request,
    decode,
    encode,
    op_wire_bytes,
)
from vrref.core.statemachine import StateMachine
from vrref.dns.canonical import serial_gt
from vrref.dns.ops import (
    QueryResult,
    decode_query_result,
    encode_query_result,
    make_query_op,
    make_update_op,
    result_rcode,
)
from vrref.dns.update import UpdateError, update_op_from_message
from vrref.dns.zone import CNAME_CHAIN_MAX, Zone, ZoneLoadError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "example.com.zone"
ORIGIN = "example.com."
SOA_TEXT = "ns1.example.com. hostmaster.example.com. {} 3600 900 604800 300"
SERIAL = 2024010101

SMALL = """
$ORIGIN example.com.
$TTL 3600
@       SOA  ns1 hostmaster 2024010101 3600 900 604800 300
@       NS   ns1
@       NS   ns2
ns1     A    192.0.2.53
ns2     A    198.51.100.53
www 300 A    192.0.2.10
www 300 A    192.0.2.11
alias   CNAME www
host.ent A   203.0.113.1
"""


@pytest.fixture
def zone() -> Zone:
    return Zone.from_text(SMALL, ORIGIN)


@pytest.fixture(scope="module")
def example() -> Zone:
    return Zone.from_file(EXAMPLE, dns.name.from_text(ORIGIN))


def upd(*update: list[object], prereq: tuple[list[object], ...] = ()) -> str:
    return make_update_op(ORIGIN, prereq, update)


def run(zone: Zone, op: str) -> tuple[str, int]:
    result = json.loads(zone.apply(op))
    assert set(result) == {"rcode", "serial"}
    assert result["serial"] == zone.serial
    return result["rcode"], result["serial"]


def rrset(zone: Zone, name: str, rdtype: str) -> set[tuple[int, str]]:
    return {(ttl, rdata) for n, t, ttl, rdata in zone.records() if (n, t) == (name, rdtype)}


def soa(serial: int) -> str:
    return SOA_TEXT.format(serial)


# ---------------------------------------------------------------------- loading


def test_the_example_zone_loads_with_its_soa_and_ns(example: Zone) -> None:
    assert example.serial == SERIAL
    assert example.origin == dns.name.from_text(ORIGIN)
    assert rrset(example, ORIGIN, "NS") == {(3600, "ns1.example.com."), (3600, "ns2.example.com.")}
    machine: StateMachine = example  # the protocol, checked by mypy
    assert machine.digest() == example.digest()


def test_loading_lowercases_names_and_derelativizes_rdata() -> None:
    zone = Zone.from_text(SMALL + "MiXed MX 10 Mail.Example.COM.\n", ORIGIN)
    assert rrset(zone, "mixed.example.com.", "MX") == {(3600, "10 mail.example.com.")}
    assert rrset(zone, "alias.example.com.", "CNAME") == {(3600, "www.example.com.")}


@pytest.mark.parametrize(
    "text",
    [
        "$ORIGIN example.com.\n@ 3600 NS ns1\nns1 3600 A 192.0.2.1\n",  # no SOA
        "$ORIGIN example.com.\n@ 3600 SOA ns1 h 1 2 3 4 5\n",  # no NS
        "$ORIGIN example.com.\n@ 3600 SOA ns1 h 1 2 3 4 5\n@ 3600 NS ns1\nx 60 BOGUS 1\n",
    ],
)
def test_a_zone_without_soa_or_ns_or_with_bad_syntax_is_refused(text: str) -> None:
    with pytest.raises(ZoneLoadError):
        Zone.from_text(text, ORIGIN)
    assert issubclass(ZoneLoadError, ValueError)


def test_from_records_refuses_cname_beside_other_data_and_names_outside() -> None:
    base = [(ORIGIN, "SOA", 60, soa(1)), (ORIGIN, "NS", 60, "ns1.example.com.")]
    with pytest.raises(ZoneLoadError, match="CNAME"):
        Zone.from_records(
            ORIGIN, [*base, ("a.example.com.", "CNAME", 60, "b.example.com."),
                     ("a.example.com.", "A", 60, "192.0.2.1")]
        )  # fmt: skip
    with pytest.raises(ZoneLoadError, match="outside"):
        Zone.from_records(ORIGIN, [*base, ("a.example.net.", "A", 60, "192.0.2.1")])
    with pytest.raises(ZoneLoadError):
        Zone.from_records(ORIGIN, [*base, ("a.example.com.", "A", 60, "192.0.2.01")])


def test_from_file_reports_a_missing_file_as_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(ZoneLoadError):
        Zone.from_file(tmp_path / "missing.zone", ORIGIN)


# ---------------------------------------------------------------------- prerequisites


@pytest.mark.parametrize(
    ("prereq", "rcode"),
    [
        (["yxdomain", "www.example.com."], "NOERROR"),
        (["yxdomain", "nope.example.com."], "NXDOMAIN"),
        (["yxdomain", "ent.example.com."], "NXDOMAIN"),  # an empty non-terminal is not in use
        (["nxdomain", "nope.example.com."], "NOERROR"),
        (["nxdomain", "ent.example.com."], "NOERROR"),
        (["nxdomain", "www.example.com."], "YXDOMAIN"),
        (["yxrrset", "www.example.com.", "A"], "NOERROR"),
        (["yxrrset", "www.example.com.", "AAAA"], "NXRRSET"),
        (["yxrrset", "nope.example.com.", "A"], "NXRRSET"),
        (["nxrrset", "www.example.com.", "AAAA"], "NOERROR"),
        (["nxrrset", "www.example.com.", "A"], "YXRRSET"),
        (["yxrrset_exact", "www.example.com.", "A", ["192.0.2.10", "192.0.2.11"]], "NOERROR"),
        (["yxrrset_exact", "www.example.com.", "A", ["192.0.2.10"]], "NXRRSET"),  # subset
        (
            ["yxrrset_exact", "www.example.com.", "A", ["192.0.2.10", "192.0.2.11", "192.0.2.12"]],
            "NXRRSET",
        ),
        (["yxrrset_exact", "www.example.com.", "AAAA", ["2001:db8::1"]], "NXRRSET"),
        (["yxdomain", "www.example.net."], "NOTZONE"),
    ],
)
def test_each_prerequisite_holds_or_fails_with_its_rcode(
    zone: Zone, prereq: list[object], rcode: str
) -> None:
    before = zone.records()
    got, serial = run(
        zone, upd(["add", "new.example.com.", "A", 60, "192.0.2.99"], prereq=(prereq,))
    )
    assert got == rcode
    if rcode == "NOERROR":
        assert rrset(zone, "new.example.com.", "A") == {(60, "192.0.2.99")}
        assert serial == SERIAL + 1
    else:
        assert zone.records() == before and serial == SERIAL


def test_a_failing_prerequisite_after_passing_ones_changes_nothing(zone: Zone) -> None:
    before, digest = zone.records(), zone.digest()
    op = upd(
        ["delete_name", "www.example.com."],
        ["add", "x.example.com.", "A", 60, "192.0.2.1"],
        prereq=(["yxdomain", "www.example.com."], ["nxrrset", "www.example.com.", "AAAA"],
                ["nxdomain", "www.example.com."], ["yxdomain", "nope.example.com."]),
    )  # fmt: skip
    assert run(zone, op) == ("YXDOMAIN", SERIAL)  # the first failure decides the rcode
    assert zone.records() == before and zone.digest() == digest


def test_compare_and_set_replaces_exactly_the_expected_rrset(zone: Zone) -> None:
    cas = upd(
        ["delete_rrset", "www.example.com.", "A"],
        ["add", "www.example.com.", "A", 300, "192.0.2.20"],
        prereq=(["yxrrset_exact", "www.example.com.", "A", ["192.0.2.10", "192.0.2.11"]],),
    )
    assert run(zone, cas) == ("NOERROR", SERIAL + 1)
    assert run(zone, cas) == ("NXRRSET", SERIAL + 1)  # the expected value is gone
    assert rrset(zone, "www.example.com.", "A") == {(300, "192.0.2.20")}


# ---------------------------------------------------------------------- updates


def test_add_creates_a_name_and_a_duplicate_changes_nothing(zone: Zone) -> None:
    op = upd(["add", "new.example.com.", "TXT", 60, '"hello"'])
    assert run(zone, op) == ("NOERROR", SERIAL + 1)
    digest = zone.digest()
    assert run(zone, op) == ("NOERROR", SERIAL + 1)  # nothing changed: the serial stays
    assert zone.digest() == digest


def test_add_to_an_rrset_sets_its_ttl_to_the_new_ttl(zone: Zone) -> None:
    assert run(zone, upd(["add", "www.example.com.", "A", 60, "192.0.2.12"]))[0] == "NOERROR"
    assert rrset(zone, "www.example.com.", "A") == {
        (60, "192.0.2.10"), (60, "192.0.2.11"), (60, "192.0.2.12")
    }  # fmt: skip
    # Re-adding an existing record with another TTL is a change (RFC 2136 replaces it).
    assert run(zone, upd(["add", "www.example.com.", "A", 90, "192.0.2.10"])) == (
        "NOERROR", SERIAL + 2
    )  # fmt: skip
    assert {ttl for ttl, _ in rrset(zone, "www.example.com.", "A")} == {90}


def test_delete_rrset_name_and_rr(zone: Zone) -> None:
    assert run(zone, upd(["delete_rr", "www.example.com.", "A", "192.0.2.10"]))[0] == "NOERROR"
    assert rrset(zone, "www.example.com.", "A") == {(300, "192.0.2.11")}
    assert run(zone, upd(["delete_rr", "www.example.com.", "A", "192.0.2.11"]))[0] == "NOERROR"
    assert rrset(zone, "www.example.com.", "A") == set()
    assert run(zone, upd(["delete_rrset", "ns1.example.com.", "A"]))[0] == "NOERROR"
    assert rrset(zone, "ns1.example.com.", "A") == set()
    assert run(zone, upd(["delete_name", "alias.example.com."])) == ("NOERROR", SERIAL + 4)
    names = {r[0] for r in zone.records()}
    assert "alias.example.com." not in names and "www.example.com." not in names


def test_deleting_what_is_absent_changes_nothing(zone: Zone) -> None:
    ops = [
        upd(["delete_rr", "www.example.com.", "A", "192.0.2.99"]),
        upd(["delete_rrset", "www.example.com.", "MX"]),
        upd(["delete_name", "nope.example.com."]),
    ]
    for op in ops:
        assert run(zone, op) == ("NOERROR", SERIAL)


def test_adding_then_deleting_in_one_update_leaves_the_serial(zone: Zone) -> None:
    op = upd(
        ["add", "tmp.example.com.", "A", 60, "192.0.2.1"],
        ["delete_name", "tmp.example.com."],
    )
    assert run(zone, op) == ("NOERROR", SERIAL)


def test_the_apex_soa_and_last_ns_are_never_deleted(zone: Zone) -> None:
    apex_before = {r for r in zone.records() if r[0] == ORIGIN and r[1] in ("SOA", "NS")}
    for op in (
        upd(["delete_rrset", ORIGIN, "SOA"]),
        upd(["delete_rrset", ORIGIN, "NS"]),
        upd(["delete_rr", ORIGIN, "SOA", soa(SERIAL)]),
    ):
        assert run(zone, op) == ("NOERROR", SERIAL)
    assert run(zone, upd(["add", ORIGIN, "TXT", 60, '"apex"'], ["delete_name", ORIGIN])) == (
        "NOERROR", SERIAL  # the TXT came and went; SOA and NS stay: no net change
    )  # fmt: skip
    assert {r for r in zone.records() if r[0] == ORIGIN} == apex_before
    op = upd(
        ["delete_rr", ORIGIN, "NS", "ns1.example.com."],
        ["delete_rr", ORIGIN, "NS", "ns2.example.com."],
    )
    assert run(zone, op) == ("NOERROR", SERIAL + 1)
    assert rrset(zone, ORIGIN, "NS") == {(3600, "ns2.example.com.")}  # the last one stays


def test_an_soa_add_replaces_only_with_a_greater_serial(zone: Zone) -> None:
    assert run(zone, upd(["add", ORIGIN, "SOA", 60, soa(SERIAL - 1)])) == ("NOERROR", SERIAL)
    assert run(zone, upd(["add", ORIGIN, "SOA", 60, soa(SERIAL)])) == ("NOERROR", SERIAL)
    # Greater: it replaces the SOA (TTL included) and the serial is not bumped again.
    assert run(zone, upd(["add", ORIGIN, "SOA", 60, soa(SERIAL + 10)])) == ("NOERROR", SERIAL + 10)
    assert rrset(zone, ORIGIN, "SOA") == {(60, soa(SERIAL + 10))}
    # Below the apex there is no SOA to replace: ignored.
    assert (
        run(zone, upd(["add", "www.example.com.", "SOA", 60, soa(SERIAL + 20)]))[1] == SERIAL + 10
    )
    assert rrset(zone, "www.example.com.", "SOA") == set()


def test_an_soa_add_raising_the_serial_with_other_changes_is_not_bumped(zone: Zone) -> None:
    op = upd(
        ["add", "x.example.com.", "A", 60, "192.0.2.1"],
        ["add", ORIGIN, "SOA", 60, soa(7_000_000_000 % 2**32)],
    )
    assert serial_gt(7_000_000_000 % 2**32, SERIAL)
    assert run(zone, op) == ("NOERROR", 7_000_000_000 % 2**32)


def test_the_serial_wraps_at_2_to_the_32(zone: Zone) -> None:
    top = 2**32 - 1
    # RFC 1982: a serial can rise by at most 2**31 - 1 at a time; two steps reach the top.
    assert not serial_gt(top, SERIAL)
    assert run(zone, upd(["add", ORIGIN, "SOA", 3600, soa(top)])) == ("NOERROR", SERIAL)
    halfway = SERIAL + 2**31 - 1
    assert run(zone, upd(["add", ORIGIN, "SOA", 3600, soa(halfway)])) == ("NOERROR", halfway)
    assert run(zone, upd(["add", ORIGIN, "SOA", 3600, soa(top)])) == ("NOERROR", top)
    assert run(zone, upd(["add", "a.example.com.", "A", 60, "192.0.2.1"])) == ("NOERROR", 0)
    assert run(zone, upd(["add", "b.example.com.", "A", 60, "192.0.2.1"])) == ("NOERROR", 1)
    # Across the wrap, 5 is greater than 1 and 4294967295 is not.
    assert run(zone, upd(["add", ORIGIN, "SOA", 3600, soa(top)])) == ("NOERROR", 1)
    assert run(zone, upd(["add", ORIGIN, "SOA", 3600, soa(5)])) == ("NOERROR", 5)


def test_rfc1982_comparison() -> None:
    assert serial_gt(1, 0) and not serial_gt(0, 1)
    assert serial_gt(0, 2**32 - 1) and not serial_gt(2**32 - 1, 0)
    assert not serial_gt(2**31, 0) and not serial_gt(0, 2**31)  # undefined
    assert not serial_gt(7, 7)


def test_cname_and_other_data_exclude_each_other(zone: Zone) -> None:
    assert run(zone, upd(["add", "www.example.com.", "CNAME", 60, "x.example.com."]))[1] == SERIAL
    assert run(zone, upd(["add", "alias.example.com.", "A", 60, "192.0.2.1"]))[1] == SERIAL
    assert run(zone, upd(["add", ORIGIN, "CNAME", 60, "x.example.com."]))[1] == SERIAL
    assert rrset(zone, "www.example.com.", "CNAME") == set()
    assert rrset(zone, "alias.example.com.", "A") == set()
    # A CNAME replaces a CNAME (there is at most one).
    assert run(zone, upd(["add", "alias.example.com.", "CNAME", 60, "ns1.example.com."]))[0] == (
        "NOERROR"
    )
    assert rrset(zone, "alias.example.com.", "CNAME") == {(60, "ns1.example.com.")}


def test_singleton_types_replace_their_rrset(zone: Zone) -> None:
    run(zone, upd(["add", "d.example.com.", "DNAME", 60, "a.example.net."]))
    run(zone, upd(["add", "d.example.com.", "DNAME", 60, "b.example.net."]))
    assert rrset(zone, "d.example.com.", "DNAME") == {(60, "b.example.net.")}


def test_names_outside_the_zone_and_other_zones(zone: Zone) -> None:
    assert run(zone, upd(["add", "www.example.net.", "A", 60, "192.0.2.1"])) == ("NOTZONE", SERIAL)
    # The prescan runs before any change: an earlier in-zone add does not happen either.
    op = upd(["add", "ok.example.com.", "A", 60, "192.0.2.1"], ["delete_name", "example.org."])
    assert run(zone, op) == ("NOTZONE", SERIAL)
    other = make_update_op("example.org.", (), [["add", "a.example.org.", "A", 60, "192.0.2.1"]])
    assert run(zone, other) == ("REFUSED", SERIAL)


VALID = {"t": "update", "zone": ORIGIN, "prereq": [], "update": []}


@pytest.mark.parametrize(
    "op",
    [
        "",
        "not json",
        "[]",
        "null",
        '{"t":"update"}',
        json.dumps({**VALID, "extra": 1}),
        json.dumps({**VALID, "t": "delete"}),
        json.dumps({**VALID, "zone": "Example.com."}),
        json.dumps({**VALID, "prereq": {}}),
        json.dumps({**VALID, "update": [["add", "a.example.com.", "A", 60]]}),
        json.dumps({**VALID, "update": [["upsert", "a.example.com.", "A", 60, "192.0.2.1"]]}),
        json.dumps({**VALID, "update": [[]]}),
        json.dumps({**VALID, "update": ["add"]}),
        json.dumps({**VALID, "update": [["add", "a.example.com", "A", 60, "192.0.2.1"]]}),
        json.dumps({**VALID, "update": [["add", "A.example.com.", "A", 60, "192.0.2.1"]]}),
        json.dumps({**VALID, "update": [["add", "a.example.com.", "a", 60, "192.0.2.1"]]}),
        json.dumps({**VALID, "update": [["add", "a.example.com.", "ANY", 60, "192.0.2.1"]]}),
        json.dumps({**VALID, "update": [["add", "a.example.com.", "BOGUS", 60, "x"]]}),
        json.dumps({**VALID, "update": [["add", "a.example.com.", "A", -1, "192.0.2.1"]]}),
        json.dumps({**VALID, "update": [["add", "a.example.com.", "A", 2**31, "192.0.2.1"]]}),
        json.dumps({**VALID, "update": [["add", "a.example.com.", "A", True, "192.0.2.1"]]}),
        json.dumps({**VALID, "update": [["add", "a.example.com.", "A", 60, "192.0.2.256"]]}),
        json.dumps({**VALID, "update": [["add", "a.example.com.", "A", 60, " 192.0.2.1"]]}),
        json.dumps({**VALID, "update": [["add", "a.example.com.", "AAAA", 60, "2001:DB8::1"]]}),
        json.dumps({**VALID, "update": [["add", "a.example.com.", "CNAME", 60, "www"]]}),
        json.dumps({**VALID, "update": [["add", "a.example.com.", "MX", 60, "10 Mail.x."]]}),
        json.dumps({**VALID, "update": [["delete_name", "a.example.com.", "A"]]}),
        json.dumps({**VALID, "update": [["delete_rrset", "a.example.com.", "AXFR"]]}),
        json.dumps({**VALID, "prereq": [["yxrrset_exact", "a.example.com.", "A", []]]}),
        json.dumps(
            {
                **VALID,
                "prereq": [["yxrrset_exact", "a.example.com.", "A", ["192.0.2.2", "192.0.2.1"]]],
            }
        ),
        json.dumps({**VALID, "prereq": [["yxrrset", "a.example.com.", "ANY"]]}),
        json.dumps({"t": "query", "name": "www.example.com.", "type": "A", "x": 1}),
        json.dumps({"t": "query", "name": "www.example.com.", "type": 1}),
        "x" * (OP_BYTES_MAX + 1),
        "[" * 100_000,
    ],
)
def test_a_malformed_op_is_formerr_and_changes_nothing(zone: Zone, op: str) -> None:
    digest = zone.digest()
    assert zone.apply(op) == json.dumps({"rcode": "FORMERR", "serial": SERIAL}).replace(" ", "")
    assert zone.digest() == digest


def test_any_json_spelling_of_an_op_is_accepted(zone: Zone) -> None:
    op = {"update": [["add", "a.example.com.", "A", 60, "192.0.2.1"]], "prereq": [],
          "zone": ORIGIN, "t": "update"}  # fmt: skip
    assert run(zone, json.dumps(op, indent=2)) == ("NOERROR", SERIAL + 1)


def test_make_update_op_canonicalizes_and_checks() -> None:
    op = make_update_op(
        dns.name.from_text("Example.COM."),
        [["yxrrset_exact", "WWW.example.com.", "A", ["192.0.2.2", "192.0.2.1", "192.0.2.2"]]],
        [["add", dns.name.from_text("X.example.com."), "A", 60, "192.0.2.1"]],
    )
    assert op == (
        '{"prereq":[["yxrrset_exact","www.example.com.","A",["192.0.2.1","192.0.2.2"]]],'
        '"t":"update","update":[["add","x.example.com.","A",60,"192.0.2.1"]],'
        '"zone":"example.com."}'
    )
    with pytest.raises(ValueError):
        make_update_op(ORIGIN, (), [["add", "x.example.com.", "A", 60, "not an address"]])


# ---------------------------------------------------------------------- UPDATE messages


def message_op(msg: dns.update.UpdateMessage, wire: bool = True) -> dict[str, object]:
    if wire:
        parsed = dns.message.from_wire(msg.to_wire())
        assert isinstance(parsed, dns.update.UpdateMessage)
        msg = parsed
    op = update_op_from_message(msg, dns.name.from_text(ORIGIN))
    decoded = json.loads(op)
    assert isinstance(decoded, dict)
    return decoded


def test_update_messages_become_ops_in_message_order() -> None:
    msg = dns.update.UpdateMessage(ORIGIN)
    msg.present("WWW", "A", "192.0.2.11", "192.0.2.10")  # value-dependent: grouped, sorted
    msg.present("www")
    msg.absent("nope")
    msg.present("www", "A")
    msg.absent("www", "AAAA")
    msg.delete("www", "A")
    msg.add("www", 300, "A", "192.0.2.20")
    msg.add("mx", 600, "MX", "10 Mail.Example.COM.")
    msg.add("alias", 60, "CNAME", "target")  # relative to the zone
    msg.delete("old", "TXT", '"gone"')
    msg.delete("old")
    for wire in (False, True):
        op = message_op(msg, wire)
        assert op["zone"] == ORIGIN and op["t"] == "update"
        assert op["prereq"] == [
            ["yxdomain", "www.example.com."],
            ["nxdomain", "nope.example.com."],
            ["yxrrset", "www.example.com.", "A"],
            ["nxrrset", "www.example.com.", "AAAA"],
            ["yxrrset_exact", "www.example.com.", "A", ["192.0.2.10", "192.0.2.11"]],
        ]
        assert op["update"] == [
            ["delete_rrset", "www.example.com.", "A"],
            ["add", "www.example.com.", "A", 300, "192.0.2.20"],
            ["add", "mx.example.com.", "MX", 600, "10 mail.example.com."],
            ["add", "alias.example.com.", "CNAME", 60, "target.example.com."],
            ["delete_rr", "old.example.com.", "TXT", '"gone"'],
            ["delete_name", "old.example.com."],
        ]


def test_a_converted_update_applies(zone: Zone) -> None:
    msg = dns.update.UpdateMessage(ORIGIN)
    msg.present("www", "A", "192.0.2.10", "192.0.2.11")
    msg.replace("www", 120, "A", "192.0.2.30")
    op = update_op_from_message(msg, ORIGIN)
    assert run(zone, op) == ("NOERROR", SERIAL + 1)
    assert rrset(zone, "www.example.com.", "A") == {(120, "192.0.2.30")}
    assert result_rcode(zone.apply(op)) == dns.rcode.NXRRSET


def expect_error(msg: dns.update.UpdateMessage, rcode: dns.rcode.Rcode) -> None:
    with pytest.raises(UpdateError) as caught:
        update_op_from_message(msg, ORIGIN)
    assert caught.value.rcode == rcode


def test_names_outside_the_zone_are_notzone() -> None:
    msg = dns.update.UpdateMessage(ORIGIN)
    msg.add(dns.name.from_text("www.example.net."), 60, "A", "192.0.2.1")
    expect_error(msg, dns.rcode.NOTZONE)
    msg = dns.update.UpdateMessage(ORIGIN)
    msg.present(dns.name.from_text("example.net."))
    expect_error(msg, dns.rcode.NOTZONE)


def test_another_zone_is_notauth() -> None:
    msg = dns.update.UpdateMessage("example.org.")
    msg.add("www", 60, "A", "192.0.2.1")
    expect_error(msg, dns.rcode.NOTAUTH)


def update_of_op_bytes(target: int) -> dns.update.UpdateMessage:
    """An UPDATE whose op takes exactly ``target`` bytes encoded: TXT records of one size, then
    one padded to the last byte (each padding character adds one byte)."""

    def build(records: int, pad: int) -> dns.update.UpdateMessage:
        msg = dns.update.UpdateMessage(ORIGIN)
        for i in range(records):
            msg.add(f"t{i:05}", 60, "TXT", '"' + "a" * 190 + '"')
        msg.add("pad", 60, "TXT", '"' + "b" * pad + '"')
        return msg

    def size(msg: dns.update.UpdateMessage) -> int:
        return op_wire_bytes(update_op_from_message(msg, ORIGIN))

    empty, per_record = size(build(0, 0)), size(build(1, 0)) - size(build(0, 0))
    assert 190 < per_record < 255
    records, pad = divmod(target - empty, per_record)
    msg = build(records, pad)
    assert records > 0 and pad < 255
    return msg


def test_an_update_whose_op_is_over_the_codec_bound_is_formerr_before_ordering(zone: Zone) -> None:
    at_the_bound = update_of_op_bytes(OP_BYTES_MAX)
    op = update_op_from_message(at_the_bound, ORIGIN)
    assert op_wire_bytes(op) == OP_BYTES_MAX
    # It travels: a PREPARE carrying it decodes at every peer, and it applies.
    prepare = Prepare(
        view=0,
        entries=(LogEntry(view=0, request=Request(op=op, client_id=1, request_number=1)),),
        op_number=1,
        commit_number=0,
    )
    assert decode(encode(prepare)) == prepare
    assert run(zone, op) == ("NOERROR", SERIAL + 1)
    # One byte more: refused with the rcode the frontend answers (FORMERR), never ordered.
    expect_error(update_of_op_bytes(OP_BYTES_MAX + 1), dns.rcode.FORMERR)


def test_bad_classes_types_and_ttls_are_formerr() -> None:
    def rrset(
        section: str,
        rdclass: dns.rdataclass.RdataClass,
        rdtype: dns.rdatatype.RdataType,
        ttl: int,
        rdata: str | None,
        deleting: dns.rdataclass.RdataClass | None = None,
    ) -> dns.update.UpdateMessage:
        msg = dns.update.UpdateMessage(ORIGIN)
        target = msg.prerequisite if section == "prereq" else msg.update
        rr = msg.find_rrset(target, dns.name.from_text("www.example.com."), rdclass, rdtype,
                            deleting=deleting, create=True, force_unique=True)  # fmt: skip
        if rdata is not None:
            rr.add(dns.rdata.from_text(rdclass, rdtype, rdata), ttl)
        return msg

    IN, A, ANY, AXFR = dns.rdataclass.IN, dns.rdatatype.A, dns.rdatatype.ANY, dns.rdatatype.AXFR
    TXT = dns.rdatatype.TXT
    cases = [
        rrset("update", dns.rdataclass.CH, TXT, 60, '"chaos"'),  # another class
        rrset("update", IN, ANY, 0, None),  # add of type ANY, and no rdata
        rrset("update", IN, AXFR, 0, None, deleting=dns.rdataclass.ANY),  # a meta type
        rrset("update", IN, A, 60, "192.0.2.1", deleting=dns.rdataclass.NONE),  # TTL not 0
        rrset("prereq", IN, A, 60, "192.0.2.1"),  # prerequisite TTL not 0
        rrset("prereq", dns.rdataclass.CH, TXT, 0, '"chaos"'),
        rrset("prereq", IN, A, 0, None),  # class IN without rdata
        rrset("prereq", IN, AXFR, 0, None, deleting=dns.rdataclass.NONE),
    ]
    for msg in cases:
        expect_error(msg, dns.rcode.FORMERR)
    no_soa = dns.update.UpdateMessage(ORIGIN)
    no_soa.zone[0].rdtype = dns.rdatatype.A
    expect_error(no_soa, dns.rcode.FORMERR)


# ---------------------------------------------------------------------- queries


def answer(zone: Zone, name: str, rdtype: str) -> QueryResult:
    result = zone.query(name, rdtype)
    assert zone.apply(make_query_op(name, rdtype)) == encode_query_result(result)
    assert decode_query_result(encode_query_result(result)) == result
    return result


NEGATIVE_SOA = (ORIGIN, "SOA", 300, soa(SERIAL))  # TTL min(3600, MINIMUM 300)


def test_positive_answers(example: Zone) -> None:
    assert answer(example, "www.example.com.", "A") == QueryResult(
        rcode="NOERROR", aa=True, answer=(("www.example.com.", "A", 300, "192.0.2.10"),)
    )
    assert answer(example, "www.example.com.", "AAAA").answer == (
        ("www.example.com.", "AAAA", 300, "2001:db8::10"),
    )
    assert answer(example, ORIGIN, "MX").answer == ((ORIGIN, "MX", 3600, "10 mail.example.com."),)
    result = example.query(dns.name.from_text("WWW.Example.COM."), dns.rdatatype.A)
    assert result.rcode == "NOERROR" and len(result.answer) == 1


def test_a_cname_chain_is_followed_inside_the_zone(example: Zone) -> None:
    result = answer(example, "web.example.com.", "AAAA")
    assert result.rcode == "NOERROR" and result.aa
    assert result.answer == (
        ("alias.example.com.", "CNAME", 3600, "www.example.com."),
        ("web.example.com.", "CNAME", 3600, "alias.example.com."),
        ("www.example.com.", "AAAA", 300, "2001:db8::10"),
    )
    # Asking for the CNAME itself does not follow it.
    assert answer(example, "web.example.com.", "CNAME").answer == (
        ("web.example.com.", "CNAME", 3600, "alias.example.com."),
    )


def test_cname_loops_chains_out_of_zone_and_dangling_targets(example: Zone) -> None:
    zone = example.clone()
    zone.apply(upd(["add", "l1.example.com.", "CNAME", 60, "l2.example.com."],
                   ["add", "l2.example.com.", "CNAME", 60, "l1.example.com."],
                   ["add", "out.example.com.", "CNAME", 60, "www.example.net."],
                   ["add", "dangle.example.com.", "CNAME", 60, "gone.example.com."]))  # fmt: skip
    loop = answer(zone, "l1.example.com.", "A")
    assert loop.rcode == "NOERROR" and len(loop.answer) == 2 and loop.authority == ()
    out = answer(zone, "out.example.com.", "A")
    assert out.answer == (("out.example.com.", "CNAME", 60, "www.example.net."),)
    dangling = answer(zone, "dangle.example.com.", "A")
    assert dangling.rcode == "NXDOMAIN" and len(dangling.answer) == 1  # RFC 6604
    assert dangling.authority == ((*NEGATIVE_SOA[:3], soa(zone.serial)),)


def test_a_long_cname_chain_stops_at_its_bound(example: Zone) -> None:
    zone = example.clone()
    links = [
        ["add", f"c{i}.example.com.", "CNAME", 60, f"c{i + 1}.example.com."]
        for i in range(CNAME_CHAIN_MAX + 2)
    ]
    zone.apply(upd(*links, ["add", f"c{CNAME_CHAIN_MAX + 2}.example.com.", "A", 60, "192.0.2.1"]))
    result = answer(zone, "c0.example.com.", "A")
    assert result.rcode == "NOERROR"
    assert [r[1] for r in result.answer] == ["CNAME"] * (CNAME_CHAIN_MAX + 1)
    within = answer(zone, "c2.example.com.", "A")  # exactly CNAME_CHAIN_MAX links
    assert [r[1] for r in within.answer].count("A") == 1


def test_nxdomain_and_nodata_carry_the_soa_with_the_negative_ttl(example: Zone) -> None:
    assert answer(example, "nope.example.com.", "A") == QueryResult(
        rcode="NXDOMAIN", aa=True, authority=(NEGATIVE_SOA,)
    )
    assert answer(example, "www.example.com.", "MX") == QueryResult(
        rcode="NOERROR", aa=True, authority=(NEGATIVE_SOA,)
    )


def test_an_empty_non_terminal_is_nodata(example: Zone) -> None:
    for name in ("ent.example.com.", "deep.ent.example.com."):
        assert answer(example, name, "A") == QueryResult(
            rcode="NOERROR", aa=True, authority=(NEGATIVE_SOA,)
        )
    assert answer(example, "x.deep.ent.example.com.", "A").rcode == "NXDOMAIN"


def test_wildcards_synthesize_below_their_closest_encloser(example: Zone) -> None:
    for name in ("a.wild.example.com.", "b.c.wild.example.com."):
        result = answer(example, name, "A")
        assert result == QueryResult(
            rcode="NOERROR", aa=True, answer=((name, "A", 3600, "203.0.113.7"),)
        )
    assert answer(example, "a.wild.example.com.", "MX").authority == (NEGATIVE_SOA,)  # NODATA
    assert answer(example, "wild.example.com.", "A").authority == (NEGATIVE_SOA,)  # an ENT
    assert answer(example, "*.wild.example.com.", "A").answer[0][0] == "*.wild.example.com."
    # No wildcard at the closest encloser (example.com.): NXDOMAIN.
    assert answer(example, "a.nowild.example.com.", "A").rcode == "NXDOMAIN"


def test_a_wildcard_does_not_match_an_existing_name_or_an_ent(example: Zone) -> None:
    zone = example.clone()
    zone.apply(upd(["add", "real.wild.example.com.", "TXT", 60, '"real"'],
                   ["add", "x.ent2.wild.example.com.", "TXT", 60, '"deep"']))  # fmt: skip
    assert answer(zone, "real.wild.example.com.", "A").rcode == "NOERROR"
    assert answer(zone, "real.wild.example.com.", "A").answer == ()  # NODATA, not synthesized
    assert answer(zone, "ent2.wild.example.com.", "A").answer == ()  # an ENT, not synthesized
    # Below an existing name, the closest encloser is that name, which has no wildcard.
    assert answer(zone, "y.real.wild.example.com.", "A").rcode == "NXDOMAIN"


def test_an_empty_non_terminal_wildcard_gives_nodata(example: Zone) -> None:
    zone = example.clone()
    zone.apply(upd(["add", "n.*.e.example.com.", "TXT", 60, '"below the wildcard"']))
    # The closest encloser of q.e is e; its source of synthesis *.e owns nothing (RFC 4592
    # §2.2.2): the answer is NODATA, not NXDOMAIN, and nothing is synthesized.
    assert answer(zone, "q.e.example.com.", "TXT") == QueryResult(
        rcode="NOERROR", aa=True, authority=((*NEGATIVE_SOA[:3], soa(zone.serial)),)
    )


def test_a_wildcard_cname_is_synthesized_and_followed(example: Zone) -> None:
    zone = example.clone()
    zone.apply(upd(["add", "*.cn.example.com.", "CNAME", 60, "www.example.com."]))
    result = answer(zone, "q.cn.example.com.", "A")
    assert result.answer == (
        ("q.cn.example.com.", "CNAME", 60, "www.example.com."),
        ("www.example.com.", "A", 300, "192.0.2.10"),
    )


def test_a_delegation_gives_a_referral_with_glue(example: Zone) -> None:
    glue = (
        ("ns1.sub.example.com.", "A", 3600, "203.0.113.53"),
        ("ns2.sub.example.com.", "A", 3600, "203.0.113.54"),
        ("ns2.sub.example.com.", "AAAA", 3600, "2001:db8:2::54"),
    )
    ns = (
        ("sub.example.com.", "NS", 3600, "ns1.sub.example.com."),
        ("sub.example.com.", "NS", 3600, "ns2.sub.example.com."),
    )
    referral = QueryResult(rcode="NOERROR", aa=False, authority=ns, additional=glue)
    for name, rdtype in [("www.sub.example.com.", "A"), ("sub.example.com.", "NS"),
                         ("sub.example.com.", "A"), ("ns1.sub.example.com.", "A")]:  # fmt: skip
        assert answer(example, name, rdtype) == referral
    # The parent answers DS at the cut itself (here: NODATA).
    assert answer(example, "sub.example.com.", "DS").authority == (NEGATIVE_SOA,)


def test_the_topmost_cut_refers_even_below_a_deeper_one(example: Zone) -> None:
    zone = example.clone()
    zone.apply(upd(["add", "deep.sub.example.com.", "NS", 60, "ns.example.net."]))
    result = answer(zone, "q.deep.sub.example.com.", "A")
    assert not result.aa and {r[0] for r in result.authority} == {"sub.example.com."}


def test_a_cname_into_a_delegation_answers_the_cname_with_the_referral(example: Zone) -> None:
    zone = example.clone()
    zone.apply(upd(["add", "tosub.example.com.", "CNAME", 60, "x.sub.example.com."]))
    result = answer(zone, "tosub.example.com.", "A")
    assert result.aa and result.answer == (
        ("tosub.example.com.", "CNAME", 60, "x.sub.example.com."),
    )
    assert [r[1] for r in result.authority] == ["NS", "NS"]


def test_out_of_zone_is_refused_and_meta_types_are_notimp(example: Zone) -> None:
    assert answer(example, "www.example.org.", "A") == QueryResult(rcode="REFUSED", aa=False)
    assert answer(example, "com.", "NS") == QueryResult(rcode="REFUSED", aa=False)
    assert answer(example, "www.example.com.", "MAILA") == QueryResult(rcode="NOTIMP", aa=False)


def test_any_returns_every_rrset(example: Zone) -> None:
    result = answer(example, "www.example.com.", "ANY")
    assert {r[1] for r in result.answer} == {"A", "AAAA"}
    assert answer(example, "a.wild.example.com.", "ANY").answer[0][0] == "a.wild.example.com."


def test_results_render_with_dnspython(example: Zone) -> None:
    result = example.query("big.example.com.", "TXT")
    response = dns.message.make_response(dns.message.make_query("big.example.com.", "TXT"))
    response.answer.extend(result.rrsets("answer"))
    assert len(response.to_wire()) > 1232  # the example is made to be truncated over UDP
    assert result.rcode_value == dns.rcode.NOERROR
    referral = example.query("www.sub.example.com.", "A")
    assert [str(r.name) for r in referral.rrsets("additional")] == [
        "ns1.sub.example.com.", "ns2.sub.example.com.", "ns2.sub.example.com."
    ]  # fmt: skip
    assert example.soa_rrset()[0].serial == SERIAL
    assert sum(len(r) for r in example.rrsets()) == len(example.records())


# ---------------------------------------------------------------------- state machine


def test_clones_are_independent(zone: Zone) -> None:
    copy = zone.clone()
    assert copy.digest() == zone.digest() and copy.records() == zone.records()
    copy.apply(upd(["add", "www.example.com.", "A", 300, "192.0.2.99"]))
    zone.apply(upd(["delete_name", "alias.example.com."]))
    assert rrset(zone, "www.example.com.", "A") == {(300, "192.0.2.10"), (300, "192.0.2.11")}
    assert rrset(copy, "alias.example.com.", "CNAME") == {(3600, "www.example.com.")}
    assert copy.digest() != zone.digest()


def test_equal_states_have_equal_digests(zone: Zone) -> None:
    one, two = zone.clone(), zone.clone()
    a = upd(["add", "a.example.com.", "A", 60, "192.0.2.1"])
    b = upd(["add", "b.example.com.", "TXT", 60, '"b"'])
    one.apply(a)
    one.apply(b)
    two.apply(b)
    two.apply(a)
    assert one.records() == two.records() and one.digest() == two.digest()
    assert Zone.from_records(ORIGIN, one.records()).digest() == one.digest()
    assert one.digest() != zone.digest()
    # A TTL-only change (with its serial bump) is a new state, with its own digest.
    before = one.digest()
    one.apply(upd(["add", "a.example.com.", "A", 61, "192.0.2.1"]))
    assert one.digest() != before
    assert Zone.from_records(ORIGIN, one.records()).digest() == one.digest()


def test_a_query_op_changes_nothing(zone: Zone) -> None:
    digest = zone.digest()
    result = json.loads(zone.apply(make_query_op("www.example.com.", "A")))
    assert result["rcode"] == "NOERROR" and zone.digest() == digest


def test_records_are_sorted_and_complete(example: Zone) -> None:
    records = example.records()
    assert list(records) == sorted(records) and len(set(records)) == len(records)
    assert Zone.from_records(ORIGIN, records).records() == records
