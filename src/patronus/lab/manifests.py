"""What the lab declares (pure): the Sites, one full Mesh and two example Policies in namespace ``lab``,
and the Paths the Mesh implies, which the lab then probes every second."""

from __future__ import annotations

import string
from typing import Any

from patronus.kube.resource import MESH, POLICY, SITE
from patronus.lab.plan import LabPlan
from patronus.topology.mesh import path_name

LAB_NAMESPACE = "lab"
MESH_NAME = "lab-mesh"
UNDERLAYS = ("fiber", "lte")
LISTEN_PORTS = {"fiber": 51820, "lte": 51821}
PATH_MONITORING = {"interval": "1s", "probesPerCheck": 5}


def site_names(count: int) -> list[str]:
    """``a``, ``b``, ``c`` ... then ``s27``, ``s28`` ...: short, since they appear in every Path name."""
    letters = string.ascii_lowercase
    return [letters[i] if i < len(letters) else f"s{i + 1}" for i in range(count)]


def _meta(name: str) -> dict[str, Any]:
    return {"name": name, "namespace": LAB_NAMESPACE}


def site_manifest(plan: LabPlan, site: str) -> dict[str, Any]:
    """A Site with no public key (the operator generates the pair) and one underlay per lab link."""
    endpoints = {u: plan.endpoint(site, u, LISTEN_PORTS[u]) for u in plan.underlays}
    return {
        "apiVersion": SITE.api_version,
        "kind": "Site",
        "metadata": _meta(site),
        "spec": {
            "location": f"lab namespace {plan.site(site).namespace}",
            "wireguard": {
                "listenPort": LISTEN_PORTS[plan.underlays[0]],
                "endpoints": list(endpoints.values()),
            },
            "underlays": [
                {"name": u, "endpoint": endpoints[u], "listenPort": LISTEN_PORTS[u]} for u in plan.underlays
            ],
            "subnets": [plan.site(site).lan_subnet],
        },
    }


def mesh_manifest(plan: LabPlan) -> dict[str, Any]:
    return {
        "apiVersion": MESH.api_version,
        "kind": "Mesh",
        "metadata": _meta(MESH_NAME),
        "spec": {"sites": [s.name for s in plan.sites], "topology": "full-mesh"},
    }


def mesh_path_names(plan: LabPlan) -> list[str]:
    """The Paths the full Mesh implies: every ordered pair of sites, every underlay."""
    names = [s.name for s in plan.sites]
    return [
        path_name(MESH_NAME, source, destination, underlay)
        for source in names
        for destination in names
        if source != destination
        for underlay in plan.underlays
    ]


def policy_manifests(plan: LabPlan) -> list[dict[str, Any]]:
    """Two examples enforced at the first site toward the second: voice with failover, bulk on LTE."""
    a, b = plan.sites[0].name, plan.sites[1].name

    def ref(underlay: str) -> dict[str, str]:
        return {"siteRef": a, "pathId": path_name(MESH_NAME, a, b, underlay)}

    voice = {
        "priority": 100,
        "match": {"protocol": "udp", "dstPortRange": "5060,10000-20000"},
        "action": {
            "type": "route",
            "primaryPath": ref("fiber"),
            "backupPath": ref("lte"),
            "qos": {"class": "realtime", "bandwidth": "20Mbps"},
        },
        "failover": {"threshold": 70, "cooldown": "10s"},
    }
    bulk = {
        "priority": 10,
        "match": {"protocol": "tcp", "dstPortRange": "873"},
        "action": {
            "type": "route",
            "primaryPath": ref("lte"),
            "qos": {"class": "bulk", "bandwidth": "10Mbps"},
        },
    }
    return [
        {"apiVersion": POLICY.api_version, "kind": "Policy", "metadata": _meta(name), "spec": spec}
        for name, spec in (("voice", voice), ("bulk", bulk))
    ]
