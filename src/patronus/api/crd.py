"""Generate CustomResourceDefinitions from the pydantic models.

Pydantic emits JSON Schema 2020-12 with ``$defs``/``$ref``, ``anyOf`` for optionals and ``title`` on
everything. The API server wants a *structural* OpenAPI v3 schema: every node typed, no references, no
``anyOf`` wrapping a type, ``exclusiveMinimum`` as a boolean. ``structural_schema`` does that rewrite;
``crd_manifest`` wraps it with names, printer columns and the status subresource.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from patronus.api.kinds import CATEGORY, KINDS, KindInfo
from patronus.api.markers import VALIDATIONS_KEY
from patronus.api.meta import API_GROUP, API_VERSION

Schema = dict[str, Any]

# Keys of JSON Schema that structural OpenAPI v3 has no use for.
_DROPPED_KEYS = frozenset({"title", "$schema", "examples"})
_REF_PREFIX = "#/$defs/"


class SchemaError(ValueError):
    """The model uses a construct that has no structural-schema equivalent."""


def structural_schema(model: type[BaseModel]) -> Schema:
    """The structural OpenAPI v3 schema of ``model``, with references inlined."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    definitions = raw.pop("$defs", {})
    return _rewrite(raw, definitions, path=model.__name__)


def _resolve(node: Schema, definitions: dict[str, Schema], path: str) -> Schema:
    name = node["$ref"].removeprefix(_REF_PREFIX)
    if name not in definitions:
        raise SchemaError(f"{path}: unresolvable reference {node['$ref']}")
    resolved = _rewrite(copy.deepcopy(definitions[name]), definitions, path)
    # Keys beside the $ref belong to the field and win over the referenced model's own.
    siblings = _rewrite({k: v for k, v in node.items() if k != "$ref"}, definitions, path, partial=True)
    rules = resolved.pop(VALIDATIONS_KEY, []) + siblings.pop(VALIDATIONS_KEY, [])
    resolved.update(siblings)
    if rules:
        resolved[VALIDATIONS_KEY] = rules
    return _ordered(resolved)


def _unwrap_optional(node: Schema, definitions: dict[str, Schema], path: str) -> Schema:
    """``anyOf: [X, null]`` becomes X: a null written by a user is pruned by the API server."""
    choices = [choice for choice in node.pop("anyOf") if choice.get("type") != "null"]
    if len(choices) != 1:
        raise SchemaError(f"{path}: unions other than Optional[X] are not structural")
    inner = _rewrite(choices[0], definitions, path)
    outer = _rewrite(node, definitions, path, partial=True)
    if outer.get("default", 0) is None:
        del outer["default"]
    rules = inner.pop(VALIDATIONS_KEY, []) + outer.pop(VALIDATIONS_KEY, [])
    inner.update(outer)
    if rules:
        inner[VALIDATIONS_KEY] = rules
    return _ordered(inner)


def _rewrite(node: Schema, definitions: dict[str, Schema], path: str, *, partial: bool = False) -> Schema:
    """Rewrite one node; ``partial`` marks keys that sit beside a type given elsewhere."""
    node = dict(node)
    if "$ref" in node:
        return _resolve(node, definitions, path)
    if "anyOf" in node:
        return _unwrap_optional(node, definitions, path)
    if "allOf" in node:
        parts = node.pop("allOf")
        if len(parts) != 1:
            raise SchemaError(f"{path}: allOf with several parts is not structural")
        merged = _rewrite(parts[0], definitions, path)
        merged.update(_rewrite(node, definitions, path, partial=True))
        return merged

    result: Schema = {}
    for key, value in node.items():
        if key not in _DROPPED_KEYS:
            result.update(_rewrite_entry(key, value, definitions, path))
    if "enum" in result and "type" not in result:
        result["type"] = _enum_type(result["enum"], path)
    if "properties" in result:
        result.setdefault("type", "object")
    if not partial and "type" not in result and "x-kubernetes-preserve-unknown-fields" not in result:
        raise SchemaError(f"{path}: every node of a structural schema needs a type")
    if "description" in result:
        # Docstrings wrap at the source's line length; kubectl explain wraps on its own.
        result["description"] = " ".join(result["description"].split())
    return _ordered(result)


def _rewrite_entry(key: str, value: Any, definitions: dict[str, Schema], path: str) -> Schema:
    """One keyword of a node, in its structural-OpenAPI spelling (possibly none, possibly two keys)."""
    if key == "const":
        return {"enum": [value]}
    if key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
        return {"minimum" if key == "exclusiveMinimum" else "maximum": value, key: True}
    if key == "properties":
        return {key: {name: _rewrite(sub, definitions, f"{path}.{name}") for name, sub in value.items()}}
    if key == "items":
        return {key: _rewrite(value, definitions, f"{path}[]")}
    if key == "additionalProperties":
        if isinstance(value, dict):
            return {key: _rewrite(value, definitions, f"{path}{{}}")}
        # false is forbidden in structural schemas (pruning does its job); true means "keep anything".
        return {"x-kubernetes-preserve-unknown-fields": True} if value is True else {}
    return {key: value}


def _ordered(node: Schema) -> Schema:
    """Description and type first, the rest sorted, so the YAML reads well and diffs stay small."""
    head = [key for key in ("description", "type") if key in node]
    return {key: node[key] for key in head + sorted(key for key in node if key not in head)}


def _enum_type(values: list[Any], path: str) -> str:
    kinds = {type(value) for value in values}
    if kinds == {str}:
        return "string"
    if kinds <= {int}:
        return "integer"
    raise SchemaError(f"{path}: enum mixes types {kinds}")


def object_schema(info: KindInfo) -> Schema:
    """The openAPIV3Schema of one kind: apiVersion, kind, metadata, spec and status."""
    return {
        "description": info.description,
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {
                "description": "APIVersion defines the versioned schema of this representation of an object.",
                "type": "string",
            },
            "kind": {
                "description": "Kind is the REST resource this object represents.",
                "type": "string",
            },
            "metadata": {"type": "object"},
            "spec": structural_schema(info.spec),
            "status": structural_schema(info.status),
        },
    }


def crd_manifest(info: KindInfo) -> Schema:
    """The CustomResourceDefinition of one kind."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": info.crd_name,
            "labels": {"app.kubernetes.io/name": "patronus", "app.kubernetes.io/component": "crd"},
        },
        "spec": {
            "group": API_GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": info.kind,
                "listKind": f"{info.kind}List",
                "plural": info.plural,
                "singular": info.singular,
                "shortNames": list(info.short_names),
                "categories": [CATEGORY],
            },
            "versions": [
                {
                    "name": API_VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {
                            "name": column.name,
                            "type": column.type,
                            "jsonPath": column.json_path,
                            "description": column.description,
                            **({"priority": column.priority} if column.priority else {}),
                        }
                        for column in info.columns
                    ],
                    "schema": {"openAPIV3Schema": object_schema(info)},
                }
            ],
        },
    }


def all_crds() -> list[Schema]:
    return [crd_manifest(info) for info in KINDS]


def crd_file_name(info: KindInfo) -> str:
    return f"{API_GROUP}_{info.plural}.yaml"


def render_yaml(manifest: Schema) -> str:
    header = "# Generated by `patronus crds --out deploy/crds` from src/patronus/api. Do not edit.\n"
    return header + yaml.safe_dump(manifest, sort_keys=False, width=100, allow_unicode=True)


def render_all_yaml() -> str:
    """Every CRD in one multi-document YAML stream, as `patronus crds` prints it."""
    return "---\n".join(render_yaml(manifest) for manifest in all_crds())


def write_crds(directory: Path) -> list[Path]:
    """Write one file per CRD into ``directory``; return the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for info in KINDS:
        target = directory / crd_file_name(info)
        target.write_text(render_yaml(crd_manifest(info)), encoding="utf-8")
        written.append(target)
    return written
