"""Policy routing: nftables marks each policy's packets with its path's mark; ``ip rule`` routes by mark.

The table itself is rendered by :mod:`patronus.agent.dataplane.policytable` (its names are re-exported
here). This module applies it (:class:`PathRouting`: a full render on configuration change, one small
transaction on failover) and keeps each path's ``ip rule`` and routing table.

Marks are whole 32-bit values in ranges of our own (:data:`PATH_MARK_BASE`, :data:`POLICY_TAG_BASE`), so
:mod:`patronus.agent.dataplane.cleanup` can find our ``ip rule`` entries by mark. Every value that reaches
``ip`` is checked by :mod:`patronus.agent.dataplane.validate` where the command is built, including values
read back from the kernel before they are passed to ``ip rule del``.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from patronus.agent.dataplane import validate
from patronus.agent.dataplane.commands import Runner, run
from patronus.agent.dataplane.policytable import (
    FLOW_SEEN_CT_BIT,
    MARK_RANGE_MASK,
    PATH_MARK_BASE,
    POLICY_MAP,
    POLICY_TAG_BASE,
    ROUTE_TABLE_BASE,
    TABLE_NAME,
    WIREGUARD_FWMARK,
    PolicyCounters,
    PolicyMatch,
    RoutingPolicy,
    assign_path_marks,
    counter_names,
    hex_mark,
    match_expressions,
    ordered,
    parse_counters,
    policy_tags,
    render_nftables,
    render_switch,
    route_table_for,
)

__all__ = [
    "FLOW_SEEN_CT_BIT",
    "MARK_RANGE_MASK",
    "PATH_MARK_BASE",
    "POLICY_MAP",
    "POLICY_TAG_BASE",
    "ROUTE_TABLE_BASE",
    "RULE_PRIORITY",
    "TABLE_NAME",
    "PathRouting",
    "PolicyCounters",
    "PolicyMatch",
    "RoutingPolicy",
    "apply_nftables",
    "assign_path_marks",
    "counter_names",
    "ensure_path_route",
    "match_expressions",
    "ordered",
    "parse_counters",
    "policy_tags",
    "read_counters",
    "remove_path_rules",
    "render_nftables",
    "render_switch",
    "route_table_for",
]

RULE_PRIORITY = 10000
"""Before ``main`` (32766): a marked packet takes its path's table if it has a route for the destination."""


def apply_nftables(script: str, netns: str | None = None, runner: Runner = run) -> None:
    """Load ``script`` with one ``nft -f -``: the kernel applies it as one transaction or not at all."""
    runner(["nft", "-f", "-"], netns=netns, input=script)


def read_counters(
    netns: str | None = None, table_name: str = TABLE_NAME, runner: Runner = run
) -> dict[str, PolicyCounters]:
    """Per policy: (packets, bytes, new_flows); empty when the table does not exist."""
    table = validate.table(table_name)
    result = runner(["nft", "-j", "list", "counters", "table", "inet", table], netns=netns, check=False)
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
        self.table_name = validate.table(table_name)
        self.bypass_mark = validate.mark(bypass_mark)
        self.ingress_exclude = tuple(validate.interface(name) for name in ingress_exclude)
        self._run = runner
        self._tags: dict[str, int] = {}
        self._marks: dict[str, int] = {}
        self._mapped: set[str] = set()

    def apply(
        self,
        policies: Sequence[RoutingPolicy],
        path_marks: Mapping[str, int],
        priorities: Mapping[str, int] | None = None,
        tunnel_ports: Sequence[int] = (),
    ) -> None:
        """Replace the whole table; each policy's ``path`` must be the path it uses now (after failovers).
        ``tunnel_ports`` are the WireGuard listen ports (their encrypted packets skip conntrack).

        Raises :class:`~patronus.agent.dataplane.validate.UnsafeValue` before touching the kernel when a
        value is unsafe, and ``CommandError`` when nft refuses: either way the previous table stays.
        """
        script = render_nftables(
            self.table_name,
            policies,
            path_marks,
            priorities=priorities,
            bypass_mark=self.bypass_mark,
            ingress_exclude=self.ingress_exclude,
            tunnel_ports=tunnel_ports,
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


def _rule_command(flag: list[str], verb: str, priority: int, mark: int, table_id: int) -> list[str]:
    return [
        "ip", *flag, "rule", verb, "priority", str(validate.integer(priority, 0, 2**32 - 1, "rule priority")),
        "fwmark", hex_mark(mark), "lookup", str(validate.route_table(table_id)),
    ]  # fmt: skip


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
    mark, table_id = validate.mark(mark), validate.route_table(table_id)
    device = validate.interface(interface)
    if not destination_cidrs:
        raise ValueError(f"path {path!r} has no destination CIDRs to route")
    wanted: dict[int, set[str]] = {4: set(), 6: set()}
    for cidr in destination_cidrs:
        wanted[validate.cidr_version(cidr)].add(validate.cidr(cidr))
    table = str(table_id)
    for version, cidrs in wanted.items():
        if not cidrs:
            continue
        flag = _family_flag(version)
        rules = json.loads(runner(["ip", "-j", *flag, "rule", "show"], netns=netns).stdout or "[]")
        if not any(_rule_mark(r) == mark and str(r.get("table")) == table for r in rules):
            runner(_rule_command(flag, "add", RULE_PRIORITY, mark, table_id), netns=netns)
        # A table that never had a route does not exist yet: `ip route show` then fails, meaning empty.
        listed = runner(["ip", "-j", *flag, "route", "show", "table", table], netns=netns, check=False)
        shown = listed.stdout if listed.returncode == 0 else ""
        present = {_route_key(r["dst"], version) for r in json.loads(shown or "[]") if "dst" in r}
        for cidr in sorted(cidrs):
            runner(["ip", *flag, "route", "replace", cidr, "dev", device, "table", table], netns=netns)
        for stale in sorted(present - cidrs):
            runner(["ip", *flag, "route", "del", stale, "table", table], netns=netns, check=False)


def _rule_mark(rule: Mapping[str, Any]) -> int | None:
    mark = rule.get("fwmark")
    try:
        return int(str(mark), 0) if mark is not None else None
    except ValueError:
        return None


def _our_rule(rule: Mapping[str, Any], keep: set[int]) -> tuple[int, int, int] | None:
    """(priority, mark, table) of one of our rules read back from ``ip -j rule show``, else None."""
    mark = _rule_mark(rule)
    if mark is None or mark & MARK_RANGE_MASK != PATH_MARK_BASE or mark in keep:
        return None
    priority, table = rule.get("priority"), str(rule.get("table"))
    if not isinstance(priority, int) or not table.isdigit():
        return None
    try:
        return priority, mark, validate.route_table(int(table))
    except validate.UnsafeValue:
        return None


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
            ours = _our_rule(rule, keep)
            if ours is None:
                continue
            priority, mark, table_id = ours
            runner(_rule_command(flag, "del", priority, mark, table_id), netns=netns, check=False)
            runner(["ip", *flag, "route", "flush", "table", str(table_id)], netns=netns, check=False)
            flushed.append(table_id)
    return flushed
