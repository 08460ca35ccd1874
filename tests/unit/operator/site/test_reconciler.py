"""The Site reconciler against FakeKube: given these objects, one reconcile writes exactly these."""

from __future__ import annotations

import json
from typing import Any

import pytest

from patronus.kube.resource import CONFIG_MAP, DEPLOYMENT, LEASE, ROLE, SECRET, SITE
from patronus.operator.site.heartbeats import gone_stale
from patronus.operator.site.reconciler import SiteReconciler
from patronus.operator.wiring.filters import site_changed_beyond_heartbeat
from patronus.wireguard.keys import generate_private_key, public_key_for
from tests.unit.operator.world import World, mesh, path, secret, site, writes_of

USER_PRIVATE = generate_private_key()
USER_PUBLIC = public_key_for(USER_PRIVATE)
EXTERNAL = {"publicKey": USER_PUBLIC, "endpoints": ["a.example.net:51820"]}
FROM_SECRET = {**EXTERNAL, "privateKeySecretRef": {"name": "a-key"}}
FOR_A = {"sdwan.patronus.dev/site": "a"}

WAVE_ONE_GENERATED = [
    ("apply", "secrets", "a-wireguard"),
    ("apply", "configmaps", "a-agent"),
    ("apply", "serviceaccounts", "a-agent"),
    ("apply", "roles", "a-agent"),
    ("apply", "leases", "a-agent"),
    ("apply", "services", "a-wg"),
]
WAVE_TWO = [("apply", "rolebindings", "a-agent"), ("apply", "deployments", "a-agent")]

CASES: dict[str, tuple[list[dict[str, Any]], list[tuple[str, str, str]]]] = {
    "generated key: its Secret created first, the other children in two waves, the status with the second": (
        [site("a")],
        [
            ("create", "secrets", "a-wireguard"),
            *WAVE_ONE_GENERATED[1:],
            *WAVE_TWO,
            ("apply", "sites/status", "a"),
        ],
    ),
    "external site: configuration and identity only": (
        [site("a", wireguard=EXTERNAL)],
        [
            ("apply", "configmaps", "a-agent"),
            ("apply", "serviceaccounts", "a-agent"),
            ("apply", "roles", "a-agent"),
            ("apply", "leases", "a-agent"),
            ("apply", "rolebindings", "a-agent"),
            ("apply", "sites/status", "a"),
        ],
    ),
    "key from the user's Secret: no Secret of ours": (
        [site("a", wireguard=FROM_SECRET), secret("a-key", {"privateKey": USER_PRIVATE}, FOR_A)],
        [*WAVE_ONE_GENERATED[1:], *WAVE_TWO, ("apply", "sites/status", "a")],
    ),
    "invalid spec: only the status": (
        [site("a", wireguard={"endpoints": []})],
        [("apply", "sites/status", "a")],
    ),
    "deleted: nothing": ([site("b")], []),
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_one_reconcile_writes_exactly(case: str) -> None:
    objects, expected = CASES[case]
    world = World(*objects)
    assert writes_of(await world.reconcile(SiteReconciler(world.ctx), "a")) == expected


@pytest.mark.parametrize("case", sorted(CASES))
async def test_a_second_reconcile_of_an_unchanged_world_writes_nothing(case: str) -> None:
    objects, _ = CASES[case]
    world = World(*objects)
    reconciler = SiteReconciler(world.ctx)
    await world.reconcile(reconciler, "a")
    assert await world.reconcile(reconciler, "a") == []
    # A fresh process (empty memos) finds the same: every child and the status are current.
    assert await world.reconcile(SiteReconciler(world.ctx), "a") == []


async def test_the_status_says_what_the_operator_knows() -> None:
    world = World(site("a"))
    await world.reconcile(SiteReconciler(world.ctx), "a")
    status = world.status(SITE, "a")
    assert status["phase"] == "Pending"
    assert status["configMap"] == "a-agent"
    assert status["observedGeneration"] == 1
    assert (
        status["overlayAddress"]
        == world.get(CONFIG_MAP, "a-agent")["metadata"]["annotations"]["sdwan.patronus.dev/overlay-address"]
    )
    assert world.conditions(SITE, "a") == {
        "AddressAssigned": ("True", "Assigned"),
        "AgentReporting": ("False", "NeverReported"),
        "ConfigApplied": ("Unknown", "NotReported"),
        "KeysReady": ("True", "KeyGenerated"),
        "Ready": ("False", "NeverReported"),
        "SubnetsAccepted": ("True", "NoConflict"),
    }


async def test_an_invalid_spec_fails_the_site_and_says_where() -> None:
    world = World(site("a", wireguard={"endpoints": []}))
    await world.reconcile(SiteReconciler(world.ctx), "a")
    status = world.status(SITE, "a")
    assert status["phase"] == "Failed"
    ready = status["conditions"][0]
    assert (ready["type"], ready["reason"]) == ("Ready", "InvalidSpec")
    assert "spec.wireguard.endpoints" in ready["message"]
    assert world.events.reasons() == ["InvalidSpec"]
    await world.reconcile(SiteReconciler(world.ctx), "a")
    assert world.events.reasons() == ["InvalidSpec"], "said once"


async def test_a_key_that_does_not_match_fails_the_site() -> None:
    world = World(
        site("a", wireguard=FROM_SECRET), secret("a-key", {"privateKey": generate_private_key()}, FOR_A)
    )
    await world.reconcile(SiteReconciler(world.ctx), "a")
    assert world.status(SITE, "a")["phase"] == "Failed"
    assert world.conditions(SITE, "a")["KeysReady"] == ("False", "KeyMismatch")
    assert world.events.reasons() == ["SiteFailed"]


async def test_the_agent_gets_its_key_mounted_and_may_read_only_that_secret() -> None:
    world = World(site("a", wireguard=FROM_SECRET), secret("a-key", {"privateKey": USER_PRIVATE}, FOR_A))
    await world.reconcile(SiteReconciler(world.ctx), "a")
    pod = world.get(DEPLOYMENT, "a-agent")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["wireguard-key"]["secret"]["secretName"] == "a-key"
    assert "--key-file" in pod["containers"][0]["args"]
    secrets = [r for r in world.get(ROLE, "a-agent")["rules"] if r["resources"] == ["secrets"]]
    assert secrets == [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": ["a-key"]}
    ]


async def test_a_generated_key_is_kept_across_reconciles_and_processes() -> None:
    world = World(site("a"))
    await world.reconcile(SiteReconciler(world.ctx), "a")
    first = world.get(SECRET, "a-wireguard")["data"]
    assert await world.reconcile(SiteReconciler(world.ctx), "a") == []
    assert world.get(SECRET, "a-wireguard")["data"] == first


def _reads(world: World, since: int) -> list[tuple[str, str, str]]:
    return [(r.verb, r.kind, r.name) for r in world.kube.requests[since:] if not r.is_write]


async def test_a_new_sites_key_costs_no_read() -> None:
    world = World(site("a"))
    mark = world.kube.mark()
    await world.reconcile(SiteReconciler(world.ctx), "a")
    assert _reads(world, mark) == []
    assert world.conditions(SITE, "a")["KeysReady"] == ("True", "KeyGenerated")


async def test_the_cache_lagging_our_own_key_write_never_replaces_the_key() -> None:
    world = World(site("a"))
    reconciler = SiteReconciler(world.ctx)
    await world.reconcile(reconciler, "a", sync=False)
    first = world.get(SECRET, "a-wireguard")["data"]
    # The same process remembers the pair it wrote: nothing is read, the key stays.
    mark = world.kube.mark()
    await world.reconcile(reconciler, "a", sync=False)
    assert _reads(world, mark) == []
    assert world.get(SECRET, "a-wireguard")["data"] == first
    # Another process (a new leader) that has not seen the Secret yet: its create fails, the Secret is
    # read, and its pair is the one used.
    other = SiteReconciler(world.ctx)
    mark = world.kube.mark()
    await world.reconcile(other, "a", sync=False)
    assert world.last_result is not None
    assert world.last_result.requeue
    assert _reads(world, mark) == [("get", "secrets", "a-wireguard")]
    await world.reconcile(other, "a")
    assert world.get(SECRET, "a-wireguard")["data"] == first
    assert world.conditions(SITE, "a")["KeysReady"] == ("True", "KeyGenerated")


async def test_a_secret_the_cache_does_not_hold_keeps_its_key() -> None:
    """A ``{site}-wireguard`` Secret without the site label is not cached: its pair is still the site's."""
    private = generate_private_key()
    world = World(
        site("a"), secret("a-wireguard", {"privateKey": private, "publicKey": public_key_for(private)})
    )
    reconciler = SiteReconciler(world.ctx)
    await world.reconcile(reconciler, "a")
    assert world.last_result is not None
    assert world.last_result.requeue
    await world.reconcile(reconciler, "a")
    assert world.status(SITE, "a")["publicKey"] == public_key_for(private)


def _config(world: World, name: str) -> dict[str, Any]:
    return dict(json.loads(world.get(CONFIG_MAP, f"{name}-agent")["data"]["config.json"]))


async def test_peers_come_from_operator_owned_data_never_from_an_agent_written_status() -> None:
    """The attack: b's agent writes a's overlay address and a key of its choosing into b's status."""
    world = World(site("a"), site("b"), mesh("m", ["a", "b"]))
    reconciler = SiteReconciler(world.ctx)
    for name in ("a", "b", "a"):
        await world.reconcile(reconciler, name)
    a_address = world.status(SITE, "a")["overlayAddress"]
    b_public = world.status(SITE, "b")["publicKey"]
    honest = _config(world, "a")

    forged = public_key_for(generate_private_key())
    await world.kube.apply(
        {
            "apiVersion": SITE.api_version,
            "kind": "Site",
            "metadata": {"name": "b", "namespace": "ns"},
            "status": {"overlayAddress": a_address, "publicKey": forged, "lastHeartbeatTime": world.later(0)},
        },
        field_manager="patronus-agent",
        subresource="status",
        kind=SITE,
    )
    world.sync()
    await world.reconcile(reconciler, "a")
    await world.reconcile(SiteReconciler(world.ctx), "a")  # a fresh process too
    peer = _config(world, "a")["interfaces"][0]["peers"][0]
    assert peer["site"] == "b"
    assert peer["publicKey"] == b_public != forged
    assert f"{a_address}/32" not in peer["allowedIPs"]
    assert _config(world, "a") == honest
    await world.reconcile(reconciler, "b")
    assert world.status(SITE, "b")["overlayAddress"] != a_address, "the operator writes back its own"


async def test_overlay_addresses_are_kept_on_the_config_map_and_never_collide() -> None:
    names = [f"s{i}" for i in range(30)]
    world = World(*(site(n) for n in names))
    reconciler = SiteReconciler(world.ctx)
    for name in names:
        await world.reconcile(reconciler, name, sync=False)  # the cache lags every allocation
    world.sync()
    addresses = {
        n: world.get(CONFIG_MAP, f"{n}-agent")["metadata"]["annotations"][
            "sdwan.patronus.dev/overlay-address"
        ]
        for n in names
    }
    assert len(set(addresses.values())) == len(names)
    fresh = SiteReconciler(world.ctx)  # a restarted operator keeps every address
    for name in names:
        assert await world.reconcile(fresh, name) == []


async def _agent_reports(world: World, name: str, **status: Any) -> None:
    body = {"apiVersion": SITE.api_version, "kind": "Site", "metadata": {"name": name, "namespace": "ns"}}
    await world.kube.apply(
        {**body, "status": status}, field_manager="patronus-agent", subresource="status", kind=SITE
    )
    world.sync()


async def test_the_agents_report_makes_the_site_active_and_its_refusal_degraded() -> None:
    world = World(site("a"), path("a-b", "a", "b"), site("b"))
    reconciler = SiteReconciler(world.ctx)
    await world.reconcile(reconciler, "a")
    digest = world.get(CONFIG_MAP, "a-agent")["metadata"]["annotations"]["sdwan.patronus.dev/config-digest"]
    await world.kube.apply(
        {**path("a-b", "a", "b"), "status": {"state": "up", "lastChecked": world.later(0)}},
        field_manager="patronus-agent",
        subresource="status",
    )
    await _agent_reports(world, "a", lastHeartbeatTime=world.later(0), agent={"configDigest": digest})
    writes = writes_of(await world.reconcile(reconciler, "a"))
    assert writes == [("apply", "sites/status", "a")]
    assert world.status(SITE, "a")["phase"] == "Active"
    assert world.conditions(SITE, "a")["ConfigApplied"] == ("True", "Applied")
    assert world.last_result is None, "no requeue: the heartbeat scan finds staleness"
    assert world.events.reasons() == ["SiteActive"]
    # The agent's own fields stay the agent's.
    assert world.status(SITE, "a")["agent"] == {"configDigest": digest}

    await _agent_reports(
        world, "a", lastHeartbeatTime=world.later(1), agent={"configDigest": digest, "configError": "bad"}
    )
    world.clock.advance(1)
    await world.reconcile(reconciler, "a")
    assert world.conditions(SITE, "a")["ConfigApplied"] == ("True", "Applied"), "it runs the newest"
    await _agent_reports(
        world, "a", lastHeartbeatTime=world.later(2), agent={"configDigest": "0" * 64, "configError": "bad"}
    )
    await world.reconcile(reconciler, "a")
    assert world.status(SITE, "a")["phase"] == "Degraded"
    assert world.conditions(SITE, "a")["Ready"] == ("False", "ConfigRejected")
    assert world.events.reasons() == ["SiteActive", "SiteDegraded"]


async def test_a_heartbeat_the_site_controller_drops_would_have_written_nothing() -> None:
    """The proof for ``site_changed_beyond_heartbeat``: an update it rejects leaves the reconcile's
    writes unchanged, and the heartbeat scan (``site.heartbeats``) still finds the heartbeat going stale."""
    world = World(site("a"), path("a-b", "a", "b"), site("b"))
    reconciler = SiteReconciler(world.ctx)
    await world.reconcile(reconciler, "a")
    digest = world.get(CONFIG_MAP, "a-agent")["metadata"]["annotations"]["sdwan.patronus.dev/config-digest"]
    first = world.get(SITE, "a")
    report = {"agent": {"configDigest": digest}, "policies": [{"name": "p", "matchedFlows": 1}]}
    await _agent_reports(world, "a", lastHeartbeatTime=world.later(0), **report)
    assert site_changed_beyond_heartbeat(first, world.get(SITE, "a")), "the first heartbeat counts"
    await world.reconcile(reconciler, "a")
    assert world.conditions(SITE, "a")["AgentReporting"] == ("True", "HeartbeatFresh")

    for beat in (10, 20):  # two reports, dropped: a reconcile of each would have written nothing
        world.clock.advance(10)
        before = world.get(SITE, "a")
        report["policies"] = [{"name": "p", "matchedFlows": beat}]
        await _agent_reports(world, "a", lastHeartbeatTime=world.later(0), **report)
        assert not site_changed_beyond_heartbeat(before, world.get(SITE, "a"))
        assert await world.reconcile(SiteReconciler(world.ctx), "a") == []

    def scanned() -> list[str]:
        found = gone_stale(
            world.ctx.caches.sites.list(), world.ctx.caches.child(LEASE).get, world.clock.now()
        )
        return [key.name for key in found]

    world.clock.advance(30.0)  # 30 s after the last report: not yet stale
    assert scanned() == []
    world.clock.advance(0.5)  # no report since the one at 20 s: stale now, and found by the scan
    assert scanned() == ["a"]
    assert writes_of(await world.reconcile(reconciler, "a")) == [("apply", "sites/status", "a")]
    assert world.conditions(SITE, "a")["AgentReporting"] == ("False", "HeartbeatStale")
    stale = world.get(SITE, "a")
    await _agent_reports(world, "a", lastHeartbeatTime=world.later(0), **report)
    assert site_changed_beyond_heartbeat(stale, world.get(SITE, "a")), "the heartbeat after a silence counts"
