"""The policy table as text: a pure renderer from policies to one ``nft -f`` script, and its parts.

Layout of the dedicated table ``inet patronus`` (:func:`render_nftables`):

- ``prerouting`` (forwarded traffic; packets for this host are skipped with ``fib daddr type local``)
  and ``output`` (local traffic, a ``route`` chain so a new mark re-routes) let in only packets some
  policy may match (set lookups, :mod:`patronus.agent.dataplane.prefilter`) and send them to
  ``classify``, which tries policies by descending priority; the first match ``goto``-s the policy's
  chain, so lower-priority policies never see the packet. The base chains, and the ``raw`` chains that
  keep the tunnels' encrypted packets out of conntrack, are in :mod:`patronus.agent.dataplane.hooks`.
- A policy's chain counts the packet in the named counter ``pol_<policy>`` (``bytesRouted``) and, for the
  first packet of a connection, in ``new_<policy>`` (``matchedFlows``: ``ct state new`` and not yet
  flagged with :data:`FLOW_SEEN_CT_BIT`, which the rule then sets), then sets
  the mark in two steps: ``meta mark set <policy tag>`` and ``meta mark set meta mark map @policy_path``.
  The map ``policy_path`` (tag -> path mark) is the only place that says which path a policy uses, so
  failover is one two-line ``nft -f`` transaction (:func:`render_switch`: delete + add of one element,
  nft 1.0.6 has no element replace) instead of a re-render, and it is atomic.
- ``postrouting`` (through the same candidate sets, to ``shaping``) repeats the matches of shaped policies
  to set ``meta priority`` to the policy's htb class (``1:<minor>``),
  so the egress qdisc classifies without tc filters (see :mod:`patronus.agent.dataplane.qos`). It cannot be
  done in prerouting: the kernel resets skb->priority from the TOS byte when it forwards a packet.
- Packets carrying the WireGuard fwmark (the tunnels' own encrypted packets) are never classified, so a
  policy broad enough to match them cannot loop a tunnel into itself, and they skip conntrack.

Every value is checked by :mod:`patronus.agent.dataplane.validate` here, where it becomes nft text:
names are whitelisted (policy names become counter names, interface names are quoted strings), numbers
are range-checked ints, CIDRs are re-printed canonically. A policy that fails raises
:class:`~patronus.agent.dataplane.validate.UnsafeValue` and nothing is rendered, so the kernel keeps the
last good table (``nft -f`` is one transaction).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from patronus.agent.dataplane import dispatch, hooks, prefilter, validate
from patronus.agent.dataplane.validate import UnsafeValue

TABLE_NAME = "patronus"
WIREGUARD_FWMARK = 0x51820
"""Mark on the encrypted (outer) packets: policy routing skips them, so a tunnel never loops into itself."""
PATH_MARK_BASE = 0x50A70000
"""Path marks are ``PATH_MARK_BASE + n`` (n >= 1); ``MARK_RANGE_MASK`` selects the range."""
POLICY_TAG_BASE = 0x50A80000
"""Transient per-policy tags, the keys of the ``policy_path`` map; never left on a packet by a rule."""
MARK_RANGE_MASK = 0xFFFF0000
ROUTE_TABLE_BASE = 51000
"""Path routing tables are ``ROUTE_TABLE_BASE + n``, matching the path mark's ``n``."""
POLICY_MAP = "policy_path"
FLOW_SEEN_CT_BIT = 0x00800000
"""Conntrack mark bit set on a connection once counted: an unanswered UDP flow stays ``ct state new`` for
every packet, so ``ct state new`` alone would count packets, not flows. Other ct mark bits are preserved."""
_MAX_NFT_NAME = 250
_MAX_POLICIES = 0xFFFF
"""Policy tags are ``POLICY_TAG_BASE + n`` and must stay inside their 16-bit range."""


@dataclass(frozen=True)
class PolicyMatch:
    """What a policy matches; port ranges are inclusive ``(first, last)`` pairs."""

    protocol: str = "any"
    dst_ports: tuple[tuple[int, int], ...] = ()
    src_ports: tuple[tuple[int, int], ...] = ()
    dscp: int | None = None
    src_cidrs: tuple[str, ...] = ()
    dst_cidrs: tuple[str, ...] = ()

    def checked(self) -> PolicyMatch:
        """This match with every value validated and canonical; :class:`UnsafeValue` otherwise."""
        for name in ("dst_ports", "src_ports", "src_cidrs", "dst_cidrs"):
            if not isinstance(getattr(self, name), tuple | list):
                raise UnsafeValue(f"{name} must be a sequence")
        return PolicyMatch(
            protocol=validate.protocol(self.protocol),
            dst_ports=validate.port_ranges(self.dst_ports),
            src_ports=validate.port_ranges(self.src_ports),
            dscp=None if self.dscp is None else validate.dscp(self.dscp),
            src_cidrs=validate.cidrs(self.src_cidrs),
            dst_cidrs=validate.cidrs(self.dst_cidrs),
        )


@dataclass(frozen=True)
class RoutingPolicy:
    """A policy as the data plane sees it: its match, the path it uses now, and its QoS."""

    name: str
    priority: int
    match: PolicyMatch
    path: str | None
    qos_class: str | None = None
    bandwidth_bps: int | None = None

    @classmethod
    def from_config(cls, policy: Mapping[str, Any], path: str | None = None) -> RoutingPolicy:
        """From one ``policies[]`` entry (camelCase, as the configuration's JSON); ``path`` is the path
        in use (default the primary path)."""
        match = policy.get("match") or {}
        action = policy.get("action") or {}
        qos = policy.get("qos") or {}

        def ports(key: str) -> tuple[tuple[int, int], ...]:
            return tuple((int(a), int(b)) for a, b in match.get(key) or ())

        return cls(
            name=str(policy["name"]),
            priority=int(policy.get("priority") or 0),
            match=PolicyMatch(
                protocol=str(match.get("protocol") or "any"),
                dst_ports=ports("dstPorts"),
                src_ports=ports("srcPorts"),
                dscp=match.get("dscp"),
                src_cidrs=tuple(match.get("srcCidrs") or ()),
                dst_cidrs=tuple(match.get("dstCidrs") or ()),
            ),
            path=path if path is not None else action.get("primaryPath"),
            qos_class=qos.get("class"),
            bandwidth_bps=qos.get("bandwidthBps"),
        )

    def checked(self) -> RoutingPolicy:
        """This policy with every value that reaches nft or tc validated; :class:`UnsafeValue` otherwise."""
        validate.integer(self.priority, -(2**31), 2**31 - 1, "policy priority")
        if not isinstance(self.match, PolicyMatch):
            raise UnsafeValue("match must be a PolicyMatch")
        if self.path is not None and not isinstance(self.path, str):
            raise UnsafeValue("path must be text")
        return RoutingPolicy(
            name=validate.policy_name(self.name),
            priority=self.priority,
            match=self.match.checked(),
            path=self.path,
            qos_class=self.qos_class,
            bandwidth_bps=None if self.bandwidth_bps is None else validate.rate_bps(self.bandwidth_bps),
        )


class PolicyCounters(NamedTuple):
    """Packets and bytes a policy routed, and how many new connections (flows) it matched."""

    packets: int
    bytes: int
    new_flows: int


def assign_path_marks(path_names: Iterable[str]) -> dict[str, int]:
    """A mark per path (sorted by name, from ``PATH_MARK_BASE + 1``); the route table id follows it."""
    return {name: PATH_MARK_BASE + i for i, name in enumerate(sorted(set(path_names)), start=1)}


def route_table_for(mark: int) -> int:
    """The routing table of the path with ``mark``."""
    return ROUTE_TABLE_BASE + (validate.mark(mark) & ~MARK_RANGE_MASK)


def ordered(policies: Iterable[RoutingPolicy]) -> list[RoutingPolicy]:
    """Evaluation order: higher priority first, then name (as the operator renders them)."""
    return sorted(policies, key=lambda p: (-p.priority, p.name))


def policy_tags(policies: Iterable[RoutingPolicy]) -> dict[str, int]:
    """The ``policy_path`` map key of each policy, by evaluation order."""
    return {p.name: POLICY_TAG_BASE + i for i, p in enumerate(ordered(policies), start=1)}


def _nft_name(prefix: str, policy: str) -> str:
    """An nft object name: Kubernetes names reach 253 characters, nft's limit is 256: long ones are hashed."""
    name = f"{prefix}_{validate.policy_name(policy)}"
    if len(name) <= _MAX_NFT_NAME:
        return name
    digest = hashlib.sha256(policy.encode()).hexdigest()[:10]
    return f"{name[: _MAX_NFT_NAME - 11]}-{digest}"


def counter_names(policy: str) -> tuple[str, str]:
    """The names of a policy's byte counter and its new-connection counter."""
    return _nft_name("pol", policy), _nft_name("new", policy)


def hex_mark(value: int) -> str:
    """A mark as nft and ``ip rule`` print it back: ``0x`` and eight hex digits."""
    return f"0x{validate.mark(value):08x}"


def _set(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"


def _ports(ranges: Sequence[tuple[int, int]]) -> str:
    return _set([str(a) if a == b else f"{a}-{b}" for a, b in ranges])


def _families(match: PolicyMatch) -> list[int | None]:
    """Which IP families need a rule: CIDRs and DSCP are family-specific, the rest is not."""
    lists = [cidrs for cidrs in (match.src_cidrs, match.dst_cidrs) if cidrs]
    if lists:
        return [
            f for f in (4, 6) if all(any(validate.cidr_version(c) == f for c in cidrs) for cidrs in lists)
        ]
    return [4, 6] if match.dscp is not None else [None]


def _protocol(match: PolicyMatch, family: int | None) -> list[str]:
    if match.protocol in ("tcp", "udp"):
        return [f"meta l4proto {match.protocol}"]
    if match.protocol == "icmp":
        return [
            {4: "meta l4proto icmp", 6: "meta l4proto ipv6-icmp"}.get(
                family or 0, "meta l4proto { icmp, ipv6-icmp }"
            )
        ]
    if match.dst_ports or match.src_ports:
        return ["meta l4proto { tcp, udp }"]
    return []


def match_expressions(match: PolicyMatch) -> list[str]:
    """The nft match of a policy, one line per IP family it needs (empty: it can match nothing)."""
    return [expression for _, expression in _expressions(match.checked())]


def _expressions(match: PolicyMatch) -> list[tuple[int | None, str]]:
    """(IP family or None for both, nft match) per rule of a checked match."""
    rules = []
    for family in _families(match):
        parts = _protocol(match, family)
        ip = "ip" if family == 4 else "ip6"
        for key, cidrs in (("saddr", match.src_cidrs), ("daddr", match.dst_cidrs)):
            mine = [c for c in cidrs if validate.cidr_version(c) == family]
            if mine:
                parts.append(f"{ip} {key} {_set(mine)}")
        if match.dscp is not None:
            parts.append(f"{ip} dscp {match.dscp}")
        if match.src_ports:
            parts.append(f"th sport {_ports(match.src_ports)}")
        if match.dst_ports:
            parts.append(f"th dport {_ports(match.dst_ports)}")
        rules.append((family, " ".join(parts)))
    return rules


def _checked_policies(policies: Iterable[RoutingPolicy]) -> list[RoutingPolicy]:
    checked = []
    for policy in policies:
        if not isinstance(policy, RoutingPolicy):
            raise UnsafeValue(f"not a RoutingPolicy: {type(policy).__name__}")
        checked.append(policy.checked())
    names = [p.name for p in checked]
    if len(set(names)) != len(names):
        raise UnsafeValue("two policies have the same name")
    if len(checked) > _MAX_POLICIES:
        raise UnsafeValue(f"more than {_MAX_POLICIES} policies")
    return ordered(checked)


def _policy_chain(index: int, policy: RoutingPolicy, tag: int) -> list[str]:
    """Count (bytes always, the connection once) and mark through the path map."""
    total, new = counter_names(policy.name)
    seen, tag_text = hex_mark(FLOW_SEEN_CT_BIT), hex_mark(tag)
    return [
        f"\tchain policy_{index} {{",
        f'\t\tct state new ct mark & {seen} == 0x00000000 ct mark set ct mark | {seen} counter name "{new}"',
        f'\t\tcounter name "{total}" meta mark set {tag_text} meta mark set meta mark map @{POLICY_MAP}',
        # A policy with no path in the map stops at the lookup with the tag still set: clear it.
        f"\t\tmeta mark {tag_text} meta mark set 0x00000000",
        "\t}",
    ]


def _rule(expression: str, action: str) -> str:
    return f"{expression} {action}" if expression else action


def _port_protocols(protocol: str, family: int | None) -> tuple[str, ...]:
    """The ``meta l4proto`` values one rule can match (``any`` with ports: tcp and udp)."""
    if protocol == "icmp":
        return {4: ("icmp",), 6: ("ipv6-icmp",)}.get(family or 0, ("icmp", "ipv6-icmp"))
    return (protocol,) if protocol in ("tcp", "udp") else ("tcp", "udp")


def _policy_map(
    policies: Sequence[RoutingPolicy], tags: Mapping[str, int], marks: Mapping[str, int]
) -> list[str]:
    """The ``policy_path`` map: each policy's tag to its path's mark, for the policies that have one."""
    routed = [(p.name, marks[p.path]) for p in policies if p.path is not None and p.path in marks]
    elements = [f"{hex_mark(tags[name])} : {hex_mark(mark)}" for name, mark in routed]
    lines = [f"\tmap {POLICY_MAP} {{", "\t\ttype mark : mark"]
    if elements:
        lines.append("\t\telements = { " + ", ".join(elements) + " }")
    return [*lines, "\t}"]


def render_nftables(
    table_name: str,
    policies: Iterable[RoutingPolicy],
    path_marks: Mapping[str, int],
    *,
    priorities: Mapping[str, int] | None = None,
    bypass_mark: int = WIREGUARD_FWMARK,
    ingress_exclude: Sequence[str] = (),
    by_port: bool = True,
    tunnel_ports: Sequence[int] = (),
) -> str:
    """An ``nft -f`` script that atomically replaces ``inet <table_name>`` with the policies' rules.

    ``path_marks`` gives each path's mark; a policy whose path has no mark (or that has no path) is still
    counted, and left unmarked until a switch gives it a path. ``priorities`` maps a policy to its htb
    class minor (``1:<minor>``). ``ingress_exclude`` names interfaces whose inbound traffic is not
    classified (e.g. the site's own tunnels when it is not a transit hub), so replies from peers do not
    inflate the counters. ``by_port`` puts port verdict maps in front of each scan
    (:mod:`patronus.agent.dataplane.dispatch`). ``tunnel_ports`` are the WireGuard listen ports: the
    tunnels' encrypted packets skip conntrack (:mod:`patronus.agent.dataplane.hooks`). Raises
    :class:`UnsafeValue` (and renders nothing) if any value is unsafe.
    """
    table = validate.table(table_name)
    policies = _checked_policies(policies)
    marks = {str(path): validate.mark(mark) for path, mark in path_marks.items()}
    minors = {str(name): validate.class_minor(minor) for name, minor in (priorities or {}).items()}
    tags = policy_tags(policies)
    candidates = prefilter.build(p.match for p in policies)
    lines = [f"table inet {table}", f"delete table inet {table}", f"table inet {table} {{"]
    lines += [f"\tcounter {name} {{ }}" for p in policies for name in counter_names(p.name)]
    lines += [f"\t{declaration}" for declaration in candidates.sets]
    lines += _policy_map(policies, tags, marks)
    classify: list[dispatch.Entry] = []
    shaping: list[dispatch.Entry] = []
    for index, policy in enumerate(policies):
        lines += _policy_chain(index, policy, tags[policy.name])
        for family, expression in _expressions(policy.match):
            protocols = _port_protocols(policy.match.protocol, family)
            rule = _rule(expression, f"goto policy_{index}")
            classify.append(dispatch.Entry(rule, protocols, policy.match.dst_ports))
            if policy.name in minors:
                rule = _rule(expression, f"meta priority set 1:{minors[policy.name]:x} accept")
                shaping.append(dispatch.Entry(rule, protocols, policy.match.dst_ports))
    maps, scans, port_maps = [], [], {}
    for name, entries in (("classify", classify), ("shaping", shaping)):
        declarations, chains, port_maps[name] = dispatch.render(name, entries, by_port)
        maps += declarations
        scans += chains
    lines += maps + scans
    lines += hooks.render(
        candidates, shaping=bool(shaping), bypass_mark=bypass_mark, excluded=ingress_exclude,
        tunnel_ports=tunnel_ports, port_maps=port_maps,
    )  # fmt: skip
    return "\n".join(lines) + "\n}\n"


def render_switch(table_name: str, tag: int, mark: int, *, replace: bool = True) -> str:
    """The ``nft -f`` transaction that points one policy tag at a path mark, atomically.

    nft 1.0.6 refuses to ``add`` an element whose key exists with another value and has no ``replace``,
    so an existing element (``replace``) is deleted and re-added in the same transaction.
    """
    table = validate.table(table_name)
    key, value = hex_mark(tag), hex_mark(mark)
    delete = f"delete element inet {table} {POLICY_MAP} {{ {key} }}\n" if replace else ""
    return f"{delete}add element inet {table} {POLICY_MAP} {{ {key} : {value} }}\n"


def parse_counters(document: Mapping[str, Any]) -> dict[str, PolicyCounters]:
    """Policy counters from ``nft -j list counters`` output, keyed by policy (counter name sans prefix)."""
    raw: dict[str, dict[str, int]] = {}
    for item in document.get("nftables", []):
        counter = item.get("counter")
        if not counter:
            continue
        prefix, _, policy = str(counter["name"]).partition("_")
        entry = raw.setdefault(policy, {})
        if prefix == "pol":
            entry["packets"], entry["bytes"] = int(counter["packets"]), int(counter["bytes"])
        elif prefix == "new":
            entry["new"] = int(counter["packets"])
    return {
        name: PolicyCounters(v.get("packets", 0), v.get("bytes", 0), v.get("new", 0))
        for name, v in raw.items()
    }
