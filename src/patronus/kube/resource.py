"""Which API a kind lives at: group, version, plural, scope, and the REST paths built from them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import quote

from patronus.api.kinds import KINDS_BY_NAME, KindInfo


class ObjectKey(NamedTuple):
    """An object's identity within its kind; ``namespace`` is ``""`` for cluster-scoped objects."""

    namespace: str
    name: str

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> ObjectKey:
        metadata = obj["metadata"]
        return cls(metadata.get("namespace") or "", metadata["name"])

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


@dataclass(frozen=True, slots=True)
class ResourceKind:
    """A resource of the Kubernetes API; ``group`` is ``""`` for the core group."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def api_prefix(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    def collection_path(self, namespace: str | None = None) -> str:
        """The list/watch/create path: all namespaces when ``namespace`` is None."""
        if namespace and not self.namespaced:
            raise ValueError(f"{self.kind} is cluster-scoped; no namespace expected")
        if namespace:
            return f"{self.api_prefix}/namespaces/{quote(namespace, safe='')}/{self.plural}"
        return f"{self.api_prefix}/{self.plural}"

    def object_path(self, namespace: str | None, name: str, subresource: str | None = None) -> str:
        if self.namespaced and not namespace:
            raise ValueError(f"{self.kind} is namespaced; a namespace is required")
        path = f"{self.collection_path(namespace)}/{quote(name, safe='')}"
        return f"{path}/{subresource}" if subresource else path

    def __str__(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


CONFIG_MAP = ResourceKind("", "v1", "ConfigMap", "configmaps")
SECRET = ResourceKind("", "v1", "Secret", "secrets")
SERVICE = ResourceKind("", "v1", "Service", "services")
SERVICE_ACCOUNT = ResourceKind("", "v1", "ServiceAccount", "serviceaccounts")
PERSISTENT_VOLUME_CLAIM = ResourceKind("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims")
EVENT = ResourceKind("", "v1", "Event", "events")
NAMESPACE = ResourceKind("", "v1", "Namespace", "namespaces", namespaced=False)
DEPLOYMENT = ResourceKind("apps", "v1", "Deployment", "deployments")
ROLE = ResourceKind("rbac.authorization.k8s.io", "v1", "Role", "roles")
ROLE_BINDING = ResourceKind("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings")
LEASE = ResourceKind("coordination.k8s.io", "v1", "Lease", "leases")
CUSTOM_RESOURCE_DEFINITION = ResourceKind(
    "apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", namespaced=False
)


def custom_kind(info: KindInfo) -> ResourceKind:
    """The REST resource of one of our CRDs, from its definition in :mod:`patronus.api.kinds`."""
    return ResourceKind(info.group, info.version, info.kind, info.plural)


SITE = custom_kind(KINDS_BY_NAME["Site"])
PATH = custom_kind(KINDS_BY_NAME["Path"])
POLICY = custom_kind(KINDS_BY_NAME["Policy"])
MESH = custom_kind(KINDS_BY_NAME["Mesh"])

_REGISTRY: dict[tuple[str, str], ResourceKind] = {}


def register(kind: ResourceKind) -> ResourceKind:
    """Make ``kind`` known to :func:`kind_of` (so objects can be written without naming their kind)."""
    _REGISTRY[(kind.api_version, kind.kind)] = kind
    return kind


def kind_of(obj: Mapping[str, Any]) -> ResourceKind:
    """The registered kind of an object, from its ``apiVersion`` and ``kind``."""
    key = (str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
    try:
        return _REGISTRY[key]
    except KeyError:
        raise LookupError(f"unknown kind {key[1]!r} in {key[0]!r}; register() its ResourceKind") from None


for _kind in (
    CONFIG_MAP, SECRET, SERVICE, SERVICE_ACCOUNT, PERSISTENT_VOLUME_CLAIM, EVENT, NAMESPACE,
    DEPLOYMENT, ROLE, ROLE_BINDING, LEASE, CUSTOM_RESOURCE_DEFINITION, SITE, PATH, POLICY, MESH,
):  # fmt: skip
    register(_kind)
