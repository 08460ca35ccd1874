"""Update filters: which changes requeue whom (a Path's heartbeat, a child's status, peers' identity)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from patronus.operator.wiring.filters import (
    lease_renewal_matters,
    more_than_status_changed,
    overlay_address_changed,
    path_changed_beyond_check,
    path_summary_changed,
    policy_reports_changed,
    policy_states_changed,
    public_key_changed,
    site_changed_beyond_heartbeat,
    spec_changed,
    spec_or_agent_reporting_changed,
)
from tests.unit.operator.world import World, site


def _path_of(**status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p", "generation": 1}, "spec": {}, "status": status}


def test_path_heartbeats_do_not_count_as_changes_for_sites_and_meshes() -> None:
    old = _path_of(state="up", health={"healthScore": 97.5, "latencyMs": 10.1}, lastChecked="t1")
    heartbeat = _path_of(state="up", health={"healthScore": 97.5, "latencyMs": 10.3}, lastChecked="t2")
    assert not path_summary_changed(old, heartbeat)
    assert path_summary_changed(old, _path_of(state="down", health={"healthScore": 0.0}, lastChecked="t2"))
    assert path_summary_changed(old, _path_of(state="up", health={"healthScore": 90.0}, lastChecked="t2"))
    respecced = copy.deepcopy(old)
    respecced["metadata"]["generation"] = 2
    assert path_summary_changed(old, respecced)


def test_a_childs_status_alone_does_not_requeue_its_site() -> None:
    deployment: dict[str, Any] = {
        "metadata": {"name": "a-agent", "resourceVersion": "1", "generation": 1, "managedFields": []},
        "spec": {"replicas": 1},
        "status": {"readyReplicas": 0},
    }
    pods_came_up = copy.deepcopy(deployment)
    pods_came_up["metadata"]["resourceVersion"] = "2"
    pods_came_up["metadata"]["managedFields"] = [{"manager": "kube-controller-manager"}]
    pods_came_up["status"] = {"readyReplicas": 1}
    assert not more_than_status_changed(deployment, pods_came_up)

    scaled = copy.deepcopy(pods_came_up)
    scaled["spec"]["replicas"] = 3
    assert more_than_status_changed(pods_came_up, scaled)
    relabelled = copy.deepcopy(pods_came_up)
    relabelled["metadata"]["labels"] = {"someone": "else"}
    assert more_than_status_changed(pods_came_up, relabelled)
    config_map = {"metadata": {"name": "a-agent", "resourceVersion": "1"}, "data": {"config.json": "{}"}}
    edited = {"metadata": {"name": "a-agent", "resourceVersion": "2"}, "data": {"config.json": "{ }"}}
    assert more_than_status_changed(config_map, edited)


def test_what_peers_read_from_a_sites_children() -> None:
    secret = {"metadata": {"name": "a-wireguard"}, "data": {"privateKey": "p1", "publicKey": "k1"}}
    assert not public_key_changed(
        secret, {**secret, "metadata": {"name": "a-wireguard", "labels": {"x": "y"}}}
    )
    assert public_key_changed(secret, {**secret, "data": {"privateKey": "p2", "publicKey": "k2"}})
    config_map = {
        "metadata": {"annotations": {"sdwan.patronus.dev/overlay-address": "100.96.0.1"}},
        "data": {},
    }
    assert not overlay_address_changed(config_map, {**config_map, "data": {"config.json": "{}"}})
    moved = {"metadata": {"annotations": {"sdwan.patronus.dev/overlay-address": "100.96.0.2"}}}
    assert overlay_address_changed(config_map, moved)


def test_what_a_policy_reads_from_a_site() -> None:
    old = {"metadata": {"generation": 1}, "status": {"lastHeartbeatTime": "t1", "policies": [{"name": "p"}]}}
    heartbeat = {
        "metadata": {"generation": 1},
        "status": {"lastHeartbeatTime": "t2", "policies": [{"name": "p"}]},
    }
    assert not policy_reports_changed(old, heartbeat)
    counted = {"metadata": {"generation": 1}, "status": {"policies": [{"name": "p", "matchedFlows": 1}]}}
    assert policy_reports_changed(old, counted)
    assert policy_reports_changed(old, {**old, "metadata": {"generation": 2}})
    assert spec_changed(old, {**old, "metadata": {"generation": 2}})


def test_a_failover_shows_at_once_and_counters_may_wait() -> None:
    def site(**report: object) -> dict[str, object]:
        return {"metadata": {"generation": 1}, "status": {"policies": [{"name": "voice", **report}]}}

    before = site(active=True, pathInUse="fiber", matchedFlows=1)
    counted = site(active=True, pathInUse="fiber", matchedFlows=2)
    failed_over = site(active=True, pathInUse="lte", matchedFlows=2, failoverCount=1)
    assert policy_reports_changed(before, counted)
    assert not policy_states_changed(before, counted)
    assert policy_states_changed(counted, failed_over)


T0, T10, T20 = "2026-03-01T12:00:00.000Z", "2026-03-01T12:00:10.000Z", "2026-03-01T12:00:20.000Z"


def _site(reporting: str | None, generation: int = 1, **status: Any) -> dict[str, Any]:
    conditions = [{"type": "AgentReporting", "status": reporting}] if reporting else []
    return {
        "metadata": {"name": "a", "generation": generation, "resourceVersion": "7"},
        "spec": {"wireguard": {}},
        "status": {"phase": "Active", "conditions": conditions, **status},
    }


# (old, new) -> whether the Site's own reconcile must look again
SITE_UPDATES: dict[str, tuple[dict[str, Any], dict[str, Any], bool]] = {
    "a heartbeat while reporting": (
        _site("True", lastHeartbeatTime=T0, policies=[{"name": "p", "matchedFlows": 1}]),
        _site("True", lastHeartbeatTime=T10, policies=[{"name": "p", "matchedFlows": 9}]),
        False,
    ),
    "the first heartbeat": (_site("False"), _site("False", lastHeartbeatTime=T0), True),
    "a heartbeat after a silence the operator noticed": (
        _site("False", lastHeartbeatTime=T0),
        _site("False", lastHeartbeatTime=T20),
        True,
    ),
    "a heartbeat taken back": (_site("True", lastHeartbeatTime=T10), _site("True"), True),
    "a heartbeat earlier than the last": (
        _site("True", lastHeartbeatTime=T20),
        _site("True", lastHeartbeatTime=T10),
        True,
    ),
    "a heartbeat that is not a time": (
        _site("True", lastHeartbeatTime=T0),
        _site("True", lastHeartbeatTime="soon"),
        True,
    ),
    "the configuration the agent runs": (
        _site("True", lastHeartbeatTime=T0, agent={"configDigest": "a"}),
        _site("True", lastHeartbeatTime=T10, agent={"configDigest": "b"}),
        True,
    ),
    "the operator's own status write": (_site("False"), _site("True"), True),
    "the spec": (_site("True", lastHeartbeatTime=T0), _site("True", 2, lastHeartbeatTime=T0), True),
    "nothing but the resource version": (
        _site("True", lastHeartbeatTime=T0),
        {**_site("True", lastHeartbeatTime=T0), "metadata": {"name": "a", "generation": 1}},
        False,
    ),
}


@pytest.mark.parametrize("case", sorted(SITE_UPDATES))
def test_what_a_sites_own_reconcile_must_see(case: str) -> None:
    old, new, matters = SITE_UPDATES[case]
    assert site_changed_beyond_heartbeat(old, new) is matters


def _path(reporting: str, **status: Any) -> dict[str, Any]:
    conditions = [{"type": "Reporting", "status": reporting}]
    return {
        "metadata": {"name": "p", "generation": 1},
        "spec": {},
        "status": {"conditions": conditions, **status},
    }


def test_what_a_paths_own_reconcile_must_see() -> None:
    checked = _path("True", state="up", lastChecked=T0, health={"healthScore": 97.0})
    again = _path("True", state="up", lastChecked=T10, health={"healthScore": 91.0})
    assert not path_changed_beyond_check(checked, again), "a check while reporting"
    assert path_changed_beyond_check(checked, _path("True", state="down", lastChecked=T10)), "the state"
    stale = _path("False", state="unknown", lastChecked=T0)
    assert path_changed_beyond_check(stale, _path("False", state="unknown", lastChecked=T20)), "back"
    assert path_changed_beyond_check(again, checked), "a check time earlier than the last"


def test_policy_states_whatever_the_order_of_the_reports() -> None:
    def site(*reports: Any) -> dict[str, Any]:
        return {"metadata": {"generation": 1}, "status": {"policies": list(reports)}}

    voice, web = {"name": "voice", "active": True}, {"name": "web", "active": True, "matchedFlows": 1}
    assert not policy_states_changed(site(voice, web), site(web, voice)), "reordered: the same states"
    assert not policy_states_changed(site(voice, web), site(voice, {**web, "matchedFlows": 2}))
    assert policy_states_changed(site(voice, web), site(voice, {**web, "active": False}))
    assert policy_states_changed(site(voice, web), site(voice)), "a policy gone"
    assert policy_states_changed(site(voice), site({"name": "web", "active": True})), "another policy"
    assert not policy_states_changed(site(voice, "junk"), site(voice, "junk")), "odd entries are ignored"


def _lease(renewed: str | None, **spec: Any) -> dict[str, Any]:
    owner = {"apiVersion": "sdwan.patronus.dev/v1alpha1", "kind": "Site", "name": "a", "controller": True}
    body: dict[str, Any] = {"leaseDurationSeconds": 30, **spec}
    if renewed is not None:
        body["renewTime"] = renewed
    metadata = {"name": "a-agent", "namespace": "ns", "ownerReferences": [owner], "resourceVersion": renewed}
    return {"metadata": metadata, "spec": body}


def _relabelled(lease: dict[str, Any]) -> dict[str, Any]:
    return {**lease, "metadata": {**lease["metadata"], "labels": {"tier": "edge"}}}


def _reporting_site(status: str) -> dict[str, Any]:
    conditions = [{"type": "AgentReporting", "status": status, "reason": "R", "lastTransitionTime": T0}]
    return site("a", status={"conditions": conditions})


@pytest.mark.parametrize(
    ("reporting", "old", "new", "matters"),
    [
        ("True", _lease(T0), _lease(T10), False),  # the usual beat: the planned requeue reads it
        ("False", _lease(T0), _lease(T10), True),  # back from a silence
        ("True", _lease(None), _lease(T0), True),  # the first renewal
        ("True", _lease(T10), _lease(T0), True),  # backwards: the planned requeue would come too late
        ("True", _lease(T0), _lease(T0, leaseDurationSeconds=60), True),  # more than a renewal
        ("True", _lease(T0), _lease(T0), False),
        ("True", _lease(T0), {**_lease(T10), "status": {}}, False),  # a status a Lease cannot have
        ("True", _lease(T0), _relabelled(_lease(T10)), True),  # a renewal and a label
        ("True", _lease(T0), {**_lease(T10), "extra": 1}, True),  # a renewal and a new top-level field
    ],
)
def test_which_lease_renewals_requeue_the_site(
    reporting: str, old: dict[str, Any], new: dict[str, Any], matters: bool
) -> None:
    world = World(_reporting_site(reporting))
    assert lease_renewal_matters(world.ctx.caches.sites, old, new) is matters


def test_a_renewal_of_a_lease_whose_site_is_gone_counts() -> None:
    assert lease_renewal_matters(World().ctx.caches.sites, _lease(T0), _lease(T10))


def test_what_a_path_reads_from_its_sites() -> None:
    quiet = {"status": {"conditions": [{"type": "AgentReporting", "reason": "HeartbeatStale"}]}}
    fresh = {"status": {"conditions": [{"type": "AgentReporting", "reason": "HeartbeatFresh"}]}}
    base = {"metadata": {"name": "a", "generation": 1}, "spec": {}}
    assert spec_or_agent_reporting_changed({**base, **fresh}, {**base, **quiet})
    assert not spec_or_agent_reporting_changed({**base, **fresh}, {**base, **fresh, "x": 1})
    assert spec_or_agent_reporting_changed({**base, **quiet}, {**base, **fresh}), "back from quiet"
    assert not spec_or_agent_reporting_changed(base, {**base, **fresh}), "a first report: no Path cares"
