"""The agent's workload: its Deployment, the UDP Service peers dial, and its data volume. Pure.

The agent is told everything it must find (its Site, its ConfigMap, its key file, its ports) on its
command line, so it never recomputes a name the operator may have shortened. Its configuration changes
are applied live by the agent, which watches its ConfigMap: the pod template carries no configuration
digest, so editing one Policy does not restart every agent; a new image does roll it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from patronus.api.parsers import canonical_quantity
from patronus.api.site import Site
from patronus.operator.config import OperatorConfig
from patronus.operator.site.children.data import PRIVATE_KEY
from patronus.operator.site.children.names import (
    ChildNames,
    child_labels,
    child_metadata,
    child_names,
    pod_selector,
    site_identity,
)

CONFIG_DIR = "/etc/patronus"
KEYS_DIR = "/etc/patronus/keys"
KEY_FILE = f"{KEYS_DIR}/{PRIVATE_KEY}"
DATA_DIR = "/var/lib/patronus"
KEY_FILE_MODE = 0o400

AGENT_CONTAINER = "agent"
HEALTH_PORT = 8081
HEALTH_PORT_NAME = "health"
METRICS_PORT = 9102
METRICS_PORT_NAME = "metrics"
LISTEN_PORT_NAME = "wireguard"

_PORT_NAME_LENGTH = 15  # IANA_SVC_NAME
_FIRST_UNPRIVILEGED_PORT = 1024


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
    names; the listen port not taken by an underlay is called ``wireguard``. ``health`` and ``metrics``
    stay reserved for the agent's HTTP ports.
    """
    wireguard = site.spec.wireguard
    wanted = [
        (underlay.name, underlay.listen_port or wireguard.listen_port + index)
        for index, underlay in enumerate(site.spec.underlays or [])
    ]
    wanted.append((LISTEN_PORT_NAME, wireguard.listen_port))
    taken = {HEALTH_PORT_NAME, METRICS_PORT_NAME}
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


def storage_request(site: Site) -> str | None:
    storage = site.spec.resources.storage if site.spec.resources else None
    return canonical_quantity(storage) if storage else None


def _secret_key(site: Site, secret_name: str) -> str:
    """Which key of ``secret_name`` holds the private key: the user's choice for their own Secret."""
    ref = site.spec.wireguard.private_key_secret_ref
    return ref.key if ref is not None and ref.name == secret_name else PRIVATE_KEY


TUN_DEVICE = "/dev/net/tun"
TUN_VOLUME = "dev-net-tun"


def _capabilities(site: Site) -> dict[str, list[str]]:
    """NET_ADMIN (WireGuard links over TUN, routes, rules, nftables, tc, marked probe sockets); every
    other one dropped. NET_BIND_SERVICE only when the site listens on a port below 1024.
    """
    add = ["NET_ADMIN"]
    if any(port < _FIRST_UNPRIVILEGED_PORT for _, port in wireguard_ports(site)):
        add.append("NET_BIND_SERVICE")
    return {"add": sorted(add), "drop": ["ALL"]}


def _volumes(
    site: Site, names: ChildNames, secret_name: str | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(pod volumes, container mounts): config always, the key when there is a Secret, data when storage."""
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": names.config_map}},
        # wireguard-go opens the TUN clone device, which the container runtime does not create in a
        # container; runc's default device rules allow it, so the host's node is enough (no privilege).
        {"name": TUN_VOLUME, "hostPath": {"path": TUN_DEVICE, "type": "CharDevice"}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": TUN_VOLUME, "mountPath": TUN_DEVICE},
    ]
    if secret_name:
        items = [{"key": _secret_key(site, secret_name), "path": PRIVATE_KEY}]
        secret = {"secretName": secret_name, "defaultMode": KEY_FILE_MODE, "items": items}
        volumes.append({"name": "wireguard-key", "secret": secret})
        mounts.append({"name": "wireguard-key", "mountPath": KEYS_DIR, "readOnly": True})
    if storage_request(site):
        volumes.append({"name": "data", "persistentVolumeClaim": {"claimName": names.pvc}})
        mounts.append({"name": "data", "mountPath": DATA_DIR})
    return volumes, mounts


def agent_args(site_name: str, names: ChildNames, *, key_file: bool) -> list[str]:
    """``patronus agent run`` with every name and port the agent needs; its namespace is POD_NAMESPACE."""
    args = ["agent", "run", "--site", site_name, "--config-map", names.config_map]
    args += ["--heartbeat-lease", names.lease]
    if key_file:
        args += ["--key-file", KEY_FILE]
    return [*args, "--health-port", str(HEALTH_PORT), "--metrics-port", str(METRICS_PORT)]


def _probe(path: str) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": HEALTH_PORT_NAME}}


def _agent_container(
    site: Site, site_name: str, config: OperatorConfig, secret_name: str | None, mounts: list[dict[str, Any]]
) -> dict[str, Any]:
    """The agent container: owns the site's UDP ports and WireGuard links; /healthz and /ready on 8081."""
    tcp_ports = [
        {"name": HEALTH_PORT_NAME, "containerPort": HEALTH_PORT, "protocol": "TCP"},
        {"name": METRICS_PORT_NAME, "containerPort": METRICS_PORT, "protocol": "TCP"},
    ]
    udp_ports = [
        {"name": name, "containerPort": port, "protocol": "UDP"} for name, port in wireguard_ports(site)
    ]
    return {
        "name": AGENT_CONTAINER,
        "image": config.agent_image,
        "args": agent_args(site_name, child_names(site_name), key_file=bool(secret_name)),
        "env": [
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "PATRONUS_SITE", "value": site_name},
        ],
        "ports": [*tcp_ports, *udp_ports],
        "resources": {"requests": _requests(site, config)},
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": _capabilities(site)},
        "livenessProbe": _probe("/healthz"),
        "readinessProbe": _probe("/ready"),
        "volumeMounts": mounts,
    }


def agent_deployment(
    site_obj: Mapping[str, Any], site: Site, config: OperatorConfig, *, secret_name: str | None
) -> dict[str, Any]:
    """The site's agent: exactly one pod, replaced (not rolled) because it owns the UDP ports and the key."""
    site_name, _ = site_identity(site_obj)
    names = child_names(site_name)
    volumes, mounts = _volumes(site, names, secret_name)
    pod_spec = {
        "serviceAccountName": names.service_account,
        "enableServiceLinks": False,
        "containers": [_agent_container(site, site_name, config, secret_name, mounts)],
        "volumes": volumes,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": child_metadata(site_obj, names.deployment),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": pod_selector(site_name)},
            "template": {"metadata": {"labels": child_labels(site_name)}, "spec": pod_spec},
        },
    }


def data_pvc(site_obj: Mapping[str, Any], storage: str) -> dict[str, Any]:
    """The agent's persistent volume; ReadWriteOnce suffices because there is only ever one agent pod."""
    site_name, _ = site_identity(site_obj)
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": child_metadata(site_obj, child_names(site_name).pvc),
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": storage}}},
    }


def wireguard_service(site_obj: Mapping[str, Any], site: Site) -> dict[str, Any]:
    """The UDP LoadBalancer peers dial, one port per WireGuard interface.

    externalTrafficPolicy Local keeps the peers' source addresses, which WireGuard uses to learn and
    roam endpoints; with Cluster every peer would seem to come from a node. publishNotReadyAddresses:
    the agent is Ready only once a tunnel is up, and a tunnel needs peers to reach this port first, so
    gating the port on readiness would keep two restarted sites apart for good.
    """
    site_name, _ = site_identity(site_obj)
    ports = [
        {"name": name, "port": port, "targetPort": port, "protocol": "UDP"}
        for name, port in wireguard_ports(site)
    ]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": child_metadata(site_obj, child_names(site_name).service),
        "spec": {
            "type": "LoadBalancer",
            "externalTrafficPolicy": "Local",
            "publishNotReadyAddresses": True,
            "selector": pod_selector(site_name),
            "ports": ports,
        },
    }
