"""Policy routing: nftables marks each policy's packets with its path's mark; ``ip rule`` routes by mark.

Layout of the dedicated table ``inet patronus`` (:func:`render_nftables`):

- ``prerouting`` (forwarded traffic) and ``output`` (local traffic, a ``route`` chain so a new mark
  re-routes) both jump to ``classify``, which tries policies by descending priority; the first match
  ``goto``-s the policy's chain, so lower-priority policies never see the packet.
- A policy's chain counts the packet in the named counter ``pol_<policy>`` (``bytesRouted``) and, for the
  first packet of a connection, in ``new_<policy>`` (``matchedFlows``: ``ct state new`` and not yet
  flagged with :data:`FLOW_SEEN_CT_BIT`, which the rule then sets), then sets
  the mark in two steps: ``meta mark set <policy tag>`` and ``meta mark set meta mark map @policy_path``.
  The map ``policy_path`` (tag -> path mark) is the only place that says which path a policy uses, so
  failover (:meth:`PathRouting.switch`) is one two-line ``nft -f`` transaction (delete + add of one
  element: nft 1.0.6 has no element replace) instead of re-rendering the ruleset, and it is atomic.
- ``postrouting`` repeats the matches to set ``meta priority`` to the policy's htb class (``1:<minor>``),
  so the egress qdisc classifies without tc filters (see :mod:`patronus.agent.dataplane.qos`). It cannot be
  done in prerouting: the kernel resets skb->priority from the TOS byte when it forwards a packet.
- Packets carrying the WireGuard fwmark (the tunnels' own encrypted packets) are never classified, so a
  policy broad enough to match them cannot loop a tunnel into itself.

Marks are whole 32-bit values in ranges of our own (:data:`PATH_MARK_BASE`, :data:`POLICY_TAG_BASE`), so
:mod:`patronus.agent.dataplane.cleanup` can find our ``ip rule`` entries by mark.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from patronus.agent.dataplane.commands import Runner, run
from patronus.agent.dataplane.wireguard import WIREGUARD_FWMARK

TABLE_NAME = "patronus"
PATH_MARK_BASE = 0x50A70000
"""Path marks are ``PATH_MARK_BASE + n`` (n >= 1); ``MARK_RANGE_MASK`` selects the range."""
POLICY_TAG_BASE = 0x50A80000
"""Transient per-policy tags, the keys of the ``policy_path`` map; never left on a packet by a rule."""
MARK_RANGE_MASK = 0xFFFF0000
ROUTE_TABLE_BASE = 51000
"""Path routing tables are ``ROUTE_TABLE_BASE + n``, matching the path mark's ``n``."""
RULE_PRIORITY = 10000
"""Before ``main`` (32766): a marked packet takes its path's table if it has a route for the destination."""
POLICY_MAP = "policy_path"
FLOW_SEEN_CT_BIT = 0x00800000
"""Conntrack mark bit set on a connection once counted: an unanswered UDP flow stays ``ct state new`` for
every packet, so ``ct state new`` alone would count packets, not flows. Other ct mark bits are preserved."""
_MAX_NFT_NAME = 250


@dataclass(frozen=True)
class PolicyMatch:
    """What a policy matches; port ranges are inclusive ``(first, last)`` pairs."""

    protocol: str = "any"
    dst_ports: tuple[tuple[int, int], ...] = ()
    src_ports: tuple[tuple[int, int], ...] = ()
    dscp: int | None = None
    src_cidrs: tuple[str, ...] = ()
    dst_cidrs: tuple[str, ...] = ()


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
        """From one ``policies[]`` entry; ``path`` is the path in use (default the primary path)."""
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
    return ROUTE_TABLE_BASE + (mark & ~MARK_RANGE_MASK)


def ordered(policies: Iterable[RoutingPolicy]) -> list[RoutingPolicy]:
    """Evaluation order: higher priority first, then name (as the operator renders them)."""
    return sorted(policies, key=lambda p: (-p.priority, p.name))


def policy_tags(policies: Iterable[RoutingPolicy]) -> dict[str, int]:
    """The ``policy_path`` map key of each policy, by evaluation order."""
    return {p.name: POLICY_TAG_BASE + i for i, p in enumerate(ordered(policies), start=1)}


def _nft_name(prefix: str, policy: str) -> str:
    """An nft object name: Kubernetes names reach 253 characters, nft's limit is 256: long ones are hashed."""
    name = f"{prefix}_{policy}"
    if len(name) <= _MAX_NFT_NAME:
        return name
    digest = hashlib.sha256(policy.encode()).hexdigest()[:10]
    return f"{name[: _MAX_NFT_NAME - 11]}-{digest}"


def counter_names(policy: str) -> tuple[str, str]:
    """The names of a policy's byte counter and its new-connection counter."""
    return _nft_name("pol", policy), _nft_name("new", policy)


def _set(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"


def _ports(ranges: Sequence[tuple[int, int]]) -> str:
    return _set([str(a) if a == b else f"{a}-{b}" for a, b in ranges])


def _families(match: PolicyMatch) -> list[int | None]:
    """Which IP families need a rule: CIDRs and DSCP are family-specific, the rest is not."""
    lists = [cidrs for cidrs in (match.src_cidrs, match.dst_cidrs) if cidrs]
    if lists:
        return [
            f
            for f in (4, 6)
            if all(any(ipaddress.ip_network(c, strict=False).version == f for c in cidrs) for cidrs in lists)
        ]
    return [4, 6] if match.dscp is not None else [None]


def match_expressions(match: PolicyMatch) -> list[str]:
    """The nft match of a policy, one line per IP family it needs (empty: it can match nothing)."""
    rules = []
    for family in _families(match):
        parts: list[str] = []
        has_ports = bool(match.dst_ports or match.src_ports)
        if match.protocol in ("tcp", "udp"):
            parts.append(f"meta l4proto {match.protocol}")
        elif match.protocol == "icmp":
            parts.append(
                {4: "meta l4proto icmp", 6: "meta l4proto ipv6-icmp"}.get(
                    family or 0, "meta l4proto { icmp, ipv6-icmp }"
                )
            )
        elif has_ports:
            parts.append("meta l4proto { tcp, udp }")
        ip = "ip" if family == 4 else "ip6"
        for key, cidrs in (("saddr", match.src_cidrs), ("daddr", match.dst_cidrs)):
            mine = [
                str(ipaddress.ip_network(c, strict=False))
                for c in cidrs
                if ipaddress.ip_network(c, strict=False).version == family
            ]
            if mine:
                parts.append(f"{ip} {key} {_set(mine)}")
        if match.dscp is not None:
            parts.append(f"{ip} dscp {match.dscp}")
        if match.src_ports:
            parts.append(f"th sport {_ports(match.src_ports)}")
        if match.dst_ports:
            parts.append(f"th dport {_ports(match.dst_ports)}")
        rules.append(" ".join(parts))
    return rules


def _hex(value: int) -> str:
    return f"0x{value:08x}"


def render_nftables(
    table_name: str,
    policies: Iterable[RoutingPolicy],
    path_marks: Mapping[str, int],
    *,
    priorities: Mapping[str, int] | None = None,
    bypass_mark: int = WIREGUARD_FWMARK,
    ingress_exclude: Sequence[str] = (),
) -> str:
    """An ``nft -f`` script that atomically replaces ``inet <table_name>`` with the policies' rules.

    ``path_marks`` gives each path's mark; a policy whose path has no mark (or that has no path) is still
    counted, and left unmarked until :meth:`PathRouting.switch` gives it a path. ``priorities`` maps a
    policy to its htb class minor (``1:<minor>``).
    ``ingress_exclude`` names interfaces whose inbound traffic is not classified (e.g. the site's own
    tunnels when it is not a transit hub), so replies from peers do not inflate the counters.
    """
    policies = ordered(policies)
    tags = policy_tags(policies)
    priorities = priorities or {}
    lines = [f"table inet {table_name}", f"delete table inet {table_name}", f"table inet {table_name} {{"]
    for policy in policies:
        for name in counter_names(policy.name):
            lines.append(f"\tcounter {name} {{ }}")
    elements = [
        f"{_hex(tags[p.name])} : {_hex(path_marks[p.path])}"
        for p in policies
        if p.path is not None and p.path in path_marks
    ]
    lines += [f"\tmap {POLICY_MAP} {{", "\t\ttype mark : mark"]
    if elements:
        lines.append("\t\telements = { " + ", ".join(elements) + " }")
    lines.append("\t}")
    classify = [f"\t\tmeta mark {_hex(bypass_mark)} return"]
    postrouting = [f"\t\tmeta mark {_hex(bypass_mark)} return"]
    for index, policy in enumerate(policies):
        total, new = counter_names(policy.name)
        seen = _hex(FLOW_SEEN_CT_BIT)
        chain = [
            f"\tchain policy_{index} {{",
            f"\t\tct state new ct mark & {seen} == 0x00000000 ct mark set ct mark | {seen}"
            f' counter name "{new}"',
        ]
        tag = _hex(tags[policy.name])
        counted = f'\t\tcounter name "{total}" meta mark set {tag} meta mark set meta mark map @{POLICY_MAP}'
        # A policy with no path in the map stops at the lookup with the tag still set: clear it.
        lines += [*chain, counted, f"\t\tmeta mark {tag} meta mark set 0x00000000", "\t}"]
        for expr in match_expressions(policy.match):
            classify.append(f"\t\t{expr} goto policy_{index}".replace("\t\t ", "\t\t"))
            if policy.name in priorities:
                postrouting.append(
                    f"\t\t{expr} meta priority set 1:{priorities[policy.name]:x} accept".replace(
                        "\t\t ", "\t\t"
                    )
                )
    lines += ["\tchain classify {", *classify, "\t}"]
    lines += ["\tchain prerouting {", "\t\ttype filter hook prerouting priority mangle; policy accept;"]
    lines.append('\t\tiifname "lo" return')
    if ingress_exclude:
        lines.append(f"\t\tiifname {_set([json.dumps(i) for i in ingress_exclude])} return")
    lines += ["\t\tjump classify", "\t}"]
    lines += ["\tchain output {", "\t\ttype route hook output priority mangle; policy accept;"]
    lines += ["\t\tjump classify", "\t}"]
    lines += ["\tchain postrouting {", "\t\ttype filter hook postrouting priority mangle; policy accept;"]
    lines += [*postrouting, "\t}", "}"]
    return "\n".join(lines) + "\n"


def render_switch(table_name: str, tag: int, mark: int, *, replace: bool = True) -> str:
    """The ``nft -f`` transaction that points one policy tag at a path mark, atomically.

    nft 1.0.6 refuses to ``add`` an element whose key exists with another value and has no ``replace``,
    so an existing element (``replace``) is deleted and re-added in the same transaction.
    """
    key, value = _hex(tag), _hex(mark)
    delete = f"delete element inet {table_name} {POLICY_MAP} {{ {key} }}\n" if replace else ""
    return f"{delete}add element inet {table_name} {POLICY_MAP} {{ {key} : {value} }}\n"


def apply_nftables(script: str, netns: str | None = None, runner: Runner = run) -> None:
    """Load ``script`` with one ``nft -f -``: the kernel applies it as one transaction or not at all."""
    runner(["nft", "-f", "-"], netns=netns, input=script)


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


def read_counters(
    netns: str | None = None, table_name: str = TABLE_NAME, runner: Runner = run
) -> dict[str, PolicyCounters]:
    """Per policy: (packets, bytes, new_flows); empty when the table does not exist."""
    result = runner(["nft", "-j", "list", "counters", "table", "inet", table_name], netns=netns, check=False)
    if result.returncode != 0:
        return {}
    return parse_counters(json.loads(result.stdout))


class PathRouting:
    """The policy table of one namespace: full renders on config change, one small command on failover."""

    def __init__(
        self,
        netns: str | None = None,
        *,
        table_name: str = TABLE_NAME,
        bypass_mark: int = WIREGUARD_FWMARK,
        ingress_exclude: Sequence[str] = (),
        runner: Runner = run,
    ) -> None:
        self.netns = netns
        self.table_name = table_name
        self.bypass_mark = bypass_mark
        self.ingress_exclude = tuple(ingress_exclude)
        self._run = runner
        self._tags: dict[str, int] = {}
        self._marks: dict[str, int] = {}
        self._mapped: set[str] = set()

    def apply(
        self,
        policies: Sequence[RoutingPolicy],
        path_marks: Mapping[str, int],
        priorities: Mapping[str, int] | None = None,
    ) -> None:
        """Replace the whole table; each policy's ``path`` must be the path it uses now (after failovers)."""
        script = render_nftables(
            self.table_name,
            policies,
            path_marks,
            priorities=priorities,
            bypass_mark=self.bypass_mark,
            ingress_exclude=self.ingress_exclude,
        )
        apply_nftables(script, self.netns, self._run)
        self._tags = policy_tags(policies)
        self._marks = dict(path_marks)
        self._mapped = {p.name for p in policies if p.path is not None and p.path in path_marks}

    def switch(self, policy: str, to_path: str) -> None:
        """Send ``policy``'s subsequent packets down ``to_path``: one atomic map-element update."""
        if policy not in self._tags:
            raise KeyError(f"unknown policy {policy!r}: apply() the policies first")
        if to_path not in self._marks:
            raise KeyError(f"unknown path {to_path!r}: it has no mark")
        script = render_switch(
            self.table_name, self._tags[policy], self._marks[to_path], replace=policy in self._mapped
        )
        self._run(["nft", "-f", "-"], netns=self.netns, input=script)
        self._mapped.add(policy)

    def paths_in_use(self) -> dict[str, str]:
        """Policy -> path as the kernel's map says now (read back, so it survives an agent restart check)."""
        result = self._run(
            ["nft", "-j", "list", "map", "inet", self.table_name, POLICY_MAP], netns=self.netns
        )
        by_tag = {tag: name for name, tag in self._tags.items()}
        by_mark = {mark: name for name, mark in self._marks.items()}
        found: dict[str, str] = {}
        for item in json.loads(result.stdout).get("nftables", []):
            for tag, mark in (item.get("map") or {}).get("elem", []):
                if tag in by_tag and mark in by_mark:
                    found[by_tag[tag]] = by_mark[mark]
        return found


def _family_flag(version: int) -> list[str]:
    return ["-6"] if version == 6 else ["-4"]


def _route_key(dst: str, version: int) -> str:
    if dst == "default":
        return "::/0" if version == 6 else "0.0.0.0/0"
    return str(ipaddress.ip_network(dst, strict=False))


def ensure_path_route(
    path: str,
    mark: int,
    table_id: int,
    interface: str,
    destination_cidrs: Sequence[str],
    *,
    netns: str | None = None,
    runner: Runner = run,
) -> None:
    """``ip rule fwmark <mark> lookup <table_id>`` (added once) and exactly ``destination_cidrs`` via
    ``interface`` in that table (missing routes replaced in, stale ones deleted).

    ``path`` is only used in error messages. A marked packet whose destination is not in the table falls
    through to the next rule (``main``), so a policy never blackholes traffic it was not meant to carry.
    """
    wanted: dict[int, set[str]] = {4: set(), 6: set()}
    for cidr in destination_cidrs:
        network = ipaddress.ip_network(cidr, strict=False)
        wanted[network.version].add(str(network))
    if not destination_cidrs:
        raise ValueError(f"path {path!r} has no destination CIDRs to route")
    for version, cidrs in wanted.items():
        if not cidrs:
            continue
        flag = _family_flag(version)
        rules = json.loads(runner(["ip", "-j", *flag, "rule", "show"], netns=netns).stdout or "[]")
        if not any(_rule_mark(r) == mark and str(r.get("table")) == str(table_id) for r in rules):
            runner(
                [
                    "ip",
                    *flag,
                    "rule",
                    "add",
                    "priority",
                    str(RULE_PRIORITY),
                    "fwmark",
                    _hex(mark),
                    "lookup",
                    str(table_id),
                ],
                netns=netns,
            )
        # A table that never had a route does not exist yet: `ip route show` then fails, meaning empty.
        listed = runner(
            ["ip", "-j", *flag, "route", "show", "table", str(table_id)], netns=netns, check=False
        )
        shown = listed.stdout if listed.returncode == 0 else ""
        present = {_route_key(r["dst"], version) for r in json.loads(shown or "[]") if "dst" in r}
        for cidr in sorted(cidrs):
            runner(
                ["ip", *flag, "route", "replace", cidr, "dev", interface, "table", str(table_id)], netns=netns
            )
        for stale in sorted(present - cidrs):
            runner(["ip", *flag, "route", "del", stale, "table", str(table_id)], netns=netns, check=False)


def _rule_mark(rule: Mapping[str, Any]) -> int | None:
    mark = rule.get("fwmark")
    return int(str(mark), 0) if mark is not None else None


def remove_path_rules(
    netns: str | None = None, keep_marks: Iterable[int] = (), runner: Runner = run
) -> list[int]:
    """Delete our ``ip rule`` entries (marks in our range) except ``keep_marks``, and flush their tables.

    Returns the route tables that were flushed. Safe to call when there is nothing to remove.
    """
    keep = set(keep_marks)
    flushed: list[int] = []
    for version in (4, 6):
        flag = _family_flag(version)
        listed = runner(["ip", "-j", *flag, "rule", "show"], netns=netns, check=False)
        if listed.returncode != 0:
            continue
        for rule in json.loads(listed.stdout or "[]"):
            mark = _rule_mark(rule)
            if mark is None or mark & MARK_RANGE_MASK != PATH_MARK_BASE or mark in keep:
                continue
            table = str(rule.get("table"))
            runner(
                [
                    "ip",
                    *flag,
                    "rule",
                    "del",
                    "priority",
                    str(rule.get("priority")),
                    "fwmark",
                    _hex(mark),
                    "lookup",
                    table,
                ],
                netns=netns,
                check=False,
            )
            runner(["ip", *flag, "route", "flush", "table", table], netns=netns, check=False)
            if table.isdigit():
                flushed.append(int(table))
    return flushed
