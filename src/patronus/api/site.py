"""Site: one network location in the SD-WAN (a branch, a data centre, a cloud region)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, ConfigDict, Field

from patronus.api import addresses
from patronus.api.fields import (
    Endpoint,
    IPAddress,
    ObjectName,
    ObjectNameSet,
    Percent,
    Port,
    PositiveQuantity,
    Quantity,
    SecretDataKey,
    ShortName,
    SubnetList,
    WireGuardKey,
    unique,
)
from patronus.api.markers import CEL, ListType, model_rules
from patronus.api.meta import ApiModel, Conditions, Generation, ObjectMeta, Timestamp

DEFAULT_LISTEN_PORT = 51820
DEFAULT_UNDERLAY = "default"


class SecretKeyRef(ApiModel):
    """A key inside a Secret in the Site's namespace."""

    name: ObjectName
    """Name of the Secret."""
    key: SecretDataKey = "privateKey"
    """Key inside the Secret that holds the base64 WireGuard private key."""


class WireGuardSpec(ApiModel):
    """How peers reach this site over WireGuard."""

    model_config = ConfigDict(
        json_schema_extra=model_rules(
            CEL(
                "!has(self.privateKeySecretRef) || has(self.publicKey)",
                "wireguard.privateKeySecretRef needs wireguard.publicKey: "
                "give the public key of that private key",
                lambda wireguard: (
                    wireguard.private_key_secret_ref is None or wireguard.public_key is not None
                ),
                field_path=".privateKeySecretRef",
            )
        )
    )

    public_key: WireGuardKey | None = None
    """The site's WireGuard public key (base64, as printed by `wg pubkey`). Leave it out and the operator
    generates a key pair and keeps the private key in a Secret. Give it without privateKeySecretRef and the
    site is external: its agent runs outside the cluster and holds its own private key."""
    private_key_secret_ref: SecretKeyRef | None = None
    """A Secret that holds the private key matching publicKey, for a site whose agent runs in the cluster
    with a key you manage."""
    listen_port: Port = DEFAULT_LISTEN_PORT
    """UDP port WireGuard listens on (1-65535)."""
    endpoints: Annotated[
        list[Endpoint], Field(min_length=1, max_length=16), ListType("set"), AfterValidator(unique)
    ]
    """Addresses (host:port) at which peers reach this site, one per WAN underlay, at least one. The host is
    an IPv4 address, a DNS name, or an IPv6 address in brackets ([2001:db8::1]:51820); not a loopback,
    link-local, multicast, broadcast or overlay-pool address."""
    persistent_keepalive: Annotated[int, Field(ge=0, le=65535)] = 25
    """Seconds between keepalives so NAT mappings stay open; 0 turns keepalives off."""


class Underlay(ApiModel):
    """A named WAN link of the site, such as fiber or lte."""

    name: ShortName
    """Name of the underlay (a DNS label of at most 15 characters); Paths name it in spec.underlay."""
    endpoint: Endpoint
    """Which of wireguard.endpoints this underlay is reached at."""
    listen_port: Port | None = None
    """UDP port of this underlay's WireGuard interface; defaults to wireguard.listenPort plus the
    underlay's index."""


class ResourcesSpec(ApiModel):
    """Compute resources for the site's SD-WAN core workload."""

    cpu: Quantity | None = None
    """CPU request, as a Kubernetes quantity (2, 500m). Defaults to the operator's DEFAULT_CPU_REQUEST."""
    memory: Quantity | None = None
    """Memory request, as a Kubernetes quantity (4Gi). Defaults to DEFAULT_MEMORY_REQUEST."""
    storage: PositiveQuantity | None = None
    """Size (more than zero) of a persistent volume for the core workload (10Gi); none when left out."""


class SiteMeshSpec(ApiModel):
    """Which sites this site builds tunnels to, besides those a Mesh gives it."""

    enabled: bool = True
    """Whether the site takes part in meshes at all."""
    peer_with: ObjectNameSet | None = None
    """Names of Sites in the same namespace to peer with directly."""


MAX_UNDERLAYS = 8
_UNDERLAY_INDEXES = f"{list(range(MAX_UNDERLAYS))}"


def _cel_underlay_port(index: str) -> str:
    underlay = f"self.underlays[{index}]"
    return f"(has({underlay}.listenPort) ? {underlay}.listenPort : self.wireguard.listenPort + {index})"


def _cel_endpoint_host(endpoint: str) -> str:
    return (
        f"({endpoint}.startsWith('[') ? {endpoint}.substring(1, {endpoint}.lastIndexOf(':') - 1) "
        f": {endpoint}.substring(0, {endpoint}.lastIndexOf(':')))"
    )


def _endpoints_outside_subnets(spec: SiteSpec) -> bool:
    networks = [addresses.parse_cidr(subnet) for subnet in spec.subnets or ()]
    hosts = [addresses.parse_endpoint(endpoint).address() for endpoint in spec.wireguard.endpoints]
    return not any(host in network for host in hosts if host is not None for network in networks)


class SiteSpec(ApiModel):
    """Desired state of a Site."""

    model_config = ConfigDict(
        json_schema_extra=model_rules(
            CEL(
                "!has(self.underlays) || self.underlays.all(u, u.endpoint in self.wireguard.endpoints)",
                "every underlays[].endpoint must be one of wireguard.endpoints",
                lambda spec: all(u.endpoint in spec.wireguard.endpoints for u in spec.underlays or ()),
                field_path=".underlays",
            ),
            CEL(
                "!has(self.underlays) "
                "|| self.underlays.all(u, self.underlays.exists_one(v, v.name == u.name))",
                "underlays[].name must be unique",
                lambda spec: len({u.name for u in spec.underlays or ()}) == len(spec.underlays or ()),
                field_path=".underlays",
            ),
            CEL(
                f"!has(self.underlays) || {_UNDERLAY_INDEXES}.all(i, i >= size(self.underlays) "
                f"|| {_cel_underlay_port('i')} <= {addresses.MAX_PORT})",
                "an underlay without listenPort listens on wireguard.listenPort plus its index, "
                f"which must stay within 1-{addresses.MAX_PORT}: lower wireguard.listenPort or give the "
                "underlay a listenPort",
                lambda spec: all(port <= addresses.MAX_PORT for _, port in spec.underlay_ports()),
                field_path=".underlays",
            ),
            CEL(
                f"!has(self.underlays) || {_UNDERLAY_INDEXES}.all(i, i >= size(self.underlays) "
                f"|| {_UNDERLAY_INDEXES}.all(j, j >= size(self.underlays) || i == j "
                f"|| {_cel_underlay_port('i')} != {_cel_underlay_port('j')}))",
                "each underlay needs a UDP port of its own (its listenPort, else wireguard.listenPort plus "
                "its index): two WireGuard interfaces cannot share one",
                lambda spec: len({port for _, port in spec.underlay_ports()}) == len(spec.underlay_ports()),
                field_path=".underlays",
            ),
            CEL(
                "!has(self.subnets) || self.wireguard.endpoints.all(e, "
                f"!e.matches(r'{addresses.ENDPOINT_PATTERN}') || !isIP({_cel_endpoint_host('e')}) "
                f"|| self.subnets.all(s, !isCIDR(s) || !cidr(s).containsIP({_cel_endpoint_host('e')})))",
                "subnets must not contain the site's own endpoint addresses: peers would send the tunnel "
                "into itself",
                _endpoints_outside_subnets,
                field_path=".subnets",
            ),
        )
    )

    location: Annotated[str, Field(max_length=256)] | None = None
    """Where the site is, for people: "New York, NY"."""
    wireguard: WireGuardSpec
    """WireGuard settings: keys, listen port and the endpoints peers dial."""
    underlays: Annotated[list[Underlay], Field(max_length=MAX_UNDERLAYS)] | None = None
    """Named WAN underlays (fiber, lte, ...), each with its own tunnel and its own Paths. Left out, the site
    has a single underlay called "default"."""
    resources: ResourcesSpec | None = None
    """Compute resources for the site's core workload."""
    mesh: SiteMeshSpec | None = None
    """Direct peering outside of any Mesh."""
    subnets: SubnetList | None = None
    """LAN prefixes behind this site that other sites route to it: each at least a /8 (IPv4) or /16
    (IPv6), none overlapping another, the overlay pool 100.96.0.0/16, loopback, link-local, multicast or
    the site's own endpoint addresses."""

    def underlay_names(self) -> list[str]:
        return [u.name for u in self.underlays] if self.underlays else [DEFAULT_UNDERLAY]

    def underlay_ports(self) -> list[tuple[str, int]]:
        """(name, UDP port) of each underlay: its listenPort, else wireguard.listenPort plus its index."""
        return [
            (u.name, u.listen_port or self.wireguard.listen_port + index)
            for index, u in enumerate(self.underlays or ())
        ]


SitePhase = Literal["Pending", "Active", "Degraded", "Failed"]


AGENT_VERSION_PATTERN = r"^[0-9A-Za-z][-0-9A-Za-z.+_]*$"
SHA256_HEX_PATTERN = r"^[0-9a-f]{64}$"


class AgentReport(ApiModel):
    """What the site's agent says about itself (written by the agent)."""

    version: Annotated[str, Field(max_length=64, pattern=AGENT_VERSION_PATTERN)] | None = None
    """The agent's release, for example 0.1.0."""
    config_digest: Annotated[str, Field(min_length=64, max_length=64, pattern=SHA256_HEX_PATTERN)] | None = (
        None
    )
    """SHA-256 (64 hex digits) of the configuration the data plane runs now."""
    config_error: Annotated[str, Field(max_length=1024)] | None = None
    """Why the newest configuration was refused (the last good one keeps running); empty when applied."""
    data_plane_error: Annotated[str, Field(max_length=1024)] | None = None
    """Why the data plane does not fully run the configuration or a failover decision (a command the
    kernel refused; retried with backoff); empty when it does."""


class SitePolicyReport(ApiModel):
    """One policy as this site's agent enforces it (written by the agent; the operator aggregates these
    into each Policy's status)."""

    name: ObjectName
    """The Policy."""
    active: bool = False
    """Installed in this site's data plane."""
    path_in_use: ObjectName | None = None
    """The Path this site sends the policy's traffic over now."""
    matched_flows: Annotated[int, Field(ge=0)] = 0
    """Flows this site matched."""
    bytes_routed: Annotated[int, Field(ge=0)] = 0
    """Bytes this site steered."""
    failover_count: Annotated[int, Field(ge=0)] = 0
    """Moves between the primary and the backup path at this site."""
    last_failover_time: Timestamp | None = None
    """When traffic last moved at this site."""


class SiteStatus(ApiModel):
    """Observed state of a Site, written by the operator."""

    phase: SitePhase | None = None
    """Pending until the site's agent reports; Active when it reports and its paths are up; Degraded when
    some paths are down or unhealthy; Failed when the site cannot work as specified."""
    conditions: Conditions | None = None
    """Ready and the conditions that explain it."""
    peers: Annotated[int, Field(ge=0)] | None = None
    """Number of sites this site has tunnels to."""
    active_paths: Annotated[int, Field(ge=0)] | None = None
    """Number of Paths from this site that are up."""
    health_score: Percent | None = None
    """Mean health score (0-100) of the site's Paths."""
    public_key: WireGuardKey | None = None
    """The public key peers use, whether given or generated."""
    overlay_address: IPAddress | None = None
    """The site's address inside the WireGuard overlay."""
    last_heartbeat_time: Timestamp | None = None
    """When the site's agent last reported (written by the agent)."""
    agent: AgentReport | None = None
    """The agent's own report: its version and the configuration it runs (written by the agent)."""
    policies: (
        Annotated[list[SitePolicyReport], Field(max_length=4096), ListType("map", keys=("name",))] | None
    ) = None
    """The policies this site enforces, with their counters and failover record (written by the agent)."""
    config_map: ObjectName | None = None
    """The ConfigMap holding the agent's configuration: what an external agent is started with."""
    heartbeat_lease: ObjectName | None = None
    """The Lease the agent renews as its heartbeat (``--heartbeat-lease``)."""
    observed_generation: Generation | None = None
    """The .metadata.generation this status describes."""


class Site(ApiModel):
    """A network site in the SD-WAN mesh."""

    api_version: Literal["sdwan.patronus.dev/v1alpha1"] = "sdwan.patronus.dev/v1alpha1"
    kind: Literal["Site"] = "Site"
    metadata: ObjectMeta
    spec: SiteSpec
    status: SiteStatus | None = None
