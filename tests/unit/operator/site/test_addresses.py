"""Overlay addresses: kept on the site's ConfigMap (operator-owned), probed through an index."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import pytest

from patronus.kube.resource import CONFIG_MAP
from patronus.operator.site.addresses import OverlayAddresses, stored_address
from tests.unit.operator.world import NS, World


def config_map(
    name: str, *, annotation: str | None = None, config: dict[str, Any] | None = None
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": NS,
        "labels": {"app.kubernetes.io/managed-by": "patronus-operator"},
    }
    if annotation is not None:
        metadata["annotations"] = {"sdwan.patronus.dev/overlay-address": annotation}
    obj: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata}
    if config is not None:
        obj["data"] = {"config.json": json.dumps(config)}
    return obj


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        (config_map("a-agent", annotation="100.96.1.2"), "100.96.1.2"),
        (config_map("a-agent", annotation="not an address"), None),
        (config_map("a-agent", annotation="10.0.0.1"), None),  # outside the pool
        (config_map("a-agent", annotation="fd00::1"), None),
        (config_map("a-agent", config={"overlayAddress": "100.96.7.7"}), "100.96.7.7"),  # written before
        (
            config_map("a-agent", annotation="100.96.1.2", config={"overlayAddress": "100.96.7.7"}),
            "100.96.1.2",
        ),
        (config_map("a-agent", config={"overlayAddress": ["x"]}), None),
        ({"metadata": {"name": "a-agent"}, "data": {"config.json": "not json"}}, None),
        (None, None),
    ],
)
def test_the_stored_address(stored: dict[str, Any] | None, expected: str | None) -> None:
    assert stored_address(stored) == expected


async def test_an_address_held_by_another_sites_config_map_is_skipped() -> None:
    world = World()
    addresses = OverlayAddresses(world.caches.child(CONFIG_MAP))
    preferred = (await addresses.assign(NS, "a")).address
    assert preferred is not None
    addresses.release(NS, "a")
    world.seed(config_map("b-agent", annotation=preferred))
    assert (await addresses.assign(NS, "a")).address != preferred


async def test_a_full_pool_is_a_condition() -> None:
    world = World()
    addresses = OverlayAddresses(world.caches.child(CONFIG_MAP), ipaddress.ip_network("100.96.0.0/30"))
    given = {n: (await addresses.assign(NS, n)).address for n in ("a", "b")}
    assert set(given.values()) == {"100.96.0.1", "100.96.0.2"}
    full = await addresses.assign(NS, "c")
    assert full.address is None
    assert (full.condition.status, full.condition.reason) == ("False", "PoolExhausted")
    addresses.release(NS, "a")
    assert (await addresses.assign(NS, "c")).address == given["a"]
