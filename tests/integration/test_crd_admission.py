"""The CRDs in a real kube-apiserver: the contract's objects go in, bad ones come back with clear errors,
and for every example the API server gives the verdict the Python models give."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_namespaced_resource
from lightkube.types import PatchType

from patronus.api.crd import all_crds
from patronus.api.kinds import KINDS
from tests.support.field_examples import BUILDERS, EXAMPLES, Example, mutations, python_verdict
from tests.support.invalid_objects import CASES
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


def _status_holder(kind: str) -> str:
    return f"{kind.lower()}-with-status"


def _api_verdict(client: Any, obj: dict[str, Any], namespace: str) -> tuple[bool, str]:
    """(admitted, the API server's message): a dry-run create, or for a status a dry-run status patch of
    the kind's stored object (``_status_holder``)."""
    resource = RESOURCES[obj["kind"]]
    try:
        if "status" in obj:
            client.patch(
                resource.Status,
                _status_holder(obj["kind"]),
                {"status": obj["status"]},
                namespace=namespace,
                patch_type=PatchType.MERGE,
                dry_run=True,
            )
        else:
            obj = copy.deepcopy(obj)
            obj["metadata"]["namespace"] = namespace
            client.create(resource.from_dict(obj), namespace=namespace, dry_run=True)
    except ApiError as error:
        if error.status.code != 422:  # anything but "invalid" is the test's problem, not a verdict
            raise
        return False, error.status.message or ""
    return True, ""


def _disagreements(example: Example, admitted: tuple[bool, str], parsed: tuple[bool, str]) -> list[str]:
    (api_ok, api_says), (python_ok, python_says) = admitted, parsed
    problems = []
    if api_ok != example.valid:
        problems.append(f"the API server {'admits' if api_ok else 'refuses'} it: {api_says}")
    if python_ok != example.valid:
        problems.append(f"the model {'accepts' if python_ok else 'refuses'} it: {python_says}")
    if not example.valid and not api_ok:
        if f"{example.error_field}:" not in api_says:
            problems.append(f"the API server's message does not name {example.error_field}: {api_says}")
        if example.says.lower() not in api_says.lower():
            problems.append(f"the API server's message does not say {example.says!r}: {api_says}")
    return [f"{example.id}: {problem}" for problem in problems]


def test_api_server_and_models_give_every_example_the_same_verdict(kube_client: Any, namespace: str) -> None:
    """Every field example and every cross-field case, in one namespace, by dry-run requests (status
    examples patch one stored object per kind); and every CEL rule of the CRDs refuses at least one."""
    for kind, build in BUILDERS.items():
        _create(kube_client, {**build(), "metadata": {"name": _status_holder(kind)}}, namespace)
    cases = [
        (
            Example(case.build.__name__.capitalize(), case.id, None, False, case.field, case.says),
            case.object(),
        )
        for case in CASES
    ]
    problems, refusals = [], []
    for example, obj in [(example, example.object()) for example in EXAMPLES] + cases:
        admitted = _api_verdict(kube_client, obj, namespace)
        problems += _disagreements(example, admitted, python_verdict(obj))
        refusals.append(admitted[1])
    rules = {rule["message"] for crd in all_crds() for rule in _rules(crd)}
    problems += [
        f"no example breaks the rule {m!r}" for m in sorted(rules) if not any(m in r for r in refusals)
    ]
    assert not problems, f"{len(problems)} disagreements:\n" + "\n".join(problems)


def test_mutated_values_get_one_verdict_from_both(kube_client: Any, namespace: str) -> None:
    """Random edits of the valid examples (seeded, so the same every run): whatever the verdict, the API
    server and the models must agree on it."""
    for kind, build in BUILDERS.items():
        _create(kube_client, {**build(), "metadata": {"name": _status_holder(kind)}}, namespace)
    problems = []
    for example in mutations(count=6):
        obj = example.object()
        (api_ok, api_says), (python_ok, python_says) = (
            _api_verdict(kube_client, obj, namespace),
            python_verdict(obj),
        )
        if api_ok != python_ok:
            problems.append(
                f"{example.id}: API server {api_ok} ({api_says}), model {python_ok} ({python_says})"
            )
    assert not problems, f"{len(problems)} disagreements:\n" + "\n".join(problems)


def _rules(node: Any) -> list[dict[str, str]]:
    if isinstance(node, dict):
        return list(node.get("x-kubernetes-validations", [])) + [r for v in node.values() for r in _rules(v)]
    if isinstance(node, list):
        return [r for v in node for r in _rules(v)]
    return []


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
