"""Sequential specifications for the linearizability checker.

A model is a handful of pure functions, as in Porcupine: ``init`` (the initial state),
``step(state, input, output) -> (accepted, next state)``, ``footprints`` (what each operation
may read and write, so that the checker can split the history into independent parts),
and ``describe_*`` for reports. States are immutable, hashable values: the search memoizes
(set of linearized operations, state) pairs.

One more function turns a raw client operation (as a reader produced it) into the model's
input and output, and decides what a completion means:

* ``ok``: the output is what the client saw.
* ``fail``: by default a definite failure, the operation did not happen, so it is dropped
  before the search. A model can say otherwise: a register read that "failed" with
  ``:timed-out`` is indeterminate, as the Jepsen etcd test means it.
* ``info`` or no completion: indeterminate, the output is UNKNOWN. An indeterminate
  operation that cannot change the state (a read) constrains nothing and is dropped here.

The models:

* ``CasRegister``: Jepsen's etcd register. ``read`` returns the value (nil at first),
  ``write v`` sets it, ``cas [a b]`` sets b if the value is a (an ``ok`` cas succeeded; a
  ``fail`` cas did not happen). One key, so no partitioning.
* ``KeyValue``: Porcupine's kv store. ``get`` returns the string under a key ("" at first),
  ``put`` sets it, ``append`` concatenates. Each key is independent.
* ``Dns``: the DNS service of spec/dns_model.py, compared through a documented projection
  (update serials and the serial of the SOA in negative answers are not compared), with
  footprints over owner names; see ``Dns`` below.

Malformed operations raise ``ModelError`` naming the file and the line.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Iterable, Sequence
from typing import Any, Final, Protocol

from checker.lin.readers import ClientOp, Keyword
from checker.lin.wgl import UNKNOWN, Footprint, Model, Operation

MODELS: Final = ("dns", "cas-register", "kv", "echo-log")


class ModelError(ValueError):
    """An operation the model cannot interpret: names the file and the line."""

    def __init__(self, op: ClientOp, message: str) -> None:
        self.op = op
        self.path = op.path
        self.line = op.call_line
        self.message = message
        super().__init__(f"{op.path}:{op.call_line}: {message}")

    def __reduce__(self) -> tuple[type[ModelError], tuple[ClientOp, str]]:
        """Pickles by its fields, so a pool worker's error reaches the pool (ReadError's)."""
        return type(self), (self.op, self.message)


class CheckedModel(Model, Protocol):
    """A model that also converts raw client operations."""

    def convert(self, op: ClientOp) -> tuple[Any, Any] | None:
        """(input, output) for the search, or None to leave the operation out."""
        ...


def operations(model: CheckedModel, ops: Sequence[ClientOp]) -> list[Operation]:
    """The operations the search must place, in history order, ids = ClientOp.index."""
    result: list[Operation] = []
    for op in ops:
        converted = model.convert(op)
        if converted is None:
            continue
        input, output = converted
        definite = output is not UNKNOWN
        result.append(
            Operation(
                id=op.index,
                process=op.process,
                input=input,
                output=output,
                call=op.call,
                ret=op.ret if definite else None,
                source=op,
            )
        )
    return result


def _is_timed_out(value: Any) -> bool:
    return bool(value == Keyword("timed-out") or value == "timed-out")


def _freeze(value: Any) -> Hashable:
    """JSON or EDN value -> a hashable one (lists to tuples, maps to sorted pairs)."""
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted(((_freeze(k), _freeze(v)) for k, v in value.items()), key=repr))
    assert isinstance(value, Hashable)
    return value


def _show(value: Any) -> str:
    if value is None:
        return "nil"
    if isinstance(value, tuple):
        return "[" + " ".join(_show(v) for v in value) + "]"
    if isinstance(value, str):
        return repr(value)
    return str(value)


# ---------------------------------------------------------------------------- register


class CasRegister:
    """A compare-and-set register (Jepsen etcd semantics). Inputs: ("read",), ("write", v),
    ("cas", a, b). Outputs: the value read; None for write and a successful cas."""

    name = "cas-register"

    def init(self) -> Hashable:
        return None

    def init_for(self, keys: frozenset[Hashable] | None) -> Hashable:
        return None

    def convert(self, op: ClientOp) -> tuple[Any, Any] | None:
        if op.f == "read":
            if op.outcome == "ok":
                return ("read",), _freeze(op.result)
            return None  # an indeterminate or failed read constrains nothing
        if op.f == "write":
            input: tuple[Any, ...] = ("write", _freeze(op.value))
        elif op.f == "cas":
            value = op.value
            if not isinstance(value, list | tuple) or len(value) != 2:
                raise ModelError(op, f"cas needs [expected new], got {value!r}")
            input = ("cas", _freeze(value[0]), _freeze(value[1]))
        else:
            raise ModelError(op, f"the cas-register has no operation {op.f!r}")
        if op.outcome == "ok":
            return input, None
        if op.outcome == "fail" and not _is_timed_out(op.result):
            return None  # definite: it did not happen
        return input, UNKNOWN

    def step(self, state: Any, input: Any, output: Any) -> tuple[bool, Any]:
        kind = input[0]
        if kind == "read":
            return (output is UNKNOWN or output == state), state
        if kind == "write":
            return True, input[1]
        if state == input[1]:
            return True, input[2]
        return output is UNKNOWN, state

    def footprints(self, ops: Sequence[Operation]) -> Sequence[Footprint | None]:
        key = frozenset({"register"})
        none: frozenset[Hashable] = frozenset()
        kinds = {"read": (key, none), "write": (none, key), "cas": (key, key)}
        return [Footprint(*kinds[op.input[0]]) for op in ops]

    def read_only(self, input: Any) -> bool:
        return bool(input[0] == "read")

    def describe_operation(self, input: Any, output: Any) -> str:
        kind = input[0]
        if kind == "read":
            return f"read -> {'?' if output is UNKNOWN else _show(output)}"
        suffix = " (indeterminate)" if output is UNKNOWN else ""
        if kind == "write":
            return f"write {_show(input[1])}{suffix}"
        return f"cas {_show(input[1])} -> {_show(input[2])}{suffix}"

    def describe_state(self, state: Any) -> str:
        return _show(state)


# ---------------------------------------------------------------------------- key-value


class KeyValue:
    """Porcupine's key-value store. Inputs: ("get", k), ("put", k, v), ("append", k, v);
    outputs: the string got, None otherwise. The state is a sorted tuple of (key, value)
    pairs for keys whose value is not "" (after partitioning, one pair at most)."""

    name = "kv"

    def init(self) -> Hashable:
        return ()

    def init_for(self, keys: frozenset[Hashable] | None) -> Hashable:
        return ()

    def convert(self, op: ClientOp) -> tuple[Any, Any] | None:
        key, value = op.key, op.value
        if key is None:
            # Jepsen's independent keys: :value [k v]
            if not isinstance(value, list | tuple) or len(value) != 2:
                raise ModelError(op, "a kv operation needs a :key (or :value [key value])")
            key, value = value
        key = _freeze(key)
        if op.f == "get":
            if op.outcome != "ok":
                return None
            result = op.result
            if isinstance(result, list | tuple) and len(result) == 2 and op.key is None:
                result = result[1]
            if not isinstance(result, str):
                raise ModelError(op, f"get must return a string, got {result!r}")
            return ("get", key), result
        if op.f not in ("put", "append"):
            raise ModelError(op, f"the kv store has no operation {op.f!r}")
        if not isinstance(value, str):
            raise ModelError(op, f"{op.f} needs a string value, got {value!r}")
        if op.outcome == "ok":
            return (op.f, key, value), None
        if op.outcome == "fail":
            return None
        return (op.f, key, value), UNKNOWN

    def step(self, state: Any, input: Any, output: Any) -> tuple[bool, Any]:
        kind, key = input[0], input[1]
        current = ""
        for k, v in state:
            if k == key:
                current = v
                break
        if kind == "get":
            return (output is UNKNOWN or output == current), state
        new = input[2] if kind == "put" else current + input[2]
        if new == current:
            return True, state
        pairs = [(k, v) for k, v in state if k != key]
        if new:
            pairs.append((key, new))
            pairs.sort(key=repr)
        return True, tuple(pairs)

    def footprints(self, ops: Sequence[Operation]) -> Sequence[Footprint | None]:
        none: frozenset[Hashable] = frozenset()
        result: list[Footprint | None] = []
        for op in ops:
            key = frozenset({op.input[1]})
            # get observes the key; put and append only change it (append's dependence on
            # the old value shows only through a get, which then joins them all)
            result.append(Footprint(key, none) if op.input[0] == "get" else Footprint(none, key))
        return result

    def read_only(self, input: Any) -> bool:
        return bool(input[0] == "get")

    def describe_operation(self, input: Any, output: Any) -> str:
        kind, key = input[0], input[1]
        if kind == "get":
            shown = "?" if output is UNKNOWN else repr(output)
            return f"get {_show(key)} -> {shown}"
        suffix = " (indeterminate)" if output is UNKNOWN else ""
        return f"{kind} {_show(key)} {input[2]!r}{suffix}"

    def describe_state(self, state: Any) -> str:
        if not state:
            return '{} (every key "")'
        return "{" + ", ".join(f"{_show(k)}: {v!r}" for k, v in state) + "}"


# ---------------------------------------------------------------------------- echo log


class EchoLogSpec:
    """The sequential specification of vrref.core.statemachine.EchoLog, the service the explorer
    replicates: ``append op`` returns ``"<position>:<op>"``, its 1-based position in the
    single log. One key, so no partitioning. The state is the number of ops appended (the
    results name only positions and each op's own text)."""

    name = "echo-log"

    def init(self) -> Hashable:
        return 0

    def init_for(self, keys: frozenset[Hashable] | None) -> Hashable:
        return 0

    def convert(self, op: ClientOp) -> tuple[Any, Any] | None:
        if op.f != "append" or not isinstance(op.value, str):
            raise ModelError(op, f"the echo log has only append of a string, not {op.f!r}")
        if op.outcome == "fail":
            return None
        if op.outcome != "ok":
            return ("append", op.value), UNKNOWN
        if not isinstance(op.result, str):
            raise ModelError(op, f"append must return a string, got {op.result!r}")
        return ("append", op.value), op.result

    def step(self, state: Any, input: Any, output: Any) -> tuple[bool, Any]:
        position = state + 1
        return (output is UNKNOWN or output == f"{position}:{input[1]}"), position

    def footprints(self, ops: Sequence[Operation]) -> Sequence[Footprint | None]:
        return [None] * len(ops)

    def read_only(self, input: Any) -> bool:
        return False

    def describe_operation(self, input: Any, output: Any) -> str:
        shown = "?" if output is UNKNOWN else repr(output)
        return f"append {input[1]!r} -> {shown}"

    def describe_state(self, state: Any) -> str:
        return f"{state} ops appended"


# ---------------------------------------------------------------------------- DNS

# Footprint keys of the DNS model. ("name", n): the records owned by n, except the SOA;
# ("ns", n): n's NS RRset (a zone cut, read by every query below n); SOA_SERIAL: the serial;
# SOA_REST: the SOA's other fields (TTL and MINIMUM make the TTL of negative answers).
SOA_SERIAL: Final = ("soa", "serial")
SOA_REST: Final = ("soa", "rest")
SERIAL_MASK: Final = "*"


class DnsOp:
    """A decoded DNS operation: its text for spec.dns_model.step, and what footprints need."""

    __slots__ = ("decoded", "text")

    def __init__(self, text: str, decoded: Any) -> None:
        self.text = text
        self.decoded = decoded  # a spec.dns_model Query or Update, or None when malformed

    def __repr__(self) -> str:
        return f"DnsOp({self.text})"


def _json_value(op: ClientOp, value: Any, what: str) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            raise ModelError(op, f"the {what} is not JSON text: {value[:80]!r}") from None
    return value


class Dns:
    """The DNS service of spec/dns_model.py, compared through a documented projection.

    **What is compared.** A query's result is compared exactly, except that the SOA record
    in the authority section of a negative answer (NXDOMAIN, NODATA) has its serial replaced
    by "*". An update's result is compared by its rcode alone: the serial is dropped. The
    SOA serial changes with every successful update, so comparing it would make every
    operation depend on every update and defeat partitioning; the projection keeps every
    other bit of every answer. A query whose answer may hold the SOA record itself (type SOA
    or ANY at the apex, directly or through a CNAME) is compared exactly, serial included,
    and so joins every update (all of them write the serial).

    **Local reads.** A read served from a replica's local state (``"mode": "local"``) may be
    stale by design; it is left out of the search (``operations`` counts what it leaves out)
    and judged afterwards against the witness by checker/lin/local_reads.py (consistent prefix).

    **Partitions.** Keys are owner names (plus the NS RRset of a name, the SOA serial and the
    rest of the SOA). A query reads, for every name its answer may visit (the name and every
    CNAME target reachable from it or from a wildcard that may match it): the NS RRsets of
    its ancestors below the apex and the addresses of their NS targets (delegations and
    glue); the name; its descendants (an empty non-terminal answers NODATA, not NXDOMAIN),
    unless the name always owns records; and, when a wildcard could match (some name at or
    below ``*.p`` for an ancestor p), every name below the topmost such p (which of them
    exists decides the closest encloser). An update reads its prerequisites' names and
    writes its update names (and the serial). Names come from the initial zone and the
    whole history, so a name that no operation ever mentions owns nothing. When the checker
    finds a linearization it replays it through the unpartitioned model with the full zone,
    so a wrong footprint can never produce a wrong "linearizable".
    """

    name = "dns"

    def __init__(self, records: Iterable[Sequence[Any]]) -> None:
        from spec import dns_model

        self._spec = dns_model
        self.initial = dns_model.initial_state(
            (str(r[0]), str(r[1]), int(r[2]), str(r[3])) for r in records
        )
        self.origin: str = dns_model.origin_of(self.initial)
        self._soa = dns_model.soa_of(self.initial)
        self.dropped_local = 0

    # -- conversion and projection

    def convert(self, op: ClientOp) -> tuple[Any, Any] | None:
        if op.mode == "local":
            self.dropped_local += 1
            return None
        raw = _json_value(op, op.value, "operation")
        if not isinstance(raw, dict):
            raise ModelError(op, "a DNS operation is a JSON object")
        text = json.dumps(raw, separators=(",", ":"), sort_keys=True)
        try:
            decoded: Any = self._spec.decode(text)
        except self._spec.Malformed:
            decoded = None
        dns_op = DnsOp(text, decoded)
        is_query = isinstance(decoded, self._spec.Query)
        if op.outcome == "fail":
            return None  # refused before it was ordered: it did not happen
        if op.outcome != "ok":
            return None if is_query or decoded is None else (dns_op, UNKNOWN)
        result = _json_value(op, op.result, "result")
        if not isinstance(result, dict) or not isinstance(result.get("rcode"), str):
            raise ModelError(op, f"a DNS result needs an rcode: {str(op.result)[:80]!r}")
        try:
            return dns_op, self._project(decoded, result)
        except (KeyError, TypeError, ValueError, IndexError) as error:
            raise ModelError(
                op, f"malformed DNS result ({error}): {str(op.result)[:80]!r}"
            ) from None

    def _project(self, decoded: Any, result: dict[str, Any]) -> Hashable:
        if not isinstance(decoded, self._spec.Query):
            return ("update", result["rcode"])

        def records(section: str, mask: bool) -> tuple[tuple[Any, ...], ...]:
            out = []
            for name, rdtype, ttl, rdata in result[section]:
                if mask and rdtype == "SOA":
                    fields = str(rdata).split(" ")
                    fields[2] = SERIAL_MASK
                    rdata = " ".join(fields)
                out.append((name, rdtype, ttl, rdata))
            return tuple(sorted(out))

        return (
            result["rcode"],
            bool(result["aa"]),
            records("answer", False),
            records("authority", True),
            records("additional", False),
        )

    # -- the model

    def init(self) -> Hashable:
        return self.initial

    def init_for(self, keys: frozenset[Hashable] | None) -> Hashable:
        if keys is None:
            return self.initial
        names = {key[1] for key in keys if isinstance(key, tuple) and key[0] in ("name", "ns")}
        return frozenset(r for r in self.initial if r[0] in names or r[1] == "SOA")

    def step(self, state: Any, input: Any, output: Any) -> tuple[bool, Any]:
        after, text = self._spec.step(state, input.text)
        if output is UNKNOWN:
            return True, after
        return self._project(input.decoded, json.loads(text)) == output, after

    def read_only(self, input: Any) -> bool:
        return isinstance(input.decoded, self._spec.Query)

    # -- footprints

    def footprints(self, ops: Sequence[Operation]) -> Sequence[Footprint | None]:
        spec = self._spec
        origin = self.origin
        decoded = [op.input.decoded for op in ops]
        # Every name that can own a record: the zone's and the updates'; and the CNAME and
        # NS targets any state may hold.
        owners: set[str] = {r[0] for r in self.initial}
        cname: dict[str, set[str]] = {}
        ns: dict[str, set[str]] = {}
        written: set[str] = set()
        for r in self.initial:
            if r[1] == "CNAME":
                cname.setdefault(r[0], set()).add(r[3])
            elif r[1] == "NS":
                ns.setdefault(r[0], set()).add(r[3])
        for d in decoded:
            if isinstance(d, spec.Update):
                for u in d.update:
                    owners.add(u.name)
                    written.add(u.name)
                    if u.kind == "add" and u.rdtype == "CNAME":
                        cname.setdefault(u.name, set()).add(u.rdata)
                    elif u.kind == "add" and u.rdtype == "NS":
                        ns.setdefault(u.name, set()).add(u.rdata)
        below: dict[str, set[str]] = {}  # name -> owners at or below it
        for owner in owners:
            below.setdefault(owner, set()).add(owner)
            if spec.is_below_or_at(owner, origin):
                for a in spec.ancestors(owner, origin):
                    below.setdefault(a, set()).add(owner)
        wild = {n for n in owners if n.startswith("*.")}
        wild_parents = {spec.parent(w) for w in wild}
        for owner in owners:  # names below a wildcard, such as a.*.example.
            labels = owner.split(".")
            for i, label in enumerate(labels[:-1]):
                if label == "*":
                    wild_parents.add(".".join(labels[i + 1 :]) or ".")
        always_owned = {r[0] for r in self.initial} - written

        def query_reads(qname: str, qtype: str) -> set[Hashable]:
            reads: set[Hashable] = {SOA_REST}
            todo, seen = [qname], set()
            while todo:
                name = todo.pop()
                if name in seen or not spec.is_below_or_at(name, origin):
                    continue
                seen.add(name)
                reads.add(("name", name))
                if name == origin:
                    if qtype in ("SOA", "ANY"):
                        reads.add(SOA_SERIAL)
                else:
                    for cut in [name, *spec.ancestors(name, origin)[:-1]]:
                        reads.add(("ns", cut))
                        reads.update(("name", t) for t in ns.get(cut, ()))
                todo.extend(cname.get(name, ()))
                if name in always_owned or name == origin:
                    continue
                reads.update(("name", d) for d in below.get(name, ()))
                enclosers = [a for a in spec.ancestors(name, origin) if a in wild_parents]
                if enclosers:
                    top = enclosers[-1]
                    reads.update(("name", d) for d in below.get(top, ()))
                    for a in enclosers:
                        source = "*." + a if a != "." else "*."
                        todo.extend(cname.get(source, ()))
            return reads

        result: list[Footprint | None] = []
        empty: frozenset[Hashable] = frozenset()
        for d in decoded:
            if d is None:
                result.append(Footprint(empty, empty))  # FORMERR whatever the state
            elif isinstance(d, spec.Query):
                result.append(Footprint(frozenset(query_reads(d.name, d.rdtype)), empty))
            else:
                reads: set[Hashable] = set()
                writes: set[Hashable] = {SOA_SERIAL}
                for p in d.prereq:
                    reads.add(("name", p.name))
                    if p.rdtype == "SOA":
                        reads.update((SOA_SERIAL, SOA_REST))
                for u in d.update:
                    writes.add(("name", u.name))
                    if u.kind == "delete_name" or u.rdtype == "NS":
                        writes.add(("ns", u.name))
                    if u.rdtype == "SOA":
                        writes.add(SOA_REST)
                        reads.add(SOA_SERIAL)
                result.append(Footprint(frozenset(reads), frozenset(writes)))
        return result

    # -- reports

    def describe_operation(self, input: Any, output: Any) -> str:
        d = input.decoded
        if isinstance(d, self._spec.Query):
            head = f"query {d.name} {d.rdtype}"
            if output is UNKNOWN:
                return head + " -> ?"
            rcode, aa, answer, authority, _ = output
            shown = "; ".join(" ".join(str(f) for f in r[1:]) for r in answer[:3])
            more = f" (+{len(answer) - 3})" if len(answer) > 3 else ""
            flags = "" if aa else " (not aa)"
            if not answer and authority and rcode == "NOERROR" and not aa:
                shown = "referral to " + ", ".join(r[3] for r in authority[:2])
            return f"{head} -> {rcode}{flags} {shown}{more}".rstrip()
        if d is None:
            return f"malformed {input.text[:60]}"
        parts = [" ".join(str(x) for x in (p.kind, p.name, p.rdtype) if x) for p in d.prereq]
        changes = [
            " ".join(str(x) for x in (u.kind, u.name, u.rdtype, u.rdata) if x) for u in d.update
        ]
        text = "update " + "; ".join(changes)
        if parts:
            text += " if " + "; ".join(parts)
        if output is UNKNOWN:
            return text + " -> ?"
        return f"{text} -> {output[1]}"

    def describe_state(self, state: Any) -> str:
        lines = [" ".join(str(f) for f in r) for r in sorted(state)]
        if len(lines) > 40:
            lines = [*lines[:40], f"... ({len(lines) - 40} more records)"]
        return "\n".join(lines)


def dns_records_from_header(header: dict[str, Any]) -> list[tuple[str, str, int, str]] | None:
    """The initial zone of a vrref history header: ``"initial"`` is a list of records
    ``[name, type, ttl, rdata]`` or an object with such a ``"records"`` list."""
    initial = header.get("initial")
    if isinstance(initial, dict):
        initial = initial.get("records")
    if initial is None:
        return None
    if not isinstance(initial, list) or not all(
        isinstance(r, list) and len(r) == 4 for r in initial
    ):
        raise ValueError('header "initial" must hold records [name, type, ttl, rdata]')
    return [(str(r[0]), str(r[1]), int(r[2]), str(r[3])) for r in initial]


def dns_records_from_zone_file(path: str) -> list[tuple[str, str, int, str]]:
    """The records of a master file, in the canonical text of vrref.dns.canonical."""
    from vrref.dns.zone import Zone

    return list(Zone.from_file(path).records())


def model_for(name: str, header: dict[str, Any] | None = None) -> CheckedModel:
    """The model called ``name``; the DNS model takes its initial zone from ``header``."""
    if name == "cas-register":
        return CasRegister()
    if name == "kv":
        return KeyValue()
    if name == "echo-log":
        return EchoLogSpec()
    if name == "dns":
        records = dns_records_from_header(header or {})
        if records is None:
            raise ValueError(
                'the DNS model needs the initial zone: a header "initial" or --zone FILE'
            )
        return Dns(records)
    raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
