"""Annotations that carry Kubernetes-only schema keywords into a model's JSON schema.

They live in ``typing.Annotated`` metadata beside the type, so a field's admission rules sit next to its
Python type, and several of them compose (each appends; none overwrites another).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

VALIDATIONS_KEY = "x-kubernetes-validations"


@dataclass(frozen=True, slots=True)
class CEL:
    """A CEL rule the API server checks at admission; ``message`` is shown to the user on failure."""

    rule: str
    message: str
    field_path: str | None = None
    """For a rule on an object, the field (``.destination.siteRef``) the error is reported on."""

    def as_schema(self) -> dict[str, str]:
        schema = {"rule": self.rule, "message": self.message}
        if self.field_path:
            schema["fieldPath"] = self.field_path
        return schema

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema.setdefault(VALIDATIONS_KEY, []).append(self.as_schema())
        return schema


@dataclass(frozen=True, slots=True)
class ListType:
    """``x-kubernetes-list-type``.

    ``set`` makes the API server reject duplicate items; ``map`` (with ``keys``) lets several
    server-side-apply managers own different items of one list, as with conditions.
    """

    kind: Literal["atomic", "set", "map"]
    keys: tuple[str, ...] = ()

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema["x-kubernetes-list-type"] = self.kind
        if self.keys:
            schema["x-kubernetes-list-map-keys"] = list(self.keys)
        return schema


def model_rules(*rules: CEL) -> dict[str, Any]:
    """``json_schema_extra`` for a model whose rules span several of its fields."""
    return {VALIDATIONS_KEY: [rule.as_schema() for rule in rules]}
