"""Pods on the local node: addresses, Services through kube-proxy, logs and exec, service account
tokens against the API server through the `kubernetes` Service, and the TUN device the agent needs."""

from __future__ import annotations

import ipaddress
import json
import textwrap
import time
from typing import Any

import pytest

from patronus.controlplane import ControlPlane
from patronus.controlplane.images import AGENT_IMAGE
from patronus.controlplane.nodeconfig import NodeNetwork

# Long enough to wait for another session's node on a shared machine (the fixture waits for the lock).
pytestmark = [pytest.mark.integration, pytest.mark.root, pytest.mark.timeout(1500)]

# Any image of ours has Python and (the agent's) ip; the name is what `docker build -t` gives.
IMAGE = "patronus-agent:latest"


def _pod(name: str, command: list[str], **container: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "main",
                    "image": IMAGE,
                    "imagePullPolicy": "Never",
                    "command": command,
                    **container,
                }
            ],
        },
    }


def _apply(cluster: ControlPlane, namespace: str, manifest: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input_text=json.dumps(manifest))


def _wait_ready(cluster: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    result = cluster.kubectl(
        "wait", "-n", namespace, f"pod/{name}", "--for=condition=Ready", "--timeout=90s", check=False
    )
    pod: dict[str, Any] = json.loads(
        cluster.kubectl("get", "pod", "-n", namespace, name, "-o", "json").stdout
    )
    assert result.returncode == 0, f"{name} not Ready: {json.dumps(pod.get('status'), indent=1)}"
    return pod


def _wait_succeeded(cluster: ControlPlane, namespace: str, name: str, timeout: float = 90) -> str:
    """Wait for a run-to-completion pod to succeed; return its log."""
    deadline = time.monotonic() + timeout
    phase = ""
    while time.monotonic() < deadline:
        phase = cluster.kubectl("get", "pod", "-n", namespace, name, "-o", "jsonpath={.status.phase}").stdout
        if phase in ("Succeeded", "Failed"):
            break
        time.sleep(0.5)
    log = cluster.kubectl("logs", "-n", namespace, name, check=False)
    assert phase == "Succeeded", f"{name} is {phase or 'not done'}; log:\n{log.stdout}{log.stderr}"
    return log.stdout


def test_a_pod_runs_with_an_address_from_the_pod_network(
    node_cluster: ControlPlane, node_namespace: str
) -> None:
    _apply(node_cluster, node_namespace, _pod("sleeper", ["sleep", "3600"]))
    pod = _wait_ready(node_cluster, node_namespace, "sleeper")
    address = ipaddress.ip_address(pod["status"]["podIP"])
    assert address in ipaddress.ip_network(NodeNetwork().pod_cidr)
    assert pod["spec"]["nodeName"] == "patronus-node"
    images = node_cluster.kubectl("get", "node", "patronus-node", "-o", "jsonpath={.status.images[*].names}")
    assert AGENT_IMAGE in images.stdout


def test_logs_and_exec(node_cluster: ControlPlane, node_namespace: str) -> None:
    script = "import time; print('hello from the pod', flush=True); time.sleep(3600)"
    _apply(node_cluster, node_namespace, _pod("talker", ["python3", "-c", script]))
    _wait_ready(node_cluster, node_namespace, "talker")
    deadline = time.monotonic() + 30
    while "hello from the pod" not in (
        logs := node_cluster.kubectl("logs", "-n", node_namespace, "talker").stdout
    ):
        assert time.monotonic() < deadline, f"log so far: {logs!r}"
        time.sleep(0.5)
    exec_result = node_cluster.kubectl("exec", "-n", node_namespace, "talker", "--", "cat", "/etc/hostname")
    assert exec_result.stdout.strip() == "talker"
    piped = node_cluster.kubectl(
        "exec", "-i", "-n", node_namespace, "talker", "--", "wc", "-c", input_text="12345"
    )
    assert piped.stdout.strip() == "5"


def test_a_service_reaches_its_pod_through_kube_proxy(
    node_cluster: ControlPlane, node_namespace: str
) -> None:
    server = _pod(
        "web",
        ["python3", "-m", "http.server", "8080", "--directory", "/etc"],
        ports=[{"containerPort": 8080}],
    )
    server["spec"]["containers"][0]["readinessProbe"] = {"tcpSocket": {"port": 8080}, "periodSeconds": 1}
    _apply(node_cluster, node_namespace, server)
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    _apply(node_cluster, node_namespace, service)
    _wait_ready(node_cluster, node_namespace, "web")
    cluster_ip = node_cluster.kubectl(
        "get", "service", "-n", node_namespace, "web", "-o", "jsonpath={.spec.clusterIP}"
    ).stdout
    assert ipaddress.ip_address(cluster_ip) in ipaddress.ip_network(NodeNetwork().service_cidr)
    # The client retries: kube-proxy programs the Service a moment after its endpoints appear.
    fetch = textwrap.dedent(
        f"""
        import time, urllib.request
        for attempt in range(60):
            try:
                print(urllib.request.urlopen("http://{cluster_ip}:80/hostname", timeout=2).read().decode())
                break
            except OSError as error:
                print("retry:", error, flush=True)
                time.sleep(0.5)
        else:
            raise SystemExit(1)
        """
    )
    client = _pod("client", ["python3", "-c", fetch])
    client["spec"]["restartPolicy"] = "Never"
    _apply(node_cluster, node_namespace, client)
    assert _wait_succeeded(node_cluster, node_namespace, "client").split()[-1] == "web"


def test_a_pod_reaches_the_api_server_with_its_service_account_token(
    node_cluster: ControlPlane, node_namespace: str
) -> None:
    # A SelfSubjectReview answers to every authenticated user: the API server says who the token is.
    review = textwrap.dedent(
        """
        import json, os, ssl, urllib.request
        sa = "/var/run/secrets/kubernetes.io/serviceaccount"
        host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
        request = urllib.request.Request(
            f"https://{host}:{port}/apis/authentication.k8s.io/v1/selfsubjectreviews",
            data=json.dumps({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}).encode(),
            headers={"Authorization": "Bearer " + open(f"{sa}/token").read(),
                     "Content-Type": "application/json"},
        )
        context = ssl.create_default_context(cafile=f"{sa}/ca.crt")
        body = json.load(urllib.request.urlopen(request, context=context, timeout=10))
        print(host, body["status"]["userInfo"]["username"])
        """
    )
    pod = _pod("whoami", ["python3", "-c", review])
    pod["spec"]["restartPolicy"] = "Never"
    _apply(node_cluster, node_namespace, pod)
    host, username = _wait_succeeded(node_cluster, node_namespace, "whoami").split()
    assert host == NodeNetwork().service_ip
    assert username == f"system:serviceaccount:{node_namespace}:default"


def _tun_pod(name: str, security: dict[str, Any], *, host_tun: bool) -> dict[str, Any]:
    script = "ip tuntap add dev tun0 mode tun && ip link set tun0 up && ip -brief link show tun0"
    pod = _pod(name, ["sh", "-c", script], securityContext=security)
    pod["spec"]["restartPolicy"] = "Never"
    if host_tun:
        pod["spec"]["volumes"] = [{"name": "tun", "hostPath": {"path": "/dev/net/tun", "type": "CharDevice"}}]
        pod["spec"]["containers"][0]["volumeMounts"] = [{"name": "tun", "mountPath": "/dev/net/tun"}]
    return pod


def test_net_admin_and_the_host_tun_device_make_a_tun_interface(
    node_cluster: ControlPlane, node_namespace: str
) -> None:
    """What the agent's pod needs for wireguard-go: NET_ADMIN and /dev/net/tun, which containerd does not
    create in a container; a CharDevice hostPath brings it, and no other capability is needed."""
    security = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN"]}}
    _apply(node_cluster, node_namespace, _tun_pod("tun", security, host_tun=True))
    assert "tun0" in _wait_succeeded(node_cluster, node_namespace, "tun")


@pytest.mark.parametrize(
    ("name", "capabilities"),
    [
        ("no-device", {"drop": ["ALL"], "add": ["NET_ADMIN"]}),
        ("no-net-admin", {"drop": ["ALL"]}),
    ],
)
def test_without_the_device_or_net_admin_there_is_no_tun_interface(
    node_cluster: ControlPlane, node_namespace: str, name: str, capabilities: dict[str, Any]
) -> None:
    security = {"allowPrivilegeEscalation": False, "capabilities": capabilities}
    _apply(node_cluster, node_namespace, _tun_pod(name, security, host_tun=name != "no-device"))
    deadline = time.monotonic() + 90
    while (
        phase := node_cluster.kubectl(
            "get", "pod", "-n", node_namespace, name, "-o", "jsonpath={.status.phase}"
        ).stdout
    ) not in ("Succeeded", "Failed"):
        assert time.monotonic() < deadline
        time.sleep(0.5)
    log = node_cluster.kubectl("logs", "-n", node_namespace, name).stdout
    assert phase == "Failed", log
    assert "tun0" not in log
