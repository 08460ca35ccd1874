"""A structural checker of rendered policy tables: every line of a script must be a statement the renderer
may emit (a small grammar), carrying exactly the values the policies asked for; the candidate sets must
admit every policy's packets; the port verdict maps must send each packet to exactly the rules of the
plain scan that may match it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Mapping, Sequence
from typing import Any

from patronus.agent.dataplane.routing import RoutingPolicy
from tests.support.policy_fuzz import Table

# -- the structural check ---------------------------------------------------------------------------------

_ADDR = r"[0-9a-f.:]+/\d+"
_PORT = r"\d+(?:-\d+)?"
_CLAUSE = re.compile(
    rf"meta l4proto (?P<proto>tcp|udp|icmp|ipv6-icmp|\{{ tcp, udp \}}|\{{ icmp, ipv6-icmp \}})"
    rf"|(?P<fam>ip6?) (?P<dir>saddr|daddr) (?P<cidrs>{_ADDR}|\{{ {_ADDR}(?:, {_ADDR})* \}})"
    rf"|(?P<dfam>ip6?) dscp (?P<dscp>\d+)"
    rf"|th (?P<pdir>sport|dport) (?P<ports>{_PORT}|\{{ {_PORT}(?:, {_PORT})* \}})"
)
_PROTOCOLS = {
    "tcp": {"tcp"},
    "udp": {"udp"},
    "icmp": {"icmp", "ipv6-icmp", "{ icmp, ipv6-icmp }"},
    "any": {"{ tcp, udp }"},
}


def _items(text: str) -> list[str]:
    return text.strip("{} ").split(", ")


def _port_set(ranges: Sequence[tuple[int, int]]) -> set[int]:
    return {port for first, last in ranges for port in range(first, last + 1)}


def _covered(networks: Sequence[str], version: int) -> list[Any]:
    mine = [ipaddress.ip_network(n, strict=False) for n in networks]
    return list(ipaddress.collapse_addresses([n for n in mine if n.version == version]))


def parse_match(text: str) -> dict[str, Any]:
    """A classify/postrouting match as clauses; AssertionError if any part is not in the grammar."""
    clauses: dict[str, Any] = {}
    position = 0
    while position < len(text):
        found = _CLAUSE.match(text, position)
        assert found, f"not a statement the renderer emits: {text[position:]!r}"
        kind = next(k for k in ("proto", "cidrs", "dscp", "ports") if found.group(k) is not None)
        key = {"cidrs": f"{found['fam']} {found['dir']}", "dscp": "dscp", "ports": found["pdir"]}.get(
            kind, "proto"
        )
        assert key not in clauses, f"repeated clause {key} in {text!r}"
        clauses[key] = (found["dfam"], int(found["dscp"])) if kind == "dscp" else found[kind]
        position = found.end()
        if position < len(text):
            assert text[position] == " ", text
            position += 1
    return clauses


def check_match(text: str, policy: RoutingPolicy) -> int | None:
    """Compare one match line with what ``policy`` asked for; returns the line's IP family."""
    clauses = parse_match(text)
    match = policy.match
    proto = clauses.pop("proto", None)
    if match.protocol == "any" and not (match.dst_ports or match.src_ports):
        assert proto is None, text
    else:
        assert proto in _PROTOCOLS[match.protocol], text
    families = {key.split()[0] for key in clauses if key.startswith("ip")}
    if "dscp" in clauses:
        families.add(clauses["dscp"][0])
    assert len(families) <= 1, text
    version = {"ip": 4, "ip6": 6}.get(next(iter(families), ""))
    for direction, wanted in (("saddr", match.src_cidrs), ("daddr", match.dst_cidrs)):
        got = clauses.pop(f"{'ip' if version == 4 else 'ip6'} {direction}", None)
        if wanted:
            assert version is not None, text
            assert got is not None, text
            assert _covered(_items(got), version) == _covered(wanted, version), text
        else:
            assert got is None, text
    dscp = clauses.pop("dscp", None)
    assert (dscp[1] if dscp else None) == match.dscp, text
    for direction, ranges in (("sport", match.src_ports), ("dport", match.dst_ports)):
        got = clauses.pop(direction, None)
        expanded = [tuple(int(x) for x in (item.split("-") * 2)[:2]) for item in _items(got)] if got else []
        assert _port_set(expanded) == _port_set(ranges), text  # type: ignore[arg-type]
    assert not clauses, f"unexpected clauses {clauses} in {text!r}"
    return version


def expected_families(policy: RoutingPolicy) -> set[int | None]:
    """The IP families a policy's rules must cover: one rule per family its CIDRs/DSCP need."""
    match = policy.match
    lists = [c for c in (match.src_cidrs, match.dst_cidrs) if c]
    if lists:
        versions = [{ipaddress.ip_network(n, strict=False).version for n in cidrs} for cidrs in lists]
        return set.intersection(*versions)  # type: ignore[arg-type]
    return {4, 6} if match.dscp is not None else {None}


def _counter(prefix: str, name: str) -> str:
    """Counter names: ``<prefix>_<policy>``, or cut and suffixed with a hash when nft's limit needs it."""
    full = f"{prefix}_{name}"
    if len(full) <= 250:
        return full
    return f"{full[:239]}-{hashlib.sha256(name.encode()).hexdigest()[:10]}"


def check_script(
    script: str, table: Table, table_name: str = "patronus", tunnel_ports: Sequence[int] = ()
) -> dict[str, list[str]]:
    """Every line of ``script`` is a statement the renderer may emit, carrying exactly the values
    ``table`` (and ``tunnel_ports``) asked for. Returns the rule lines per chain (for comparing with
    what the kernel loaded)."""
    lines = script.split("\n")
    assert lines[-1] == "", "the script ends with a newline"
    lines = lines[:-1]
    assert lines[:3] == [
        f"table inet {table_name}",
        f"delete table inet {table_name}",
        f"table inet {table_name} {{",
    ]
    ordered = sorted(table.policies, key=lambda p: (-p.priority, p.name))
    tags = {p.name: 0x50A80001 + i for i, p in enumerate(ordered)}
    at = 3
    for policy in ordered:
        for prefix in ("pol", "new"):
            line = lines[at]
            assert line == f"\tcounter {_counter(prefix, policy.name)} {{ }}", line
            at += 1
    sets: dict[str, list[str]] = {}
    while lines[at].startswith("\tset "):
        found = _SET.fullmatch(lines[at])
        assert found, lines[at]
        sets[found["name"]] = found["elements"].split(", ")
        at += 1
    assert lines[at : at + 2] == ["\tmap policy_path {", "\t\ttype mark : mark"]
    at += 2
    elements = [
        f"0x{tags[p.name]:08x} : 0x{table.path_marks[p.path]:08x}"
        for p in ordered
        if p.path in table.path_marks
    ]
    if elements:
        assert lines[at] == "\t\telements = { " + ", ".join(elements) + " }"
        at += 1
    assert lines[at] == "\t}"
    at += 1
    chains: dict[str, list[str]] = {}
    while lines[at].startswith("\tchain "):
        name = re.fullmatch(r"\tchain ([a-z_0-9]+) \{", lines[at])
        assert name, lines[at]
        end = lines.index("\t}", at)
        chains[name[1]] = [line.removeprefix("\t\t") for line in lines[at + 1 : end]]
        assert all(line.startswith("\t\t") for line in lines[at + 1 : end])
        at = end + 1
    assert lines[at:] == ["}"], lines[at:]
    _check_chains(chains, ordered, tags, table)
    _check_untracked(chains, tunnel_ports)
    _check_prefilter(chains, sets, ordered)
    return chains


def _check_chains(
    chains: dict[str, list[str]], ordered: list[RoutingPolicy], tags: Mapping[str, int], table: Table
) -> None:
    assert set(chains) - {"untracked_in", "untracked_out"} == {f"policy_{i}" for i in range(len(ordered))} | {
        "classify", "candidates", "prerouting", "output", "shaping", "postrouting",
    }  # fmt: skip
    seen = "0x00800000"
    for i, policy in enumerate(ordered):
        tag = f"0x{tags[policy.name]:08x}"
        pol, new = (_counter(prefix, policy.name) for prefix in ("pol", "new"))
        assert chains[f"policy_{i}"] == [
            f'ct state new ct mark & {seen} == 0x00000000 ct mark set ct mark | {seen} counter name "{new}"',
            f'counter name "{pol}" meta mark set {tag} meta mark set meta mark map @policy_path',
            f"meta mark {tag} meta mark set 0x00000000",
        ]
    excluded = [f'"{name}"' for name in table.ingress_exclude]
    expected_pre = ["type filter hook prerouting priority mangle; policy accept;", 'iifname "lo" return']
    if excluded:
        names = excluded[0] if len(excluded) == 1 else "{ " + ", ".join(excluded) + " }"
        expected_pre.append(f"iifname {names} return")
    assert chains["prerouting"] == [*expected_pre, "fib daddr type local return", "jump candidates"]
    assert chains["output"] == ["type route hook output priority mangle; policy accept;", "jump candidates"]
    _check_rules(chains["classify"], ordered, lambda i, p: f"goto policy_{i}")
    shaped = [p for p in ordered if p.name in table.priorities]
    _check_rules(
        chains["shaping"], ordered,
        lambda i, p: f"meta priority set 1:{table.priorities[p.name]:x} accept" if p in shaped else None,
    )  # fmt: skip


_SET = re.compile(
    r"\tset (?P<name>cand_[a-z0-9]+) \{ type (?P<type>[a-z_0-9 .]+);( flags interval;)? "
    r"elements = \{ (?P<elements>[^{}]+) \} \}"
)
_CANDIDATE = {
    "meta l4proto . th dport @cand_dport": "dport",
    "meta l4proto . th sport @cand_sport": "sport",
    "ip daddr @cand_daddr4": "daddr4",
    "ip6 daddr @cand_daddr6": "daddr6",
    "ip saddr @cand_saddr4": "saddr4",
    "ip6 saddr @cand_saddr6": "saddr6",
    "meta l4proto @cand_proto": "proto",
    "ip dscp @cand_dscp4": "dscp4",
    "ip6 dscp @cand_dscp6": "dscp6",
}


def _admitted(policy: RoutingPolicy, sets: Mapping[str, list[str]]) -> bool:
    """Whether the candidate sets let in every packet ``policy`` can match (via at least one set)."""
    match = policy.match
    protos = {"tcp": ["tcp"], "udp": ["udp"], "icmp": ["icmp", "ipv6-icmp"]}.get(
        match.protocol, ["tcp", "udp"]
    )

    def ports_in(name: str, ranges: Sequence[tuple[int, int]]) -> bool:
        got: dict[str, set[int]] = {}
        for element in sets.get(f"cand_{name}", []):
            proto, _, span = element.partition(" . ")
            first, _, last = span.partition("-")
            got.setdefault(proto, set()).update(range(int(first), int(last or first) + 1))
        return bool(ranges) and all(_port_set(ranges) <= got.get(p, set()) for p in protos)

    def cidrs_in(name: str, cidrs: Sequence[str]) -> bool:
        return bool(cidrs) and all(
            any(
                ipaddress.ip_network(c).subnet_of(ipaddress.ip_network(e))  # type: ignore[arg-type]
                for e in sets.get(f"cand_{name}{ipaddress.ip_network(c).version}", [])
                if ipaddress.ip_network(e).version == ipaddress.ip_network(c).version
            )
            for c in cidrs
        )

    dscp_ok = match.dscp is not None and all(str(match.dscp) in sets.get(f"cand_dscp{v}", []) for v in (4, 6))
    return (
        ports_in("dport", match.dst_ports)
        or ports_in("sport", match.src_ports)
        or cidrs_in("daddr", match.dst_cidrs)
        or cidrs_in("saddr", match.src_cidrs)
        or (match.protocol != "any" and set(protos) <= set(sets.get("cand_proto", [])))
        or dscp_ok
    )


def _check_prefilter(
    chains: dict[str, list[str]], sets: Mapping[str, list[str]], ordered: list[RoutingPolicy]
) -> None:
    """Only packets some policy may match skip nothing: the candidate rules admit every policy's packets."""
    for chain, target in (("candidates", "classify"), ("postrouting", "shaping")):
        rules = chains[chain][1:] if chain == "postrouting" else chains[chain]
        if chain == "postrouting" and not chains["shaping"]:
            assert rules == []
            continue
        assert rules[0] == "meta mark 0x00051820 return"  # the tunnels' own packets never enter
        entries = rules[1:]
        if entries == [f"goto {target}"]:
            continue  # some policy matches everything
        used = set()
        for rule in _as_set_rules(entries, target):
            assert rule.endswith(f" goto {target}"), rule
            expression = rule.removesuffix(f" goto {target}")
            assert expression in _CANDIDATE, rule
            used.add(expression.rsplit("@", 1)[1])
        assert used == set(sets), (used, sets)
        for policy in ordered:
            if expected_families(policy):  # a policy that matches nothing needs no way in
                assert _admitted(policy, sets), policy


def _port_maps(target: str) -> tuple[str, str]:
    """The names of a scan's port maps, in the order it tries them: single ports, then ranges."""
    return f"{target}_ports", f"{target}_port_ranges"


def _as_set_rules(rules: Sequence[str], target: str) -> list[str]:
    """Candidate tests through the scan's port maps, as the one set test they stand for together
    (check_dispatch checks that the maps cover every port the scan's rules name)."""
    vmaps = {f"meta l4proto . th dport vmap @{name}" for name in _port_maps(target)}
    out: list[str] = []
    set_rule = f"meta l4proto . th dport @cand_dport goto {target}"
    for rule in rules:
        if rule not in vmaps:
            out.append(rule)
        elif not out or out[-1] != set_rule:
            out.append(set_rule)
    return out


def _check_untracked(chains: dict[str, list[str]], tunnel_ports: Sequence[int]) -> None:
    """The tunnels' encrypted packets skip conntrack: out by their fwmark, in by listen port for this host."""
    if not tunnel_ports:
        assert "untracked_in" not in chains
        assert "untracked_out" not in chains
        return
    ports = sorted(set(tunnel_ports))
    listen = str(ports[0]) if len(ports) == 1 else "{ " + ", ".join(map(str, ports)) + " }"
    assert chains["untracked_in"] == [
        "type filter hook prerouting priority raw; policy accept;",
        f"udp dport {listen} fib daddr type local notrack",
    ]
    assert chains["untracked_out"] == [
        "type filter hook output priority raw; policy accept;",
        "meta mark 0x00051820 notrack",
    ]


def _check_rules(rules: list[str], ordered: list[RoutingPolicy], action: Any) -> None:
    """Each policy's rules in order, one per family it needs, each ending in ``action``."""
    remaining = list(rules)
    for i, policy in enumerate(ordered):
        verb = action(i, policy)
        if verb is None:
            continue
        wanted = expected_families(policy)
        mine, remaining = remaining[: len(wanted)], remaining[len(wanted) :]
        families = set()
        for text in mine:
            assert text == verb or text.endswith(" " + verb), (text, verb)
            families.add(check_match(text[: -len(verb)].rstrip(), policy))
        assert families == wanted, (policy, families)
    assert not remaining, remaining


# -- the port dispatch --------------------------------------------------------------------------------------

_PORT_MAP = re.compile(
    r"\tmap (?P<name>[a-z_]+_port(?P<ranges>_range)?s) \{ type inet_proto \. inet_service : verdict;"
    r"(?P<flags> flags interval;)? elements = \{ (?P<elements>[^{}]+) \} \}"
)
"""A port map: ``<scan>_ports`` (single ports, a hash) or ``<scan>_port_ranges`` (an interval map)."""
_ELEMENT = re.compile(
    r"(?P<proto>[a-z0-9-]+) \. (?P<first>\d+)(?:-(?P<last>\d+))? : goto (?P<chain>[a-z_0-9]+)"
)


def blocks(script: str) -> tuple[list[str], dict[str, list[str]], dict[str, list[str]]]:
    """(lines outside chains and port maps, rules by chain, elements by port map)."""
    other: list[str] = []
    chains: dict[str, list[str]] = {}
    maps: dict[str, list[str]] = {}
    current: str | None = None
    for line in script.splitlines():
        if current is not None:
            if line == "\t}":
                current = None
            else:
                chains[current].append(line.removeprefix("\t\t"))
        elif line.startswith("\tchain "):
            current = line.split()[1]
            chains[current] = []
        elif (found := _PORT_MAP.fullmatch(line)) and bool(found["ranges"]) == bool(found["flags"]):
            maps[found["name"]] = found["elements"].split(", ")
        else:
            other.append(line)
    return other, chains, maps


def _may_match(rule: str, verb: str, proto: str, port: int) -> bool:
    clauses = parse_match(rule.removesuffix(verb).rstrip())
    if "dport" not in clauses:
        return True
    if proto not in _items(clauses.get("proto") or "{ tcp, udp }"):
        return False
    return any(
        int(a) <= port <= int(b or a)
        for a, _, b in (item.partition("-") for item in _items(clauses["dport"]))
    )


def check_dispatch(by_port: str, plain: str) -> None:
    """``by_port`` is ``plain`` with port verdict maps in front of each scan that send every packet to
    exactly the rules of the plain scan that may match its (protocol, port), in order."""
    other, chains, maps = blocks(by_port)
    plain_other, plain_chains, plain_maps = blocks(plain)
    assert plain_maps == {}
    assert other == plain_other
    for name in set(plain_chains) - {"classify", "shaping", "candidates", "postrouting"}:
        assert chains[name] == plain_chains[name], name
    for name, scan in (("candidates", "classify"), ("postrouting", "shaping")):
        used = [m for m in _port_maps(scan) if m in maps]
        # The port maps stand in for the cand_dport test (one lookup, not two), nothing else changes;
        # when some policy matches every packet there is no candidate test to stand in for.
        stands_in = bool(used) and f"meta l4proto . th dport @cand_dport goto {scan}" in plain_chains[name]
        vmaps = [r for r in chains[name] if " vmap @" in r]
        assert vmaps == ([f"meta l4proto . th dport vmap @{m}" for m in used] if stands_in else []), name
        assert _as_set_rules(chains[name], scan) == plain_chains[name], name
    for scan in ("classify", "shaping"):
        _check_scan_dispatch(scan, plain_chains[scan], chains, maps)


def _check_scan_dispatch(
    scan: str, rules: list[str], chains: Mapping[str, list[str]], maps: Mapping[str, list[str]]
) -> None:
    """The scan's maps (single ports in the hash, ranges in the interval map, no port in both) reach,
    for each port they hold, the plain scan's rules that may match it; they hold every port named."""
    verbs = [re.search(r"(goto policy_\d+|meta priority set 1:[0-9a-f]+ accept)$", r) for r in rules]
    assert all(verbs), rules
    used = [m for m in _port_maps(scan) if m in maps]
    if not used:
        assert chains[scan] == rules
        return
    head, fallback = chains[scan][: len(used)], chains[scan][len(used) :]
    assert head == [f"meta l4proto . th dport vmap @{m}" for m in used]
    assert fallback == [
        r
        for r, v in zip(rules, verbs, strict=True)
        if "dport" not in parse_match(r.removesuffix(v[0]).rstrip())
    ]  # type: ignore[index]
    covered: dict[str, list[tuple[int, int]]] = {}
    for name in used:
        for element in maps[name]:
            found = _ELEMENT.fullmatch(element)
            assert found, element
            assert (found["last"] is None) == name.endswith("_ports"), (name, element)
            first, last = int(found["first"]), int(found["last"] or found["first"])
            assert not any(lo <= last and first <= hi for lo, hi in covered.get(found["proto"], [])), element
            covered.setdefault(found["proto"], []).append((first, last))
            for port in {first, last, (first + last) // 2}:
                expected = [
                    r for r, v in zip(rules, verbs, strict=True) if _may_match(r, v[0], found["proto"], port)
                ]  # type: ignore[index]
                assert chains[found["chain"]] == expected, (element, port)
    for rule, verb in zip(rules, verbs, strict=True):
        clauses = parse_match(rule.removesuffix(verb[0]).rstrip())  # type: ignore[index]
        for proto in _items(clauses.get("proto") or "{ tcp, udp }") if "dport" in clauses else ():
            for item in _items(clauses["dport"]):
                a, _, b = item.partition("-")
                for port in (int(a), int(b or a)):
                    assert any(lo <= port <= hi for lo, hi in covered.get(proto, [])), (rule, proto, port)
