"""The pydantic models accept the contract's objects and reject what admission rejects.

The integration tests give the same examples to the real API server; here they also prove that every
admission rule has an example that breaks it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import ValidationError

from patronus.api import Mesh, Path, Policy, Site
from patronus.api.crd import all_crds
from tests.support.field_examples import EXAMPLES, Example, python_verdict
from tests.support.invalid_objects import CASES, InvalidCase
from tests.support.manifests import example_files, example_objects, seed_objects

MODELS: dict[str, Any] = {"Site": Site, "Path": Path, "Policy": Policy, "Mesh": Mesh}


@pytest.mark.parametrize("obj", seed_objects(), ids=lambda o: f"{o['kind']}/{o['metadata']['name']}")
def test_seed_objects_parse(obj: dict[str, Any]) -> None:
    model = MODELS[obj["kind"]].model_validate(obj)
    assert model.metadata.name == obj["metadata"]["name"]


@pytest.mark.parametrize("path", example_files(), ids=lambda p: p.name)
def test_examples_parse(path: Any) -> None:
    kinds = [obj for obj in example_objects(path) if obj["kind"] in MODELS]
    assert kinds, f"{path.name} has no Patronus objects"
    for obj in kinds:
        MODELS[obj["kind"]].model_validate(obj)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_invalid_objects_are_rejected(case: InvalidCase) -> None:
    obj = case.object()
    with pytest.raises(ValidationError):
        MODELS[obj["kind"]].model_validate(obj)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.id)
def test_field_examples_get_their_verdict(example: Example) -> None:
    accepted, says = python_verdict(example.object())
    assert accepted == example.valid, says
    if not accepted:
        located = says.split(":")[0].replace(".", "").lower()
        named = re.sub(r"[.\[\]]", "", example.error_field).lower()
        assert named.startswith(located), f"{example.error_field} not where the model says: {says}"


def _schemas() -> Iterator[tuple[str, dict[str, Any]]]:
    """(Kind:path, node) for every node of every CRD schema, list items as ``[]``."""

    def walk(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
        yield path, node
        for name, child in node.get("properties", {}).items():
            yield from walk(child, f"{path}.{name}" if path else name)
        if "items" in node:
            yield from walk(node["items"], f"{path}[]")

    for crd in all_crds():
        kind = crd["spec"]["names"]["kind"]
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for path, node in walk(schema, ""):
            yield f"{kind}:{path}", node


def test_every_cel_rule_has_an_example_that_breaks_it() -> None:
    """Each rule's message shows up in the model's refusal of some example (the model raises a rule's
    own message), so no rule of the CRDs goes untested."""
    refusals = [python_verdict(e.object())[1] for e in EXAMPLES if not e.valid]
    refusals += [python_verdict(case.object())[1] for case in CASES]
    messages = {
        rule["message"]: where
        for where, node in _schemas()
        for rule in node.get("x-kubernetes-validations", [])
    }
    untested = [
        f"{where}: {message}"
        for message, where in messages.items()
        if not any(message in r for r in refusals)
    ]
    assert not untested, "rules no example breaks:\n" + "\n".join(untested)


_ITEM_INDEX = re.compile(r"\[[0-9]+\]")
_CONSTRAINTS = ("pattern", "enum", "minimum", "maximum", "x-kubernetes-validations")


def test_every_constrained_field_has_an_example_that_breaks_it() -> None:
    constrained = {
        where
        for where, node in _schemas()
        if node.get("type") not in ("object", None) and any(key in node for key in _CONSTRAINTS)
    }
    broken = {f"{e.kind}:{_ITEM_INDEX.sub('[]', e.error_field)}" for e in EXAMPLES if not e.valid}
    broken |= {f"{case.object()['kind']}:{case.field}" for case in CASES}
    missing = sorted(constrained - broken)
    assert not missing, "constrained fields no example breaks:\n" + "\n".join(missing)


def test_camel_case_round_trip() -> None:
    site = Site.model_validate(seed_objects()[0])
    wire = site.to_wire()
    assert wire["spec"]["wireguard"]["listenPort"] == 51820
    assert wire["spec"]["mesh"]["peerWith"] == ["branch-sf", "branch-sea"]
    assert "listen_port" not in str(wire)


def test_defaults_match_the_contract() -> None:
    path = Path.model_validate(
        {"metadata": {"name": "p"}, "spec": {"source": {"siteRef": "a"}, "destination": {"siteRef": "b"}}}
    )
    assert path.spec.monitoring.interval == "10s"
    assert path.spec.monitoring.probes_per_check == 5
    policy = Policy.model_validate({"metadata": {"name": "p"}, "spec": {"match": {}, "action": {}}})
    assert policy.spec.failover.threshold == 70
    assert policy.spec.failover.cooldown == "30s"
    assert policy.spec.action.type == "route"
