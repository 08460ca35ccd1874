"""Annotations that carry Kubernetes-only schema keywords into a model's JSON schema.

They live in ``typing.Annotated`` metadata beside the type, so a field's admission rules sit next to its
Python type, and several of them compose (each appends; none overwrites another).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

VALIDATIONS_KEY = "x-kubernetes-validations"


@dataclass(frozen=True, slots=True)
class CEL:
    """A CEL rule the API server checks at admission, with the same rule in Python beside it.

    ``check`` is what the model runs: a value (or, for a rule on a model, the model) for which it
    returns False is refused with ``message``, the message the API server shows for ``rule``. The
    admission tests feed the same examples to both and expect the same verdict.
    """

    rule: str
    message: str
    check: Callable[[Any], bool]
    field_path: str | None = None
    """For a rule on an object, the field (``.destination.siteRef``) the error is reported on."""

    def as_schema(self) -> dict[str, str]:
        schema = {"rule": self.rule, "message": self.message}
        if self.field_path:
            schema["fieldPath"] = self.field_path
        return schema

    def validate(self, value: Any) -> Any:
        if not self.check(value):
            raise ValueError(self.message)
        return value

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_after_validator_function(self.validate, handler(source))

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


class ModelRules:
    """Rules that span several fields of a model, as its ``json_schema_extra``.

    The schema gets them as ``x-kubernetes-validations`` of the model's object; ``ApiModel`` runs their
    checks on the model once its fields are valid.
    """

    def __init__(self, *rules: CEL) -> None:
        self.rules = rules

    def __call__(self, schema: dict[str, Any]) -> None:
        schema.setdefault(VALIDATIONS_KEY, []).extend(rule.as_schema() for rule in self.rules)

    def check(self, model: Any) -> None:
        for rule in self.rules:
            rule.validate(model)


def model_rules(*rules: CEL) -> ModelRules:
    """``json_schema_extra`` for a model whose rules span several of its fields."""
    return ModelRules(*rules)
