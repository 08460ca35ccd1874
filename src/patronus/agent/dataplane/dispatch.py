"""A verdict map on (protocol, destination port) in front of a policy scan, so a packet is tried only
against the policies that can match it.

Most policies name destination ports. For each stretch of ports where the same policies apply
(per protocol), one chain holds exactly the rules that may match there, in the scan's order: the rules
of the policies whose ports cover the stretch, and the rules of the policies that name no destination
port. ``meta l4proto . th dport vmap`` sends a packet straight to its stretch's chain; a packet no
stretch holds (another protocol, no transport header) falls through to the rules that name no port. Each
chain keeps the rules' full text, so the map only narrows which rules are tried: the first rule that
matches is the one the plain scan would have found.

Chains with equal contents are shared. When the rules that name no port would be repeated too often
(many such policies and many stretches), the plain scan is kept: :func:`plan` returns None.

The stretches go into two maps, tried in turn (a port is in at most one stretch, so at most one hits):
``<name>_ports`` holds single ports (narrow stretches written out port by port, up to
:data:`EXACT_PORTS_BUDGET` of them, narrowest first) and has no ``interval`` flag, so the kernel keeps it
in a hash table; ``<name>_port_ranges`` holds the wider stretches in an interval map (pipapo, for a
concatenation). In the tunnel benchmark the interval lookups were the largest part of the table's cost:
pipapo's work grows with the number of elements, a hash lookup's does not.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from patronus.agent.dataplane.prefilter import PORT_KEY

MAX_DISPATCH_RULES = 20_000
"""Above this many rules across the per-stretch chains, the plain scan is cheaper to keep."""
EXACT_PORTS_BUDGET = 4096
"""At most this many (protocol, port) elements are written out one by one into the hash map."""


@dataclass(frozen=True)
class Entry:
    """One rule of the scan, with the (protocol, destination port ranges) it needs; no ranges: any port."""

    rule: str
    protocols: tuple[str, ...]
    dst_ports: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Plan:
    """The maps' elements (``proto . port : goto chain`` one port each, and ``proto . first-last : goto
    chain``), the per-stretch chains, the fallback."""

    exact: list[str]
    ranges: list[str]
    chains: dict[str, list[str]]
    fallback: list[str]


def _stretches(ranges: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """The elementary stretches the ranges' boundaries cut the covered ports into, in order."""
    cuts = sorted({first for first, _ in ranges} | {last + 1 for _, last in ranges})
    stretches = []
    for start, end in itertools.pairwise(cuts):
        if any(first <= start and end - 1 <= last for first, last in ranges):
            stretches.append((start, end - 1))
    return stretches


def plan(entries: Sequence[Entry], prefix: str) -> Plan | None:
    """Chains named ``<prefix>_<n>`` and the map elements reaching them; None when not worth it."""
    fallback = [e.rule for e in entries if not e.dst_ports]
    by_protocol: dict[str, list[tuple[int, int]]] = {}
    for entry in entries:
        for protocol in entry.protocols if entry.dst_ports else ():
            by_protocol.setdefault(protocol, []).extend(entry.dst_ports)
    if not by_protocol:
        return None
    chains: dict[tuple[str, ...], str] = {}
    elements: list[tuple[str, int, int, str]] = []
    total = 0
    for protocol in sorted(by_protocol):
        for first, last in _stretches(by_protocol[protocol]):
            rules = tuple(
                e.rule
                for e in entries
                if not e.dst_ports
                or (protocol in e.protocols and any(a <= first and last <= b for a, b in e.dst_ports))
            )
            if rules not in chains:
                chains[rules] = f"{prefix}_{len(chains)}"
                total += len(rules)
                if total > MAX_DISPATCH_RULES:
                    return None
            elements.append((protocol, first, last, chains[rules]))
    exact, ranges = _split(_merged(elements))
    return Plan(exact, ranges, {name: list(rules) for rules, name in chains.items()}, fallback)


def _merged(elements: list[tuple[str, int, int, str]]) -> list[tuple[str, int, int, str]]:
    """Adjacent stretches of one protocol that go to the same chain, as one element."""
    merged: list[tuple[str, int, int, str]] = []
    for protocol, first, last, chain in elements:
        if merged and merged[-1][0] == protocol and merged[-1][3] == chain and merged[-1][2] + 1 == first:
            merged[-1] = (protocol, merged[-1][1], last, chain)
        else:
            merged.append((protocol, first, last, chain))
    return merged


def _split(elements: list[tuple[str, int, int, str]]) -> tuple[list[str], list[str]]:
    """(single-port elements, range elements): the narrowest stretches are written out port by port
    while the budget lasts; each list keeps the elements' order."""
    by_width = sorted(range(len(elements)), key=lambda i: (elements[i][2] - elements[i][1], i))
    spent, written_out = 0, set()
    for i in by_width:
        width = elements[i][2] - elements[i][1] + 1
        if spent + width > EXACT_PORTS_BUDGET:
            break
        spent += width
        written_out.add(i)
    exact, ranges = [], []
    for i, (protocol, first, last, chain) in enumerate(elements):
        if i in written_out:
            exact += [f"{protocol} . {port} : goto {chain}" for port in range(first, last + 1)]
        else:
            ranges.append(f"{protocol} . {first}-{last} : goto {chain}")
    return exact, ranges


def render(
    name: str, entries: Sequence[Entry], enabled: bool = True
) -> tuple[list[str], list[str], list[str]]:
    """(table-level declarations, the scan chain ``name`` and its stretch chains, the names of the port
    maps in the order the scan tries them) as nft lines."""
    found = plan(entries, f"{name}_by_port") if enabled else None
    if found is None:
        return [], _chain(name, [e.rule for e in entries]), []
    kinds = ((f"{name}_ports", "", found.exact), (f"{name}_port_ranges", " flags interval;", found.ranges))
    declarations, maps = [], []
    for map_name, flags, elements in kinds:
        if elements:
            declarations.append(
                f"\tmap {map_name} {{ type inet_proto . inet_service : verdict;{flags} "
                f"elements = {{ {', '.join(elements)} }} }}"
            )
            maps.append(map_name)
    lines = _chain(name, [*(f"{PORT_KEY} vmap @{m}" for m in maps), *found.fallback])
    for chain, rules in found.chains.items():
        lines += _chain(chain, rules)
    return declarations, lines, maps


def _chain(name: str, rules: Sequence[str]) -> list[str]:
    return [f"\tchain {name} {{", *(f"\t\t{rule}" for rule in rules), "\t}"]
