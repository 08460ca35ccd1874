"""Hypothesis strategies for policy tables and an independent oracle of what is valid. Shared by the unit
fuzz tests and the namespace tests (the rendered scripts are checked by :mod:`tests.support.nft_check`).

The strategies mix well-formed values with hostile ones (nft syntax in names, scope ids in CIDRs,
out-of-range and wrongly typed numbers). :func:`is_valid` says, without using the renderer's code,
whether a set of policies is one the renderer must accept.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from patronus.agent.dataplane.routing import PolicyMatch, RoutingPolicy

HOSTILE_TEXT = [
    'x"; flush ruleset; "',
    "x\ndelete table inet patronus",
    "x } chain evil { type filter hook input priority 0; drop",
    "a b",
    "-x",
    "x;y",
    "ée",
    "",
    "a" * 300,
    "a/b",
    "a\x00b",
    "A",
    "a..b",
    "-a",
    "a-",
]
HOSTILE_CIDRS = [
    "10.0.0.0/8 ip saddr 1.2.3.4",
    "fe80::%eth0/64",
    "10.0.0.0/33",
    " 10.0.0.0/8",
    "10.0.0.0/8\n",
    "10.0.0.0/8 }",
    "\u0661\u0660.0.0.0/8",  # Arabic-Indic digits, which int() accepts
    "",
]
POLICY_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
INTERFACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,14}")

_label = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,8}[a-z0-9])?", fullmatch=True)
# Up to Kubernetes' 253 characters: counter names past nft's limit are cut and hashed.
_long_names = st.tuples(st.integers(240, 253), _label).map(
    lambda t: (t[1] + ("a" * 62 + ".") * 5)[: t[0]].strip(".")
)
valid_names = st.one_of(st.lists(_label, min_size=1, max_size=3).map(".".join), _long_names)
names = st.one_of(valid_names, valid_names, st.sampled_from(HOSTILE_TEXT), st.text(max_size=20))


@st.composite
def _networks(draw: st.DrawFn) -> str:
    version = draw(st.sampled_from([4, 6]))
    address = draw(st.ip_addresses(v=version))
    length = draw(st.integers(0, 32 if version == 4 else 128))
    return str(ipaddress.ip_network(f"{address}/{length}", strict=False))


valid_cidrs = _networks()
cidrs = st.one_of(_networks(), _networks(), _networks(), st.sampled_from(HOSTILE_CIDRS))
valid_port_ranges = st.one_of(
    st.tuples(st.integers(1, 65535), st.integers(1, 65535)).map(lambda r: (min(r), max(r))),
    st.integers(1, 65535).map(lambda p: (p, p)),
    st.integers(1, 65535).flatmap(lambda a: st.tuples(st.just(a), st.integers(a, min(a + 40, 65535)))),
)
_port = st.one_of(st.integers(1, 65535), st.sampled_from([0, -1, 65536, True, "80"]))
port_ranges = st.one_of(valid_port_ranges, st.tuples(_port, _port))
valid_dscps = st.one_of(st.none(), st.integers(0, 63))
dscps = st.one_of(valid_dscps, st.sampled_from([-1, 64, True, "46", 46.0]))
valid_protocols = st.sampled_from(["tcp", "udp", "icmp", "any", "any"])
protocols = st.one_of(valid_protocols, st.sampled_from(["sctp", "tcp; drop", "TCP", ""]))
valid_rates = st.one_of(st.none(), st.integers(1, 10**12))
rates = st.one_of(valid_rates, st.sampled_from([0, -5, 10**13, 1.5, "1000"]))


@st.composite
def policies(draw: st.DrawFn, hostile: bool = True, paths: Sequence[str] = ("fiber", "lte")) -> RoutingPolicy:
    """A policy; with ``hostile`` each field may be out of range, wrongly typed or carry nft syntax."""

    def pick(valid: st.SearchStrategy[Any], anything: st.SearchStrategy[Any]) -> Any:
        return draw(anything if hostile else valid)

    match = PolicyMatch(
        protocol=pick(valid_protocols, protocols),
        dst_ports=tuple(pick(st.lists(valid_port_ranges, max_size=3), st.lists(port_ranges, max_size=3))),
        src_ports=tuple(pick(st.lists(valid_port_ranges, max_size=2), st.lists(port_ranges, max_size=2))),
        dscp=pick(valid_dscps, dscps),
        src_cidrs=tuple(pick(st.lists(valid_cidrs, max_size=3), st.lists(cidrs, max_size=3))),
        dst_cidrs=tuple(pick(st.lists(valid_cidrs, max_size=3), st.lists(cidrs, max_size=3))),
    )
    return RoutingPolicy(
        name=pick(valid_names, names),
        priority=draw(st.integers(0, 1000)),
        match=match,
        path=draw(st.one_of(st.none(), st.sampled_from([*paths, "unknown"]))),
        bandwidth_bps=pick(valid_rates, rates),
    )


valid_marks = st.integers(0, 2**32 - 1)
marks = st.one_of(valid_marks, st.sampled_from([-1, 2**32, True]))
valid_minors = st.integers(1, 0xFFFF)
minors = st.one_of(valid_minors, st.sampled_from([0, 0x10000, -3]))
valid_interfaces = st.from_regex(INTERFACE, fullmatch=True)
interfaces = st.one_of(valid_interfaces, st.sampled_from(HOSTILE_TEXT))


@dataclass
class Table:
    """The renderer's inputs."""

    policies: list[RoutingPolicy]
    path_marks: dict[str, Any]
    priorities: dict[str, Any]
    ingress_exclude: list[str]


@st.composite
def tables(draw: st.DrawFn, max_policies: int = 6, hostile: bool | None = None) -> Table:
    """Half the tables are well-formed throughout, half may carry hostile values anywhere."""
    hostile = draw(st.booleans()) if hostile is None else hostile
    found = draw(st.lists(policies(hostile), max_size=max_policies, unique_by=lambda p: str(p.name)))
    if hostile and found and draw(st.booleans()):
        found.append(found[0])  # a duplicate name
    path_marks = {
        "fiber": draw(marks if hostile else valid_marks),
        "lte": draw(marks if hostile else valid_marks),
    }
    shaped = [p.name for p in found if draw(st.booleans())]
    return Table(
        found,
        path_marks,
        {name: draw(minors if hostile else valid_minors) for name in shaped},
        draw(st.lists(interfaces if hostile else valid_interfaces, max_size=2)),
    )


valid_tables = tables(hostile=False)


# -- the oracle -------------------------------------------------------------------------------------------


def _int_in(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _cidr_ok(text: Any) -> bool:
    if not isinstance(text, str) or "%" in text or not text.isascii() or text != text.strip():
        return False
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True


def _policy_ok(policy: RoutingPolicy) -> bool:
    match = policy.match
    ports = [*match.dst_ports, *match.src_ports]
    return (
        isinstance(policy.name, str)
        and POLICY_NAME.fullmatch(policy.name) is not None
        and len(policy.name) <= 253
        and match.protocol in ("tcp", "udp", "icmp", "any")
        and all(_int_in(a, 1, 65535) and _int_in(b, 1, 65535) and a <= b for a, b in ports)
        and (match.dscp is None or _int_in(match.dscp, 0, 63))
        and all(_cidr_ok(c) for c in (*match.src_cidrs, *match.dst_cidrs))
        and (policy.bandwidth_bps is None or _int_in(policy.bandwidth_bps, 1, 10**12))
    )


def is_valid(table: Table) -> bool:
    """Whether the renderer must accept ``table`` (decided without the renderer's code)."""
    names = [p.name for p in table.policies]
    return (
        all(_policy_ok(p) for p in table.policies)
        and len(set(names)) == len(names)
        and all(_int_in(m, 0, 2**32 - 1) for m in table.path_marks.values())
        and all(_int_in(m, 1, 0xFFFF) for m in table.priorities.values())
        and all(isinstance(i, str) and INTERFACE.fullmatch(i) for i in table.ingress_exclude)
    )
