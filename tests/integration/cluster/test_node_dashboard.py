"""The chart's dashboard on a cluster whose node runs it: Ready, and only for tokens the API server accepts.

`helm install` of the chart with `dashboard.enabled=true` (the images under the chart's default names, as
a registry would serve them). The dashboard pod must become Ready, which it only does once its informers
have listed Sites, Paths, Policies and Events with the chart's read-only Role; it runs as the image's
non-root user on a read-only root filesystem. Requests go to the pod's address (the Service's endpoint)
from the test, like any client on the network: without a token, or with one the API server does not
know, the answer is 401; a ServiceAccount token whose user may not list Sites gets 403; one that may
list Sites gets the namespace's snapshot, with a Site created for the test.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from patronus.controlplane.launcher import ControlPlane
from tests.integration.cluster.seed import diagnosis, get_json, is_ready, preload_images
from tests.support.helm import CHART, Helm
from tests.support.manifests import REAL_KEY
from tests.support.waiting import eventually_sync

RELEASE = "patronus-operator"
DASHBOARD = f"{RELEASE}-dashboard"
PORT = 8090


@dataclass(frozen=True)
class Installed:
    cluster: ControlPlane
    namespace: str
    pod: dict[str, Any]
    seconds: float

    @property
    def url(self) -> str:
        return f"http://{self.pod['status']['podIP']}:{PORT}"


def dashboard_pods(cluster: ControlPlane, namespace: str) -> list[dict[str, Any]]:
    pods: list[dict[str, Any]] = get_json(cluster, "pods", "-n", namespace, "-l", "app=patronus-dashboard")[
        "items"
    ]
    return [pod for pod in pods if not pod["metadata"].get("deletionTimestamp")]


def wait_for_dashboard(cluster: ControlPlane, namespace: str, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        pods = dashboard_pods(cluster, namespace)
        if len(pods) == 1 and is_ready(pods[0]):
            return pods[0]
        if time.monotonic() > deadline:
            logs = cluster.kubectl("logs", "-n", namespace, "-l", "app=patronus-dashboard", check=False)
            state = diagnosis(cluster, namespace)
            raise AssertionError(f"the dashboard was not Ready in {timeout:g}s:\n{state}\n{logs.stdout}")
        time.sleep(0.5)


@pytest.fixture
def installed(node_cluster: ControlPlane, node_namespace: str, tmp_path: Path) -> Iterator[Installed]:
    preload_images(node_cluster)
    helm = Helm(home=tmp_path / "helm", kubeconfig=node_cluster.kubeconfig)
    values = {"replicaCount": 1, "dashboard": {"enabled": True}}
    start = time.monotonic()
    helm.run("install", RELEASE, str(CHART), "--namespace", node_namespace, *helm.values_args(values))
    try:
        pod = wait_for_dashboard(node_cluster, node_namespace)
        seconds = time.monotonic() - start
        print(f"helm install to the dashboard Ready: {seconds:.1f} s")
        yield Installed(node_cluster, node_namespace, pod, seconds)
    finally:
        helm.run("uninstall", RELEASE, "--namespace", node_namespace, "--wait", check=False)


def get(url: str, token: str | None = None) -> tuple[int, dict[str, Any], dict[str, str]]:
    """(status, JSON body, headers) of a GET, whatever the status."""
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}"), dict(error.headers)


def service_account_token(cluster: ControlPlane, namespace: str, name: str, *, may_list_sites: bool) -> str:
    """A ServiceAccount's token (TokenRequest API), bound to a Role that may read Sites if asked."""
    cluster.kubectl("create", "serviceaccount", name, "-n", namespace)
    if may_list_sites:
        cluster.kubectl(
            "create",
            "role",
            name,
            "-n",
            namespace,
            "--verb=get,list,watch",
            "--resource=sites.sdwan.patronus.dev",
        )
        cluster.kubectl(
            "create",
            "rolebinding",
            name,
            "-n",
            namespace,
            f"--role={name}",
            f"--serviceaccount={namespace}:{name}",
        )
    return cluster.kubectl("create", "token", name, "-n", namespace, "--duration=1h").stdout.strip()


def test_dashboard_runs_and_answers_only_tokens_that_may_list_sites(installed: Installed) -> None:
    cluster, namespace, pod = installed.cluster, installed.namespace, installed.pod
    assert installed.seconds < 180
    # Behind its Service: the ready pod is the Service's endpoint.
    slices = get_json(
        cluster, "endpointslices", "-n", namespace, "-l", f"kubernetes.io/service-name={DASHBOARD}"
    )
    endpoints = [e for s in slices["items"] for e in s.get("endpoints") or ()]
    assert [(e["addresses"], e["conditions"]["ready"]) for e in endpoints] == [
        ([pod["status"]["podIP"]], True)
    ]
    # As the image's user, on a read-only root filesystem.
    probe = "import os\ntry:\n open('/x', 'w')\nexcept OSError as e:\n print(os.getuid(), e.errno)"
    answer = cluster.kubectl("exec", "-n", namespace, pod["metadata"]["name"], "--", "python3", "-c", probe)
    assert answer.stdout.split() == ["65532", "30"]  # EROFS

    site = {
        "apiVersion": "sdwan.patronus.dev/v1alpha1",
        "kind": "Site",
        "metadata": {"name": "branch-1", "namespace": namespace},
        "spec": {"wireguard": {"publicKey": REAL_KEY, "endpoints": ["branch-1.example.net:51820"]}},
    }
    cluster.kubectl("apply", "-f", "-", input_text=json.dumps(site))

    status, body, headers = get(f"{installed.url}/api/snapshot")
    assert status == 401, body
    assert headers["WWW-Authenticate"].startswith("Bearer")
    status, body, _ = get(f"{installed.url}/api/snapshot", "not-a-token")
    assert status == 401, body

    stranger = service_account_token(cluster, namespace, "stranger", may_list_sites=False)
    status, body, _ = get(f"{installed.url}/api/snapshot", stranger)
    assert status == 403, body
    assert f"system:serviceaccount:{namespace}:stranger may not list sites" in body["error"]

    viewer = service_account_token(cluster, namespace, "viewer", may_list_sites=True)

    def snapshot_with_the_site() -> dict[str, Any] | None:
        status, body, _ = get(f"{installed.url}/api/snapshot", viewer)
        assert status == 200, body
        return body if [s["name"] for s in body["sites"]] == ["branch-1"] else None

    body = eventually_sync(snapshot_with_the_site, timeout=30, what="the Site in the dashboard's snapshot")
    assert body["namespace"] == namespace
    assert body["user"] == f"system:serviceaccount:{namespace}:viewer"
    assert dashboard_pods(cluster, namespace)[0]["status"]["containerStatuses"][0]["restartCount"] == 0
