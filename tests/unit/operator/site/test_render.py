"""The render memo: a site's configuration is rendered again exactly when something it is made of changed."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest

from patronus.api import Policy
from patronus.kube.resource import ObjectKey
from patronus.operator.reconcile.parsed import parsed
from patronus.operator.site import render as render_module
from patronus.operator.site.render import ConfigRenderer
from patronus.topology import config_json, peers_for, render_agent_config
from patronus.topology.peers import SiteView, UnderlayView

KEY = ObjectKey("ns", "nyc")


def _view(name: str, address: str, key: str = "pub") -> SiteView:
    return SiteView(
        name=name,
        public_key=base64.b64encode(hashlib.sha256(f"{key}-{name}".encode()).digest()).decode(),
        overlay_address=address,
        subnets=("10.1.0.0/16",),
        underlays=(UnderlayView("default", f"{name}.example.net:51820", 51820),),
        persistent_keepalive=25,
        listen_port=51820,
    )


def _policy(name: str, generation: int, port: str = "443") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "generation": generation},
        "spec": {
            "priority": 10,
            "match": {"protocol": "tcp", "dstPortRange": port},
            "action": {"type": "route"},
        },
    }


def _reconciler() -> ConfigRenderer:
    return ConfigRenderer(set)


def test_the_same_inputs_reuse_the_stored_text(monkeypatch: pytest.MonkeyPatch) -> None:
    renders: list[str] = []
    real = render_module.render_agent_config

    def counting(local: SiteView, *args: Any, **kwargs: Any) -> dict[str, Any]:
        renders.append(local.name)
        return real(local, *args, **kwargs)

    monkeypatch.setattr(render_module, "render_agent_config", counting)
    reconciler = _reconciler()
    local, peers = _view("nyc", "100.96.0.1"), [_view("sf", "100.96.0.2")]
    first = reconciler.render(KEY, local, peers, [], [_policy("web", 1)])
    assert first.digest == hashlib.sha256(first.json.encode()).hexdigest()
    assert [p["name"] for p in json.loads(first.json)["policies"]] == ["web"]
    assert renders == ["nyc"]

    # The ConfigMap holds the text: nothing is rendered again.
    again = reconciler.render(KEY, local, peers, [], [_policy("web", 1)], stored=first.json)
    assert again == first
    assert renders == ["nyc"]
    # The ConfigMap is not in the cache yet, or someone edited it: rendered again, same result.
    assert reconciler.render(KEY, local, peers, [], [_policy("web", 1)], stored=None) == first
    assert reconciler.render(KEY, local, peers, [], [_policy("web", 1)], stored=first.json + " ") == first
    assert renders == ["nyc", "nyc", "nyc"]


def test_a_changed_input_renders_again() -> None:
    reconciler = _reconciler()
    local, peers = _view("nyc", "100.96.0.1"), [_view("sf", "100.96.0.2")]
    base = reconciler.render(KEY, local, peers, [], [_policy("web", 1)])

    edited = _policy("web", 2, port="8443")  # a spec change bumps the generation
    changed = reconciler.render(KEY, local, peers, [], [edited])
    assert changed.digest != base.digest
    assert json.loads(changed.json)["policies"][0]["match"]["dstPorts"] == [[8443, 8443]]

    rekeyed_peer = [_view("sf", "100.96.0.2", key="new")]
    assert reconciler.render(KEY, local, rekeyed_peer, [], [edited]).digest != changed.digest
    added = reconciler.render(KEY, local, rekeyed_peer, [], [edited, _policy("dns", 1)])
    assert [p["name"] for p in json.loads(added.json)["policies"]] == ["dns", "web"]
    moved = reconciler.render(KEY, _view("nyc", "100.96.0.9"), rekeyed_peer, [], [edited, _policy("dns", 1)])
    assert json.loads(moved.json)["overlayAddress"] == "100.96.0.9"


def test_each_site_has_its_own_rendering() -> None:
    reconciler = _reconciler()
    policies = [_policy("web", 1)]
    nyc = reconciler.render(KEY, _view("nyc", "100.96.0.1"), [], [], policies)
    sf = reconciler.render(ObjectKey("ns", "sf"), _view("sf", "100.96.0.2"), [], [], policies)
    assert json.loads(nyc.json)["site"] == "nyc"
    assert json.loads(sf.json)["site"] == "sf"
    assert reconciler.render(KEY, _view("nyc", "100.96.0.1"), [], [], policies, stored=nyc.json) == nyc
    # Another site's text is never taken for this one's.
    assert reconciler.render(KEY, _view("nyc", "100.96.0.1"), [], [], policies, stored=sf.json) == nyc


def test_a_policy_is_rendered_once_for_every_site_that_enforces_it() -> None:
    reconciler = _reconciler()
    web = _policy("web", 1)
    nyc = reconciler.render(KEY, _view("nyc", "100.96.0.1"), [], [], [web])
    sf = reconciler.render(ObjectKey("ns", "sf"), _view("sf", "100.96.0.2"), [], [], [web])
    assert json.loads(nyc.json)["policies"] == json.loads(sf.json)["policies"]
    assert reconciler.policy_fragments == 1
    fragment = reconciler._policy_fragments["uid-web"]
    assert fragment.generation == 1
    assert fragment.config.match.dst_ports == [[443, 443]]

    reconciler.render(KEY, _view("nyc", "100.96.0.1"), [], [], [_policy("web", 2, port="53")])
    fragment = reconciler._policy_fragments["uid-web"]
    assert fragment.generation == 2
    assert fragment.config.match.dst_ports == [[53, 53]]


def _routed(name: str, priority: int, site: str | None, **spec: Any) -> dict[str, Any]:
    action: dict[str, Any] = {"type": "route", "qos": {"class": "interactive", "bandwidth": "10Mbps"}}
    if site is not None:
        action["primaryPath"] = {"siteRef": site, "pathId": f"{site}-to-sf"}
        action["backupPath"] = {"siteRef": site, "pathId": f"{site}-to-la"}
    return {
        "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "generation": 1},
        "spec": {"priority": priority, "match": {"protocol": "udp", **spec}, "action": action},
    }


@pytest.mark.parametrize("site", ["nyc", "sf"])
def test_the_spliced_text_is_the_whole_configuration_serialised(site: str) -> None:
    """The text is what rendering the whole configuration and serialising it gives, byte for byte."""
    policies = [
        _policy("web", 1),
        _routed("voice", 900, "nyc", dstPortRange="5000-5100", dscp=46),
        _routed("video", 900, "sf", srcCidrs=["10.1.0.0/16"], dstCidrs=["10.2.0.0/16", "10.0.0.0/8"]),
        _routed("bulk", 5, None, srcPortRange="1024-2048,3000"),
        {"metadata": {"name": "bad", "namespace": "ns", "uid": "uid-bad", "generation": 1}, "spec": {}},
    ]
    local, peers = _view(site, "100.96.0.1"), [_view("la", "100.96.0.2"), _view("nyc-2", "100.96.0.3")]
    text = _reconciler().render(ObjectKey("ns", site), local, peers, [], policies).json

    valid = [p for p in (parsed(Policy, p) for p in policies) if p is not None]
    peer_map = {u.name: tuple(peers_for(local, peers, u.name)) for u in local.underlays}
    assert text == config_json(render_agent_config(local, "ns", peer_map, [], valid))
    names = [p["name"] for p in json.loads(text)["policies"]]
    assert names == (["voice", "web", "bulk"] if site == "nyc" else ["video", "web", "bulk"])
