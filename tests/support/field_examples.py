"""Examples for every field with an admission rule: values the API server must admit and values it must
refuse, each refused one with the field the error names and a fragment of what it says.

The unit tests feed them to the pydantic models and the integration tests to the real API server; both
must give the verdict written here. ``tests/support/invalid_objects.py`` has the rules that span several
fields; these are the rules of one field (or one list) each.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from patronus.api import Mesh, Path, Policy, Site
from tests.support.invalid_objects import KEY_A, Obj, mesh, path, policy, site

BUILDERS: dict[str, Callable[[], Obj]] = {"Site": site, "Path": path, "Policy": policy, "Mesh": mesh}


@dataclass(frozen=True)
class Example:
    kind: str
    path: str
    """Where the value goes, dotted: ``spec.wireguard.endpoints``."""
    value: Any
    valid: bool
    field: str = ""
    """The field an error must name (``spec.wireguard.endpoints[0]``); ``path`` when empty."""
    says: str = ""
    """A fragment the API server's message must contain (case-insensitive)."""

    @property
    def id(self) -> str:
        return f"{self.kind}.{self.path}={self.value!r}"

    @property
    def error_field(self) -> str:
        return self.field or self.path

    @property
    def is_status(self) -> bool:
        return self.path.startswith("status.")

    def object(self) -> Obj:
        obj = copy.deepcopy(BUILDERS[self.kind]())
        *parents, last = self.path.split(".")
        node = obj
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = copy.deepcopy(self.value)
        return obj


def ok(kind: str, path_: str, *values: Any) -> list[Example]:
    return [Example(kind, path_, value, valid=True) for value in values]


def bad(kind: str, path_: str, says: str, *values: Any, field: str = "") -> list[Example]:
    return [Example(kind, path_, value, valid=False, field=field, says=says) for value in values]


def ok_items(kind: str, path_: str, *values: Any) -> list[Example]:
    """Each value alone as the one item of the list at ``path_``."""
    return [Example(kind, path_, [value], valid=True) for value in values]


def bad_items(kind: str, path_: str, says: str, *values: Any) -> list[Example]:
    return [Example(kind, path_, [value], valid=False, field=f"{path_}[0]", says=says) for value in values]


KEY_31_BYTES = "u3TIrcxVqJhNxDXYP5Ujt9xZ7kNOnkshoeMcIvJx2g=="
KEY_STRAY_BITS = "u3TIrcxVqJhNxDXYP5Ujt9xZ7kNOnkshoeMcIvJx2iz="
DIGEST = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
LONG_LABEL = "a" * 64
LONG_HOST = ".".join(["a" * 63] * 4)  # 255 characters
WG = "spec.wireguard"

SITE_SPEC = [
    *ok("Site", f"{WG}.publicKey", KEY_A),
    *bad("Site", f"{WG}.publicKey", "WireGuard key", "base64-encoded-key", KEY_31_BYTES, KEY_STRAY_BITS),
    *ok("Site", f"{WG}.listenPort", 1, 65535),
    *bad("Site", f"{WG}.listenPort", "", 0, 70000),
    *ok("Site", f"{WG}.persistentKeepalive", 0, 65535),
    *bad("Site", f"{WG}.persistentKeepalive", "", -1, 65536),
    *ok_items(
        "Site",
        f"{WG}.endpoints",
        "203.0.113.1:51820",
        "vpn.example.com:51820",
        "VPN.Example.COM:1",
        "[2001:db8::1]:51820",
        "[2001:DB8::1]:65535",
        "1.2.3.4.nip.io:443",
        "a:1",
        "xn--bcher-kva.example:51820",
        f"{'a' * 63}.example:51820",
        "169.254.0.0.example:51820",
        "198.51.100.255:51820",
    ),
    *bad_items(
        "Site",
        f"{WG}.endpoints",
        "host:port",
        "203.0.113.1",
        "203.0.113.1:0",
        "203.0.113.1:65536",
        "203.0.113.1:051820",
        ":51820",
        "2001:db8::1:51820",
        "host_name:51820",
        "-host:51820",
        "[fe80::1%eth0]:51820",
        f"{LONG_LABEL}.example:51820",
        f"{LONG_HOST}:51820",
        "203.0.113.1:51820 ",
        "[zz::1]:51820",
    ),
    *bad_items("Site", f"{WG}.endpoints", "IPv6", "[1.2.3.4]:51820", "[1:2]:51820", "[::ffff:1.2.3.4]:51820"),
    *bad_items(
        "Site", f"{WG}.endpoints", "IPv4", "1.2.3.256:51820", "1.2.3:51820", "123:51820", "10.0.0.01:1"
    ),
    *bad_items("Site", f"{WG}.endpoints", "overlay pool", "100.96.0.7:51820", "100.96.255.255:1"),
    *bad_items("Site", f"{WG}.endpoints", "this-host", "0.0.0.0:51820", "[::]:51820"),
    *bad_items("Site", f"{WG}.endpoints", "loopback", "127.0.0.1:51820", "127.9.9.9:1", "[::1]:51820"),
    *bad_items("Site", f"{WG}.endpoints", "link-local", "169.254.1.1:51820", "[fe80::1]:51820"),
    *bad_items("Site", f"{WG}.endpoints", "multicast", "224.0.0.1:51820", "[ff02::1]:51820"),
    *bad_items("Site", f"{WG}.endpoints", "broadcast", "255.255.255.255:51820"),
    *bad("Site", f"{WG}.endpoints", "", []),
    *bad(
        "Site", f"{WG}.endpoints", "", ["203.0.113.1:51820", "203.0.113.1:51820"], field=f"{WG}.endpoints[1]"
    ),
    *ok("Site", f"{WG}.privateKeySecretRef", {"name": "my-key", "key": "wg.private_key-1"}),
    *bad(
        "Site",
        f"{WG}.privateKeySecretRef",
        "Secret key",
        {"name": "k", "key": "a/b"},
        field=f"{WG}.privateKeySecretRef.key",
    ),
    *bad(
        "Site",
        f"{WG}.privateKeySecretRef",
        "object name",
        {"name": "My_Key"},
        field=f"{WG}.privateKeySecretRef.name",
    ),
    *ok("Site", "spec.resources.cpu", "2", "500m", "0", "1e3", "0.5"),
    *bad(
        "Site", "spec.resources.cpu", "quantity", "two", "-1", "1.2.3", "4 Gi", "M", "1e100", "1e9999999999"
    ),
    *ok("Site", "spec.resources.memory", "4Gi", "1500M", "0"),
    *bad("Site", "spec.resources.memory", "quantity", "4GB", "-4Gi", "Gi", "m"),
    *ok("Site", "spec.resources.storage", "10Gi", "1", "10E", "1E", "2e3"),
    *bad("Site", "spec.resources.storage", "greater than zero", "0", "0Gi", "0.0"),
    *bad("Site", "spec.resources.storage", "quantity", "ten gigs"),
    *ok("Site", "spec.mesh.peerWith", ["branch-sf", "dc.east"]),
    *bad("Site", "spec.mesh.peerWith", "", ["x", "x"], field="spec.mesh.peerWith[1]"),
    *bad("Site", "spec.mesh.peerWith", "object name", ["Branch_SF"], field="spec.mesh.peerWith[0]"),
    *ok("Site", "spec.underlays", [{"name": "fiber", "endpoint": "203.0.113.1:51820", "listenPort": 4500}]),
    *bad(
        "Site",
        "spec.underlays",
        "",
        [{"name": "fiber", "endpoint": "203.0.113.1:51820", "listenPort": 0}],
        field="spec.underlays[0].listenPort",
    ),
    *bad(
        "Site",
        "spec.underlays",
        "host:port",
        [{"name": "fiber", "endpoint": "203.0.113.1"}],
        field="spec.underlays[0].endpoint",
    ),
    *bad(
        "Site",
        "spec.underlays",
        "DNS label",
        [{"name": "Fiber", "endpoint": "203.0.113.1:51820"}],
        field="spec.underlays[0].name",
    ),
    *bad(
        "Site",
        "spec.underlays",
        "",
        [{"name": "a-long-underlay-name", "endpoint": "203.0.113.1:51820"}],
        field="spec.underlays[0].name",
    ),
    *ok_items(
        "Site",
        "spec.subnets",
        "10.1.0.0/16",
        "10.0.0.0/8",
        "192.168.1.128/25",
        "198.51.100.7/32",
        "fd00:30::/64",
        "2001:db8::/32",
        "2001:DB8:0:0::/48",
        "100.64.0.0/11",
        "100.97.0.0/16",
        "126.0.0.0/8",
        "128.0.0.0/8",
        "223.255.255.0/24",
        "fe00::/16",
    ),
    *bad_items(
        "Site",
        "spec.subnets",
        "CIDR",
        "10.1.2.3/16",
        "10.0.0.0",
        "10.0.0.0/08",
        "010.0.0.0/8",
        "10.0.0.0/255.0.0.0",
        "10.0.0.0/33",
        "::ffff:10.0.0.0/104",
        "fe80::%eth0/64",
        "fd00::/129",
        "fd00::/064",
        "10.0.0.0/8 ",
    ),
    *bad_items(
        "Site",
        "spec.subnets",
        "/8 or longer",
        "0.0.0.0/0",
        "::/0",
        "0.0.0.0/1",
        "128.0.0.0/1",
        "8.0.0.0/7",
        "2000::/3",
        "fd00::/15",
    ),
    *bad_items(
        "Site",
        "spec.subnets",
        "overlay pool",
        "100.96.0.0/16",
        "100.96.5.0/24",
        "100.64.0.0/10",
        "100.96.0.7/32",
    ),
    *bad_items("Site", "spec.subnets", "this-host", "0.0.0.0/8", "::/128"),
    *bad_items("Site", "spec.subnets", "loopback", "127.0.0.0/8", "127.1.0.0/16", "::1/128"),
    *bad_items(
        "Site", "spec.subnets", "link-local", "169.254.0.0/16", "169.254.3.0/24", "fe80::/64", "fe80::/10"
    ),
    *bad_items("Site", "spec.subnets", "multicast", "224.0.0.0/4", "239.1.0.0/16", "ff02::/16", "ff00::/8"),
    *bad_items("Site", "spec.subnets", "broadcast", "255.255.255.255/32", "255.255.255.0/24"),
    *ok("Site", "spec.subnets", ["10.1.0.0/16", "10.2.0.0/16", "fd00:1::/64", "fd00:2::/64"]),
    *bad(
        "Site",
        "spec.subnets",
        "overlap one another",
        ["10.0.0.0/8", "10.1.0.0/16"],
        ["fd00::/16", "fd00:1::/32"],
    ),
    *bad("Site", "spec.subnets", "overlap one another", ["10.2.0.0/16", "10.1.0.0/16", "10.1.255.0/24"]),
    *bad("Site", "spec.subnets", "", ["10.1.0.0/16", "10.1.0.0/16"], field="spec.subnets[1]"),
]

PATH_SPEC = [
    *ok("Path", "spec.source.siteRef", "branch-nyc", "a.b"),
    *bad("Path", "spec.source.siteRef", "object name", "Branch_NYC", "-a", "a..b"),
    *ok("Path", "spec.type", "direct", "vpn"),
    *bad("Path", "spec.type", "", "satellite"),
    *ok("Path", "spec.underlay", "fiber", "lte-2"),
    *bad("Path", "spec.underlay", "DNS label", "LTE", "fiber_1"),
    *bad("Path", "spec.underlay", "", "a-very-long-underlay"),
    *ok("Path", "spec.monitoring.interval", "50ms", "1h", "10s", "1m30s", "0.05s", "1.5s", "3599999999999ns"),
    # Go reads fractions through float64: this one comes out at 50ms, not a hair below.
    *ok("Path", "spec.monitoring.interval", "0.04999999999999999999s"),
    *bad(
        "Path",
        "spec.monitoring.interval",
        "duration from 50ms to 1h",
        "49ms",
        "1h1ns",
        "often",
        "10",
        "-5s",
        "1d",
        "1e3s",
        ".5s",
        "9999999999h",
        "99999999999999999999s",
        "1μs",
    ),
    *ok("Path", "spec.monitoring.probesPerCheck", 1, 1000),
    *bad("Path", "spec.monitoring.probesPerCheck", "", 0, 1001),
]

PORTS = "spec.match.dstPortRange"
BANDWIDTH = "spec.action.qos.bandwidth"

POLICY_SPEC = [
    *ok("Policy", "spec.priority", 0, 1000),
    *bad("Policy", "spec.priority", "", -1, 1001),
    *ok("Policy", "spec.match.protocol", "tcp", "udp", "any"),
    *bad("Policy", "spec.match.protocol", "", "sctp"),
    *ok("Policy", PORTS, "80,443", "3478-3497", "1-65535", "22,8000-8080", "80"),
    *bad("Policy", PORTS, "ports of 1-65535", "3497-3478", "80,65536", "0", "http", "80,", "-80", "1-2-3"),
    *ok("Policy", "spec.match.srcPortRange", "1024-65535"),
    *bad("Policy", "spec.match.srcPortRange", "ports of 1-65535", "65535-1"),
    *ok("Policy", "spec.match.dscp", 0, 63),
    *bad("Policy", "spec.match.dscp", "", -1, 64),
    *ok_items(
        "Policy", "spec.match.dstCidrs", "0.0.0.0/0", "::/0", "10.0.0.0/8", "100.96.0.0/16", "127.0.0.1/32"
    ),
    *bad_items("Policy", "spec.match.dstCidrs", "CIDR", "10.1.2.3/16", "10.0.0.0/255.0.0.0", "::ffff:0:0/96"),
    *ok_items("Policy", "spec.match.srcCidrs", "192.168.0.0/16", "fd00::/8"),
    *bad_items("Policy", "spec.match.srcCidrs", "CIDR", "192.168.0.0/33", "192.168.0.0"),
    *bad("Policy", "spec.match.srcCidrs", "", ["10.0.0.0/8", "10.0.0.0/8"], field="spec.match.srcCidrs[1]"),
    *ok("Policy", "spec.action.qos.class", "realtime", "scavenger", "business-critical"),
    *bad("Policy", "spec.action.qos.class", "", "platinum"),
    *ok(
        "Policy",
        BANDWIDTH,
        "1bps",
        "800bps",
        "512Kbps",
        "512kbps",
        "1.5Mbps",
        "0.001Kbps",
        "0.000001Mbps",
        "10Gbps",
        "1Tbps",
        "0.999999999999Tbps",
        "1000000000000bps",
        "1000000000Kbps",
        "0.000000000001Tbps",
        "1.50Kbps",
    ),
    *bad(
        "Policy",
        BANDWIDTH,
        "whole bits per second",
        "0.5bps",
        "1.0bps",
        "1.0005Kbps",
        "1.0000001Mbps",
        "10",
        "10 Mbps",
        "10MB",
        "10mbps",
        "010Mbps",
        ".5Mbps",
        "1e40bps",
        "1.Mbps",
        "fast",
    ),
    *bad(
        "Policy",
        BANDWIDTH,
        "from 1bps to 1Tbps",
        "0bps",
        "0Mbps",
        "0.000Kbps",
        "1000000000001bps",
        "1.000000000001Tbps",
        "2Tbps",
        "1000000000.001Kbps",
        "99999999999999999999999999bps",
    ),
    *ok("Policy", "spec.action.primaryPath", {"siteRef": "a", "pathId": "a-fiber"}),
    *bad(
        "Policy",
        "spec.action.primaryPath",
        "object name",
        {"siteRef": "a", "pathId": "A_Fiber"},
        field="spec.action.primaryPath.pathId",
    ),
    *bad(
        "Policy",
        "spec.action.primaryPath",
        "object name",
        {"siteRef": "Site A", "pathId": "a-fiber"},
        field="spec.action.primaryPath.siteRef",
    ),
    *bad(
        "Policy",
        "spec.action.backupPath",
        "object name",
        {"siteRef": "a", "pathId": "a.lte."},
        field="spec.action.backupPath.pathId",
    ),
    *bad("Policy", "spec.action.type", "", "teleport"),
    *ok("Policy", "spec.failover.threshold", 0, 100, 99.5),
    *bad("Policy", "spec.failover.threshold", "", -1, 101),
    *ok("Policy", "spec.failover.cooldown", "0s", "24h", "30s", "1h30m"),
    *bad("Policy", "spec.failover.cooldown", "duration from 0s to 24h", "24h1s", "30 seconds", "48h", "30"),
]

MESH_SPEC = [
    *ok("Mesh", "spec.sites", ["a"], ["a", "b.c"]),
    *bad("Mesh", "spec.sites", "", []),
    *bad("Mesh", "spec.sites", "", ["a", "b", "a"], field="spec.sites[2]"),
    *bad("Mesh", "spec.sites", "object name", ["A"], field="spec.sites[0]"),
    *ok("Mesh", "spec.topology", "full-mesh", "hub-spoke"),
    *bad("Mesh", "spec.topology", "", "ring"),
    *bad("Mesh", "spec.hubs", "object name", ["A"], field="spec.hubs[0]"),
    *bad("Mesh", "spec.vpn", "", {"encryption": "aes-256-gcm"}, field="spec.vpn.encryption"),
    *bad("Mesh", "spec.vpn", "", {"protocol": "ipsec"}, field="spec.vpn.protocol"),
]

CONDITION = {"type": "Ready", "status": "True", "reason": "AllPathsUp", "message": "ok"}
TIME = "2026-01-02T03:04:05Z"
REPORT = {"name": "voice", "active": True, "pathInUse": "a-b-fiber", "matchedFlows": 3, "bytesRouted": 9}

STATUS = [
    *ok("Site", "status.phase", "Pending", "Active", "Degraded", "Failed"),
    *bad("Site", "status.phase", "", "Exploded"),
    *ok("Site", "status.overlayAddress", "100.96.0.7", "fd00::7"),
    *bad(
        "Site",
        "status.overlayAddress",
        "IP address",
        "x",
        "100.96.0.7/32",
        "100.96.00.7",
        "::ffff:100.96.0.7",
        "fe80::1%eth0",
        "203.0.113.1:51820",
    ),
    *ok("Site", "status.publicKey", KEY_A),
    *bad("Site", "status.publicKey", "WireGuard key", "x" * 44, KEY_STRAY_BITS),
    *ok("Site", "status.peers", 0, 12),
    *bad("Site", "status.peers", "", -1),
    *bad("Site", "status.activePaths", "", -1),
    *ok("Site", "status.healthScore", 0, 99.5, 100),
    *bad("Site", "status.healthScore", "", -0.5, 100.1),
    *ok("Site", "status.configMap", "a-agent"),
    *bad("Site", "status.configMap", "object name", "A Agent"),
    *ok("Site", "status.heartbeatLease", "a-agent"),
    *bad("Site", "status.heartbeatLease", "object name", "A Agent"),
    *ok("Site", "status.observedGeneration", 0, 7),
    *ok(
        "Site",
        "status.lastHeartbeatTime",
        TIME,
        "2026-01-02T03:04:05.123456789Z",
        "2026-01-02T03:04:05+01:00",
    ),
    *bad(
        "Site",
        "status.lastHeartbeatTime",
        "",
        "yesterday",
        "2026-01-02",
        "2026-01-02T03:04:05",
        "2026-01-02 03:04:05Z",
        "1700000000",
        "2026-02-30T00:00:00Z",
    ),
    *ok("Site", "status.agent", {"version": "0.1.0", "configDigest": DIGEST, "configError": ""}),
    *ok("Site", "status.agent", {"version": "0.0.0+unknown"}, {"version": "v1.2.3-rc.1"}),
    *bad(
        "Site",
        "status.agent",
        "",
        {"version": "1.0 beta"},
        {"version": ""},
        {"version": "-1"},
        field="status.agent.version",
    ),
    *bad(
        "Site",
        "status.agent",
        "",
        {"configDigest": "abc"},
        {"configDigest": DIGEST.upper()},
        field="status.agent.configDigest",
    ),
    *ok("Site", "status.policies", [REPORT, {"name": "web"}]),
    *bad(
        "Site",
        "status.policies",
        "",
        [{**REPORT, "matchedFlows": -1}],
        field="status.policies[0].matchedFlows",
    ),
    *bad(
        "Site",
        "status.policies",
        "",
        [{**REPORT, "failoverCount": -1}],
        field="status.policies[0].failoverCount",
    ),
    *bad(
        "Site",
        "status.policies",
        "object name",
        [{**REPORT, "pathInUse": "Bad Path"}],
        field="status.policies[0].pathInUse",
    ),
    *bad("Site", "status.policies", "object name", [{"name": "Voice"}], field="status.policies[0].name"),
    *bad(
        "Site", "status.policies", "", [{**REPORT, "bytesRouted": -1}], field="status.policies[0].bytesRouted"
    ),
    *ok("Path", "status.state", "up", "down", "degraded", "unknown"),
    *bad("Path", "status.state", "", "sideways"),
    *ok(
        "Path",
        "status.health",
        {"latencyMs": 45.2, "jitterMs": 2.1, "packetLossPct": 0.01, "healthScore": 98.4},
    ),
    *bad("Path", "status.health", "", {"latencyMs": -1}, field="status.health.latencyMs"),
    *bad("Path", "status.health", "", {"jitterMs": -0.1}, field="status.health.jitterMs"),
    *bad("Path", "status.health", "", {"packetLossPct": 100.5}, field="status.health.packetLossPct"),
    *bad("Path", "status.health", "", {"healthScore": -1}, field="status.health.healthScore"),
    *ok("Policy", "status.matchedFlows", 0),
    *bad("Policy", "status.matchedFlows", "", -1),
    *bad("Policy", "status.bytesRouted", "", -1),
    *bad("Policy", "status.failoverCount", "", -1),
    *ok("Policy", "status.pathInUse", {"siteRef": "a", "pathId": "a-b-fiber"}),
    *bad(
        "Policy",
        "status.pathInUse",
        "object name",
        {"siteRef": "A", "pathId": "a"},
        field="status.pathInUse.siteRef",
    ),
    *bad(
        "Policy",
        "status.pathInUse",
        "object name",
        {"siteRef": "a", "pathId": "A B"},
        field="status.pathInUse.pathId",
    ),
    *ok(
        "Policy",
        "status.sites",
        [{"site": "a", "active": True, "failoverCount": 2, "lastFailoverTime": TIME}],
    ),
    *bad("Policy", "status.sites", "object name", [{"site": "Site A"}], field="status.sites[0].site"),
    *bad(
        "Policy",
        "status.sites",
        "",
        [{"site": "a", "matchedFlows": -5}],
        field="status.sites[0].matchedFlows",
    ),
    *bad(
        "Policy",
        "status.sites",
        "",
        [{"site": "a", "failoverCount": -1}],
        field="status.sites[0].failoverCount",
    ),
    *bad(
        "Policy",
        "status.sites",
        "object name",
        [{"site": "a", "pathInUse": {"siteRef": "a", "pathId": "P"}}],
        field="status.sites[0].pathInUse.pathId",
    ),
    *bad(
        "Policy",
        "status.sites",
        "object name",
        [{"site": "a", "pathInUse": {"siteRef": "A", "pathId": "p"}}],
        field="status.sites[0].pathInUse.siteRef",
    ),
    *bad(
        "Policy", "status.sites", "", [{"site": "a", "bytesRouted": -5}], field="status.sites[0].bytesRouted"
    ),
    *ok("Mesh", "status.overallHealth", 0, 100),
    *bad("Mesh", "status.overallHealth", "", 101),
    *bad("Mesh", "status.totalSites", "", -1),
    *bad("Mesh", "status.totalPaths", "", -1),
    *bad("Mesh", "status.activePaths", "", -1),
    *ok("Mesh", "status.missingSites", ["a", "b"]),
    *bad("Mesh", "status.missingSites", "object name", ["B_"], field="status.missingSites[0]"),
]


def _conditions(kind: str) -> list[Example]:
    """Every kind's status.conditions has metav1.Condition's rules."""
    field = "status.conditions[0]"
    return [
        *ok(kind, "status.conditions", [CONDITION], [{**CONDITION, "reason": ""}]),
        *ok(kind, "status.conditions", [{**CONDITION, "type": "sdwan.patronus.dev/KeysReady"}]),
        *bad(kind, "status.conditions", "", [{**CONDITION, "type": "not ready"}], field=f"{field}.type"),
        *bad(kind, "status.conditions", "", [{**CONDITION, "reason": "Not a word"}], field=f"{field}.reason"),
        *bad(kind, "status.conditions", "", [{**CONDITION, "status": "Maybe"}], field=f"{field}.status"),
        *bad(
            kind,
            "status.conditions",
            "",
            [{**CONDITION, "observedGeneration": -1}],
            field=f"{field}.observedGeneration",
        ),
        *bad(kind, "status.observedGeneration", "", -1),
    ]


CROSS_KIND = [example for kind in BUILDERS for example in _conditions(kind)]

EXAMPLES: list[Example] = [*SITE_SPEC, *PATH_SPEC, *POLICY_SPEC, *MESH_SPEC, *STATUS, *CROSS_KIND]


MODELS: dict[str, Any] = {"Site": Site, "Path": Path, "Policy": Policy, "Mesh": Mesh}


def python_verdict(obj: Obj) -> tuple[bool, str]:
    """(accepted, what the model says) for an object, as the operator and agent would parse it."""
    try:
        MODELS[obj["kind"]].model_validate(obj)
    except ValidationError as error:
        return False, "; ".join(
            f"{'.'.join(str(part) for part in e['loc'])}: {e['msg']}" for e in error.errors()
        )
    return True, ""


# Characters that make format parsers disagree: separators, hex digits, unit letters, signs, spaces.
_MUTATION_ALPHABET = [
    *"0123456789abcdefABCDEF:.[]/%-+eEkKMGTimunsbp µ,_ ",
    "::",
    "ffff:",
    "00",
    "/0",
    "Gi",
    "bps",
]


def mutations(count: int, seed: int = 11) -> list[Example]:
    """Up to three random edits of each valid string example, ``count`` per field, expected nothing:
    the API server and the models must merely agree (a differential test of the two parsers)."""
    rng = random.Random(seed)
    seeds: dict[tuple[str, str, bool], list[str]] = {}
    for example in EXAMPLES:
        value, item = example.value, False
        if isinstance(value, list) and len(value) == 1:
            value, item = value[0], True
        if example.valid and isinstance(value, str):
            seeds.setdefault((example.kind, example.path, item), []).append(value)
    mutated = []
    for (kind, path_, item), values in seeds.items():
        for _ in range(count):
            text = list(rng.choice(values))
            for _ in range(rng.randint(1, 3)):
                at = rng.randint(0, len(text))
                edit = rng.random()
                if edit < 0.4 and text:
                    text[min(at, len(text) - 1)] = rng.choice(_MUTATION_ALPHABET)
                elif edit < 0.7:
                    text.insert(at, rng.choice(_MUTATION_ALPHABET))
                elif text:
                    del text[min(at, len(text) - 1)]
            value = "".join(text)
            mutated.append(Example(kind, path_, [value] if item else value, valid=True))
    return mutated
