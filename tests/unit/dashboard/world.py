"""A small SD-WAN namespace as the API server would hold it: three sites, their paths, two policies."""

from __future__ import annotations

from typing import Any

from patronus.kube.resource import PATH, POLICY, SITE

NAMESPACE = "wan"
SITES = ("a", "b", "c")
UNDERLAYS = ("fiber", "lte")


def site(name: str, phase: str = "Active") -> dict[str, Any]:
    return {
        "apiVersion": SITE.api_version,
        "kind": "Site",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "location": f"branch {name}",
            "wireguard": {"listenPort": 51820, "endpoints": [f"{name}-{u}.example:51820" for u in UNDERLAYS]},
            "underlays": [{"name": u, "endpoint": f"{name}-{u}.example:51820"} for u in UNDERLAYS],
            "subnets": ["10.0.0.0/24"],
        },
        "status": {"phase": phase, "healthScore": 97.5, "activePaths": 4},
    }


def path_name(source: str, destination: str, underlay: str) -> str:
    return f"m-{source}-{destination}-{underlay}"


def path(
    source: str, destination: str, underlay: str, status: dict[str, Any] | None = None
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": PATH.api_version,
        "kind": "Path",
        "metadata": {"name": path_name(source, destination, underlay), "namespace": NAMESPACE},
        "spec": {
            "source": {"siteRef": source},
            "destination": {"siteRef": destination},
            "underlay": underlay,
        },
    }
    if status is not None:
        obj["status"] = status
    return obj


def path_status(state: str, checked: str, latency: float = 12.0, loss: float = 0.0) -> dict[str, Any]:
    return {
        "state": state,
        "lastChecked": checked,
        "health": {"latencyMs": latency, "jitterMs": 1.5, "packetLossPct": loss, "healthScore": 95.0},
    }


def voice(in_use: str | None = None, failovers: int = 0) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": POLICY.api_version,
        "kind": "Policy",
        "metadata": {"name": "voice", "namespace": NAMESPACE},
        "spec": {
            "priority": 100,
            "match": {"protocol": "udp"},
            "action": {
                "type": "route",
                "primaryPath": {"siteRef": "a", "pathId": path_name("a", "b", "fiber")},
                "backupPath": {"siteRef": "a", "pathId": path_name("a", "b", "lte")},
                "qos": {"class": "realtime"},
            },
        },
    }
    if in_use is not None:
        obj["status"] = {
            "active": True,
            "pathInUse": {"siteRef": "a", "pathId": in_use},
            "failoverCount": failovers,
            "lastFailoverTime": "2026-11-30T10:00:00Z" if failovers else None,
        }
    return obj


def event(name: str, reason: str, about: str, when: str, kind: str = "Path") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": NAMESPACE, "uid": f"uid-{name}"},
        "involvedObject": {
            "apiVersion": PATH.api_version,
            "kind": kind,
            "name": about,
            "namespace": NAMESPACE,
        },
        "type": "Warning" if reason.endswith("Down") else "Normal",
        "reason": reason,
        "message": f"{about}: {reason}",
        "count": 1,
        "lastTimestamp": when,
    }


def world() -> list[dict[str, Any]]:
    objects = [site(name) for name in SITES]
    objects += [
        path(s, d, u, path_status("up", "2026-11-30T10:00:00.000Z"))
        for s in SITES
        for d in SITES
        if s != d
        for u in UNDERLAYS
    ]
    objects.append(voice(path_name("a", "b", "fiber")))
    objects.append(event("e1", "PathUp", path_name("a", "b", "fiber"), "2026-11-30T10:00:00Z"))
    pod_event = event("e2", "Pulled", "agent-pod", "2026-11-30T10:00:01Z", kind="Pod")
    pod_event["involvedObject"]["apiVersion"] = "v1"
    objects.append(pod_event)
    return objects
