"""Wires the four controllers into a manager: caches, indexes, and which changes enqueue what."""

from __future__ import annotations

from patronus.kube.resource import (
    CONFIG_MAP,
    DEPLOYMENT,
    MESH,
    PATH,
    PERSISTENT_VOLUME_CLAIM,
    POLICY,
    ROLE,
    ROLE_BINDING,
    SECRET,
    SERVICE,
    SERVICE_ACCOUNT,
    SITE,
    ObjectKey,
)
from patronus.operator import indexes
from patronus.operator.config import OperatorConfig
from patronus.operator.controllers.context import Caches, Context
from patronus.operator.controllers.mesh import MeshReconciler
from patronus.operator.controllers.path import PathReconciler
from patronus.operator.controllers.policy import PolicyReconciler
from patronus.operator.controllers.site import SiteReconciler
from patronus.operator.gauges import ResourceGauges
from patronus.runtime.cache import Object
from patronus.runtime.manager import Manager

# A Mesh sums up thousands of Paths: their changes within this window give it one reconcile (its status
# may lag by as much; its own spec and its sites' changes are not delayed).
MESH_PATH_BATCH = 1.0


def spec_changed(old: Object, new: Object) -> bool:
    """The spec moved (metadata.generation), not just the status."""
    return bool(old.get("metadata", {}).get("generation") != new.get("metadata", {}).get("generation"))


def peer_identity_changed(old: Object, new: Object) -> bool:
    """What a peer's configuration reads from a site: its spec, public key and overlay address (a
    heartbeat, which changes only lastHeartbeatTime every few seconds, concerns no peer)."""
    old_status, new_status = old.get("status") or {}, new.get("status") or {}
    return spec_changed(old, new) or any(
        old_status.get(field) != new_status.get(field) for field in ("publicKey", "overlayAddress")
    )


def path_summary_changed(old: Object, new: Object) -> bool:
    """What a site reads from its Paths: their spec, state and health score (an agent rewrites a Path's
    status on every check; when only lastChecked moved, the site has nothing new to say)."""
    old_status, new_status = old.get("status") or {}, new.get("status") or {}
    return (
        spec_changed(old, new)
        or old_status.get("state") != new_status.get("state")
        or (old_status.get("health") or {}).get("healthScore")
        != (new_status.get("health") or {}).get("healthScore")
    )


def _without_status(obj: Object) -> Object:
    metadata = {
        k: v for k, v in (obj.get("metadata") or {}).items() if k not in ("resourceVersion", "managedFields")
    }
    return {**{k: v for k, v in obj.items() if k != "status"}, "metadata": metadata}


def more_than_status_changed(old: Object, new: Object) -> bool:
    """Something a Site's child is built from moved: not only its status (kube-controller-manager
    rewrites a Deployment's status as its pods come and go, which concerns no Site)."""
    return _without_status(old) != _without_status(new)


def build_caches(manager: Manager) -> Caches:
    children = indexes.MANAGED_BY_SELECTOR
    caches = Caches(
        sites=manager.cache(SITE),
        paths=manager.cache(PATH),
        policies=manager.cache(POLICY),
        meshes=manager.cache(MESH),
        secrets=manager.cache(SECRET, label_selector=children),
        config_maps=manager.cache(CONFIG_MAP, label_selector=children),
        service_accounts=manager.cache(SERVICE_ACCOUNT, label_selector=children),
        roles=manager.cache(ROLE, label_selector=children),
        role_bindings=manager.cache(ROLE_BINDING, label_selector=children),
        deployments=manager.cache(DEPLOYMENT, label_selector=children),
        pvcs=manager.cache(PERSISTENT_VOLUME_CLAIM, label_selector=children),
        services=manager.cache(SERVICE, label_selector=children),
    )
    caches.paths.add_index(indexes.BY_SOURCE, indexes.path_source)
    caches.paths.add_index(indexes.BY_DESTINATION, indexes.path_destination)
    caches.meshes.add_index(indexes.BY_MESH_SITE, indexes.mesh_sites)
    caches.policies.add_index(indexes.BY_ENFORCING_SITE, indexes.policy_sites)
    caches.policies.add_index(indexes.BY_PATH, indexes.policy_paths)
    caches.sites.add_index(indexes.BY_PEER, indexes.site_peers)
    caches.sites.add_index(indexes.BY_OVERLAY_ADDRESS, indexes.site_overlay_address)
    return caches


def register(manager: Manager, config: OperatorConfig) -> None:
    """Add the Site, Mesh, Path and Policy controllers (and the per-kind gauges) to ``manager``."""
    caches = build_caches(manager)
    ctx = Context(
        caches=caches, client=manager.client, events=manager.events, config=config, clock=manager.clock
    )

    def sites_related_to_site(obj: Object) -> list[ObjectKey]:
        """A site's key, address or endpoints changed: every site that peers with it re-renders."""
        meta = obj["metadata"]
        namespace, name = meta.get("namespace") or "", meta["name"]
        related = {
            ObjectKey(namespace, peer)
            for peer in (obj.get("spec") or {}).get("mesh", {}).get("peerWith") or []
        }
        related |= set(
            indexes.keys_from_refs(
                [
                    indexes.ref(namespace, p["metadata"]["name"])
                    for p in caches.sites.by_index(indexes.BY_PEER, indexes.ref(namespace, name))
                ]
            )
        )
        for mesh in caches.meshes.by_index(indexes.BY_MESH_SITE, indexes.ref(namespace, name)):
            related |= {ObjectKey(namespace, site) for site in (mesh.get("spec") or {}).get("sites") or []}
        related.discard(ObjectKey(namespace, name))
        return sorted(related)

    def sites_of_mesh(obj: Object) -> list[ObjectKey]:
        return indexes.keys_from_refs(indexes.mesh_sites(obj))

    def source_site_of_path(obj: Object) -> list[ObjectKey]:
        return indexes.keys_from_refs(indexes.path_source(obj))

    def sites_of_policy(obj: Object) -> list[ObjectKey]:
        refs = indexes.policy_sites(obj)
        namespace = obj["metadata"].get("namespace") or ""
        if refs == [indexes.ref(namespace, indexes.ALL_SITES)]:
            return [ObjectKey.of(site) for site in caches.sites.list(namespace)]
        return indexes.keys_from_refs(refs)

    def meshes_of_site(obj: Object) -> list[ObjectKey]:
        namespace = obj["metadata"].get("namespace") or ""
        return [
            ObjectKey.of(mesh)
            for mesh in caches.meshes.by_index(
                indexes.BY_MESH_SITE, indexes.ref(namespace, obj["metadata"]["name"])
            )
        ]

    def owning_mesh_of_path(obj: Object) -> list[ObjectKey]:
        namespace = obj["metadata"].get("namespace") or ""
        return [
            ObjectKey(namespace, o["name"])
            for o in obj["metadata"].get("ownerReferences") or []
            if o.get("kind") == "Mesh"
        ]

    def paths_of_site(obj: Object) -> list[ObjectKey]:
        namespace = obj["metadata"].get("namespace") or ""
        site = indexes.ref(namespace, obj["metadata"]["name"])
        found = caches.paths.by_index(indexes.BY_SOURCE, site) + caches.paths.by_index(
            indexes.BY_DESTINATION, site
        )
        return [ObjectKey.of(path) for path in found]

    def policies_of_path(obj: Object) -> list[ObjectKey]:
        namespace = obj["metadata"].get("namespace") or ""
        found = caches.policies.by_index(indexes.BY_PATH, indexes.ref(namespace, obj["metadata"]["name"]))
        return [ObjectKey.of(policy) for policy in found]

    def policies_of_site(obj: Object) -> list[ObjectKey]:
        namespace = obj["metadata"].get("namespace") or ""
        return [
            ObjectKey.of(p)
            for p in caches.policies.by_index(
                indexes.BY_ENFORCING_SITE, indexes.ref(namespace, obj["metadata"]["name"])
            )
        ]

    site_controller = manager.controller("site", SiteReconciler(ctx), SITE)
    for child in (
        caches.secrets,
        caches.config_maps,
        caches.service_accounts,
        caches.roles,
        caches.role_bindings,
        caches.deployments,
        caches.pvcs,
        caches.services,
    ):
        site_controller.owns(child, on_update=more_than_status_changed)
    (
        site_controller.watches(caches.sites, sites_related_to_site, on_update=peer_identity_changed)
        .watches(caches.meshes, sites_of_mesh, on_update=spec_changed)
        .watches(caches.paths, source_site_of_path, on_update=path_summary_changed)
        .watches(caches.policies, sites_of_policy, on_update=spec_changed)
    )

    (
        manager.controller("mesh", MeshReconciler(ctx), MESH)
        .watches(caches.sites, meshes_of_site, on_update=spec_changed)
        .watches(caches.paths, owning_mesh_of_path, on_update=path_summary_changed, batch=MESH_PATH_BATCH)
    )

    (
        manager.controller("path", PathReconciler(ctx), PATH).watches(
            caches.sites, paths_of_site, on_update=spec_changed
        )
    )

    (
        manager.controller("policy", PolicyReconciler(ctx), POLICY)
        .watches(caches.paths, policies_of_path, on_update=spec_changed)
        .watches(caches.sites, policies_of_site, on_update=spec_changed)
    )

    ResourceGauges(caches).register(manager.metrics.registry)
