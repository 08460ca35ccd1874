"""The site agent's configuration: one typed, versioned model shared by the operator and the agent.

The operator renders it (``patronus.topology.agent_config``) into the ``config.json`` key of the site's
ConfigMap; the agent reads it back with :func:`parse_agent_config`, which refuses a schema version it does
not know and validates every value before any of it reaches ``wg``, ``ip``, ``nft`` or ``tc``. Anyone who
can write the ConfigMap is not trusted to be careful: names are DNS names, addresses and prefixes parse
as such, numbers are bounded, so nothing in a valid configuration can be read by those tools as syntax.

Units are the data plane's: durations in seconds, bandwidths in bits per second, port ranges as
``[first, last]``. Field names are camelCase on the wire, like the CRDs.

Schema versions: 1 was the untyped layout of earlier operators; 2 is this model, with ``qos`` and
``failover`` always present. An agent refuses any other version and keeps its last good data plane.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any, Literal

import orjson
from pydantic import AfterValidator, ConfigDict, Field, ValidationError, field_validator

from patronus.api import parsers
from patronus.api.fields import Cidr, Endpoint, LabelName, ObjectName, Port, ShortName, WireGuardKey
from patronus.api.meta import ApiModel
from patronus.api.policy import QosClass

SCHEMA_VERSION = 2
"""The layout this operator writes and this agent reads."""

MAX_INTERFACE_NAME = 15
"""Linux IFNAMSIZ is 16 bytes including the terminating NUL."""
INTERFACE_NAME_PATTERN = r"^[a-z0-9][-a-z0-9]{0,14}$"
MAX_BANDWIDTH_BPS = 10**12
"""1 Tbit/s: more than any link, and what tc's 64-bit rates still express exactly."""
MAX_PEERS = 4096
MAX_POLICIES = 4096
MAX_PATHS = 8192


class UnsupportedSchemaVersion(ValueError):
    """The configuration was written for a layout this agent does not understand."""


class AgentConfigError(ValueError):
    """The configuration text is not a valid agent configuration; the message says where."""


def _ip_address(value: str) -> str:
    return str(ipaddress.ip_address(value))


def _interface_name(value: str) -> str:
    parsers.check_pattern(value, INTERFACE_NAME_PATTERN, "a Linux interface name of at most 15 characters")
    return value


IpAddress = Annotated[str, Field(max_length=45), AfterValidator(_ip_address)]
InterfaceName = Annotated[
    str, Field(min_length=1, max_length=MAX_INTERFACE_NAME), AfterValidator(_interface_name)
]
PortRange = Annotated[
    list[Annotated[int, Field(ge=1, le=parsers.MAX_PORT)]], Field(min_length=2, max_length=2)
]


class ConfigModel(ApiModel):
    """Frozen, so a parsed configuration can be shared between the agent's parts without copies."""

    model_config = ConfigDict(frozen=True)


class PeerConfig(ConfigModel):
    """One WireGuard peer of an interface: another site on the same underlay."""

    site: ObjectName
    public_key: WireGuardKey
    endpoint: Endpoint | None = None
    allowed_ips: Annotated[list[Cidr], Field(max_length=256)] = Field(
        default_factory=list, alias="allowedIPs"
    )
    persistent_keepalive: Annotated[int, Field(ge=0, le=65535)] = 0


class InterfaceConfig(ConfigModel):
    """One WireGuard interface per underlay; the first one listed is the primary."""

    underlay: ShortName
    name: InterfaceName
    listen_port: Port
    endpoint: Endpoint
    peers: Annotated[list[PeerConfig], Field(max_length=MAX_PEERS)] = Field(default_factory=list)


class MonitoringConfig(ConfigModel):
    enabled: bool = True
    interval_seconds: Annotated[float, Field(ge=0.05, le=3600)] = 10.0
    probes_per_check: Annotated[int, Field(ge=1, le=1000)] = 5


class PathConfig(ConfigModel):
    """A Path that starts at this site: what to probe, through which tunnel."""

    name: ObjectName
    destination: ObjectName
    destination_address: IpAddress | None = None
    """The destination site's overlay address, probed through the tunnel; None until it has one."""
    underlay: ShortName
    interface: InterfaceName | None = None
    type: Literal["direct", "vpn"] = "vpn"
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)


class MatchConfig(ConfigModel):
    protocol: Literal["tcp", "udp", "icmp", "any"] = "any"
    dst_ports: Annotated[list[PortRange], Field(max_length=64)] | None = None
    src_ports: Annotated[list[PortRange], Field(max_length=64)] | None = None
    dscp: Annotated[int, Field(ge=0, le=63)] | None = None
    src_cidrs: Annotated[list[Cidr], Field(max_length=64)] | None = None
    dst_cidrs: Annotated[list[Cidr], Field(max_length=64)] | None = None

    @field_validator("dst_ports", "src_ports")
    @classmethod
    def _ranges_in_order(cls, ranges: list[list[int]] | None) -> list[list[int]] | None:
        for first, last in ranges or ():
            if last < first:
                raise ValueError(f"port range {first}-{last} is reversed")
        return ranges


class ActionConfig(ConfigModel):
    type: Literal["route"] = "route"
    primary_path: ObjectName | None = None
    backup_path: ObjectName | None = None


class QosConfig(ConfigModel):
    class_: QosClass = Field("default", alias="class")
    bandwidth_bps: Annotated[int, Field(ge=1, le=MAX_BANDWIDTH_BPS)] | None = None


class FailoverConfig(ConfigModel):
    threshold: Annotated[float, Field(ge=0, le=100)] = 70.0
    cooldown_seconds: Annotated[float, Field(ge=0, le=86400)] = 30.0


class PolicyConfig(ConfigModel):
    """A Policy as the enforcing agent applies it; rendered once per Policy version, shared by sites."""

    name: ObjectName
    priority: Annotated[int, Field(ge=0, le=1000)] = 0
    match: MatchConfig = Field(default_factory=MatchConfig)
    action: ActionConfig = Field(default_factory=ActionConfig)
    qos: QosConfig | None = None
    failover: FailoverConfig = Field(default_factory=FailoverConfig)


class AgentConfig(ConfigModel):
    """Everything a site's agent needs, public material only: the private key stays in its Secret."""

    schema_version: Literal[2] = 2
    site: ObjectName
    namespace: LabelName
    public_key: WireGuardKey | None = None
    overlay_address: IpAddress | None = None
    subnets: Annotated[list[Cidr], Field(max_length=64)] = Field(default_factory=list)
    interfaces: Annotated[list[InterfaceConfig], Field(max_length=8)] = Field(default_factory=list)
    paths: Annotated[list[PathConfig], Field(max_length=MAX_PATHS)] = Field(default_factory=list)
    policies: Annotated[list[PolicyConfig], Field(max_length=MAX_POLICIES)] = Field(default_factory=list)

    def to_json(self) -> str:
        """The text the operator stores: deterministic for equal configurations."""
        return self.model_dump_json(by_alias=True)


def parse_agent_config(text: str | bytes) -> AgentConfig:
    """Read ``config.json``; :class:`UnsupportedSchemaVersion` or :class:`AgentConfigError` when it is not
    a configuration this agent can apply. The version is checked first, so a newer operator's layout is
    reported as such rather than as a list of unknown fields."""
    try:
        raw: Any = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        raise AgentConfigError(f"config.json is not JSON: {error}") from None
    if not isinstance(raw, dict):
        raise AgentConfigError("config.json must hold a JSON object")
    version = raw.get("schemaVersion")
    if version != SCHEMA_VERSION:
        raise UnsupportedSchemaVersion(
            f"config.json has schemaVersion {version!r}; this agent understands {SCHEMA_VERSION} only "
            "(upgrade the agent, or roll the operator back)"
        )
    try:
        return AgentConfig.model_validate(raw)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in e['loc'])}: {e['msg']}" for e in error.errors()[:5]
        )
        raise AgentConfigError(
            f"config.json is invalid ({error.error_count()} problems): {problems}"
        ) from None
