"""A packet-level interpreter of rendered policy tables, and an oracle of what they must decide.

:func:`decide` runs one packet through a base chain of a rendered script (the statements the renderer
emits: set lookups, the port verdict maps, ``goto``/``jump``/``return``, the policy matches) the way nft
does: ``jump`` returns to the rule after it, ``goto`` does not, the end of a chain returns, a base
chain's end accepts. It stops at the first policy chain reached (``policy_<n>``) or the first ``meta
priority`` set, which is the decision; None when the packet leaves untouched.

:func:`expected` is what that decision must be, computed from the policies alone (first match by
priority, families as the CIDRs and DSCP ask), without the renderer's code or text. Comparing the two
for a rendered table and many packets proves that its candidate tests and port maps only skip work:
they never change which policy a packet gets.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from patronus.agent.dataplane.routing import PolicyMatch, RoutingPolicy
from tests.support.nft_check import blocks, parse_match
from tests.support.policy_fuzz import Table

BYPASS = 0x00051820
PROTOCOLS = ("tcp", "udp", "icmp", "ipv6-icmp", "sctp")


@dataclass(frozen=True)
class Packet:
    """What the table's rules look at; ``local``: ``fib daddr type local`` holds."""

    family: int
    proto: str
    sport: int
    dport: int
    saddr: str
    daddr: str
    dscp: int
    mark: int = 0
    iif: str = "eth0"
    local: bool = False


@dataclass(frozen=True)
class Loaded:
    """A rendered script, parsed: rules by chain, elements by set and by port map."""

    chains: Mapping[str, list[str]]
    sets: Mapping[str, list[str]]
    maps: Mapping[str, list[str]]


_SET = re.compile(
    r"\tset (?P<name>\w+) \{ type [^;]+;(?: flags interval;)? elements = \{ (?P<e>[^{}]+) \} \}"
)
_LOOKUP = re.compile(
    r"(?P<key>meta l4proto \. th [sd]port|ip6? [sd]addr|meta l4proto|ip6? dscp) @(?P<set>\w+)"
)
_VMAP = re.compile(r"meta l4proto \. th dport vmap @(?P<map>\w+)")
_VERDICT = re.compile(r"(?P<verb>goto|jump) (?P<chain>\w+)")
_OUTCOME = re.compile(r"(?P<expr>.*?) ?(?P<out>goto policy_\d+|meta priority set 1:[0-9a-f]+ accept)")


def load(script: str) -> Loaded:
    other, chains, maps = blocks(script)
    sets = {m["name"]: m["e"].split(", ") for line in other if (m := _SET.fullmatch(line))}
    body = {name: [r for r in rules if not r.startswith("type ")] for name, rules in chains.items()}
    return Loaded(body, sets, maps)


def _items(text: str) -> list[str]:
    return text.strip("{} ").split(", ")


def _in_ranges(value: int, items: Sequence[str]) -> bool:
    return any(int(a) <= value <= int(b or a) for a, _, b in (item.partition("-") for item in items))


def _addr_in(family: int, address: str, cidrs: Sequence[str]) -> bool:
    ip = ipaddress.ip_address(address)
    return any(
        ip in network for c in cidrs if (network := ipaddress.ip_network(c)).version == family == ip.version
    )


def _key(key: str, p: Packet) -> tuple[str, object] | None:
    """The packet's value of a lookup key (None: the key's family is not the packet's)."""
    if key.startswith("meta l4proto . th"):
        return "port", (p.proto, p.sport if "sport" in key else p.dport)
    if key == "meta l4proto":
        return "proto", p.proto
    family = 6 if key.startswith("ip6") else 4
    if family != p.family:
        return None
    return ("dscp", p.dscp) if key.endswith("dscp") else ("addr", p.saddr if "saddr" in key else p.daddr)


def _in_set(key: str, elements: Sequence[str], p: Packet) -> bool:
    found = _key(key, p)
    if found is None:
        return False
    kind, value = found
    if kind == "port":
        assert isinstance(value, tuple)
        proto, port = str(value[0]), int(value[1])
        return any(e.split(" . ")[0] == proto and _in_ranges(port, [e.split(" . ")[1]]) for e in elements)
    if kind == "addr":
        return _addr_in(p.family, str(value), elements)
    return str(value) in elements


def matches(expression: str, p: Packet) -> bool:
    """Whether a policy match line (:func:`nft_check.parse_match` grammar) matches ``p``."""
    for key, value in parse_match(expression).items() if expression else ():
        if key == "proto":
            ok = p.proto in _items(value)
        elif key in ("sport", "dport"):
            ok = _in_ranges(p.sport if key == "sport" else p.dport, _items(value))
        elif key == "dscp":
            ok = p.family == (6 if value[0] == "ip6" else 4) and p.dscp == value[1]
        else:
            family, direction = key.split()
            ok = p.family == (6 if family == "ip6" else 4) and _addr_in(
                p.family, p.saddr if direction == "saddr" else p.daddr, _items(value)
            )
        if not ok:
            return False
    return True


def _step(rule: str, table: Loaded, p: Packet) -> tuple[str, str] | None:
    """What one rule does to ``p``: None (no match: next rule) or (verb, argument)."""
    if rule.endswith(" return"):
        condition = rule.removesuffix(" return")
        if condition.startswith("meta mark "):
            hit = p.mark == int(condition.split()[2], 16)
        elif condition.startswith("iifname "):
            hit = p.iif in [name.strip('"') for name in _items(condition.removeprefix("iifname "))]
        else:
            assert condition == "fib daddr type local", rule
            hit = p.local
        return ("return", "") if hit else None
    if found := _VMAP.fullmatch(rule):
        for element in table.maps[found["map"]]:
            key, _, target = element.partition(" : goto ")
            proto, _, ports = key.partition(" . ")
            if proto == p.proto and _in_ranges(p.dport, [ports]):
                return "goto", target
        return None
    if found := _VERDICT.fullmatch(rule):
        if found["chain"].startswith("policy_"):
            return "decide", rule  # a policy that matches every packet
        return found["verb"], found["chain"]
    head, _, target = rule.rpartition(" goto ")
    if (lookup := _LOOKUP.fullmatch(head)) and not target.startswith("policy_"):
        hit = _in_set(lookup["key"], table.sets[lookup["set"]], p)
        return ("goto", target) if hit else None
    outcome = _OUTCOME.fullmatch(rule)
    assert outcome, f"not a rule the interpreter knows: {rule!r}"
    return ("decide", outcome["out"]) if matches(outcome["expr"], p) else None


def decide(table: Loaded, base: str, p: Packet) -> str | None:
    """The decision the base chain ``base`` reaches for ``p``: ``goto policy_<n>`` or ``meta priority
    set 1:<minor> accept``; None when the packet leaves the table untouched."""
    stack: list[tuple[str, int]] = []
    chain, at = base, 0
    for _ in range(100_000):
        rules = table.chains[chain]
        if at >= len(rules):
            if not stack:
                return None
            chain, at = stack.pop()
            continue
        action = _step(rules[at], table, p)
        at += 1
        if action is None:
            continue
        verb, argument = action
        if verb == "decide":
            return argument
        if verb == "return":
            if not stack:
                return None
            chain, at = stack.pop()
        else:
            if verb == "jump":
                stack.append((chain, at))
            chain, at = argument, 0
    raise AssertionError("a loop in the chains")


# -- the oracle ---------------------------------------------------------------------------------------------


def _families(policy: RoutingPolicy) -> set[int | None]:
    match = policy.match
    lists = [c for c in (match.src_cidrs, match.dst_cidrs) if c]
    if lists:
        return {
            f for f in (4, 6) if all(any(ipaddress.ip_network(c).version == f for c in cs) for cs in lists)
        }
    return {4, 6} if match.dscp is not None else {None}


def policy_matches(policy: RoutingPolicy, p: Packet) -> bool:
    """Whether ``policy`` (valid, as the user wrote it) matches ``p``."""
    match, families = policy.match, _families(policy)
    if not families or (None not in families and p.family not in families):
        return False
    if match.protocol in ("tcp", "udp"):
        protocols = {match.protocol}
    elif match.protocol == "icmp":
        protocols = {"icmp", "ipv6-icmp"} if None in families else {("icmp", "ipv6-icmp")[p.family == 6]}
    else:
        protocols = {"tcp", "udp"} if match.dst_ports or match.src_ports else set(PROTOCOLS)
    ranges = ((match.src_ports, p.sport), (match.dst_ports, p.dport))
    addresses = ((match.src_cidrs, p.saddr), (match.dst_cidrs, p.daddr))
    return (
        p.proto in protocols
        and all(not spans or any(a <= port <= b for a, b in spans) for spans, port in ranges)
        and all(not cidrs or _addr_in(p.family, address, cidrs) for cidrs, address in addresses)
        and (match.dscp is None or p.dscp == match.dscp)
    )


def expected(table: Table, base: str, p: Packet) -> str | None:
    """What ``base`` must decide for ``p``: the first policy by priority (then name) that matches it;
    in ``postrouting`` the first shaped one, its htb class; nothing for the tunnels' own packets, and in
    ``prerouting`` nothing for packets from loopback, an excluded interface, or for this host."""
    if p.mark == BYPASS:
        return None
    if base == "prerouting" and (p.local or p.iif == "lo" or p.iif in table.ingress_exclude):
        return None
    ordered = sorted(table.policies, key=lambda policy: (-policy.priority, policy.name))
    for index, policy in enumerate(ordered):
        if base == "postrouting" and policy.name not in table.priorities:
            continue
        if policy_matches(policy, p):
            if base == "postrouting":
                return f"meta priority set 1:{table.priorities[policy.name]:x} accept"
            return f"goto policy_{index}"
    return None


# -- packets worth trying -----------------------------------------------------------------------------------


def _edges(table: Table) -> list[int]:
    """Every port a policy names, and its neighbours: where a range's inside meets its outside."""
    ports = {0, 1, 65535}
    for policy in table.policies:
        for first, last in (*policy.match.dst_ports, *policy.match.src_ports):
            ports |= {first - 1, first, last, last + 1}
    return sorted(port for port in ports if 0 <= port <= 65535)


def _addresses(table: Table, family: int) -> list[str]:
    """The first and last address of every prefix a policy names, and the ones just outside."""
    found = {"10.9.8.7" if family == 4 else "2001:db8::7"}
    for policy in table.policies:
        for cidr in (*policy.match.src_cidrs, *policy.match.dst_cidrs):
            network = ipaddress.ip_network(cidr)
            if network.version != family:
                continue
            kind = ipaddress.IPv4Address if family == 4 else ipaddress.IPv6Address
            first, last = int(network[0]), int(network[-1])
            for value in (first - 1, first, last, last + 1):
                if 0 <= value < 2 ** (32 if family == 4 else 128):
                    found.add(str(kind(value)))
    return sorted(found)


def _inside(spans: Sequence[tuple[int, int]]) -> list[int]:
    return sorted({port for first, last in spans for port in (first, last, (first + last) // 2)})


def _hosts(cidrs: Sequence[str], family: int) -> list[str]:
    mine = [ipaddress.ip_network(c) for c in cidrs if ipaddress.ip_network(c).version == family]
    return sorted({str(address) for network in mine for address in (network[0], network[-1])})


@st.composite
def packets(draw: st.DrawFn, table: Table) -> Packet:
    """A packet near the edges of what ``table``'s policies match: each field is taken from what one
    policy (drawn) matches, from the edges of every policy's values, or from anywhere."""
    aimed = bool(table.policies) and draw(st.booleans())
    aim: PolicyMatch | None = draw(st.sampled_from(table.policies)).match if aimed else None
    family = draw(st.sampled_from([4, 6]))

    def pick(values: Sequence[Any], anything: st.SearchStrategy[Any]) -> Any:
        choices = [st.sampled_from(values)] if values else []
        return draw(st.one_of(*choices, *choices, *choices, anything))

    protocols = {"tcp": ["tcp"], "udp": ["udp"], "icmp": ["icmp", "ipv6-icmp"]}
    edges, addresses = st.sampled_from(_edges(table)), st.sampled_from(_addresses(table, family))
    port, anywhere = st.one_of(edges, st.integers(0, 65535)), st.sampled_from(PROTOCOLS)
    return Packet(
        family=family,
        proto=pick(protocols.get(aim.protocol, []) if aim else [], anywhere),
        sport=pick(_inside(aim.src_ports) if aim else [], port),
        dport=pick(_inside(aim.dst_ports) if aim else [], port),
        saddr=pick(_hosts(aim.src_cidrs, family) if aim else [], addresses),
        daddr=pick(_hosts(aim.dst_cidrs, family) if aim else [], addresses),
        dscp=pick([aim.dscp] if aim and aim.dscp is not None else [], st.integers(0, 63)),
        mark=draw(st.sampled_from([0, 0, 0, BYPASS, 0x50A70001])),
        iif=draw(st.sampled_from(["eth0", "eth0", "lo", *table.ingress_exclude])),
        local=draw(st.booleans()),
    )
