"""Installing against the real API server (no node yet, so the operator's pods stay Pending): the seed's
Helm commands, verbatim, against a chart repository that `make chart-repo` built and a loopback HTTP
server serves; `kubectl apply` of deploy/; and the rendered objects as the API server validates them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest

from patronus.controlplane.launcher import ControlPlane
from tests.integration.cluster.conftest import Release
from tests.support.helm import Helm
from tests.support.manifests import REPO

SYSTEM = "patronus-system"
# What the chart makes in its namespace (the seed's release name gives every name).
NAMESPACED = {
    ("ServiceAccount", "patronus-operator"),
    ("ConfigMap", "patronus-operator-config"),
    ("Role", "patronus-operator"),
    ("Role", "patronus-operator-leader-election"),
    ("Role", "patronus-operator-config"),
    ("RoleBinding", "patronus-operator"),
    ("RoleBinding", "patronus-operator-leader-election"),
    ("RoleBinding", "patronus-operator-config"),
    ("Service", "patronus-operator-metrics"),
    ("Deployment", "patronus-operator"),
    ("PodDisruptionBudget", "patronus-operator"),
}
KINDS = "serviceaccounts,configmaps,roles,rolebindings,services,deployments,poddisruptionbudgets"


def objects_in(control_plane: ControlPlane, namespace: str) -> set[tuple[str, str]]:
    """The Patronus objects in ``namespace`` (labelled part-of=patronus), as (kind, name)."""
    result = control_plane.kubectl(
        "get", KINDS, "-n", namespace, "-l", "app.kubernetes.io/part-of=patronus", "-o", "json"
    )
    return {(item["kind"], item["metadata"]["name"]) for item in json.loads(result.stdout)["items"]}


def versions_in(control_plane: ControlPlane, namespace: str) -> dict[tuple[str, str], str]:
    result = control_plane.kubectl("get", KINDS, "-n", namespace, "-o", "json")
    return {
        (item["kind"], item["metadata"]["name"]): item["metadata"]["resourceVersion"]
        for item in json.loads(result.stdout)["items"]
    }


@pytest.fixture
def patronus_system(control_plane: ControlPlane) -> Iterator[str]:
    """The seed's namespace, absent before the test and deleted (and gone) after it."""
    control_plane.kubectl(
        "delete", "namespace", SYSTEM, "--ignore-not-found", "--wait=true", "--timeout=120s"
    )
    yield SYSTEM
    control_plane.kubectl(
        "delete", "namespace", SYSTEM, "--ignore-not-found", "--wait=true", "--timeout=120s"
    )


def test_seed_helm_commands_install_from_a_chart_repository(
    control_plane: ControlPlane, helm: Helm, chart_repository: str, patronus_system: str
) -> None:
    # The seed's Installation, Option 1, with the repository's address on loopback.
    helm.run("repo", "add", "patronus", chart_repository)
    helm.run("repo", "update")
    helm.run(
        "install",
        "patronus-operator",
        "patronus/patronus-operator",
        "--namespace",
        "patronus-system",
        "--create-namespace",
    )
    assert objects_in(control_plane, patronus_system) == NAMESPACED
    deployment = json.loads(
        control_plane.kubectl("get", "deployment", "patronus-operator", "-n", SYSTEM, "-o", "json").stdout
    )
    assert deployment["spec"]["replicas"] == 2
    status = json.loads(helm.run("status", "patronus-operator", "-n", SYSTEM, "-o", "json").stdout)
    assert status["info"]["status"] == "deployed"
    assert "kubectl logs -n patronus-system -l app=patronus-operator" in status["info"]["notes"]
    crds = control_plane.kubectl("get", "crds").stdout
    assert all(f"{plural}.sdwan.patronus.dev" in crds for plural in ("sites", "paths", "policies", "meshes"))

    # The seed's upgrade command; a changed value is a new pod template (the operator rolls).
    template_before = deployment["spec"]["template"]
    helm.run("upgrade", "patronus-operator", "patronus/patronus-operator", "--namespace", "patronus-system")
    helm.run(
        "upgrade",
        "patronus-operator",
        "patronus/patronus-operator",
        "--namespace",
        "patronus-system",
        "--set",
        "config.logLevel=debug",
    )
    after = json.loads(
        control_plane.kubectl("get", "deployment", "patronus-operator", "-n", SYSTEM, "-o", "json").stdout
    )
    annotation = "checksum/config"
    assert (
        after["spec"]["template"]["metadata"]["annotations"][annotation]
        != (template_before["metadata"]["annotations"][annotation])
    )
    config = json.loads(
        control_plane.kubectl(
            "get", "configmap", "patronus-operator-config", "-n", SYSTEM, "-o", "json"
        ).stdout
    )
    assert config["data"]["LOG_LEVEL"] == "debug"

    helm.run("uninstall", "patronus-operator", "-n", "patronus-system")
    assert objects_in(control_plane, patronus_system) == set()


def test_kubectl_apply_of_deploy_creates_what_the_chart_does(
    control_plane: ControlPlane, patronus_system: str
) -> None:
    # The seed's Installation, Option 2, from this repository's deploy/.
    control_plane.kubectl(
        "apply", "-f", str(REPO / "deploy" / "crds"), "-f", str(REPO / "deploy" / "operator")
    )
    assert objects_in(control_plane, patronus_system) == NAMESPACED
    # Applying again changes nothing (kubectl says "configured" for a PodDisruptionBudget whatever
    # happens, as its selector is patched by replacement: the resource versions tell the truth).
    before = versions_in(control_plane, patronus_system)
    control_plane.kubectl(
        "apply", "-f", str(REPO / "deploy" / "crds"), "-f", str(REPO / "deploy" / "operator")
    )
    assert versions_in(control_plane, patronus_system) == before
    control_plane.kubectl("delete", "-f", str(REPO / "deploy" / "operator"), "--wait=true")
    namespaces = control_plane.kubectl("get", "namespaces", "-o", "name").stdout.split()
    assert f"namespace/{SYSTEM}" not in namespaces


@pytest.mark.parametrize("scope", ["namespaced", "cluster"])
def test_rendered_objects_pass_the_api_servers_validation(
    control_plane: ControlPlane, helm: Helm, namespace: str, scope: str
) -> None:
    """Strict server-side validation (unknown or misplaced fields fail), without creating anything."""
    text = helm.template_text(
        release="patronus-operator-dry", namespace=namespace, sets=[f"rbac.scope={scope}"]
    )
    result = control_plane.kubectl(
        "apply", "--dry-run=server", "--validate=strict", "-f", "-", input_text=text, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("(server dry run)") == len([d for d in text.split("\n---\n") if "kind:" in d])


def test_install_in_a_namespace_of_ones_own(
    control_plane: ControlPlane, install: Callable[..., Release], namespace: str
) -> None:
    """Any release name and namespace: names follow the release, and it watches its own namespace."""
    release = install()
    config = json.loads(
        control_plane.kubectl(
            "get", "configmap", f"{release.name}-config", "-n", namespace, "-o", "json"
        ).stdout
    )
    assert config["data"]["WATCH_NAMESPACES"] == namespace
    assert config["data"]["LEADER_ELECTION_NAMESPACE"] == namespace
    assert config["data"]["LEADER_ELECTION_ID"] == release.name
