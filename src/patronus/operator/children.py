"""The Kubernetes objects a Site owns, as JSON-ready manifests for server-side apply. Pure: no I/O.

A Site in the cluster runs one agent: a Deployment with its ServiceAccount, a Role that lets it read its own
Site, Paths, Policies, ConfigMap and key Secret (by name, nothing else), a ConfigMap holding its rendered
configuration, a Secret with the WireGuard key when the operator generated it, a UDP LoadBalancer Service
peers dial, and a PersistentVolumeClaim when the site asks for storage. An external site (its agent runs
outside the cluster) gets only the identity and RBAC children, so its agent can authenticate and read.

Every manifest is built from scratch on every reconcile and compared with what the cache holds, so the
builders are deterministic (equal inputs give equal dicts) and never emit empty maps or lists: the API
server drops those, and a field it drops would look like a difference forever.

Names: each child is named ``{site}-{suffix}``. Every child name is a DNS-1123 label (at most 63
characters, no dots) and the Service's also starts with a letter (DNS-1035); a site name that does not
fit is shortened and given a hash of the full name, so two sites never share a child.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from patronus.api.meta import API_GROUP, GROUP_VERSION
from patronus.api.parsers import canonical_quantity
from patronus.api.site import Site
from patronus.operator.config import OperatorConfig
from patronus.wireguard.keys import keys_match

SITE_LABEL = f"{API_GROUP}/site"
CONFIG_DIGEST_ANNOTATION = f"{API_GROUP}/config-digest"

AGENT_NAME = "patronus-agent"
COMPONENT = "sdwan-core"
MANAGED_BY = "patronus-operator"

CONFIG_KEY = "config.json"
PRIVATE_KEY = "privateKey"
PUBLIC_KEY = "publicKey"

CONFIG_DIR = "/etc/patronus"
KEYS_DIR = "/etc/patronus/keys"
DATA_DIR = "/var/lib/patronus"
KEY_FILE_MODE = 0o400

AGENT_CONTAINER = "agent"
HEALTH_PORT = 8081
HEALTH_PORT_NAME = "health"
LISTEN_PORT_NAME = "wireguard"

MAX_NAME_LENGTH = 63
_HASH_LENGTH = 10
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_PORT_NAME_LENGTH = 15  # IANA_SVC_NAME
_FIRST_UNPRIVILEGED_PORT = 1024

_READ = ("get", "list", "watch")
# get too: `kubectl patch --subresource=status` and client-go read the subresource before writing it.
_WRITE_STATUS = ("get", "patch", "update")


@dataclass(frozen=True, slots=True)
class ChildNames:
    """The names of every child of one Site, all in the Site's namespace."""

    secret: str
    config_map: str
    service_account: str
    role: str
    role_binding: str
    deployment: str
    pvc: str
    service: str

    def by_kind(self) -> dict[str, str]:
        """Each child's name by its kind."""
        return {
            "Secret": self.secret,
            "ConfigMap": self.config_map,
            "ServiceAccount": self.service_account,
            "Role": self.role,
            "RoleBinding": self.role_binding,
            "Deployment": self.deployment,
            "PersistentVolumeClaim": self.pvc,
            "Service": self.service,
        }


# -- names, labels, owner ---------------------------------------------------------------------------------


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:_HASH_LENGTH]


def _child_name(site_name: str, suffix: str, *, dns1035: bool = False) -> str:
    """``{site}-{suffix}``, or a shortened, hashed form when that is not a valid label of <= 63 chars.

    The hash covers the full site name, so sites that share a long prefix (or differ only by a dot) still
    get distinct children; the suffix stays last so a person can still tell what the object is.
    """
    name = f"{site_name}-{suffix}"
    pattern = _DNS_1035_LABEL if dns1035 else _DNS_LABEL
    if len(name) <= MAX_NAME_LENGTH and pattern.fullmatch(name):
        return name
    base = re.sub(r"[^a-z0-9-]", "-", site_name)
    if dns1035 and not base[:1].isalpha():
        base = f"s-{base}"
    room = MAX_NAME_LENGTH - len(suffix) - _HASH_LENGTH - 2
    return f"{base[:room].rstrip('-')}-{_hash(site_name)}-{suffix}"


def site_label_value(site_name: str) -> str:
    """The site name as a label value: label values stop at 63 characters, Site names at 253."""
    if len(site_name) <= MAX_NAME_LENGTH:
        return site_name
    room = MAX_NAME_LENGTH - _HASH_LENGTH - 1
    return f"{site_name[:room].rstrip('-.')}-{_hash(site_name)}"


def child_names(site_name: str) -> ChildNames:
    """Every child's name, so the controller can look children up without building them."""
    agent = _child_name(site_name, "agent")
    return ChildNames(
        secret=_child_name(site_name, "wireguard"),
        config_map=agent,
        service_account=agent,
        role=agent,
        role_binding=agent,
        deployment=agent,
        pvc=_child_name(site_name, "data"),
        service=_child_name(site_name, "wg", dns1035=True),
    )


def child_labels(site_name: str) -> dict[str, str]:
    """The labels on every child (and the agent's pods); ``SITE_LABEL`` finds all children of a site."""
    value = site_label_value(site_name)
    return {
        "app.kubernetes.io/name": AGENT_NAME,
        "app.kubernetes.io/instance": value,
        "app.kubernetes.io/component": COMPONENT,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        SITE_LABEL: value,
    }


def _selector(site_name: str) -> dict[str, str]:
    """The pod selector: only labels that never change, since a Deployment's selector is immutable."""
    labels = child_labels(site_name)
    return {key: labels[key] for key in ("app.kubernetes.io/instance", "app.kubernetes.io/name")}


def _site_identity(site_obj: Mapping[str, Any]) -> tuple[str, str]:
    """The Site's name and namespace; children live next to it, so both must be known."""
    metadata = site_obj.get("metadata") or {}
    name, namespace = metadata.get("name"), metadata.get("namespace")
    if not name or not namespace:
        raise ValueError("the Site object needs metadata.name and metadata.namespace")
    return str(name), str(namespace)


def owner_reference(site_obj: Mapping[str, Any]) -> dict[str, Any]:
    """A controller reference to the Site: deleting the Site garbage-collects every child."""
    name, _ = _site_identity(site_obj)
    uid = (site_obj.get("metadata") or {}).get("uid")
    if not uid:
        raise ValueError(f"Site {name} has no metadata.uid; build children only from stored objects")
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "Site",
        "name": name,
        "uid": str(uid),
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _metadata(
    site_obj: Mapping[str, Any], name: str, annotations: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Child metadata: name, the Site's namespace, child labels, owner reference, optional annotations."""
    site_name, namespace = _site_identity(site_obj)
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": child_labels(site_name),
        "ownerReferences": [owner_reference(site_obj)],
    }
    if annotations:
        metadata["annotations"] = dict(annotations)
    return metadata


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode("ascii")


# -- ports ------------------------------------------------------------------------------------------------


def _free_port_name(preferred: str, taken: set[str]) -> str:
    """``preferred`` unless another port already has it; port names must be unique within a pod."""
    if preferred not in taken:
        return preferred
    for index in range(2, 100):
        candidate = f"{preferred[: _PORT_NAME_LENGTH - len(str(index)) - 1]}-{index}"
        if candidate not in taken:
            return candidate
    raise ValueError(f"cannot find a free port name for {preferred}")  # pragma: no cover


def wireguard_ports(site: Site) -> list[tuple[str, int]]:
    """(name, UDP port) for every WireGuard interface of the site, each port once.

    An underlay's port defaults to listenPort plus its index (see ``Underlay.listen_port``). listenPort
    is always included: without underlays it is the single default interface. Names are the underlay
    names; the listen port not taken by an underlay is called ``wireguard``. ``health`` stays reserved
    for the agent's probe port.
    """
    wireguard = site.spec.wireguard
    wanted = [
        (underlay.name, underlay.listen_port or wireguard.listen_port + index)
        for index, underlay in enumerate(site.spec.underlays or [])
    ]
    wanted.append((LISTEN_PORT_NAME, wireguard.listen_port))
    taken = {HEALTH_PORT_NAME}
    seen_ports: set[int] = set()
    ports: list[tuple[str, int]] = []
    for name, port in wanted:
        if port in seen_ports:
            continue
        unique_name = _free_port_name(name, taken)
        taken.add(unique_name)
        seen_ports.add(port)
        ports.append((unique_name, port))
    return ports


# -- the children -----------------------------------------------------------------------------------------


def key_secret(site_obj: Mapping[str, Any], private_key: str, public_key: str) -> dict[str, Any]:
    """The Secret holding a key pair the operator generated.

    ``data`` rather than ``stringData``: the API server folds stringData into data, so a manifest with
    stringData never equals the stored object and would be applied on every reconcile.
    """
    if not keys_match(private_key, public_key):
        raise ValueError("the WireGuard public key does not belong to the private key")
    site_name, _ = _site_identity(site_obj)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(site_obj, child_names(site_name).secret),
        "type": "Opaque",
        "data": {PRIVATE_KEY: _b64(private_key), PUBLIC_KEY: _b64(public_key)},
    }


def agent_config_map(site_obj: Mapping[str, Any], config_json: str, digest: str) -> dict[str, Any]:
    """The agent's rendered configuration; the digest annotation says which version it is at a glance."""
    site_name, _ = _site_identity(site_obj)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(
            site_obj, child_names(site_name).config_map, {CONFIG_DIGEST_ANNOTATION: digest}
        ),
        "data": {CONFIG_KEY: config_json},
    }


def service_account(site_obj: Mapping[str, Any]) -> dict[str, Any]:
    """The agent's identity: one per site, so the Role can be scoped to that site alone."""
    site_name, _ = _site_identity(site_obj)
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _metadata(site_obj, child_names(site_name).service_account),
    }


def _rule(api_group: str, resource: str, verbs: Sequence[str], names: Sequence[str] | None) -> dict[str, Any]:
    """One PolicyRule with sorted lists; ``names=None`` means the resource cannot be limited by name."""
    rule: dict[str, Any] = {"apiGroups": [api_group], "resources": [resource], "verbs": sorted(verbs)}
    if names is not None:
        rule["resourceNames"] = sorted(set(names))
    return rule


def _read_and_status_rules(resource: str, names: Sequence[str]) -> list[dict[str, Any]]:
    """Read ``resource`` and write its status, by name; nothing at all when there are no names.

    An empty resourceNames list means every name to Kubernetes, so "no paths" must be no rule.
    """
    if not names:
        return []
    return [
        _rule(API_GROUP, resource, _READ, names),
        _rule(API_GROUP, f"{resource}/status", _WRITE_STATUS, names),
    ]


def _rule_order(rule: Mapping[str, Any]) -> tuple[str, ...]:
    return (rule["apiGroups"][0], rule["resources"][0], ",".join(rule["verbs"]))


def agent_role(
    site_obj: Mapping[str, Any],
    *,
    path_names: Sequence[str],
    policy_names: Sequence[str],
    secret_name: str | None = None,
) -> dict[str, Any]:
    """Least privilege for the agent: its own Site, Paths, Policies, ConfigMap and key Secret, by name.

    list and watch with resourceNames work only with a ``metadata.name`` field selector, which is how the
    agent watches single objects. Writes are limited to status subresources and Events (Events cannot be
    limited by name: their names are generated). ``secret_name`` is the user's Secret, if they gave one.
    """
    site_name, _ = _site_identity(site_obj)
    names = child_names(site_name)
    rules = [
        *_read_and_status_rules("sites", [site_name]),
        *_read_and_status_rules("paths", path_names),
        *_read_and_status_rules("policies", policy_names),
        _rule("", "configmaps", _READ, [names.config_map]),
        _rule("", "secrets", ["get"], [secret_name or names.secret]),
        _rule("", "events", ["create", "patch"], None),
    ]
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _metadata(site_obj, names.role),
        "rules": sorted(rules, key=_rule_order),
    }


def agent_role_binding(site_obj: Mapping[str, Any]) -> dict[str, Any]:
    """Binds the agent's Role to its ServiceAccount and nothing else."""
    site_name, namespace = _site_identity(site_obj)
    names = child_names(site_name)
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _metadata(site_obj, names.role_binding),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": names.role},
        "subjects": [{"kind": "ServiceAccount", "name": names.service_account, "namespace": namespace}],
    }


def _requests(site: Site, config: OperatorConfig) -> dict[str, str]:
    """The site's CPU and memory requests, each falling back to the operator's default on its own,
    spelled as the API server stores them (so 1000m, stored as 1, is not a difference forever)."""
    resources = site.spec.resources
    return {
        "cpu": canonical_quantity((resources.cpu if resources else None) or config.default_cpu_request),
        "memory": canonical_quantity(
            (resources.memory if resources else None) or config.default_memory_request
        ),
    }


def _storage(site: Site) -> str | None:
    storage = site.spec.resources.storage if site.spec.resources else None
    return canonical_quantity(storage) if storage else None


def _secret_key(site: Site, secret_name: str) -> str:
    """Which key of ``secret_name`` holds the private key: the user's choice for their own Secret."""
    ref = site.spec.wireguard.private_key_secret_ref
    return ref.key if ref is not None and ref.name == secret_name else PRIVATE_KEY


def _capabilities(site: Site) -> dict[str, list[str]]:
    """NET_ADMIN to create WireGuard links and routes, NET_RAW for probes; every other one dropped.

    NET_BIND_SERVICE only when the site listens on a port below 1024.
    """
    add = ["NET_ADMIN", "NET_RAW"]
    if any(port < _FIRST_UNPRIVILEGED_PORT for _, port in wireguard_ports(site)):
        add.append("NET_BIND_SERVICE")
    return {"add": sorted(add), "drop": ["ALL"]}


def _volumes(
    site: Site, names: ChildNames, secret_name: str | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(pod volumes, container mounts): config always, the key when there is a Secret, data when storage."""
    volumes: list[dict[str, Any]] = [{"name": "config", "configMap": {"name": names.config_map}}]
    mounts: list[dict[str, Any]] = [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True}]
    if secret_name:
        items = [{"key": _secret_key(site, secret_name), "path": PRIVATE_KEY}]
        secret = {"secretName": secret_name, "defaultMode": KEY_FILE_MODE, "items": items}
        volumes.append({"name": "wireguard-key", "secret": secret})
        mounts.append({"name": "wireguard-key", "mountPath": KEYS_DIR, "readOnly": True})
    if _storage(site):
        volumes.append({"name": "data", "persistentVolumeClaim": {"claimName": names.pvc}})
        mounts.append({"name": "data", "mountPath": DATA_DIR})
    return volumes, mounts


def _probe(path: str) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": HEALTH_PORT_NAME}}


def _agent_container(
    site: Site, site_name: str, config: OperatorConfig, mounts: list[dict[str, Any]]
) -> dict[str, Any]:
    """The agent container: owns the site's UDP ports and WireGuard links, reports on port 8081."""
    udp_ports = [
        {"name": name, "containerPort": port, "protocol": "UDP"} for name, port in wireguard_ports(site)
    ]
    return {
        "name": AGENT_CONTAINER,
        "image": config.agent_image,
        "args": ["agent", "run", "--site", site_name],
        "env": [
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "PATRONUS_SITE", "value": site_name},
        ],
        "ports": [{"name": HEALTH_PORT_NAME, "containerPort": HEALTH_PORT, "protocol": "TCP"}, *udp_ports],
        "resources": {"requests": _requests(site, config)},
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": _capabilities(site)},
        "livenessProbe": _probe("/healthz"),
        "readinessProbe": _probe("/ready"),
        "volumeMounts": mounts,
    }


def agent_deployment(
    site_obj: Mapping[str, Any],
    site: Site,
    config: OperatorConfig,
    *,
    config_digest: str,
    secret_name: str | None,
) -> dict[str, Any]:
    """The site's agent: exactly one pod, replaced (not rolled) because it owns the UDP ports and the key.

    The config digest on the pod template restarts the agent when its ConfigMap changes.
    """
    site_name, _ = _site_identity(site_obj)
    names = child_names(site_name)
    volumes, mounts = _volumes(site, names, secret_name)
    pod_spec = {
        "serviceAccountName": names.service_account,
        "enableServiceLinks": False,
        "containers": [_agent_container(site, site_name, config, mounts)],
        "volumes": volumes,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(site_obj, names.deployment),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": _selector(site_name)},
            "template": {
                "metadata": {
                    "labels": child_labels(site_name),
                    "annotations": {CONFIG_DIGEST_ANNOTATION: config_digest},
                },
                "spec": pod_spec,
            },
        },
    }


def data_pvc(site_obj: Mapping[str, Any], storage: str) -> dict[str, Any]:
    """The agent's persistent volume; ReadWriteOnce suffices because there is only ever one agent pod."""
    site_name, _ = _site_identity(site_obj)
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _metadata(site_obj, child_names(site_name).pvc),
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": storage}}},
    }


def wireguard_service(site_obj: Mapping[str, Any], site: Site) -> dict[str, Any]:
    """The UDP LoadBalancer peers dial, one port per WireGuard interface.

    externalTrafficPolicy Local keeps the peers' source addresses, which WireGuard uses to learn and
    roam endpoints; with Cluster every peer would seem to come from a node.
    """
    site_name, _ = _site_identity(site_obj)
    ports = [
        {"name": name, "port": port, "targetPort": port, "protocol": "UDP"}
        for name, port in wireguard_ports(site)
    ]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(site_obj, child_names(site_name).service),
        "spec": {
            "type": "LoadBalancer",
            "externalTrafficPolicy": "Local",
            "selector": _selector(site_name),
            "ports": ports,
        },
    }


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
    policy_names: Sequence[str],
) -> list[dict[str, Any]]:
    """Every child of the Site in apply order: what a child refers to is applied before it.

    ``generated_key`` is (private, public) when the operator made the key; it is then kept in the
    ``{site}-wireguard`` Secret. An external site gets no Deployment, PVC or Service.
    """
    site_name, _ = _site_identity(site_obj)
    names = child_names(site_name)
    if generated_key is not None:
        if external:
            raise ValueError(f"Site {site_name} is external: its agent holds its own key")
        if secret_name not in (None, names.secret):
            raise ValueError(f"Site {site_name}: a generated key lives in Secret {names.secret}")
        if generated_key[0] in config_json:
            raise ValueError(f"Site {site_name}: the agent config contains the private key")
        secret_name = names.secret
    children = [key_secret(site_obj, *generated_key)] if generated_key is not None else []
    children += [
        agent_config_map(site_obj, config_json, config_digest),
        service_account(site_obj),
        agent_role(site_obj, path_names=path_names, policy_names=policy_names, secret_name=secret_name),
        agent_role_binding(site_obj),
    ]
    if external:
        return children
    children.append(
        agent_deployment(site_obj, site, config, config_digest=config_digest, secret_name=secret_name)
    )
    storage = _storage(site)
    if storage:
        children.append(data_pvc(site_obj, storage))
    children.append(wireguard_service(site_obj, site))
    return children
