"""The configuration a site's agent runs from, rendered as the typed :class:`AgentConfig`.

The Site controller stores it in a ConfigMap as ``config.json``, so it holds public material only: public
keys, endpoints, addresses, paths and policies. The private key stays in its Secret. Rendering is
deterministic (inputs are sorted), so the same inputs give byte-identical JSON and :func:`config_digest`
changes exactly when the agent has something new to apply.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence

from patronus.api import parsers
from patronus.api.agentconfig import (
    MAX_INTERFACE_NAME,
    ActionConfig,
    AgentConfig,
    FailoverConfig,
    InterfaceConfig,
    MatchConfig,
    MonitoringConfig,
    PathConfig,
    PeerConfig,
    PolicyConfig,
    QosConfig,
)
from patronus.api.path import Path
from patronus.api.policy import PathRef, Policy
from patronus.topology.peers import SiteView, WireGuardPeer

INTERFACE_PREFIX = "wg-"


def interface_names(underlays: Sequence[str]) -> dict[str, str]:
    """A Linux interface name for each underlay: ``wg-<underlay>``, cut to 15 characters, all distinct.

    Underlay names may be 15 characters themselves, so two of them can share a cut name; those get the
    underlay's index as a suffix instead. The result depends only on the ordered names.
    """
    ordered = list(dict.fromkeys(underlays))
    base = {name: (INTERFACE_PREFIX + name)[:MAX_INTERFACE_NAME] for name in ordered}
    clashing = {cut for cut, count in Counter(base.values()).items() if count > 1}
    used = {cut for cut in base.values() if cut not in clashing}
    names: dict[str, str] = {}
    for index, name in enumerate(ordered):
        candidate, attempt = base[name], index
        while candidate in clashing or (candidate in used and candidate != base[name]):
            suffix = str(attempt)
            candidate = (INTERFACE_PREFIX + name)[: MAX_INTERFACE_NAME - len(suffix)] + suffix
            attempt += len(ordered)
        used.add(candidate)
        names[name] = candidate
    return names


def _peer(peer: WireGuardPeer) -> PeerConfig:
    return PeerConfig(
        site=peer.site,
        public_key=peer.public_key,
        endpoint=peer.endpoint,
        allowed_ips=list(peer.allowed_ips),
        persistent_keepalive=peer.persistent_keepalive,
    )


def _interfaces(
    local: SiteView, peers_by_underlay: Mapping[str, Sequence[WireGuardPeer]]
) -> list[InterfaceConfig]:
    """One interface per underlay, primary first: the order says which link is preferred."""
    names = interface_names([underlay.name for underlay in local.underlays])
    return [
        InterfaceConfig(
            underlay=underlay.name,
            name=names[underlay.name],
            listen_port=underlay.listen_port,
            endpoint=underlay.endpoint,
            peers=[_peer(p) for p in sorted(peers_by_underlay.get(underlay.name, ()), key=lambda p: p.site)],
        )
        for underlay in local.underlays
    ]


def _overlay_address_of(peers: Sequence[WireGuardPeer], site: str) -> str | None:
    """The destination's overlay address, which is what the agent probes through the tunnel."""
    for peer in peers:
        if peer.site == site and peer.allowed_ips:
            return peer.allowed_ips[0].split("/", 1)[0]
    return None


def _path(
    path: Path, local: SiteView, peers_by_underlay: Mapping[str, Sequence[WireGuardPeer]]
) -> PathConfig:
    spec = path.spec
    underlay = spec.underlay or local.underlays[0].name
    names = interface_names([u.name for u in local.underlays])
    peers = peers_by_underlay.get(underlay, ())
    return PathConfig(
        name=path.metadata.name,
        destination=spec.destination.site_ref,
        destination_address=_overlay_address_of(peers, spec.destination.site_ref),
        underlay=underlay,
        interface=names.get(underlay),
        type=spec.type,
        monitoring=MonitoringConfig(
            enabled=spec.monitoring.enabled,
            interval_seconds=parsers.parse_duration(spec.monitoring.interval),
            probes_per_check=spec.monitoring.probes_per_check,
        ),
    )


def _ports(text: str | None) -> list[list[int]] | None:
    if text is None:
        return None
    return [[r.first, r.last] for r in parsers.parse_port_ranges(text)]


def _path_id(ref: PathRef | None) -> str | None:
    return ref.path_id if ref is not None else None


def render_policy(policy: Policy) -> PolicyConfig:
    """One policy as the agent reads it; the same wherever it is enforced."""
    spec = policy.spec
    match, action = spec.match, spec.action
    qos = action.qos
    return PolicyConfig(
        name=policy.metadata.name,
        priority=spec.priority,
        match=MatchConfig(
            protocol=match.protocol,
            dst_ports=_ports(match.dst_port_range),
            src_ports=_ports(match.src_port_range),
            dscp=match.dscp,
            src_cidrs=sorted(match.src_cidrs) if match.src_cidrs is not None else None,
            dst_cidrs=sorted(match.dst_cidrs) if match.dst_cidrs is not None else None,
        ),
        action=ActionConfig(
            type=action.type,
            primary_path=_path_id(action.primary_path),
            backup_path=_path_id(action.backup_path),
        ),
        qos=None
        if qos is None
        else QosConfig(
            class_=qos.class_,
            bandwidth_bps=parsers.parse_bandwidth(qos.bandwidth) if qos.bandwidth is not None else None,
        ),
        failover=FailoverConfig(
            threshold=spec.failover.threshold,
            cooldown_seconds=parsers.parse_duration(spec.failover.cooldown),
        ),
    )


def _enforced_at(policy: Policy, site: str) -> bool:
    """A policy with a primary path is enforced where that path starts; one without, everywhere."""
    primary = policy.spec.action.primary_path
    return primary is None or primary.site_ref == site


def enforced_policies(policies: Iterable[Policy], site: str) -> list[Policy]:
    """The policies enforced at ``site``, in the order its agent evaluates them: descending priority,
    then name."""
    return sorted(
        (p for p in policies if _enforced_at(p, site)), key=lambda p: (-p.spec.priority, p.metadata.name)
    )


def render_agent_config(
    local: SiteView,
    namespace: str,
    peers_by_underlay: Mapping[str, Sequence[WireGuardPeer]],
    paths: Sequence[Path],
    policies: Sequence[Policy],
    *,
    policy_renderer: Callable[[Policy], PolicyConfig] = render_policy,
) -> AgentConfig:
    """The agent configuration of ``local``: interfaces and peers, the paths it probes, its policies.

    Only Paths that start at ``local`` and Policies enforced there are kept, so the caller may pass the
    whole namespace. Paths are sorted by name; policies by descending priority, then name (the order the
    agent evaluates them). Durations are seconds, bandwidths bits per second, port ranges [first, last].
    ``policy_renderer`` lets a caller that renders many sites reuse each policy's rendering.
    """
    own_paths = sorted(
        (p for p in paths if p.spec.source.site_ref == local.name), key=lambda p: p.metadata.name
    )
    own_policies = enforced_policies(policies, local.name)
    return AgentConfig(
        site=local.name,
        namespace=namespace,
        public_key=local.public_key,
        overlay_address=local.overlay_address,
        subnets=sorted(local.subnets),
        interfaces=_interfaces(local, peers_by_underlay),
        paths=[_path(p, local, peers_by_underlay) for p in own_paths],
        policies=[policy_renderer(p) for p in own_policies],
    )


def config_json(config: AgentConfig) -> str:
    """The canonical JSON text of a config (``config.json``): equal configurations give equal text."""
    return config.to_json()


def config_digest(config: AgentConfig) -> str:
    """SHA-256 (hex) of :func:`config_json`."""
    return config_text_digest(config_json(config))


def config_text_digest(text: str) -> str:
    """:func:`config_digest` of the config whose :func:`config_json` is ``text``."""
    return hashlib.sha256(text.encode()).hexdigest()
