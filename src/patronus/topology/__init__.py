"""Pure topology: the mesh graph, path names, overlay addresses, WireGuard peers, agent config, health.

No I/O and no Kubernetes client: the controllers read objects from the cache, call these functions, and
apply what they return. That keeps the decisions deterministic and testable without a cluster.
"""

from patronus.topology.addressing import (
    DEFAULT_OVERLAY_POOL,
    AddressPoolExhausted,
    allocate_overlay_address,
    probe_overlay_address,
)
from patronus.topology.agent_config import (
    config_digest,
    config_json,
    config_text_digest,
    enforced_policies,
    interface_names,
    render_agent_config,
    render_policy,
)
from patronus.topology.health import health_score, mean_health
from patronus.topology.mesh import PathPlan, mesh_hubs, path_name, plan_paths, site_pairs
from patronus.topology.peers import (
    SiteView,
    UnderlayView,
    WireGuardPeer,
    host_prefix,
    peer_names,
    peers_for,
    site_view,
)

__all__ = [
    "DEFAULT_OVERLAY_POOL",
    "AddressPoolExhausted",
    "PathPlan",
    "SiteView",
    "UnderlayView",
    "WireGuardPeer",
    "allocate_overlay_address",
    "config_digest",
    "config_json",
    "config_text_digest",
    "enforced_policies",
    "health_score",
    "host_prefix",
    "interface_names",
    "mean_health",
    "mesh_hubs",
    "path_name",
    "peer_names",
    "peers_for",
    "plan_paths",
    "probe_overlay_address",
    "render_agent_config",
    "render_policy",
    "site_pairs",
    "site_view",
]
