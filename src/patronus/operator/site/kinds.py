"""The one table of the kinds of object a Site owns: what each is called, and when it is applied.

Child names, the operator's caches of children, the events that requeue a Site and the order in which
its children are applied all come from this table, so adding a kind of child is one line here (and a
builder in ``site.children``).
"""

from __future__ import annotations

from dataclasses import dataclass

from patronus.kube.resource import (
    CONFIG_MAP,
    DEPLOYMENT,
    LEASE,
    PERSISTENT_VOLUME_CLAIM,
    ROLE,
    ROLE_BINDING,
    SECRET,
    SERVICE,
    SERVICE_ACCOUNT,
    ResourceKind,
)

MANAGED_BY_SELECTOR = "app.kubernetes.io/managed-by=patronus-operator"
# Secrets are cached when they carry a site label: the operator's key Secrets, and the Secrets users
# label for their site's privateKeySecretRef. The operator never reads any other Secret.
KEY_SECRET_SELECTOR = "sdwan.patronus.dev/site"


@dataclass(frozen=True, slots=True)
class ChildKind:
    resource: ResourceKind
    field: str
    """The attribute of :class:`~patronus.operator.site.children.names.ChildNames` holding its name."""
    suffix: str
    """The child is called ``{site}-{suffix}``."""
    dns1035: bool = False
    """Its name must also start with a letter (a Service's does)."""
    second_wave: bool = False
    """It refers to children of the first wave, so it is applied once those are stored: the Deployment
    mounts the Secret and ConfigMap and runs as the ServiceAccount; a RoleBinding to a Role that does
    not exist yet fails the API server's escalation check unless the operator may "bind", which it
    may not."""
    selector: str = MANAGED_BY_SELECTOR
    """Which objects of the kind the operator caches (and so ever reads)."""


CHILD_KINDS: tuple[ChildKind, ...] = (
    ChildKind(SECRET, "secret", "wireguard", selector=KEY_SECRET_SELECTOR),
    ChildKind(CONFIG_MAP, "config_map", "agent"),
    ChildKind(SERVICE_ACCOUNT, "service_account", "agent"),
    ChildKind(ROLE, "role", "agent"),
    ChildKind(ROLE_BINDING, "role_binding", "agent", second_wave=True),
    ChildKind(DEPLOYMENT, "deployment", "agent", second_wave=True),
    ChildKind(PERSISTENT_VOLUME_CLAIM, "pvc", "data"),
    ChildKind(SERVICE, "service", "wg", dns1035=True),
    ChildKind(LEASE, "lease", "agent"),
)
CHILD_KINDS_BY_NAME: dict[str, ChildKind] = {child.resource.kind: child for child in CHILD_KINDS}
