"""Policy: which traffic goes over which path, with failover and QoS."""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import ConfigDict, Field

from patronus.api.fields import Bandwidth, CidrList, Cooldown, ObjectName, Percent, PortRanges
from patronus.api.markers import CEL, ListType, model_rules
from patronus.api.meta import ApiModel, Conditions, Generation, ObjectMeta, Timestamp

QosClass = Literal["realtime", "interactive", "business-critical", "default", "bulk", "scavenger"]
QOS_CLASSES: tuple[str, ...] = get_args(QosClass)


class PolicyMatch(ApiModel):
    """Which packets the policy selects. Every field given must match."""

    model_config = ConfigDict(
        json_schema_extra=model_rules(
            CEL(
                "self.protocol != 'icmp' || (!has(self.dstPortRange) && !has(self.srcPortRange))",
                "port ranges need protocol tcp, udp or any: icmp has no ports",
                lambda match: (
                    match.protocol != "icmp"
                    or (match.dst_port_range is None and match.src_port_range is None)
                ),
                field_path=".protocol",
            )
        )
    )

    protocol: Literal["tcp", "udp", "icmp", "any"] = "any"
    """IP protocol: tcp, udp, icmp or any. With ports, any means tcp and udp."""
    dst_port_range: PortRanges | None = None
    """Destination ports: a list (80,443), ranges (3478-3497) or both (80,8000-8080)."""
    src_port_range: PortRanges | None = None
    """Source ports, in the same form as dstPortRange."""
    dscp: Annotated[int, Field(ge=0, le=63)] | None = None
    """DSCP value (0-63) of the packets, for example 46 (EF) for voice."""
    src_cidrs: CidrList | None = None
    """Source prefixes the packets come from."""
    dst_cidrs: CidrList | None = None
    """Destination prefixes the packets go to."""


class PathRef(ApiModel):
    """A Path, named by its source site and its id."""

    site_ref: ObjectName
    """The site the path starts at; the policy is enforced there."""
    path_id: ObjectName
    """Name of the Path object."""


class QosSpec(ApiModel):
    """Queueing for the matched traffic at the egress of the chosen path."""

    class_: QosClass = Field("default", alias="class")
    """Traffic class, highest priority first: realtime, interactive, business-critical, default, bulk,
    scavenger."""
    bandwidth: Bandwidth | None = None
    """Rate cap for the class in whole bits per second, from 1bps to 1Tbps, for example 10Mbps (SI units:
    1 Mbps is 1,000,000 bit/s)."""


class PolicyAction(ApiModel):
    """What happens to matched traffic."""

    model_config = ConfigDict(
        json_schema_extra=model_rules(
            CEL(
                "!has(self.backupPath) || has(self.primaryPath)",
                "action.backupPath needs action.primaryPath",
                lambda action: action.backup_path is None or action.primary_path is not None,
                field_path=".backupPath",
            ),
            CEL(
                "!has(self.backupPath) || !has(self.primaryPath) "
                "|| self.backupPath.pathId != self.primaryPath.pathId "
                "|| self.backupPath.siteRef != self.primaryPath.siteRef",
                "action.backupPath must differ from action.primaryPath",
                lambda action: action.backup_path is None or action.backup_path != action.primary_path,
                field_path=".backupPath",
            ),
            CEL(
                "!has(self.backupPath) || !has(self.primaryPath) "
                "|| self.backupPath.siteRef == self.primaryPath.siteRef",
                "action.backupPath must start at the same site as action.primaryPath",
                lambda action: (
                    action.backup_path is None
                    or action.primary_path is None
                    or action.backup_path.site_ref == action.primary_path.site_ref
                ),
                field_path=".backupPath.siteRef",
            ),
        )
    )

    type: Literal["route"] = "route"
    """route: send matched traffic over primaryPath, or backupPath while the primary is unhealthy."""
    primary_path: PathRef | None = None
    """The preferred path. Without it, matched traffic takes the healthiest path."""
    backup_path: PathRef | None = None
    """Where traffic goes while the primary is down or below failover.threshold."""
    qos: QosSpec | None = None
    """Queueing class and rate cap."""


class FailoverSpec(ApiModel):
    """When traffic leaves the primary path and when it comes back."""

    threshold: Percent = 70
    """Health score (0-100) below which traffic moves to the backup path."""
    cooldown: Cooldown = "30s"
    """How long (0s to 24h) the primary must stay at or above the threshold before traffic returns to it."""


class PolicySpec(ApiModel):
    """Desired state of a Policy."""

    priority: Annotated[int, Field(ge=0, le=1000)] = 0
    """0-1000; when several policies match a packet, the highest priority wins."""
    match: PolicyMatch
    """Which traffic the policy selects."""
    action: PolicyAction
    """Where that traffic goes and how it is queued."""
    failover: FailoverSpec = Field(
        default_factory=FailoverSpec, json_schema_extra={"default": FailoverSpec().to_wire()}
    )
    """Failover threshold and cooldown."""


class PolicySiteStatus(ApiModel):
    """The policy at one enforcing site, from that site's agent's report."""

    site: ObjectName
    """The enforcing Site."""
    active: bool = False
    """Installed in that site's data plane."""
    path_in_use: PathRef | None = None
    """The path that site sends the traffic over now."""
    matched_flows: Annotated[int, Field(ge=0)] = 0
    """Flows matched at that site."""
    bytes_routed: Annotated[int, Field(ge=0)] = 0
    """Bytes steered at that site."""
    failover_count: Annotated[int, Field(ge=0)] = 0
    """Moves between the paths at that site."""
    last_failover_time: Timestamp | None = None
    """When traffic last moved at that site."""


class PolicyStatus(ApiModel):
    """Observed state of a Policy, written by the operator from the enforcing sites' reports.

    With one enforcing site (a policy with a primaryPath) the top-level fields are that site's; a
    namespace-wide policy sums the counters, is active when every enforcing site has installed it, and
    lists each site under ``sites``."""

    active: bool | None = None
    """Whether the policy is installed in the enforcing site's data plane."""
    path_in_use: PathRef | None = None
    """The path matched traffic takes now."""
    matched_flows: Annotated[int, Field(ge=0)] | None = None
    """Flows the policy has matched, from the data plane's counters."""
    bytes_routed: Annotated[int, Field(ge=0)] | None = None
    """Bytes the policy has steered, from the data plane's counters."""
    last_failover_time: Timestamp | None = None
    """When traffic last moved between the primary and the backup path."""
    failover_count: Annotated[int, Field(ge=0)] | None = None
    """How many times traffic has moved between the primary and the backup path."""
    sites: (
        Annotated[list[PolicySiteStatus], Field(max_length=4096), ListType("map", keys=("site",))] | None
    ) = None
    """The policy at each enforcing site."""
    conditions: Conditions | None = None
    """Ready and the conditions that explain it (for example a missing path)."""
    observed_generation: Generation | None = None
    """The .metadata.generation this status describes."""


class Policy(ApiModel):
    """A routing and traffic-management policy."""

    api_version: Literal["sdwan.patronus.dev/v1alpha1"] = "sdwan.patronus.dev/v1alpha1"
    kind: Literal["Policy"] = "Policy"
    metadata: ObjectMeta
    spec: PolicySpec
    status: PolicyStatus | None = None
