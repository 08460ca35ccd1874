"""Objects that break one admission rule each, with the field the error must name.

Shared by the unit tests (the pydantic models must reject them too) and the integration tests (the real
API server must reject them with a message naming the field).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

KEY_A = "u3TIrcxVqJhNxDXYP5Ujt9xZ7kNOnkshoeMcIvJx2ic="
KEY_B = "+BqeDJDcphcG5wQEvbFShro7zEg+PABfWjBCn4UHwXQ="

Obj = dict[str, Any]


def site() -> Obj:
    return {
        "apiVersion": "sdwan.patronus.dev/v1alpha1",
        "kind": "Site",
        "metadata": {"name": "bad-site"},
        "spec": {
            "location": "Lab",
            "wireguard": {"publicKey": KEY_A, "listenPort": 51820, "endpoints": ["203.0.113.1:51820"]},
            "resources": {"cpu": "2", "memory": "4Gi"},
        },
    }


def path() -> Obj:
    return {
        "apiVersion": "sdwan.patronus.dev/v1alpha1",
        "kind": "Path",
        "metadata": {"name": "bad-path"},
        "spec": {
            "source": {"siteRef": "a"},
            "destination": {"siteRef": "b"},
            "monitoring": {"interval": "10s", "probesPerCheck": 5},
        },
    }


def policy() -> Obj:
    return {
        "apiVersion": "sdwan.patronus.dev/v1alpha1",
        "kind": "Policy",
        "metadata": {"name": "bad-policy"},
        "spec": {
            "priority": 100,
            "match": {"protocol": "udp", "dstPortRange": "3478-3497", "dscp": 46},
            "action": {
                "type": "route",
                "primaryPath": {"siteRef": "a", "pathId": "a-fiber"},
                "backupPath": {"siteRef": "a", "pathId": "a-lte"},
                "qos": {"class": "realtime", "bandwidth": "10Mbps"},
            },
            "failover": {"threshold": 70, "cooldown": "30s"},
        },
    }


def mesh() -> Obj:
    return {
        "apiVersion": "sdwan.patronus.dev/v1alpha1",
        "kind": "Mesh",
        "metadata": {"name": "bad-mesh"},
        "spec": {"sites": ["a", "b", "c"], "topology": "full-mesh"},
    }


@dataclass(frozen=True)
class InvalidCase:
    id: str
    build: Callable[[], Obj]
    change: Callable[[Obj], None]
    field: str
    """The field path the error message must contain."""
    says: str = ""
    """A fragment the message must also contain (case-insensitive), where our own wording is used."""

    def object(self) -> Obj:
        obj = copy.deepcopy(self.build())
        self.change(obj)
        return obj


def _set(path_: str, value: Any) -> Callable[[Obj], None]:
    def change(obj: Obj) -> None:
        *parents, last = path_.split(".")
        node = obj
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value

    return change


def _delete(path_: str) -> Callable[[Obj], None]:
    def change(obj: Obj) -> None:
        *parents, last = path_.split(".")
        node = obj
        for part in parents:
            node = node[part]
        del node[last]

    return change


CASES: list[InvalidCase] = [
    InvalidCase("listen-port-zero", site, _set("spec.wireguard.listenPort", 0), "spec.wireguard.listenPort"),
    InvalidCase(
        "listen-port-too-big", site, _set("spec.wireguard.listenPort", 70000), "spec.wireguard.listenPort"
    ),
    InvalidCase(
        "key-not-base64",
        site,
        _set("spec.wireguard.publicKey", "base64-encoded-key"),
        "spec.wireguard.publicKey",
    ),
    InvalidCase(
        "key-31-bytes",
        site,
        _set("spec.wireguard.publicKey", "u3TIrcxVqJhNxDXYP5Ujt9xZ7kNOnkshoeMcIvJx2g=="),
        "spec.wireguard.publicKey",
    ),
    InvalidCase(
        "key-44-chars-not-32-bytes",
        site,
        _set("spec.wireguard.publicKey", "u3TIrcxVqJhNxDXYP5Ujt9xZ7kNOnkshoeMcIvJx2iz="),
        "spec.wireguard.publicKey",
        "WireGuard key",
    ),
    InvalidCase(
        "endpoint-without-port",
        site,
        _set("spec.wireguard.endpoints", ["203.0.113.1"]),
        "spec.wireguard.endpoints[0]",
        "host:port",
    ),
    InvalidCase(
        "endpoint-port-too-big",
        site,
        _set("spec.wireguard.endpoints", ["203.0.113.1:99999"]),
        "spec.wireguard.endpoints[0]",
        "host:port",
    ),
    InvalidCase("no-endpoints", site, _set("spec.wireguard.endpoints", []), "spec.wireguard.endpoints"),
    InvalidCase("endpoints-missing", site, _delete("spec.wireguard.endpoints"), "spec.wireguard.endpoints"),
    InvalidCase(
        "cpu-not-quantity", site, _set("spec.resources.cpu", "two"), "spec.resources.cpu", "quantity"
    ),
    InvalidCase(
        "memory-not-quantity", site, _set("spec.resources.memory", "4GB"), "spec.resources.memory", "quantity"
    ),
    InvalidCase(
        "secret-ref-without-key",
        site,
        lambda o: (
            o["spec"]["wireguard"].pop("publicKey"),
            o["spec"]["wireguard"].update(privateKeySecretRef={"name": "k"}),
        ),
        "spec.wireguard.privateKeySecretRef",
        "publicKey",
    ),
    InvalidCase(
        "peer-with-duplicate", site, _set("spec.mesh", {"peerWith": ["x", "x"]}), "spec.mesh.peerWith"
    ),
    InvalidCase(
        "underlay-unknown-endpoint",
        site,
        _set("spec.underlays", [{"name": "fiber", "endpoint": "198.51.100.1:51820"}]),
        "spec.underlays",
        "wireguard.endpoints",
    ),
    InvalidCase(
        "subnet-with-host-bits", site, _set("spec.subnets", ["10.1.2.3/16"]), "spec.subnets[0]", "CIDR"
    ),
    InvalidCase("priority-too-high", policy, _set("spec.priority", 1001), "spec.priority"),
    InvalidCase("priority-negative", policy, _set("spec.priority", -1), "spec.priority"),
    InvalidCase("protocol-unknown", policy, _set("spec.match.protocol", "sctp"), "spec.match.protocol"),
    InvalidCase(
        "port-range-reversed",
        policy,
        _set("spec.match.dstPortRange", "3497-3478"),
        "spec.match.dstPortRange",
        "reversed",
    ),
    InvalidCase(
        "port-too-big", policy, _set("spec.match.dstPortRange", "80,65536"), "spec.match.dstPortRange"
    ),
    InvalidCase(
        "port-range-garbage", policy, _set("spec.match.dstPortRange", "http"), "spec.match.dstPortRange"
    ),
    InvalidCase(
        "icmp-with-ports",
        policy,
        lambda o: o["spec"]["match"].update(protocol="icmp"),
        "spec.match.protocol",
        "icmp",
    ),
    InvalidCase("dscp-too-big", policy, _set("spec.match.dscp", 64), "spec.match.dscp"),
    InvalidCase(
        "qos-class-unknown", policy, _set("spec.action.qos.class", "platinum"), "spec.action.qos.class"
    ),
    InvalidCase(
        "bandwidth-no-unit",
        policy,
        _set("spec.action.qos.bandwidth", "10"),
        "spec.action.qos.bandwidth",
        "bandwidth",
    ),
    InvalidCase(
        "bandwidth-zero",
        policy,
        _set("spec.action.qos.bandwidth", "0Mbps"),
        "spec.action.qos.bandwidth",
        "bandwidth",
    ),
    InvalidCase(
        "threshold-over-100", policy, _set("spec.failover.threshold", 101), "spec.failover.threshold"
    ),
    InvalidCase(
        "cooldown-not-duration",
        policy,
        _set("spec.failover.cooldown", "30 seconds"),
        "spec.failover.cooldown",
        "duration",
    ),
    InvalidCase(
        "backup-without-primary",
        policy,
        _delete("spec.action.primaryPath"),
        "spec.action.backupPath",
        "needs action.primaryPath",
    ),
    InvalidCase(
        "backup-same-as-primary",
        policy,
        _set("spec.action.backupPath", {"siteRef": "a", "pathId": "a-fiber"}),
        "spec.action.backupPath",
        "differ",
    ),
    InvalidCase(
        "backup-other-site",
        policy,
        _set("spec.action.backupPath", {"siteRef": "b", "pathId": "b-lte"}),
        "spec.action.backupPath.siteRef",
        "same site",
    ),
    InvalidCase("action-type-unknown", policy, _set("spec.action.type", "teleport"), "spec.action.type"),
    InvalidCase(
        "interval-not-duration",
        path,
        _set("spec.monitoring.interval", "often"),
        "spec.monitoring.interval",
        "duration",
    ),
    InvalidCase(
        "interval-too-short",
        path,
        _set("spec.monitoring.interval", "1ms"),
        "spec.monitoring.interval",
        "between 50ms and 1h",
    ),
    InvalidCase(
        "probes-zero", path, _set("spec.monitoring.probesPerCheck", 0), "spec.monitoring.probesPerCheck"
    ),
    InvalidCase(
        "source-equals-destination",
        path,
        _set("spec.destination.siteRef", "a"),
        "spec.destination.siteRef",
        "must differ",
    ),
    InvalidCase("path-type-unknown", path, _set("spec.type", "satellite"), "spec.type"),
    InvalidCase(
        "site-ref-not-a-name",
        path,
        _set("spec.source.siteRef", "Branch_NYC"),
        "spec.source.siteRef",
        "object name",
    ),
    InvalidCase("topology-unknown", mesh, _set("spec.topology", "ring"), "spec.topology"),
    InvalidCase(
        "encryption-aes", mesh, _set("spec.vpn", {"encryption": "aes-256-gcm"}), "spec.vpn.encryption"
    ),
    InvalidCase("vpn-protocol-ipsec", mesh, _set("spec.vpn", {"protocol": "ipsec"}), "spec.vpn.protocol"),
    InvalidCase("duplicate-sites", mesh, _set("spec.sites", ["a", "b", "a"]), "spec.sites"),
    InvalidCase("no-sites", mesh, _set("spec.sites", []), "spec.sites"),
    InvalidCase(
        "hub-not-a-site",
        mesh,
        lambda o: o["spec"].update(topology="hub-spoke", hubs=["z"]),
        "spec.hubs",
        "hub",
    ),
    InvalidCase("hubs-in-full-mesh", mesh, _set("spec.hubs", ["a"]), "spec.hubs", "hub-spoke"),
]
