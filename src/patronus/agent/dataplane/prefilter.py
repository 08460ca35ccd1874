"""A cheap first test that skips the policy scan for packets no policy can match.

The classify chain tries policies one rule at a time, in priority order: with 500 policies every packet
that matches none of them (or only a low-priority one) costs 500+ rule evaluations. Here each policy
contributes one *necessary* condition (its destination ports, else its destination prefixes, else its
source ports, else its source prefixes, else its protocol, else its DSCP) to a few nft sets, and the
packet enters the scan only if it is in one of them: a set lookup instead of a scan. A packet outside
every set cannot match any policy, so skipping the scan changes nothing but the cost (the scan has no
side effects until a policy matches). A policy with no condition at all (it matches everything) turns
the filter off.

Set elements reuse the exact expressions of the policy's rules (``meta l4proto . th dport`` etc.), and
overlapping ranges are merged first (nft refuses overlapping elements in an interval set).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from patronus.agent.dataplane.validate import port_ranges

if TYPE_CHECKING:
    from patronus.agent.dataplane.policytable import PolicyMatch


@dataclass
class _Keys:
    dports: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    sports: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    daddr: dict[int, list[str]] = field(default_factory=dict)
    saddr: dict[int, list[str]] = field(default_factory=dict)
    protocols: set[str] = field(default_factory=set)
    dscp: dict[int, set[int]] = field(default_factory=dict)
    everything: bool = False


def _protocols(match: PolicyMatch) -> list[str]:
    return {"tcp": ["tcp"], "udp": ["udp"], "icmp": ["icmp", "ipv6-icmp"]}.get(match.protocol, ["tcp", "udp"])


def _families(cidrs: Sequence[str]) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    for cidr in cidrs:
        found.setdefault(ipaddress.ip_network(cidr).version, []).append(cidr)
    return found


def _add(match: PolicyMatch, keys: _Keys, dscp_families: Sequence[int]) -> None:
    """The one necessary condition ``match`` (already checked and canonical) contributes."""
    if match.dst_ports:
        for proto in _protocols(match):
            keys.dports.setdefault(proto, []).extend(match.dst_ports)
    elif match.dst_cidrs:
        for version, cidrs in _families(match.dst_cidrs).items():
            keys.daddr.setdefault(version, []).extend(cidrs)
    elif match.src_ports:
        for proto in _protocols(match):
            keys.sports.setdefault(proto, []).extend(match.src_ports)
    elif match.src_cidrs:
        for version, cidrs in _families(match.src_cidrs).items():
            keys.saddr.setdefault(version, []).extend(cidrs)
    elif match.protocol != "any":
        keys.protocols.update(_protocols(match))
    elif match.dscp is not None:
        for version in dscp_families:
            keys.dscp.setdefault(version, set()).add(match.dscp)
    else:
        keys.everything = True


def _ports(by_proto: dict[str, list[tuple[int, int]]]) -> list[str]:
    return [
        f"{proto} . {a}" if a == b else f"{proto} . {a}-{b}"
        for proto in sorted(by_proto)
        for a, b in port_ranges(by_proto[proto])
    ]


def _collapsed(cidrs: list[str]) -> list[str]:
    networks = [ipaddress.ip_network(c) for c in cidrs]
    v4 = [n for n in networks if isinstance(n, ipaddress.IPv4Network)]
    v6 = [n for n in networks if isinstance(n, ipaddress.IPv6Network)]
    return [str(n) for n in [*ipaddress.collapse_addresses(v4), *ipaddress.collapse_addresses(v6)]]


PORT_KEY = "meta l4proto . th dport"
PORT_RULE = f"{PORT_KEY} @cand_dport"


@dataclass(frozen=True)
class Prefilter:
    """Set declarations (table level) and the candidate rules, each ending in ``goto <target>``."""

    sets: list[str]
    rules: list[str]
    everything: bool = False
    """Some policy matches every packet: every packet must enter the scan."""

    def candidate_rules(self, target: str, port_maps: Sequence[str] = ()) -> list[str]:
        """The rules admitting packets into ``target``. With ``port_maps`` (the scan's port verdict maps,
        :mod:`patronus.agent.dataplane.dispatch`, which together cover the same ports as ``cand_dport``),
        the port test is those maps themselves: a hit goes straight to the rules for the packet's port, so
        the packet pays one lookup instead of the set's and then the map's; a miss tries the other sets."""
        if self.everything:
            return [f"goto {target}"]
        rules = []
        for rule in self.rules:
            if port_maps and rule == PORT_RULE:
                rules += [f"{PORT_KEY} vmap @{name}" for name in port_maps]
            else:
                rules.append(f"{rule} goto {target}")
        return rules


def build(matches: Iterable[PolicyMatch]) -> Prefilter:
    """The sets and rules admitting every packet any of ``matches`` (checked, canonical) can match."""
    keys = _Keys()
    for match in matches:
        _add(match, keys, (4, 6))
    if keys.everything:
        return Prefilter([], [], everything=True)
    sets: list[str] = []
    rules: list[str] = []

    def add_set(name: str, kind: str, elements: list[str], interval: bool, expression: str) -> None:
        if not elements:
            return
        flags = " flags interval;" if interval else ""
        sets.append(f"set {name} {{ type {kind};{flags} elements = {{ {', '.join(elements)} }} }}")
        rules.append(f"{expression} @{name}")

    add_set("cand_dport", "inet_proto . inet_service", _ports(keys.dports), True, PORT_KEY)
    add_set("cand_sport", "inet_proto . inet_service", _ports(keys.sports), True, "meta l4proto . th sport")
    for direction, by_family in (("daddr", keys.daddr), ("saddr", keys.saddr)):
        for version, (ip, kind) in ((4, ("ip", "ipv4_addr")), (6, ("ip6", "ipv6_addr"))):
            elements = _collapsed(by_family.get(version, []))
            add_set(f"cand_{direction}{version}", kind, elements, True, f"{ip} {direction}")
    add_set("cand_proto", "inet_proto", sorted(keys.protocols), False, "meta l4proto")
    for version, ip in ((4, "ip"), (6, "ip6")):
        values = [str(v) for v in sorted(keys.dscp.get(version, ()))]
        add_set(f"cand_dscp{version}", "dscp", values, False, f"{ip} dscp")
    return Prefilter(sets, rules)
