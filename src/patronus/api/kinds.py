"""The four kinds: their names, printer columns and the models behind their schemas."""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel

from patronus.api.mesh import Mesh, MeshSpec, MeshStatus
from patronus.api.meta import API_GROUP, API_VERSION
from patronus.api.path import Path, PathSpec, PathStatus
from patronus.api.policy import Policy, PolicySpec, PolicyStatus
from patronus.api.site import Site, SiteSpec, SiteStatus

CATEGORY = "patronus"


@dataclass(frozen=True, slots=True)
class PrinterColumn:
    name: str
    type: str
    json_path: str
    description: str
    priority: int = 0


@dataclass(frozen=True, slots=True)
class KindInfo:
    kind: str
    plural: str
    short_names: tuple[str, ...]
    description: str
    model: type[BaseModel]
    spec: type[BaseModel]
    status: type[BaseModel]
    columns: tuple[PrinterColumn, ...] = field(default=())

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{API_GROUP}"

    @property
    def group(self) -> str:
        return API_GROUP

    @property
    def version(self) -> str:
        return API_VERSION

    @property
    def api_version(self) -> str:
        return f"{API_GROUP}/{API_VERSION}"


AGE = PrinterColumn("Age", "date", ".metadata.creationTimestamp", "Time since the object was created")

SITE = KindInfo(
    kind="Site",
    plural="sites",
    short_names=("sdsite",),
    description="A network site in the SD-WAN mesh: its WireGuard identity, endpoints and resources.",
    model=Site,
    spec=SiteSpec,
    status=SiteStatus,
    columns=(
        PrinterColumn("Location", "string", ".spec.location", "Where the site is"),
        PrinterColumn("Phase", "string", ".status.phase", "Pending, Active, Degraded or Failed"),
        PrinterColumn("Peers", "integer", ".status.peers", "Sites this site has tunnels to"),
        PrinterColumn("Paths", "integer", ".status.activePaths", "Paths from this site that are up"),
        PrinterColumn("Health", "number", ".status.healthScore", "Mean health score of the site's paths"),
        AGE,
    ),
)

PATH = KindInfo(
    kind="Path",
    plural="paths",
    short_names=("sdpath",),
    description="One direction of one underlay between two sites, probed for latency, jitter and loss.",
    model=Path,
    spec=PathSpec,
    status=PathStatus,
    columns=(
        PrinterColumn("Source", "string", ".spec.source.siteRef", "Site the path starts at"),
        PrinterColumn("Destination", "string", ".spec.destination.siteRef", "Site the path ends at"),
        PrinterColumn("Underlay", "string", ".spec.underlay", "WAN underlay the path uses", priority=1),
        PrinterColumn("State", "string", ".status.state", "up, degraded, down or unknown"),
        PrinterColumn("Latency", "number", ".status.health.latencyMs", "Round-trip time in ms"),
        PrinterColumn("Loss", "number", ".status.health.packetLossPct", "Packet loss in percent"),
        PrinterColumn("Health", "number", ".status.health.healthScore", "Health score 0-100"),
        AGE,
    ),
)

POLICY = KindInfo(
    kind="Policy",
    plural="policies",
    short_names=("sdpol",),
    description="Which traffic takes which path, with failover to a backup path and QoS.",
    model=Policy,
    spec=PolicySpec,
    status=PolicyStatus,
    columns=(
        PrinterColumn("Priority", "integer", ".spec.priority", "Higher wins when policies overlap"),
        PrinterColumn("Active", "boolean", ".status.active", "Installed in the data plane"),
        PrinterColumn("Path", "string", ".status.pathInUse.pathId", "Path the traffic takes now"),
        PrinterColumn("Flows", "integer", ".status.matchedFlows", "Flows matched"),
        PrinterColumn("Failovers", "integer", ".status.failoverCount", "Moves between paths", priority=1),
        AGE,
    ),
)

MESH = KindInfo(
    kind="Mesh",
    plural="meshes",
    short_names=("sdmesh",),
    description="A set of sites joined by a full-mesh or hub-spoke topology; owns the Paths it implies.",
    model=Mesh,
    spec=MeshSpec,
    status=MeshStatus,
    columns=(
        PrinterColumn("Topology", "string", ".spec.topology", "full-mesh or hub-spoke"),
        PrinterColumn("Sites", "integer", ".status.totalSites", "Listed sites that exist"),
        PrinterColumn("Active Paths", "integer", ".status.activePaths", "Paths that are up"),
        PrinterColumn("Health", "number", ".status.overallHealth", "Mean health score of the paths"),
        AGE,
    ),
)

KINDS: tuple[KindInfo, ...] = (SITE, PATH, POLICY, MESH)
KINDS_BY_NAME = {info.kind: info for info in KINDS}
