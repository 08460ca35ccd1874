"""Objects that break one admission rule that spans several fields each, with the field the error must
name; and the valid base objects that ``tests/support/field_examples.py`` changes one field of.

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


def _underlays(*underlays: dict[str, Any], listen_port: int = 51820) -> Callable[[Obj], None]:
    def change(obj: Obj) -> None:
        endpoints = sorted({u["endpoint"] for u in underlays})
        obj["spec"]["wireguard"].update(listenPort=listen_port, endpoints=endpoints)
        obj["spec"]["underlays"] = list(underlays)

    return change


FIBER = {"name": "fiber", "endpoint": "203.0.113.1:51820"}
LTE = {"name": "lte", "endpoint": "198.51.100.1:4500"}

CASES: list[InvalidCase] = [
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
        "underlay-unknown-endpoint",
        site,
        _set("spec.underlays", [{"name": "fiber", "endpoint": "198.51.100.1:51820"}]),
        "spec.underlays",
        "wireguard.endpoints",
    ),
    InvalidCase(
        "underlay-names-repeat", site, _underlays(FIBER, {**LTE, "name": "fiber"}), "spec.underlays", "unique"
    ),
    InvalidCase(
        "underlay-port-past-65535",
        site,
        _underlays(FIBER, LTE, listen_port=65535),
        "spec.underlays",
        "within 1-65535",
    ),
    InvalidCase(
        "underlay-ports-clash",
        site,
        _underlays(FIBER, {**LTE, "listenPort": 51820}),
        "spec.underlays",
        "port of its own",
    ),
    InvalidCase(
        "underlay-default-port-clashes-with-a-given-one",
        site,
        _underlays({**FIBER, "listenPort": 51821}, LTE),
        "spec.underlays",
        "port of its own",
    ),
    InvalidCase(
        "subnet-holds-own-endpoint",
        site,
        _set("spec.subnets", ["10.1.0.0/16", "203.0.113.0/24"]),
        "spec.subnets",
        "own endpoint",
    ),
    InvalidCase(
        "subnet-holds-own-ipv6-endpoint",
        site,
        lambda o: (
            o["spec"].update(subnets=["2001:db8::/32"])
            or o["spec"]["wireguard"].update(endpoints=["vpn.example.com:51820", "[2001:db8::1]:51820"])
        ),
        "spec.subnets",
        "own endpoint",
    ),
    InvalidCase(
        "icmp-with-ports",
        policy,
        lambda o: o["spec"]["match"].update(protocol="icmp"),
        "spec.match.protocol",
        "icmp",
    ),
    InvalidCase(
        "icmp-with-source-ports",
        policy,
        lambda o: (
            o["spec"]["match"].update(protocol="icmp", srcPortRange="1024-65535")
            or o["spec"]["match"].pop("dstPortRange")
        ),
        "spec.match.protocol",
        "icmp",
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
    InvalidCase(
        "source-equals-destination",
        path,
        _set("spec.destination.siteRef", "a"),
        "spec.destination.siteRef",
        "must differ",
    ),
    InvalidCase(
        "hub-not-a-site",
        mesh,
        lambda o: o["spec"].update(topology="hub-spoke", hubs=["z"]),
        "spec.hubs",
        "hub",
    ),
    InvalidCase("hubs-in-full-mesh", mesh, _set("spec.hubs", ["a"]), "spec.hubs", "hub-spoke"),
    InvalidCase("endpoints-missing", site, _delete("spec.wireguard.endpoints"), "spec.wireguard.endpoints"),
]
