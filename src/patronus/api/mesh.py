"""Mesh: a set of sites joined by a topology; it owns the Paths it implies."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, ConfigDict, Field

from patronus.api.fields import ObjectName, ObjectNameSet, Percent, unique
from patronus.api.markers import CEL, ListType, model_rules
from patronus.api.meta import ApiModel, Conditions, Generation, ObjectMeta

Topology = Literal["full-mesh", "hub-spoke"]


class VpnSpec(ApiModel):
    """The tunnel protocol. WireGuard fixes its cipher suite, so there is one valid choice of each."""

    protocol: Literal["wireguard"] = "wireguard"
    """Tunnel protocol: wireguard."""
    encryption: Literal["chacha20-poly1305"] = "chacha20-poly1305"
    """Cipher: chacha20-poly1305, the only one WireGuard uses."""


class MeshSpec(ApiModel):
    """Desired state of a Mesh."""

    model_config = ConfigDict(
        json_schema_extra=model_rules(
            CEL(
                "!has(self.hubs) || self.topology == 'hub-spoke'",
                "hubs apply only to topology hub-spoke",
                lambda spec: spec.hubs is None or spec.topology == "hub-spoke",
                field_path=".hubs",
            ),
            CEL(
                "!has(self.hubs) || self.hubs.all(h, h in self.sites)",
                "every hub must be one of sites",
                lambda spec: all(hub in spec.sites for hub in spec.hubs or ()),
                field_path=".hubs",
            ),
        )
    )

    sites: Annotated[
        list[ObjectName], Field(min_length=1, max_length=256), ListType("set"), AfterValidator(unique)
    ]
    """Names of the Sites in the mesh (same namespace), each once."""
    topology: Topology = "full-mesh"
    """full-mesh: every site to every other; hub-spoke: spokes to hubs only."""
    hubs: ObjectNameSet | None = None
    """For hub-spoke, the hub sites; the first listed site when left out."""
    vpn: VpnSpec = Field(default_factory=VpnSpec, json_schema_extra={"default": VpnSpec().to_wire()})
    """Tunnel protocol and cipher."""


class MeshStatus(ApiModel):
    """Observed state of a Mesh, written by the operator."""

    total_sites: Annotated[int, Field(ge=0)] | None = None
    """Number of listed sites that exist."""
    total_paths: Annotated[int, Field(ge=0)] | None = None
    """Number of Paths the mesh implies."""
    active_paths: Annotated[int, Field(ge=0)] | None = None
    """Number of those Paths that are up."""
    overall_health: Percent | None = None
    """Mean health score of the mesh's Paths."""
    missing_sites: ObjectNameSet | None = None
    """Listed sites that do not exist."""
    conditions: Conditions | None = None
    """Ready and the conditions that explain it."""
    observed_generation: Generation | None = None
    """The .metadata.generation this status describes."""


class Mesh(ApiModel):
    """Mesh networking between a set of sites."""

    api_version: Literal["sdwan.patronus.dev/v1alpha1"] = "sdwan.patronus.dev/v1alpha1"
    kind: Literal["Mesh"] = "Mesh"
    metadata: ObjectMeta
    spec: MeshSpec
    status: MeshStatus | None = None
