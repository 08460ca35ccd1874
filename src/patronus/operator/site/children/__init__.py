"""The Kubernetes objects a Site owns, as JSON-ready manifests for server-side apply. Pure: no I/O.

A Site in the cluster runs one agent: a Deployment with its ServiceAccount, a Role that lets it read its own
Site, Paths, ConfigMap and key Secret (by name, nothing else), a ConfigMap holding its rendered
configuration, a Secret with the WireGuard key when the operator generated it, a UDP LoadBalancer Service
peers dial, and a PersistentVolumeClaim when the site asks for storage. An external site (its agent runs
outside the cluster) gets only the identity and RBAC children, so its agent can authenticate and read.

Every manifest is built from scratch on every reconcile and compared with what the cache holds, so the
builders are deterministic (equal inputs give equal dicts) and never emit empty maps or lists: the API
server drops those, and a field it drops would look like a difference forever.

Modules: ``names`` (names, labels, owner), ``data`` (key Secret, ConfigMap), ``rbac`` (ServiceAccount,
Role, RoleBinding, heartbeat Lease), ``workload`` (Deployment, Service, PVC).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from patronus.api.site import Site
from patronus.operator.config import OperatorConfig
from patronus.operator.site.children.data import CONFIG_KEY, agent_config_map, key_secret
from patronus.operator.site.children.names import (
    OVERLAY_ADDRESS_ANNOTATION,
    SITE_LABEL,
    ChildNames,
    child_names,
    site_identity,
    site_label_value,
)
from patronus.operator.site.children.rbac import (
    agent_role,
    agent_role_binding,
    heartbeat_lease,
    service_account,
)
from patronus.operator.site.children.workload import (
    agent_deployment,
    data_pvc,
    storage_request,
    wireguard_service,
)

__all__ = [
    "CONFIG_KEY",
    "OVERLAY_ADDRESS_ANNOTATION",
    "SITE_LABEL",
    "ChildNames",
    "child_names",
    "desired_children",
    "site_label_value",
]


def desired_children(
    site_obj: Mapping[str, Any],
    site: Site,
    config: OperatorConfig,
    *,
    external: bool,
    secret_name: str | None,
    generated_key: tuple[str, str] | None,
    config_json: str,
    config_digest: str,
    path_names: Sequence[str],
    overlay_address: str | None = None,
) -> list[dict[str, Any]]:
    """Every child of the Site in apply order: what a child refers to is applied before it.

    ``generated_key`` is (private, public) when the operator made the key; it is then kept in the
    ``{site}-wireguard`` Secret. ``secret_name`` names the Secret with the private key otherwise (none for
    an external site). An external site gets no Deployment, PVC or Service.
    """
    site_name, _ = site_identity(site_obj)
    names = child_names(site_name)
    if generated_key is not None:
        if external:
            raise ValueError(f"Site {site_name} is external: its agent holds its own key")
        if secret_name not in (None, names.secret):
            raise ValueError(f"Site {site_name}: a generated key lives in Secret {names.secret}")
        if generated_key[0] in config_json:
            raise ValueError(f"Site {site_name}: the agent config contains the private key")
        secret_name = names.secret
    if external:
        secret_name = None
    children = [key_secret(site_obj, *generated_key)] if generated_key is not None else []
    children += [
        agent_config_map(site_obj, config_json, config_digest, overlay_address=overlay_address),
        service_account(site_obj),
        agent_role(site_obj, path_names=path_names, secret_name=secret_name),
        agent_role_binding(site_obj),
        heartbeat_lease(site_obj),
    ]
    if external:
        return children
    children.append(agent_deployment(site_obj, site, config, secret_name=secret_name))
    storage = storage_request(site)
    if storage:
        children.append(data_pvc(site_obj, storage))
    children.append(wireguard_service(site_obj, site))
    return children
