"""The data plane a configuration asks for, computed as values with no I/O; :mod:`patronus.agent.applier`
makes the kernel match it.

Routing model: every underlay has a mark and a routing table that reaches all peers (their overlay
addresses and subnets) through that underlay's WireGuard interface. A Path is (destination, underlay), so
steering a policy to a Path means giving its packets that underlay's mark; a failover is one nft map
update. Probes carry their path's mark (SO_MARK) so they measure the tunnel they stand for, and replies
leave by the tunnel the probe came in on (a conntrack mark), so one underlay's failure never looks like
another's. Unmatched traffic follows the main table, through the primary (first) underlay, until the
steering moves a destination elsewhere.

Every name here comes from a validated :class:`~patronus.api.agentconfig.AgentConfig` (interface names
match ``[a-z0-9-]``, addresses and prefixes parse), so nothing can be read by ``nft`` as syntax.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from patronus.agent.dataplane import qos, validate
from patronus.agent.dataplane.routing import PolicyMatch, RoutingPolicy, assign_path_marks
from patronus.agent.dataplane.wireguard import PeerSpec
from patronus.api.agentconfig import AgentConfig, InterfaceConfig, MatchConfig, PolicyConfig

REPLY_TABLE = "patronus_replies"
"""The nftables table that sends replies back through the tunnel their flow arrived on."""


class NotReady(RuntimeError):
    """The configuration cannot be applied yet (for example no overlay address assigned)."""


@dataclass(frozen=True)
class InterfacePlan:
    """One WireGuard interface, its peers, and what its underlay's routing table reaches."""

    name: str
    underlay: str
    listen_port: int
    mark: int
    peers: tuple[PeerSpec, ...]
    destinations: tuple[str, ...]


@dataclass(frozen=True)
class ProberSpec:
    """How to probe one Path: its far end's overlay address, through which underlay, how often."""

    target: str
    mark: int
    interval: float
    probes: int


@dataclass(frozen=True)
class DataPlanePlan:
    """Everything the applier installs for one configuration."""

    overlay: str
    interfaces: tuple[InterfacePlan, ...]
    main_routes: tuple[str, ...]
    """Prefixes that unmarked traffic reaches through the primary interface."""
    path_marks: Mapping[str, int]
    probers: Mapping[str, ProberSpec]
    policies: tuple[PolicyConfig, ...]
    shaped: tuple[qos.QosEntry, ...]
    """(policy, QoS class, rate) of every policy with a bandwidth: one htb class each, on every tunnel."""
    reply_script: str

    @property
    def primary_interface(self) -> str | None:
        return self.interfaces[0].name if self.interfaces else None

    @property
    def interface_names(self) -> list[str]:
        return [iface.name for iface in self.interfaces]


def _interface_plan(iface: InterfaceConfig, mark: int) -> InterfacePlan:
    peers = tuple(
        PeerSpec.create(
            public_key=peer.public_key,
            endpoint=peer.endpoint,
            allowed_ips=peer.allowed_ips,
            persistent_keepalive=peer.persistent_keepalive,
        )
        for peer in iface.peers
    )
    destinations = tuple(sorted({cidr for peer in iface.peers for cidr in peer.allowed_ips}))
    return InterfacePlan(iface.name, iface.underlay, iface.listen_port, mark, peers, destinations)


def _probers(config: AgentConfig, marks: Mapping[str, int]) -> dict[str, ProberSpec]:
    wanted: dict[str, ProberSpec] = {}
    for path in config.paths:
        monitoring = path.monitoring
        if not monitoring.enabled or not path.destination_address or path.underlay not in marks:
            continue
        wanted[path.name] = ProberSpec(
            path.destination_address,
            marks[path.underlay],
            monitoring.interval_seconds,
            monitoring.probes_per_check,
        )
    return wanted


def plan_dataplane(config: AgentConfig) -> DataPlanePlan:
    """The data plane for ``config``; :class:`NotReady` while the site has no overlay address."""
    if not config.overlay_address:
        raise NotReady("no overlay address assigned yet")
    marks = assign_path_marks(iface.underlay for iface in config.interfaces)
    interfaces = tuple(_interface_plan(iface, marks[iface.underlay]) for iface in config.interfaces)
    shaped = tuple(
        (p.name, p.qos.class_, p.qos.bandwidth_bps)
        for p in config.policies
        if p.qos is not None and p.qos.bandwidth_bps
    )
    return DataPlanePlan(
        overlay=config.overlay_address,
        interfaces=interfaces,
        main_routes=interfaces[0].destinations if interfaces else (),
        path_marks={p.name: marks[p.underlay] for p in config.paths if p.underlay in marks},
        probers=_probers(config, marks),
        policies=tuple(config.policies),
        shaped=shaped,
        reply_script=render_reply_marking([(iface.name, iface.mark) for iface in interfaces]),
    )


def _ports(ranges: Sequence[Sequence[int]] | None) -> tuple[tuple[int, int], ...]:
    return tuple((first, last) for first, last in ranges or ())


def policy_match(match: MatchConfig) -> PolicyMatch:
    return PolicyMatch(
        protocol=match.protocol,
        dst_ports=_ports(match.dst_ports),
        src_ports=_ports(match.src_ports),
        dscp=match.dscp,
        src_cidrs=tuple(match.src_cidrs or ()),
        dst_cidrs=tuple(match.dst_cidrs or ()),
    )


def routing_policies(plan: DataPlanePlan, paths: Mapping[str, str | None]) -> list[RoutingPolicy]:
    """The policies as the nft table renders them, each on ``paths[name]`` (default its primary path).

    A policy whose path has no mark (no tunnel for it yet) is installed unrouted: counted, not steered.
    """
    policies = []
    for policy in plan.policies:
        path = paths.get(policy.name, policy.action.primary_path)
        policies.append(
            RoutingPolicy(
                name=policy.name,
                priority=policy.priority,
                match=policy_match(policy.match),
                path=path if path in plan.path_marks else None,
                qos_class=policy.qos.class_ if policy.qos else None,
                bandwidth_bps=policy.qos.bandwidth_bps if policy.qos else None,
            )
        )
    return policies


def qos_minors(plan: DataPlanePlan) -> dict[str, int]:
    """The htb class of each shaped policy: the same numbering :func:`qos.render_htb` gives its classes,
    so the ``meta priority`` the nft table sets always names a class that exists."""
    return qos.class_minors(name for name, _, _ in plan.shaped)


def render_reply_marking(interfaces: Sequence[tuple[str, int]]) -> str:
    """An ``nft -f`` script: answer through the tunnel a flow arrived on (conntrack remembers it).

    Forwarded flows too: a flow a peer opened over lte gets its replies back over lte, not over the
    primary (which may be the very link that failed and made the peer move to lte).
    """
    # Checked where they become nft syntax, whatever the configuration model already checked.
    interfaces = [(validate.interface(name), validate.mark(mark)) for name, mark in interfaces]
    lines = [
        f"table inet {REPLY_TABLE}",
        f"delete table inet {REPLY_TABLE}",
        f"table inet {REPLY_TABLE} {{",
        "\tchain input {",
        "\t\ttype filter hook input priority mangle; policy accept;",
    ]
    lines += [f'\t\tiifname "{name}" ct mark set {hex(mark)}' for name, mark in interfaces]
    lines += ["\t}", "\tchain output {", "\t\ttype route hook output priority mangle; policy accept;"]
    lines += [f"\t\tmeta mark 0 ct mark {hex(mark)} meta mark set {hex(mark)}" for _, mark in interfaces]
    tunnels = ", ".join(f'"{name}"' for name, _ in interfaces) or '"-"'
    lines += [
        "\t}",
        "\tchain prerouting {",
        "\t\ttype filter hook prerouting priority mangle - 10; policy accept;",
    ]
    lines += [f'\t\tiifname "{name}" ct state new ct mark set {hex(mark)}' for name, mark in interfaces]
    lines += [
        f"\t\tiifname != {{ {tunnels} }} meta mark 0 ct mark {hex(mark)} meta mark set {hex(mark)}"
        for _, mark in interfaces
    ]
    lines += ["\t}", "}"]
    return "\n".join(lines) + "\n"
