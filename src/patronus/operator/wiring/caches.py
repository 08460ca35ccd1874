"""The operator's caches: one informer per kind (per watched namespace), with the indexes it needs.

The Sites' children are cached only where the operator made them (``app.kubernetes.io/managed-by``), one
cache per row of ``site.kinds.CHILD_KINDS``; Secrets only when they carry a site label (the operator's,
and those users label for their site's ``privateKeySecretRef``), so no other Secret is ever read.
"""

from __future__ import annotations

from patronus.kube.resource import CONFIG_MAP, MESH, PATH, POLICY, SECRET, SITE
from patronus.operator import indexes
from patronus.operator.context import Caches
from patronus.operator.site.kinds import CHILD_KINDS
from patronus.runtime.manager import Manager


def build_caches(manager: Manager) -> Caches:
    children = {
        child.resource.kind: manager.cache(child.resource, label_selector=child.selector)
        for child in CHILD_KINDS
    }
    caches = Caches(
        sites=manager.cache(SITE),
        paths=manager.cache(PATH),
        policies=manager.cache(POLICY),
        meshes=manager.cache(MESH),
        children=children,
    )
    caches.paths.add_index(indexes.BY_SOURCE, indexes.path_source)
    caches.paths.add_index(indexes.BY_DESTINATION, indexes.path_destination)
    caches.meshes.add_index(indexes.BY_MESH_SITE, indexes.mesh_sites)
    caches.policies.add_index(indexes.BY_ENFORCING_SITE, indexes.policy_sites)
    caches.policies.add_index(indexes.BY_PATH, indexes.policy_paths)
    caches.sites.add_index(indexes.BY_PEER, indexes.site_peers)
    caches.sites.add_index(indexes.BY_REPORTED_POLICY, indexes.site_reported_policies)
    caches.sites.add_index(indexes.BY_LABEL_VALUE, indexes.site_label_values)
    caches.sites.add_index(indexes.BY_PUBLIC_KEY, indexes.site_public_key)
    caches.sites.add_index(indexes.BY_SUBNET, indexes.site_subnets)
    caches.sites.add_index(indexes.BY_SUBNET_ANCESTOR, indexes.site_subnet_ancestors)
    caches.sites.add_index(indexes.BY_ENDPOINT_ANCESTOR, indexes.site_endpoint_ancestors)
    caches.child(SECRET).add_index(indexes.BY_PUBLIC_KEY, indexes.secret_public_key)
    caches.child(CONFIG_MAP).add_index(indexes.BY_OVERLAY_ADDRESS, indexes.config_map_overlay_address)
    return caches
