"""Path: one direction of one underlay between two sites, measured by the source site's agent."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from patronus.api.fields import ObjectName, Percent, ProbeInterval, ShortName
from patronus.api.markers import CEL, model_rules
from patronus.api.meta import ApiModel, Conditions, Generation, ObjectMeta, Timestamp


class SiteRef(ApiModel):
    """A Site in the same namespace."""

    site_ref: ObjectName
    """Name of the Site."""


class MonitoringSpec(ApiModel):
    """How the source site's agent probes the path."""

    enabled: bool = True
    """Whether the path is probed at all. An unprobed path has no health and cannot fail over."""
    interval: ProbeInterval = "10s"
    """Time between probe checks (50ms to 1h), for example 10s or 200ms."""
    probes_per_check: Annotated[int, Field(ge=1, le=1000)] = 5
    """Probes sent in each check (at least 1); latency, jitter and loss are computed over them."""


class PathSpec(ApiModel):
    """Desired state of a Path."""

    model_config = ConfigDict(
        json_schema_extra=model_rules(
            CEL(
                "self.source.siteRef != self.destination.siteRef",
                "destination.siteRef must differ from source.siteRef: a path joins two different sites",
                lambda spec: spec.source.site_ref != spec.destination.site_ref,
                field_path=".destination.siteRef",
            )
        )
    )

    source: SiteRef
    """The site that sends on this path and probes it."""
    destination: SiteRef
    """The site at the far end."""
    type: Literal["direct", "vpn"] = "vpn"
    """vpn: through the sites' WireGuard tunnel; direct: over the underlay without encryption."""
    underlay: ShortName | None = None
    """Which of the source site's underlays the path uses (for example fiber or lte); the site's only
    underlay when left out."""
    monitoring: MonitoringSpec = Field(
        default_factory=MonitoringSpec, json_schema_extra={"default": MonitoringSpec().to_wire()}
    )
    """Probe settings."""


PathState = Literal["up", "down", "degraded", "unknown"]


class PathHealth(ApiModel):
    """What the last probe check measured."""

    latency_ms: Annotated[float, Field(ge=0)] | None = None
    """Mean round-trip time in milliseconds."""
    jitter_ms: Annotated[float, Field(ge=0)] | None = None
    """Mean deviation between consecutive round-trip times (RFC 3550 style), in milliseconds."""
    packet_loss_pct: Percent | None = None
    """Share of probes lost, in percent."""
    health_score: Percent | None = None
    """0-100 score from latency, jitter and loss (a simplified ITU-T G.107 E-model)."""


class PathStatus(ApiModel):
    """Observed state of a Path, written by the source site's agent and the operator."""

    state: PathState | None = None
    """up, degraded (health below threshold), down (a whole check got no answer), or unknown (no recent
    report from the agent)."""
    health: PathHealth | None = None
    """The last measurement."""
    last_checked: Timestamp | None = None
    """When the last probe check finished."""
    conditions: Conditions | None = None
    """Ready and the conditions that explain it."""
    observed_generation: Generation | None = None
    """The .metadata.generation this status describes."""


class Path(ApiModel):
    """A measured network path between two sites."""

    api_version: Literal["sdwan.patronus.dev/v1alpha1"] = "sdwan.patronus.dev/v1alpha1"
    kind: Literal["Path"] = "Path"
    metadata: ObjectMeta
    spec: PathSpec
    status: PathStatus | None = None
