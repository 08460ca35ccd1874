"""What ``bench/tunnel.py`` loads onto the module tunnel for its policy variants, piece by piece, so the
report can attribute the cost of 500 policies: the nft policy table (and the path's ``ip rule``), the htb
classes, and conntrack (which the table's ``ct`` matches turn on for the whole namespace).

A :class:`Load` names the pieces; :func:`load` puts them in both namespaces and :func:`unload` removes
all of them again (table, rules and their routes, qdiscs), so the plain ``module`` variant measured after
it runs on a clean namespace.
"""

from __future__ import annotations

from dataclasses import dataclass

from patronus.agent.dataplane import cleanup, qos
from patronus.agent.dataplane.commands import run
from patronus.agent.dataplane.routing import (
    PathRouting,
    PolicyMatch,
    RoutingPolicy,
    apply_nftables,
    assign_path_marks,
    ensure_path_route,
    remove_path_rules,
    render_nftables,
    route_table_for,
)

STREAM_RATE_BPS = 10_000_000_000
SHAPED_RATE_BPS = 50_000_000
CT_ONLY = """table inet bench_ct {
\tchain prerouting { type filter hook prerouting priority mangle; policy accept; ct state new counter; }
\tchain output { type filter hook output priority mangle; policy accept; ct state new counter; }
}
"""
"""Conntrack on in the namespace (any ``ct`` match does it) with nothing else loaded."""


@dataclass(frozen=True)
class Load:
    """The pieces of a policy variant: ``table`` the agent's nft table (``conntrack=False``: with its
    ``ct`` rules stripped, attribution only), ``rule`` the path's ip rule and route table, ``htb`` the
    classes, ``ct_only`` a two-rule table that only turns conntrack on; ``untracked=False`` renders
    the table without the tunnel listen ports, so the encrypted packets are tracked (as before)."""

    table: bool = False
    rule: bool = False
    htb: bool = False
    conntrack: bool = True
    ct_only: bool = False
    untracked: bool = True


VARIANTS = {
    "full": Load(table=True, rule=True, htb=True),
    "nft": Load(table=True, rule=True),
    "htb": Load(htb=True),
    "rule": Load(rule=True),
    "ct": Load(ct_only=True),
    "full-noct": Load(table=True, rule=True, htb=True, conntrack=False),
    "full-tracked": Load(table=True, rule=True, htb=True, untracked=False),
}
"""Variant suffix (``module+<count>`` for ``full``, ``module+<suffix>`` otherwise) -> what it loads."""


def policies_for(count: int, port: int) -> list[RoutingPolicy]:
    """``count`` policies; the stream's (tcp to ``port``) has the lowest priority, so a plain scan would
    try every data packet against every other policy first (the port verdict maps skip them)."""
    policies = [
        RoutingPolicy(
            f"p{i:04d}",
            1000 - i % 900,
            PolicyMatch(
                ("tcp", "udp")[i % 2],
                dst_ports=((10000 + i, 10000 + i),),
                dscp=(i % 64) if i % 3 == 0 else None,
                dst_cidrs=(f"10.{i // 256}.{i % 256}.0/24",) if i % 5 == 0 else (),
            ),
            "bench",
            "business-critical",
            SHAPED_RATE_BPS if i % 2 == 0 else None,
        )
        for i in range(count - 1)
    ]
    stream = PolicyMatch("tcp", dst_ports=((port, port),))
    return [*policies, RoutingPolicy("stream", 0, stream, "bench", "bulk", STREAM_RATE_BPS)]


def _without_conntrack(script: str) -> str:
    """The table with every rule that uses conntrack removed (the flow counters then stay at zero)."""
    return "".join(line for line in script.splitlines(keepends=True) if " ct " not in line)


@dataclass(frozen=True)
class Where:
    """One side: its namespace, its module tunnel and the peer's overlay address, the listen ports."""

    netns: str
    interface: str
    peer_overlay: str
    listen_ports: tuple[int, ...]


def load(what: Load, where: Where, policies: list[RoutingPolicy]) -> None:
    """``what`` on one side."""
    netns, interface, listen_ports = where.netns, where.interface, where.listen_ports
    marks = assign_path_marks(["bench"])
    shaped = [(p.name, p.qos_class or "default", int(p.bandwidth_bps)) for p in policies if p.bandwidth_bps]
    minors = qos.class_minors(name for name, _, _ in shaped)
    if what.rule:
        mark = marks["bench"]
        route = [f"{where.peer_overlay}/32"]
        ensure_path_route("bench", mark, route_table_for(mark), interface, route, netns=netns)
    ports = listen_ports if what.untracked else ()
    if what.table and what.conntrack:
        PathRouting(netns).apply(policies, marks, priorities=minors, tunnel_ports=ports)
    elif what.table:
        script = render_nftables("patronus", policies, marks, priorities=minors, tunnel_ports=ports)
        apply_nftables(_without_conntrack(script), netns)
    if what.ct_only:
        apply_nftables(CT_ONLY, netns)
    if what.htb:
        qos.apply_htb(interface, shaped, STREAM_RATE_BPS, netns=netns)


def unload(netns: str, interface: str) -> None:
    """Everything :func:`load` may have put in ``netns``."""
    cleanup.delete_table(netns)
    run(["nft", "delete", "table", "inet", "bench_ct"], netns=netns, check=False)
    remove_path_rules(netns)
    qos.clear(interface, netns)
