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


def test_sites_are_found_by_their_overlay_address_once_they_have_one() -> None:
    site: dict[str, Any] = {"metadata": {"name": "a", "namespace": "ns"}, "spec": {}}
    assert indexes.site_overlay_address(site) == []
    site["status"] = {"overlayAddress": "100.96.3.4"}
    assert indexes.site_overlay_address(site) == ["ns/100.96.3.4"]
    site["status"] = {"overlayAddress": ""}
    assert indexes.site_overlay_address(site) == []
