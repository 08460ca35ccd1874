"""The pydantic models accept the contract's objects and reject what admission rejects."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from patronus.api import Mesh, Path, Policy, Site
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
