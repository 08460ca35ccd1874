"""The base model and the metadata and condition shapes every kind shares."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from patronus.api.markers import ListType, ModelRules

API_GROUP = "sdwan.patronus.dev"
API_VERSION = "v1alpha1"
GROUP_VERSION = f"{API_GROUP}/{API_VERSION}"


class ApiModel(BaseModel):
    """camelCase on the wire, snake_case in Python.

    Unknown fields are ignored rather than rejected: the API server prunes them from stored objects
    already, and an older operator must still read objects a newer CRD allowed.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        use_attribute_docstrings=True,
    )

    @model_validator(mode="after")
    def _model_rules(self) -> Self:
        """The Python side of the model's cross-field CEL rules (see ``markers.model_rules``)."""
        rules = self.model_config.get("json_schema_extra")
        if isinstance(rules, ModelRules):
            rules.check(self)
        return self

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready dict the API server expects: camelCase, no unset optionals."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class ObjectMeta(ApiModel):
    """The parts of Kubernetes object metadata that Patronus reads; everything else is kept as is."""

    model_config = ConfigDict(extra="allow")

    name: str
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    resource_version: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


# What the API server's date-time format takes: RFC 3339 with a T and an offset. pydantic alone would also
# take "2026-01-02", "2026-01-02 03:04:05" or a number of seconds, which the API server refuses.
RFC3339_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)


def _rfc3339(value: object) -> object:
    if isinstance(value, str) and not re.fullmatch(RFC3339_PATTERN, value):
        raise ValueError("must be an RFC 3339 time such as 2026-01-02T03:04:05Z")
    return value


Timestamp = Annotated[datetime, BeforeValidator(_rfc3339)]
"""A time as Kubernetes writes it; a datetime built in Python passes as it is."""

# metav1.Condition's own patterns: a CamelCase type (optionally prefixed by a DNS name) and reason.
CONDITION_TYPE_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
CONDITION_REASON_PATTERN = r"^([A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?)?$"


class Condition(ApiModel):
    """A condition in the shape of metav1.Condition."""

    type: Annotated[str, Field(min_length=1, max_length=316, pattern=CONDITION_TYPE_PATTERN)]
    """Type of condition in CamelCase, for example Ready."""
    status: Literal["True", "False", "Unknown"]
    """Whether the condition holds: True, False or Unknown."""
    reason: Annotated[str, Field(max_length=1024, pattern=CONDITION_REASON_PATTERN)] = ""
    """A machine-readable CamelCase word for the condition's last transition."""
    message: Annotated[str, Field(max_length=32768)] = ""
    """A human-readable explanation of the condition."""
    last_transition_time: Timestamp | None = None
    """When the condition last changed from one status to another."""
    observed_generation: Annotated[int, Field(ge=0)] | None = None
    """The .metadata.generation the condition was set for."""


Conditions = Annotated[list[Condition], Field(max_length=32), ListType("map", keys=("type",))]

Generation = Annotated[int, Field(ge=0)]
"""A .metadata.generation, as a status's observedGeneration reports it."""
