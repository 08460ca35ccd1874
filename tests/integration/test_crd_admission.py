"""The CRDs in a real kube-apiserver: the contract's objects go in, bad ones come back with clear errors."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_namespaced_resource

from patronus.api.kinds import KINDS
from tests.support.invalid_objects import CASES, InvalidCase
from tests.support.manifests import example_files, example_objects, seed_objects

RESOURCES = {
    info.kind: create_namespaced_resource("sdwan.patronus.dev", "v1alpha1", info.kind, info.plural)
    for info in KINDS
}


def _create(client: Any, obj: dict[str, Any], namespace: str) -> Any:
    obj = copy.deepcopy(obj)
    obj["metadata"]["namespace"] = namespace
    resource = RESOURCES[obj["kind"]]
    return client.create(resource.from_dict(obj), namespace=namespace)


def _apply_file(kubectl: Any, path: Path, namespace: str) -> str:
    """kubectl apply with every object moved into the test's namespace."""
    documents = example_objects(path)
    for doc in documents:
        doc["metadata"]["namespace"] = namespace
    result = kubectl("apply", "-f", "-", input_text=yaml.safe_dump_all(documents), check=False)
    assert result.returncode == 0, result.stderr
    return str(result.stdout)


@pytest.mark.parametrize("obj", seed_objects(), ids=lambda o: f"{o['kind']}/{o['metadata']['name']}")
def test_seed_readme_objects_are_accepted(kube_client: Any, namespace: str, obj: dict[str, Any]) -> None:
    created = _create(kube_client, obj, namespace)
    assert created.metadata.name == obj["metadata"]["name"]
    assert created["spec"] == _with_server_defaults(created["spec"], obj["spec"])


def _with_server_defaults(stored: dict[str, Any], sent: dict[str, Any]) -> dict[str, Any]:
    """What the API server stores: what we sent, plus defaults, nothing pruned away."""
    for key, value in sent.items():
        assert key in stored, f"the API server pruned {key}"
        if isinstance(value, dict):
            _with_server_defaults(stored[key], value)
        else:
            assert stored[key] == value
    return stored


@pytest.mark.parametrize("path", example_files(), ids=lambda p: p.name)
def test_examples_apply_cleanly(kubectl: Any, namespace: str, path: Path) -> None:
    output = _apply_file(kubectl, path, namespace)
    count = len([doc for doc in example_objects(path)])
    assert output.count(" created") == count, output


def test_server_applies_defaults(kube_client: Any, namespace: str) -> None:
    path = _create(
        kube_client,
        {
            "apiVersion": "sdwan.patronus.dev/v1alpha1",
            "kind": "Path",
            "metadata": {"name": "defaults"},
            "spec": {"source": {"siteRef": "a"}, "destination": {"siteRef": "b"}},
        },
        namespace,
    )
    assert path["spec"]["monitoring"] == {"enabled": True, "interval": "10s", "probesPerCheck": 5}
    assert path["spec"]["type"] == "vpn"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_invalid_objects_are_rejected_naming_the_field(
    kube_client: Any, namespace: str, case: InvalidCase
) -> None:
    with pytest.raises(ApiError) as raised:
        _create(kube_client, case.object(), namespace)
    message = raised.value.status.message or ""
    assert raised.value.status.code == 422, message
    assert case.field in message, f"{case.field!r} not named in: {message}"
    assert case.says.lower() in message.lower(), f"{case.says!r} not in: {message}"


def test_at_least_twenty_invalid_cases_cover_every_kind() -> None:
    assert len(CASES) >= 20
    assert {case.build.__name__ for case in CASES} == {"site", "path", "policy", "mesh"}


def test_printer_columns_and_category(kubectl: Any, namespace: str) -> None:
    for path in example_files():
        _apply_file(kubectl, path, namespace)
    output = kubectl("get", "sites,paths,policies,meshes", "-n", namespace).stdout
    for header in (
        "LOCATION",
        "PHASE",
        "PEERS",
        "PATHS",
        "HEALTH",  # sites
        "SOURCE",
        "DESTINATION",
        "STATE",
        "LATENCY",
        "LOSS",  # paths
        "PRIORITY",
        "ACTIVE",
        "PATH",
        "FLOWS",  # policies
        "TOPOLOGY",
        "SITES",
        "ACTIVE PATHS",
    ):  # meshes
        assert header in output, f"{header} missing from:\n{output}"
    assert "New York, NY" in output
    assert "branch-nyc   dc-east" in output  # a path's source and destination columns

    everything = kubectl("get", "patronus", "-n", namespace, "-o", "name").stdout.split()
    kinds = {name.split("/")[0] for name in everything}
    assert kinds == {
        "site.sdwan.patronus.dev",
        "path.sdwan.patronus.dev",
        "policy.sdwan.patronus.dev",
        "mesh.sdwan.patronus.dev",
    }
    short = kubectl("get", "sdsite,sdpath,sdpol,sdmesh", "-n", namespace, "-o", "name").stdout.split()
    assert sorted(short) == sorted(everything)


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("site.spec.wireguard", "publicKey"),
        ("site.spec.wireguard.publicKey", "wg pubkey"),
        ("policy.spec.failover.threshold", "backup path"),
        ("path.spec.monitoring.probesPerCheck", "at least 1"),
        ("mesh.spec.topology", "hub-spoke"),
        ("site.status.phase", "Degraded"),
    ],
)
def test_kubectl_explain_shows_descriptions(kubectl: Any, field: str, expected: str) -> None:
    output = kubectl("explain", field).stdout
    assert expected in output, output
