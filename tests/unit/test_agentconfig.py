"""The agent configuration model: versioned, and refusing what could reach wg, ip, nft or tc as syntax."""

from __future__ import annotations

import json
from typing import Any

import pytest

from patronus.api.agentconfig import (
    SCHEMA_VERSION,
    AgentConfigError,
    UnsupportedSchemaVersion,
    parse_agent_config,
)

KEY = "x" * 42 + "A="


def minimal(**overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "schemaVersion": SCHEMA_VERSION,
        "site": "a",
        "namespace": "ns",
        "overlayAddress": "100.96.0.1",
        "interfaces": [
            {"underlay": "fiber", "name": "wg-fiber", "listenPort": 51820, "endpoint": "a.example:51820"}
        ],
        "paths": [{"name": "m-a-b-fiber", "destination": "b", "underlay": "fiber", "interface": "wg-fiber"}],
        "policies": [{"name": "voice", "match": {"protocol": "udp", "dstPorts": [[5060, 5060]]}}],
    }
    config.update(overrides)
    return config


def test_a_minimal_configuration_parses_with_defaults() -> None:
    config = parse_agent_config(json.dumps(minimal()))
    assert config.interfaces[0].name == "wg-fiber"
    assert config.paths[0].monitoring.interval_seconds == 10.0
    assert config.policies[0].failover.threshold == 70.0


@pytest.mark.parametrize("version", [None, 1, 3, "2"])
def test_an_unknown_schema_version_is_refused_first(version: Any) -> None:
    text = json.dumps(minimal(schemaVersion=version, interfaces="garbage"))
    with pytest.raises(UnsupportedSchemaVersion, match=f"schemaVersion {version!r}"):
        parse_agent_config(text)


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"policies": [{"name": 'voice" ; flush ruleset ; "'}]}, "policies.0.name"),
        ({"policies": [{"name": "voice", "match": {"dscp": 64}}]}, "policies.0.match.dscp"),
        (
            {"policies": [{"name": "voice", "qos": {"class": "realtime", "bandwidthBps": 10**40}}]},
            "bandwidthBps",
        ),
        ({"policies": [{"name": "voice", "match": {"dstPorts": [[20, 10]]}}]}, "dstPorts"),
        ({"policies": [{"name": "voice", "match": {"dstCidrs": ["0.0.0.0/0 accept"]}}]}, "dstCidrs"),
        (
            {"interfaces": [{"underlay": "fiber", "name": "wg fiber", "listenPort": 1, "endpoint": "a:1"}]},
            "interfaces.0.name",
        ),
        (
            {
                "interfaces": [
                    {"underlay": "fiber", "name": "wg-fiber", "listenPort": 70000, "endpoint": "a:1"}
                ]
            },
            "listenPort",
        ),
        ({"overlayAddress": "100.96.0.1; reboot"}, "overlayAddress"),
        (
            {"paths": [{"name": "p", "destination": "b", "underlay": "x", "destinationAddress": "-v"}]},
            "destinationAddress",
        ),
    ],
)
def test_values_that_could_become_syntax_are_refused(change: dict[str, Any], where: str) -> None:
    with pytest.raises(AgentConfigError, match=where):
        parse_agent_config(json.dumps(minimal(**change)))


@pytest.mark.parametrize("text", ["", "{", "[]", "null", '"config"'])
def test_text_that_is_not_a_configuration_object_is_refused(text: str) -> None:
    with pytest.raises(AgentConfigError):
        parse_agent_config(text)
