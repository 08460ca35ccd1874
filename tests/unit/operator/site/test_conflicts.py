"""Claims one Site makes that another contests, and the Secret a Site may take its key from."""

from __future__ import annotations

import json
from typing import Any

import pytest

from patronus.kube.resource import CONFIG_MAP, DEPLOYMENT, ROLE, SECRET, SITE
from patronus.operator.site.reconciler import SiteReconciler
from patronus.wireguard.keys import generate_private_key, public_key_for
from tests.unit.operator.world import World, mesh, secret, site

PRIVATE = generate_private_key()
PUBLIC = public_key_for(PRIVATE)


def by_secret(name: str, key: str = "privateKey") -> dict[str, Any]:
    return {
        "publicKey": PUBLIC,
        "endpoints": ["a.example.net:51820"],
        "privateKeySecretRef": {"name": name, "key": key},
    }


def _peers(world: World, name: str) -> dict[str, dict[str, Any]]:
    config = json.loads(world.get(CONFIG_MAP, f"{name}-agent")["data"]["config.json"])
    return {p["site"]: p for p in config["interfaces"][0]["peers"]}


async def _reconcile_all(world: World, *names: str) -> None:
    reconciler = SiteReconciler(world.ctx)
    for _ in range(2):  # keys and addresses land in the first round, peers see them in the second
        for name in names:
            await world.reconcile(reconciler, name)


# -- privateKeySecretRef ----------------------------------------------------------------------------------

UNUSABLE = {
    "no such Secret": [],
    "a Secret without the site label": [secret("a-key", {"privateKey": PRIVATE})],
    "a Secret labelled for another site": [
        secret("a-key", {"privateKey": PRIVATE}, {"sdwan.patronus.dev/site": "b"})
    ],
    "another site's own key Secret": [
        secret("b-wireguard", {"privateKey": PRIVATE, "publicKey": PUBLIC}, {"sdwan.patronus.dev/site": "b"})
    ],
    "no such key in a labelled Secret": [
        secret("a-key", {"other": PRIVATE}, {"sdwan.patronus.dev/site": "a"})
    ],
}


@pytest.mark.parametrize("case", sorted(UNUSABLE))
async def test_a_secret_that_fails_the_rule_is_never_granted_mounted_or_described(case: str) -> None:
    name = "b-wireguard" if "own key" in case else "a-key"
    world = World(site("a", wireguard=by_secret(name)), *UNUSABLE[case])
    await world.reconcile(SiteReconciler(world.ctx), "a")
    ready = next(c for c in world.status(SITE, "a")["conditions"] if c["type"] == "KeysReady")
    assert (ready["status"], ready["reason"]) == ("False", "KeySecretNotUsable")
    # The same words whatever failed: the condition tells nobody which Secrets or keys exist.
    assert ready["message"] == (
        f"wireguard.privateKeySecretRef: Secret {name} is not usable: it must exist in this namespace, "
        "carry the label sdwan.patronus.dev/site=a and hold the private key under privateKey"
    )
    assert not [r for r in world.get(ROLE, "a-agent")["rules"] if r["resources"] == ["secrets"]]
    pod = world.get(DEPLOYMENT, "a-agent")["spec"]["template"]["spec"]
    assert [v["name"] for v in pod["volumes"]] == ["config", "dev-net-tun"]  # no key volume
    assert "--key-file" not in pod["containers"][0]["args"]
    assert not [r for r in world.kube.requests if r.kind == "secrets" and r.verb == "get"], "never read"


async def test_an_unlabelled_secret_is_not_even_in_the_operators_cache() -> None:
    world = World(
        secret("a-key", {"privateKey": PRIVATE}),
        secret("b-key", {"x": "y"}, {"sdwan.patronus.dev/site": "b"}),
    )
    assert world.caches.child(SECRET).get("ns", "a-key") is None
    assert world.caches.child(SECRET).get("ns", "b-key") is not None


async def test_labelling_the_secret_for_the_site_makes_it_usable() -> None:
    world = World(site("a", wireguard=by_secret("a-key")), secret("a-key", {"privateKey": PRIVATE}))
    reconciler = SiteReconciler(world.ctx)
    await world.reconcile(reconciler, "a")
    assert world.conditions(SITE, "a")["KeysReady"] == ("False", "KeySecretNotUsable")
    world.seed(secret("a-key2", {"privateKey": PRIVATE}, {"sdwan.patronus.dev/site": "a"}))
    await world.kube.patch_merge(
        SITE, "ns", "a", {"spec": {"wireguard": {"privateKeySecretRef": {"name": "a-key2"}}}}
    )
    world.sync()
    await world.reconcile(reconciler, "a")
    assert world.conditions(SITE, "a")["KeysReady"] == ("True", "KeyFromSecret")
    assert (
        "--key-file" in world.get(DEPLOYMENT, "a-agent")["spec"]["template"]["spec"]["containers"][0]["args"]
    )


# -- duplicate public keys --------------------------------------------------------------------------------


async def test_a_second_site_with_a_sites_public_key_is_refused_and_left_out_of_every_peer() -> None:
    external = {"publicKey": PUBLIC, "endpoints": ["x.example.net:51820"]}
    world = World(site("a", wireguard=external), site("c"), mesh("m", ["a", "b", "c"]))
    world.clock.advance(10)
    world.seed(site("b", wireguard={**external, "endpoints": ["b.example.net:51820"]}))
    await _reconcile_all(world, "a", "b", "c")
    assert world.conditions(SITE, "a")["KeysReady"] == ("True", "ExternalSite")
    keys = next(c for c in world.status(SITE, "b")["conditions"] if c["type"] == "KeysReady")
    assert (keys["status"], keys["reason"]) == ("False", "DuplicatePublicKey")
    assert "Site a" in keys["message"]
    assert world.status(SITE, "b")["phase"] == "Failed"
    assert set(_peers(world, "c")) == {"a"}, "one peer per key: the first claim"
    assert _peers(world, "c")["a"]["endpoint"] == "x.example.net:51820"


async def test_copying_a_generated_public_key_gets_nothing() -> None:
    world = World(site("a"), site("c"), mesh("m", ["a", "b", "c"]))
    await _reconcile_all(world, "a", "c")
    stolen = world.status(SITE, "a")["publicKey"]
    world.clock.advance(10)
    world.seed(site("b", wireguard={"publicKey": stolen, "endpoints": ["b.example.net:51820"]}))
    await _reconcile_all(world, "a", "b", "c")
    assert world.conditions(SITE, "b")["KeysReady"] == ("False", "DuplicatePublicKey")
    assert _peers(world, "c")["a"]["publicKey"] == stolen
    assert "b" not in _peers(world, "c")


# -- subnets ----------------------------------------------------------------------------------------------


async def test_a_subnet_another_site_routes_first_is_not_routed_to_the_newcomer() -> None:
    world = World(site("a", subnets=["10.1.0.0/16"]), site("c"), mesh("m", ["a", "b", "c"]))
    world.clock.advance(10)
    world.seed(site("b", subnets=["10.1.2.0/24", "10.2.0.0/16"]))
    await _reconcile_all(world, "a", "b", "c")
    assert world.conditions(SITE, "a")["SubnetsAccepted"] == ("True", "NoConflict")
    accepted = next(c for c in world.status(SITE, "b")["conditions"] if c["type"] == "SubnetsAccepted")
    assert (accepted["status"], accepted["reason"]) == ("False", "SubnetConflict")
    assert "10.1.2.0/24 overlaps a subnet of Site a" in accepted["message"]
    peers = _peers(world, "c")
    assert "10.1.0.0/16" in peers["a"]["allowedIPs"]
    assert "10.1.2.0/24" not in peers["b"]["allowedIPs"]
    assert "10.2.0.0/16" in peers["b"]["allowedIPs"], "only the contested prefix is withheld"


async def test_a_subnet_holding_a_sites_endpoint_is_never_routed() -> None:
    world = World(
        site("a", wireguard={"endpoints": ["198.51.100.7:51820"]}),
        site("b", subnets=["198.51.100.0/24"]),
        site("c"),
        mesh("m", ["a", "b", "c"]),
    )
    await _reconcile_all(world, "a", "b", "c")
    accepted = next(c for c in world.status(SITE, "b")["conditions"] if c["type"] == "SubnetsAccepted")
    assert "198.51.100.0/24 holds the endpoint of Site a" in accepted["message"]
    assert _peers(world, "c")["b"]["allowedIPs"] == [_peers(world, "c")["b"]["allowedIPs"][0]]
