"""Wires the four controllers into a manager: which changes enqueue what, through named mappers."""

from __future__ import annotations

from functools import partial

from patronus.api.reporting import STATUS_REFRESH
from patronus.kube.resource import CONFIG_MAP, LEASE, MESH, PATH, POLICY, SECRET, SITE
from patronus.operator.config import OperatorConfig
from patronus.operator.context import Context
from patronus.operator.gauges import ResourceGauges
from patronus.operator.mesh.reconciler import MeshReconciler
from patronus.operator.path.reconciler import PathReconciler
from patronus.operator.policy.reconciler import PolicyReconciler
from patronus.operator.site import heartbeats
from patronus.operator.site.reconciler import SiteReconciler
from patronus.operator.wiring import filters, mappers
from patronus.operator.wiring.caches import build_caches
from patronus.runtime.manager import Manager

# A Mesh sums up thousands of Paths: their changes within this window give it one reconcile (its status
# may lag by as much; its own spec and its sites' changes are not delayed).
MESH_PATH_BATCH = 1.0
# A Policy sums up its sites' reports: a change of where the policy stands (a failover) shows within a
# second; counters, which agents report once a minute (STATUS_REFRESH) each, within as long: a Policy
# enforced at 1,000 sites would otherwise rewrite its 1,000-entry site list many times a minute.
POLICY_STATE_BATCH = 1.0
POLICY_COUNTERS_BATCH = STATUS_REFRESH


def register(manager: Manager, config: OperatorConfig) -> None:
    """Add the Site, Mesh, Path and Policy controllers (and the per-kind gauges) to ``manager``."""
    caches = build_caches(manager)
    ctx = Context(
        caches=caches, client=manager.client, events=manager.events, config=config, clock=manager.clock
    )
    _site_controller(manager, ctx)
    _mesh_controller(manager, ctx)
    path = manager.controller("path", PathReconciler(ctx), PATH, on_update=filters.path_changed_beyond_check)
    paths_of_site = partial(mappers.paths_of_site, caches)
    path.watches(caches.sites, paths_of_site, on_update=filters.spec_or_agent_reporting_changed)
    _policy_controller(manager, ctx)
    ResourceGauges(caches).register(manager.metrics.registry)


def _site_controller(manager: Manager, ctx: Context) -> None:
    caches = ctx.caches
    site = manager.controller(
        "site", SiteReconciler(ctx), SITE, on_update=filters.site_changed_beyond_heartbeat
    )

    def requeue_stale() -> None:
        for key in heartbeats.gone_stale(caches.sites.list(), caches.child(LEASE).get, manager.clock.now()):
            site.queue.add(key)

    manager.every("heartbeats", heartbeats.SCAN_PERIOD, requeue_stale)
    for kind, child in caches.children.items():
        renewed = partial(filters.lease_renewal_matters, caches.sites) if kind == LEASE.kind else None
        site.owns(child, on_update=renewed or filters.more_than_status_changed)
    peers_of_owner = partial(mappers.peers_of_owning_site, caches)
    (
        site.watches(
            caches.sites, partial(mappers.sites_related_to_site, caches), on_update=filters.spec_changed
        )
        .watches(caches.child(SECRET), peers_of_owner, on_update=filters.public_key_changed)
        # A site reads back from its own key Secret only the pair it wrote: its own write's echo is news
        # to its peers (above), not to it.
        .watches(caches.child(SECRET), partial(mappers.site_of_key_secret, caches), skip_own_echoes=True)
        .watches(
            caches.child(SECRET),
            partial(mappers.sites_sharing_secret_key, caches),
            on_update=filters.public_key_changed,
        )
        .watches(caches.sites, partial(mappers.sites_in_conflict, caches), on_update=filters.spec_changed)
        .watches(caches.child(CONFIG_MAP), peers_of_owner, on_update=filters.overlay_address_changed)
        .watches(caches.meshes, mappers.sites_of_mesh, on_update=filters.spec_changed)
        .watches(caches.paths, mappers.source_site_of_path, on_update=filters.path_summary_changed)
        .watches(caches.policies, partial(mappers.sites_of_policy, caches), on_update=filters.spec_changed)
    )


def _mesh_controller(manager: Manager, ctx: Context) -> None:
    caches = ctx.caches
    (
        manager.controller("mesh", MeshReconciler(ctx), MESH)
        .watches(caches.sites, partial(mappers.meshes_of_site, caches), on_update=filters.spec_changed)
        .watches(
            caches.paths,
            partial(mappers.meshes_of_path, caches),
            on_update=filters.path_summary_changed,
            batch=MESH_PATH_BATCH,
        )
    )


def _policy_controller(manager: Manager, ctx: Context) -> None:
    caches = ctx.caches
    (
        manager.controller("policy", PolicyReconciler(ctx), POLICY)
        .watches(caches.paths, partial(mappers.policies_of_path, caches), on_update=filters.spec_changed)
        .watches(
            caches.sites,
            partial(mappers.policies_of_site, caches),
            on_update=filters.policy_states_changed,
            batch=POLICY_STATE_BATCH,
        )
        .watches(
            caches.sites,
            partial(mappers.policies_of_site, caches),
            on_update=filters.policy_reports_changed,
            batch=POLICY_COUNTERS_BATCH,
        )
        .watches(
            caches.sites,
            partial(mappers.namespace_wide_policies, caches),
            on_update=filters.never,
            batch=POLICY_STATE_BATCH,
        )
    )
