"""The agent configuration: complete, deterministic, and free of private keys."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any

import pytest

from patronus.api import Path, Policy, Site
from patronus.api.agentconfig import SCHEMA_VERSION, AgentConfig, parse_agent_config
from patronus.topology.agent_config import (
    config_digest,
    config_json,
    interface_names,
    render_agent_config,
)
from patronus.topology.peers import SiteView, peers_for, site_view


def key(name: str) -> str:
    return base64.b64encode(hashlib.sha256(name.encode()).digest()).decode()


PRIVATE_KEY = key("the-private-key-of-nyc")


def site(name: str, address: str, *, underlays: bool = True) -> SiteView:
    spec: dict[str, Any] = {
        "wireguard": {
            "publicKey": key(name),
            "privateKeySecretRef": {"name": f"{name}-key"},
            "endpoints": [f"{name}-fiber.example.com:51820", f"{name}-lte.example.com:51821"],
        },
        "subnets": ["10.9.0.0/16", "10.1.0.0/16"],
    }
    if underlays:
        spec["underlays"] = [
            {"name": "fiber", "endpoint": f"{name}-fiber.example.com:51820"},
            {"name": "lte", "endpoint": f"{name}-lte.example.com:51821"},
        ]
    model = Site.model_validate({"metadata": {"name": name, "namespace": "ns"}, "spec": spec})
    return site_view(model, public_key=key(name), overlay_address=address)


def path(name: str, source: str, destination: str, underlay: str | None = None, **spec: Any) -> Path:
    body: dict[str, Any] = {"source": {"siteRef": source}, "destination": {"siteRef": destination}, **spec}
    if underlay is not None:
        body["underlay"] = underlay
    return Path.model_validate({"metadata": {"name": name}, "spec": body})


def policy(name: str, priority: int, site_ref: str | None = "nyc", **extra: Any) -> Policy:
    action: dict[str, Any] = {"type": "route"}
    if site_ref is not None:
        action["primaryPath"] = {"siteRef": site_ref, "pathId": "path-fiber"}
        action["backupPath"] = {"siteRef": site_ref, "pathId": "path-lte"}
    spec: dict[str, Any] = {"priority": priority, "match": {"protocol": "udp"}, "action": action, **extra}
    return Policy.model_validate({"metadata": {"name": name}, "spec": spec})


NYC = site("nyc", "100.96.0.1")
REMOTES = [site("sf", "100.96.0.2"), site("sea", "100.96.0.3", underlays=False)]
PEERS = {u.name: peers_for(NYC, REMOTES, u.name) for u in NYC.underlays}
PATHS = [
    path("path-lte", "nyc", "sf", "lte", monitoring={"interval": "200ms", "probesPerCheck": 10}),
    path("path-fiber", "nyc", "sf", "fiber"),
    path("nyc-sea", "nyc", "sea"),
    path("sf-nyc", "sf", "nyc", "fiber"),  # starts elsewhere: not this agent's
]
SEED_POLICY = Policy.model_validate(
    {
        "metadata": {"name": "video-priority"},
        "spec": {
            "priority": 100,
            "match": {"protocol": "udp", "dstPortRange": "3478-3497", "dscp": 46},
            "action": {
                "type": "route",
                "primaryPath": {"siteRef": "nyc", "pathId": "path-fiber"},
                "backupPath": {"siteRef": "nyc", "pathId": "path-lte"},
                "qos": {"class": "realtime", "bandwidth": "10Mbps"},
            },
            "failover": {"threshold": 70, "cooldown": "30s"},
        },
    }
)
POLICIES = [
    policy("bulk", 10, match={"protocol": "udp", "srcPortRange": "1-1024"}),
    SEED_POLICY,
    policy("anywhere", 10, site_ref=None),
    policy("sf-only", 500, site_ref="sf"),  # enforced at sf
]


def rendered() -> AgentConfig:
    return render_agent_config(NYC, "ns", PEERS, PATHS, POLICIES)


def render() -> dict[str, Any]:
    """The configuration as the agent reads it on the wire."""
    return json.loads(config_json(rendered()))


def wire(config: AgentConfig) -> dict[str, Any]:
    return json.loads(config_json(config))


def test_header() -> None:
    config = render()
    assert config["schemaVersion"] == SCHEMA_VERSION
    assert config["site"] == "nyc"
    assert config["namespace"] == "ns"
    assert config["publicKey"] == key("nyc")
    assert config["overlayAddress"] == "100.96.0.1"
    assert config["subnets"] == ["10.1.0.0/16", "10.9.0.0/16"]


def test_interfaces() -> None:
    fiber, lte = render()["interfaces"]
    assert fiber["underlay"] == "fiber"
    assert fiber["name"] == "wg-fiber"
    assert fiber["listenPort"] == 51820
    assert lte["name"] == "wg-lte"
    assert lte["listenPort"] == 51821
    assert fiber["peers"] == [
        {
            "site": "sea",
            "publicKey": key("sea"),
            "endpoint": "sea-fiber.example.com:51820",
            "allowedIPs": ["100.96.0.3/32", "10.1.0.0/16", "10.9.0.0/16"],
            "persistentKeepalive": 25,
        },
        {
            "site": "sf",
            "publicKey": key("sf"),
            "endpoint": "sf-fiber.example.com:51820",
            "allowedIPs": ["100.96.0.2/32", "10.1.0.0/16", "10.9.0.0/16"],
            "persistentKeepalive": 25,
        },
    ]
    assert [p["endpoint"] for p in lte["peers"]] == [
        "sea-fiber.example.com:51820",
        "sf-lte.example.com:51821",
    ]


def test_paths() -> None:
    paths = render()["paths"]
    assert [p["name"] for p in paths] == ["nyc-sea", "path-fiber", "path-lte"]
    nyc_sea, _, lte = paths
    assert nyc_sea == {
        "name": "nyc-sea",
        "destination": "sea",
        "destinationAddress": "100.96.0.3",
        "underlay": "fiber",  # left out: the site's primary underlay
        "interface": "wg-fiber",
        "type": "vpn",
        "monitoring": {"enabled": True, "intervalSeconds": 10.0, "probesPerCheck": 5},
    }
    assert lte["interface"] == "wg-lte"
    assert lte["monitoring"] == {"enabled": True, "intervalSeconds": 0.2, "probesPerCheck": 10}


def test_path_over_an_unknown_underlay() -> None:
    config = wire(render_agent_config(NYC, "ns", PEERS, [path("p", "nyc", "sf", "dsl")], []))
    [entry] = config["paths"]
    assert entry["underlay"] == "dsl"
    assert entry["interface"] is None
    assert entry["destinationAddress"] is None


def test_policies() -> None:
    policies = render()["policies"]
    assert [p["name"] for p in policies] == ["video-priority", "anywhere", "bulk"]
    assert policies[0] == {
        "name": "video-priority",
        "priority": 100,
        "match": {
            "protocol": "udp",
            "dstPorts": [[3478, 3497]],
            "srcPorts": None,
            "dscp": 46,
            "srcCidrs": None,
            "dstCidrs": None,
        },
        "action": {"type": "route", "primaryPath": "path-fiber", "backupPath": "path-lte"},
        "qos": {"class": "realtime", "bandwidthBps": 10_000_000},
        "failover": {"threshold": 70, "cooldownSeconds": 30.0},
    }
    assert policies[1]["action"] == {"type": "route", "primaryPath": None, "backupPath": None}
    assert policies[2]["match"]["srcPorts"] == [[1, 1024]]
    assert policies[2]["qos"] is None


def test_policy_match_ports_and_cidrs() -> None:
    entry = policy(
        "p",
        1,
        match={
            "protocol": "tcp",
            "dstPortRange": "80,443,8000-8080",
            "dstCidrs": ["10.2.0.0/16", "10.0.0.0/8"],
            "srcCidrs": ["192.168.0.0/24"],
        },
        action={"type": "route", "qos": {"class": "bulk"}},
        failover={"threshold": 50.5, "cooldown": "1m30s"},
    )
    [rendered] = wire(render_agent_config(NYC, "ns", {}, [], [entry]))["policies"]
    assert rendered["match"]["dstPorts"] == [[80, 80], [443, 443], [8000, 8080]]
    assert rendered["match"]["dstCidrs"] == ["10.0.0.0/8", "10.2.0.0/16"]
    assert rendered["match"]["srcCidrs"] == ["192.168.0.0/24"]
    assert rendered["qos"] == {"class": "bulk", "bandwidthBps": None}
    assert rendered["failover"] == {"threshold": 50.5, "cooldownSeconds": 90.0}


def test_deterministic_whatever_the_input_order() -> None:
    first = config_json(rendered())
    assert config_json(rendered()) == first
    shuffled_peers = {u: list(reversed(p)) for u, p in reversed(list(PEERS.items()))}
    again = render_agent_config(NYC, "ns", shuffled_peers, PATHS[::-1], POLICIES[::-1])
    assert config_json(again) == first


def test_the_agent_reads_back_exactly_what_the_operator_wrote() -> None:
    assert parse_agent_config(config_json(rendered())) == rendered()


def test_digest_tracks_changes() -> None:
    digest = config_digest(rendered())
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert config_digest(rendered()) == digest
    assert config_digest(render_agent_config(NYC, "ns", PEERS, PATHS[:1], POLICIES)) != digest
    assert digest == hashlib.sha256(config_json(rendered()).encode()).hexdigest()


def _walk(value: Any) -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        return [item for k, v in value.items() for item in [(k, v), *_walk(v)]]
    if isinstance(value, list):
        return [item for v in value for item in _walk(v)]
    return []


def test_no_private_key_anywhere() -> None:
    text = config_json(rendered())
    assert PRIVATE_KEY not in text
    assert not [k for k, _ in _walk(render()) if re.search(r"private|secret", k, re.IGNORECASE)]
    assert not re.search(r"private|secret", text, re.IGNORECASE)


def test_single_default_underlay() -> None:
    local = site("sea", "100.96.0.3", underlays=False)
    config = wire(render_agent_config(local, "ns", {"default": peers_for(local, [NYC], "default")}, [], []))
    [interface] = config["interfaces"]
    assert interface["name"] == "wg-default"
    assert interface["listenPort"] == 51820
    assert [p["site"] for p in interface["peers"]] == ["nyc"]


@pytest.mark.parametrize(
    ("underlays", "expected"),
    [
        (["fiber", "lte"], ["wg-fiber", "wg-lte"]),
        (["abcdefghijkl"], ["wg-abcdefghijkl"]),
        (["abcdefghijklmno"], ["wg-abcdefghijkl"]),
        (["abcdefghijklmno", "abcdefghijklxyz"], ["wg-abcdefghijk0", "wg-abcdefghijk1"]),
    ],
)
def test_interface_names(underlays: list[str], expected: list[str]) -> None:
    names = interface_names(underlays)
    assert [names[u] for u in underlays] == expected


def test_interface_names_are_unique_and_short() -> None:
    # Eight underlays (the maximum) sharing a 12-character start, plus one that looks like a suffixed name.
    underlays = [f"abcdefghijkl{c}" for c in "pqrstuvw"] + ["abcdefghijk0"]
    names = interface_names(underlays)
    assert len(set(names.values())) == len(underlays)
    assert all(len(name) <= 15 and re.fullmatch(r"[a-z0-9-]+", name) for name in names.values())
    assert names["abcdefghijk0"] == "wg-abcdefghijk0"
    assert interface_names(underlays) == names
