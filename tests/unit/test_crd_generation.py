"""The committed CRDs are what the models generate, and they are structural."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from pydantic import Field

from patronus.api.crd import SchemaError, all_crds, crd_file_name, render_yaml, structural_schema
from patronus.api.kinds import KINDS
from patronus.api.meta import ApiModel
from tests.support.manifests import REPO

CRD_DIR = REPO / "deploy" / "crds"


@pytest.mark.parametrize("info", KINDS, ids=lambda k: k.kind)
def test_committed_crds_match_the_models(info: Any) -> None:
    committed = CRD_DIR / crd_file_name(info)
    generated = render_yaml(next(c for c in all_crds() if c["spec"]["names"]["kind"] == info.kind))
    assert committed.exists(), f"{committed} is missing: run `patronus crds --out deploy/crds`"
    assert committed.read_text() == generated, (
        f"{committed.name} drifted from the models: run `patronus crds --out deploy/crds` and commit"
    )


def test_no_stray_files_in_crd_dir() -> None:
    assert sorted(p.name for p in CRD_DIR.iterdir()) == sorted(crd_file_name(info) for info in KINDS)


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        found.append((path, node))
        for key, value in node.get("properties", {}).items():
            found.extend(_walk(value, f"{path}.{key}"))
        if "items" in node:
            found.extend(_walk(node["items"], f"{path}[]"))
    return found


@pytest.mark.parametrize("crd", all_crds(), ids=lambda c: c["spec"]["names"]["kind"])
def test_schemas_are_structural(crd: dict[str, Any]) -> None:
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    text = yaml.safe_dump(schema)
    for forbidden in ("$ref", "anyOf", "allOf", "title:", "$defs", "additionalProperties: false"):
        assert forbidden not in text, f"{forbidden} in {crd['metadata']['name']}"
    for path, node in _walk(schema):
        assert "type" in node, f"{path} has no type"
        if path.count(".") >= 2 and path.split(".")[1] == "spec" and not path.endswith("[]"):
            assert node.get("description"), f"{path} has no description for kubectl explain"


def test_crd_names_and_columns() -> None:
    by_kind = {crd["spec"]["names"]["kind"]: crd for crd in all_crds()}
    assert set(by_kind) == {"Site", "Path", "Policy", "Mesh"}
    for crd in by_kind.values():
        assert crd["spec"]["group"] == "sdwan.patronus.dev"
        assert crd["spec"]["names"]["categories"] == ["patronus"]
        assert crd["spec"]["versions"][0]["subresources"] == {"status": {}}
    columns = {
        kind: [c["name"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]]
        for kind, crd in by_kind.items()
    }
    assert columns["Site"] == ["Location", "Phase", "Peers", "Paths", "Health", "Age"]
    assert columns["Path"][:3] == ["Source", "Destination", "Underlay"]
    assert {"State", "Latency", "Loss", "Health"} <= set(columns["Path"])
    assert {"Priority", "Active", "Path", "Flows"} <= set(columns["Policy"])
    assert {"Topology", "Sites", "Active Paths", "Health"} <= set(columns["Mesh"])


def test_generator_rejects_unions() -> None:
    class Bad(ApiModel):
        value: int | str

    with pytest.raises(SchemaError, match="unions"):
        structural_schema(Bad)


def test_generator_turns_exclusive_minimum_into_a_boolean() -> None:
    class Positive(ApiModel):
        value: float = Field(gt=0)

    node = structural_schema(Positive)["properties"]["value"]
    assert node["minimum"] == 0
    assert node["exclusiveMinimum"] is True
