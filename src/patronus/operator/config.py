"""Operator configuration: environment over the ConfigMap ``patronus-operator-config`` over defaults.

``load_config(os.environ, configmap.data)`` is the entry point. Every value is a string in both sources;
each is parsed here once, and a bad one is reported with its key, its value and where it came from::

    MAX_CONCURRENT_RECONCILES="zero" (from environment): must be an integer >= 1

``OperatorConfig()`` on its own reads ``os.environ`` only (pydantic-settings), which is handy in scripts.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from patronus import __version__
from patronus.api.parsers import DNS_LABEL_PATTERN, format_duration
from patronus.operator import config_values as values

log = logging.getLogger(__name__)

DEFAULT_CONFIG_MAP_NAME = "patronus-operator-config"
DEFAULT_NAMESPACE = "patronus-system"
SOURCE_ENV = "environment"
SOURCE_DEFAULT = "default"

# Client-go's JitterFactor: renewals must fit 1.2 retry periods into the renew deadline.
RETRY_JITTER_FACTOR = 1.2
MAX_PORT = 65535

LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["json", "console"]


# Keys that only make sense per pod (the Downward API) or that locate the ConfigMap itself.
ENV_ONLY_KEYS = frozenset({"CONFIG_MAP_NAME", "POD_NAME", "POD_NAMESPACE"})


def _default_agent_image() -> str:
    # A local version such as 0.1.0+dirty is not a valid image tag; '+' is the only offender.
    return f"ghcr.io/patronus/patronus-agent:v{__version__.replace('+', '-')}"


def _default_identity() -> str:
    # Outside a pod, two processes on one host must still differ (client-go examples do the same).
    return f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"


class ConfigError(ValueError):
    """One or more configuration values are invalid; ``problems`` holds one line per value."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid operator configuration: " + "; ".join(problems))


class CrossFieldError(ValueError):
    """Values that are fine alone but not together; ``template`` names each key as ``{KEY}``."""

    def __init__(self, keys: tuple[str, ...], template: str, values: Mapping[str, object]) -> None:
        self.keys = keys
        self.template = template
        super().__init__(template.format(**{key: f"{key}={values[key]!r}" for key in keys}))

    def render(self, describe: Mapping[str, str]) -> str:
        return self.template.format(**{key: describe[key] for key in self.keys})


class OperatorConfig(BaseSettings):
    """The operator's settings; field aliases are the environment / ConfigMap keys."""

    model_config = SettingsConfigDict(populate_by_name=True, frozen=True, extra="ignore", case_sensitive=True)

    reconcile_interval: float = Field(30.0, alias="RECONCILE_INTERVAL", description="seconds between resyncs")
    max_concurrent_reconciles: int = Field(5, alias="MAX_CONCURRENT_RECONCILES")
    default_cpu_request: str = Field("1", alias="DEFAULT_CPU_REQUEST")
    default_memory_request: str = Field("2Gi", alias="DEFAULT_MEMORY_REQUEST")
    metrics_port: int = Field(8080, alias="METRICS_PORT")
    health_probe_port: int = Field(8081, alias="HEALTH_PROBE_PORT")
    bind_address: str = Field("0.0.0.0", alias="BIND_ADDRESS")

    leader_election_enabled: bool = Field(True, alias="LEADER_ELECTION_ENABLED")
    leader_election_lease_duration: float = Field(15.0, alias="LEADER_ELECTION_LEASE_DURATION")
    leader_election_renew_deadline: float = Field(10.0, alias="LEADER_ELECTION_RENEW_DEADLINE")
    leader_election_retry_period: float = Field(2.0, alias="LEADER_ELECTION_RETRY_PERIOD")
    leader_election_namespace: str = Field(DEFAULT_NAMESPACE, alias="LEADER_ELECTION_NAMESPACE")
    leader_election_id: str = Field("patronus-operator", alias="LEADER_ELECTION_ID")

    watch_namespaces: tuple[str, ...] = Field((), alias="WATCH_NAMESPACES", description="empty: all")
    log_level: LogLevel = Field("info", alias="LOG_LEVEL")
    log_format: LogFormat = Field("json", alias="LOG_FORMAT")
    agent_image: str = Field(default_factory=_default_agent_image, alias="AGENT_IMAGE")
    config_map_name: str = Field(DEFAULT_CONFIG_MAP_NAME, alias="CONFIG_MAP_NAME")
    pod_name: str | None = Field(None, alias="POD_NAME")
    pod_namespace: str | None = Field(None, alias="POD_NAMESPACE")

    # Derived, not keys: who we are in the Lease, and what load_config noticed on the way.
    identity: str = Field(default_factory=_default_identity, alias="_identity")
    ignored_configmap_keys: tuple[str, ...] = Field((), alias="_ignored_configmap_keys")
    sources: dict[str, str] = Field(default_factory=dict, alias="_sources")

    KEYS: ClassVar[tuple[str, ...]]

    # -- per-key parsing --------------------------------------------------------------------------

    @field_validator(
        "reconcile_interval",
        "leader_election_lease_duration",
        "leader_election_renew_deadline",
        "leader_election_retry_period",
        mode="before",
    )
    @classmethod
    def _parse_duration(cls, value: object) -> float:
        return values.duration(value)

    @field_validator("max_concurrent_reconciles", mode="before")
    @classmethod
    def _parse_concurrency(cls, value: object) -> int:
        return values.integer(value, low=1)

    @field_validator("metrics_port", "health_probe_port", mode="before")
    @classmethod
    def _parse_port(cls, value: object) -> int:
        return values.integer(value, low=1, high=MAX_PORT)

    @field_validator("default_cpu_request", "default_memory_request", mode="before")
    @classmethod
    def _parse_quantity(cls, value: object) -> str:
        return values.quantity(value)

    @field_validator("leader_election_enabled", mode="before")
    @classmethod
    def _parse_bool(cls, value: object) -> bool:
        return values.boolean(value)

    @field_validator("leader_election_namespace", "pod_namespace", mode="before")
    @classmethod
    def _parse_namespace(cls, value: object) -> str | None:
        return None if value is None else values.dns_label(value)

    @field_validator("leader_election_id", "config_map_name", mode="before")
    @classmethod
    def _parse_name(cls, value: object) -> str:
        text = str(value).strip()
        if not re.fullmatch(DNS_LABEL_PATTERN.rstrip("$") + r"(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$", text):
            raise ValueError("must be a lowercase RFC 1123 name such as patronus-operator")
        return text

    @field_validator("watch_namespaces", mode="before")
    @classmethod
    def _parse_namespaces(cls, value: object) -> tuple[str, ...]:
        return values.namespace_list(value)

    @field_validator("log_level", mode="before")
    @classmethod
    def _parse_log_level(cls, value: object) -> str:
        return values.choice(value, ("debug", "info", "warning", "error"))

    @field_validator("log_format", mode="before")
    @classmethod
    def _parse_log_format(cls, value: object) -> str:
        return values.choice(value, ("json", "console"))

    @field_validator("agent_image", "bind_address", "identity", mode="before")
    @classmethod
    def _parse_token(cls, value: object) -> str:
        return values.non_blank(value)

    # -- rules across keys ------------------------------------------------------------------------

    @model_validator(mode="after")
    def _check_together(self) -> OperatorConfig:
        values: dict[str, object] = {
            "LEADER_ELECTION_LEASE_DURATION": self.leader_election_lease_duration,
            "LEADER_ELECTION_RENEW_DEADLINE": self.leader_election_renew_deadline,
            "LEADER_ELECTION_RETRY_PERIOD": self.leader_election_retry_period,
            "METRICS_PORT": self.metrics_port,
            "HEALTH_PROBE_PORT": self.health_probe_port,
        }
        if self.leader_election_lease_duration <= self.leader_election_renew_deadline:
            raise CrossFieldError(
                ("LEADER_ELECTION_RENEW_DEADLINE", "LEADER_ELECTION_LEASE_DURATION"),
                "{LEADER_ELECTION_RENEW_DEADLINE} must be shorter than {LEADER_ELECTION_LEASE_DURATION}",
                values,
            )
        if self.leader_election_renew_deadline <= RETRY_JITTER_FACTOR * self.leader_election_retry_period:
            raise CrossFieldError(
                ("LEADER_ELECTION_RENEW_DEADLINE", "LEADER_ELECTION_RETRY_PERIOD"),
                "{LEADER_ELECTION_RENEW_DEADLINE} must be longer than "
                f"{RETRY_JITTER_FACTOR} x " + "{LEADER_ELECTION_RETRY_PERIOD}",
                values,
            )
        if self.leader_election_lease_duration < 1:
            raise CrossFieldError(
                ("LEADER_ELECTION_LEASE_DURATION",),
                "{LEADER_ELECTION_LEASE_DURATION} must be at least 1s (the Lease counts whole seconds)",
                values,
            )
        if self.metrics_port == self.health_probe_port:
            raise CrossFieldError(
                ("METRICS_PORT", "HEALTH_PROBE_PORT"),
                "{METRICS_PORT} and {HEALTH_PROBE_PORT} must differ",
                values,
            )
        return self

    @property
    def watches_all_namespaces(self) -> bool:
        return not self.watch_namespaces


OperatorConfig.KEYS = tuple(
    str(field.alias)
    for field in OperatorConfig.model_fields.values()
    if field.alias and field.alias[0] != "_"
)
_FIELD_BY_KEY = {str(field.alias): name for name, field in OperatorConfig.model_fields.items()}


class _ExplicitOperatorConfig(OperatorConfig):
    """OperatorConfig fed only by what load_config passes in, never by os.environ directly."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def load_config(
    environ: Mapping[str, str],
    configmap_data: Mapping[str, str] | None = None,
    *,
    configmap_name: str | None = None,
) -> OperatorConfig:
    """Merge ``environ`` over ``configmap_data`` over defaults, parse, and validate every key.

    Empty strings count as unset (a Downward API field that is missing arrives as ""). Keys in the
    ConfigMap that the operator does not know are logged and listed in ``ignored_configmap_keys``.
    Raises ``ConfigError`` naming each bad key, its value and its source.
    """
    configmap_data = configmap_data or {}
    cm_label = f"ConfigMap {configmap_name or environ.get('CONFIG_MAP_NAME') or DEFAULT_CONFIG_MAP_NAME}"
    raw: dict[str, str] = {}
    sources: dict[str, str] = {}
    ignored: list[str] = []
    for key, value in configmap_data.items():
        if key not in OperatorConfig.KEYS or key in ENV_ONLY_KEYS:
            ignored.append(key)
        elif value.strip():
            raw[key], sources[key] = value, cm_label
    for key in OperatorConfig.KEYS:
        value = environ.get(key, "")
        if value.strip():
            raw[key], sources[key] = value, SOURCE_ENV
    if ignored:
        log.warning("ignoring unknown keys in %s: %s", cm_label, ", ".join(sorted(ignored)))

    if "LEADER_ELECTION_NAMESPACE" not in raw and "POD_NAMESPACE" in raw:
        raw["LEADER_ELECTION_NAMESPACE"] = raw["POD_NAMESPACE"]
        sources["LEADER_ELECTION_NAMESPACE"] = f"{SOURCE_DEFAULT} (POD_NAMESPACE)"
    for key in OperatorConfig.KEYS:
        sources.setdefault(key, SOURCE_DEFAULT)

    values: dict[str, Any] = dict(raw)
    values["_ignored_configmap_keys"] = tuple(sorted(ignored))
    values["_sources"] = sources
    if raw.get("POD_NAME"):
        values["_identity"] = raw["POD_NAME"]
    try:
        return _ExplicitOperatorConfig.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(_describe_errors(exc, raw, sources)) from None


def _quoted(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _default_text(key: str) -> str:
    """A default as a user would write it in the ConfigMap (15s, not 15.0)."""
    field = OperatorConfig.model_fields[_FIELD_BY_KEY[key]]
    default = field.get_default(call_default_factory=True)
    if isinstance(default, float):
        return format_duration(default)
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, tuple):
        return ",".join(default)
    return "" if default is None else str(default)


def _describe_errors(exc: ValidationError, raw: Mapping[str, str], sources: Mapping[str, str]) -> list[str]:
    def describe(key: str) -> str:
        if key in raw:
            return f"{key}={_quoted(raw[key])} (from {sources[key]})"
        return f"{key}={_quoted(_default_text(key))} (default)"

    problems = []
    for error in exc.errors():
        cause = error.get("ctx", {}).get("error")
        if isinstance(cause, CrossFieldError):
            problems.append(cause.render({key: describe(key) for key in cause.keys}))
            continue
        key = str(error["loc"][0]) if error["loc"] else ""
        message = str(cause) if cause is not None else error["msg"]
        problems.append(f"{describe(key)}: {message}" if key in _FIELD_BY_KEY else message)
    return problems
