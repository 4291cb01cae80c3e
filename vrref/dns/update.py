"""From a dnspython UPDATE message to an update operation: RFC 2136's static checks.

The frontend calls ``update_op_from_message`` before anything is ordered, so every error it
finds is answered at once with its rcode (``UpdateError.rcode``) and never reaches VR. What it
returns is an op of ``vrref/dns/ops.py``, in canonical text (``vrref/dns/canonical.py``), no
larger than the peers' codec carries (``vrref.core.messages.OP_BYTES_MAX``), so an update the
frontend accepts is one every backup can receive in a PREPARE. The checks it makes, and the
ones dnspython's parser leaves it unable to make, are in ``spec/dns.md`` ("From an UPDATE
message to an operation"). It depends on dnspython's message classes, which the op contract
and the zone do not, so it is a module of its own.
"""

from __future__ import annotations

import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.update

from vrref.core.messages import OP_BYTES_MAX, op_fits
from vrref.dns.canonical import canonical_rdata_of, dumps
from vrref.dns.ops import TTL_MAX


class UpdateError(Exception):
    """An UPDATE message that cannot become an operation; ``rcode`` is the answer to send."""

    def __init__(self, rcode: dns.rcode.Rcode, reason: str) -> None:
        super().__init__(f"{dns.rcode.to_text(rcode)}: {reason}")
        self.rcode = rcode
        self.reason = reason


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
        values.update(canonical_rdata_of(rdata, base) for rdata in rrset)
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
                ["delete_rr", name, rdtype, canonical_rdata_of(rd, base)] for rd in rrset
            )
        else:
            if not 0 <= rrset.ttl <= TTL_MAX:
                raise UpdateError(dns.rcode.FORMERR, f"TTL {rrset.ttl} out of range")
            updates.extend(
                ["add", name, rdtype, rrset.ttl, canonical_rdata_of(rd, base)] for rd in rrset
            )
    op = dumps(
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
