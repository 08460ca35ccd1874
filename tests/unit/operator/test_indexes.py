"""Cache index functions: what each object is found by."""

from __future__ import annotations

from typing import Any

from patronus.operator import indexes


def _policy(action: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": "ns"}, "spec": {"action": action}}


def test_policies_are_found_by_the_paths_and_sites_they_name() -> None:
    routed = _policy(
        {
            "primaryPath": {"siteRef": "nyc", "pathId": "nyc-sf-fiber"},
            "backupPath": {"siteRef": "nyc", "pathId": "nyc-sf-lte"},
        }
    )
    assert indexes.policy_paths(routed) == ["ns/nyc-sf-fiber", "ns/nyc-sf-lte"]
    assert indexes.policy_sites(routed) == ["ns/nyc"]
    everywhere = _policy({"type": "route"})
    assert indexes.policy_paths(everywhere) == []
    assert indexes.policy_sites(everywhere) == ["ns/*"]
    assert indexes.policy_paths({"metadata": {"name": "p", "namespace": "ns"}, "spec": "broken"}) == []


def test_site_config_maps_are_found_by_the_overlay_address_the_operator_recorded() -> None:
    config_map: dict[str, Any] = {"metadata": {"name": "a-agent", "namespace": "ns"}}
    assert indexes.config_map_overlay_address(config_map) == []
    config_map["metadata"]["annotations"] = {"sdwan.patronus.dev/overlay-address": "100.96.3.4"}
    assert indexes.config_map_overlay_address(config_map) == ["ns/100.96.3.4"]
    config_map["metadata"]["annotations"] = {"sdwan.patronus.dev/overlay-address": ""}
    assert indexes.config_map_overlay_address(config_map) == []


def test_a_sites_status_address_is_not_indexed() -> None:
    """The agent may write its Site's status: an address there is never taken for the allocation."""
    site = {"metadata": {"name": "a", "namespace": "ns"}, "status": {"overlayAddress": "100.96.3.4"}}
    assert indexes.config_map_overlay_address(site) == []


def test_sites_are_found_by_the_policies_their_agent_reports_on() -> None:
    site: dict[str, Any] = {"metadata": {"name": "a", "namespace": "ns"}}
    assert indexes.site_reported_policies(site) == []
    site["status"] = {"policies": [{"name": "voice"}, {"name": "bulk"}, {"nope": 1}, "junk"]}
    assert indexes.site_reported_policies(site) == ["ns/bulk", "ns/voice"]
