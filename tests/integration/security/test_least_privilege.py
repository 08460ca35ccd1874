"""The operator needs no cluster-wide right: with a real token of a ServiceAccount bound only to Roles in
the namespace it watches (and in its own, for its Lease and ConfigMap), it converges with no forbidden
request. The Roles hold the least the operator uses: no `update` (it writes by server-side apply), no
`delete` but of the Paths a Mesh prunes (garbage collection deletes the rest), and it can read no
Secret outside the watched namespace.
"""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from patronus.controlplane.launcher import ControlPlane
from patronus.controlplane.processes import free_port
from patronus.kube.resource import DEPLOYMENT, PATH, POLICY, SITE
from patronus.kube.rest import RestClient
from patronus.operator.config import load_config
from patronus.operator.main import manager_options
from patronus.operator.wiring import register
from patronus.runtime.logs import configure_logging
from patronus.runtime.manager import EXIT_OK, Manager
from patronus.wireguard.keys import generate_private_key, public_key_for
from tests.integration.operator.conftest import Eventually

GV = "sdwan.patronus.dev/v1alpha1"
READ = ["get", "list", "watch"]
WRITE = [*READ, "create", "patch"]

# In every watched namespace.
WATCHED_RULES: list[dict[str, Any]] = [
    {"apiGroups": ["sdwan.patronus.dev"], "resources": ["sites", "policies", "meshes"], "verbs": READ},
    {"apiGroups": ["sdwan.patronus.dev"], "resources": ["paths"], "verbs": [*WRITE, "delete"]},
    {
        "apiGroups": ["sdwan.patronus.dev"],
        "resources": ["sites/status", "paths/status", "policies/status", "meshes/status"],
        "verbs": ["get", "patch"],
    },
    {
        "apiGroups": [""],
        "resources": ["secrets", "configmaps", "serviceaccounts", "services", "persistentvolumeclaims"],
        "verbs": WRITE,
    },
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": WRITE},
    {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"], "verbs": WRITE},
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": WRITE},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
]
# In the operator's own namespace.
OWN_RULES: list[dict[str, Any]] = [
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]},
    {
        "apiGroups": [""],
        "resources": ["configmaps"],
        "verbs": ["get"],
        "resourceNames": ["patronus-operator-config"],
    },
]


def role(namespace: str, rules: list[dict[str, Any]], account_namespace: str) -> str:
    meta = {"name": "patronus-operator", "namespace": namespace}
    documents = [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta, "rules": rules},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "patronus-operator"},
            "subjects": [
                {"kind": "ServiceAccount", "name": "patronus-operator", "namespace": account_namespace}
            ],
        },
    ]
    return yaml.safe_dump_all(documents)


@pytest.fixture
def operator_namespace(control_plane: ControlPlane, namespace: str) -> Iterator[str]:
    own = f"{namespace}-op"
    control_plane.kubectl("create", "namespace", own)
    yield own
    control_plane.kubectl("delete", "namespace", own, "--wait=false", check=False)


def token_kubeconfig(control_plane: ControlPlane, own: str, directory: Path) -> Path:
    token = control_plane.kubectl(
        "create", "token", "patronus-operator", "-n", own, "--duration=1h"
    ).stdout.strip()
    config = yaml.safe_load(control_plane.kubeconfig.read_text())
    config["users"] = [{"name": "operator", "user": {"token": token}}]
    config["contexts"][0]["context"]["user"] = "operator"
    path = directory / "operator.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def world(namespace: str) -> list[dict[str, Any]]:
    private = generate_private_key()
    key_secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "c-key", "namespace": namespace, "labels": {"sdwan.patronus.dev/site": "c"}},
        "data": {"privateKey": base64.b64encode(private.encode()).decode()},
    }
    wireguard = {
        "a": {"endpoints": ["a.example.net:51820"]},
        "b": {"endpoints": ["b.example.net:51820"], "publicKey": public_key_for(generate_private_key())},
        "c": {
            "endpoints": ["c.example.net:51820"],
            "publicKey": public_key_for(private),
            "privateKeySecretRef": {"name": "c-key"},
        },
    }
    sites = [
        {
            "apiVersion": GV,
            "kind": "Site",
            "metadata": {"name": n, "namespace": namespace},
            "spec": {"wireguard": w},
        }
        for n, w in wireguard.items()
    ]
    mesh = {"apiVersion": GV, "kind": "Mesh", "metadata": {"name": "m", "namespace": namespace}}
    mesh["spec"] = {"sites": ["a", "b", "c"]}
    policy = {
        "apiVersion": GV,
        "kind": "Policy",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {"match": {"protocol": "tcp", "dstPortRange": "443"}, "action": {"type": "route"}},
    }
    return [key_secret, *sites, mesh, policy]


async def test_the_operator_works_with_only_namespaced_rights(
    control_plane: ControlPlane,
    namespace: str,
    operator_namespace: str,
    eventually: Eventually,
    tmp_path: Path,
) -> None:
    own = operator_namespace
    control_plane.kubectl("create", "serviceaccount", "patronus-operator", "-n", own)
    control_plane.kubectl("apply", "-f", "-", input_text=role(namespace, WATCHED_RULES, own))
    control_plane.kubectl("apply", "-f", "-", input_text=role(own, OWN_RULES, own))
    account = f"system:serviceaccount:{own}:patronus-operator"

    def can(*args: str) -> bool:
        result = control_plane.kubectl("auth", "can-i", *args, f"--as={account}", check=False)
        return result.stdout.strip() == "yes"

    assert not can("list", "secrets", "-A")
    assert not can("get", "secrets", "-n", "default")
    assert not can("list", "sites.sdwan.patronus.dev", "-A")
    assert not can("update", "deployments", "-n", namespace)
    assert not can("delete", "secrets", "-n", namespace)

    log = io.StringIO()
    configure_logging("info", "json", stream=log)
    config = load_config(
        {
            "WATCH_NAMESPACES": namespace,
            "POD_NAMESPACE": own,
            "POD_NAME": "least-privilege",
            "BIND_ADDRESS": "127.0.0.1",
            "METRICS_PORT": str(free_port()),
            "HEALTH_PROBE_PORT": str(free_port()),
        }
    )
    rest = RestClient.from_kubeconfig(
        token_kubeconfig(control_plane, own, tmp_path), field_manager="patronus-operator"
    )
    admin = RestClient.from_kubeconfig(control_plane.kubeconfig)
    manager = Manager(manager_options(config), rest)
    register(manager, config)
    task = asyncio.create_task(manager.run(install_signal_handlers=False))
    try:
        for obj in world(namespace):
            await admin.create(obj)

        async def converged() -> bool:
            paths = (await admin.list_page(PATH, namespace))["items"]
            sites = (await admin.list_page(SITE, namespace))["items"]
            deployments = (await admin.list_page(DEPLOYMENT, namespace))["items"]
            policy = await admin.get(POLICY, namespace, "web")
            keys = {
                s["metadata"]["name"]: next(
                    (
                        c["reason"]
                        for c in (s.get("status") or {}).get("conditions") or []
                        if c["type"] == "KeysReady"
                    ),
                    None,
                )
                for s in sites
            }
            return (
                len(paths) == 6
                and len(deployments) == 2
                and all((s.get("status") or {}).get("peers") == 2 for s in sites)
                and keys == {"a": "KeyGenerated", "b": "ExternalSite", "c": "KeyFromSecret"}
                and bool((policy.get("status") or {}).get("conditions"))
            )

        await eventually(converged, 90, "the operator to converge under namespaced Roles")
        assert manager.is_leader
        text = log.getvalue()
        assert "forbidden" not in text.lower(), [line for line in text.splitlines() if "orbidden" in line][:3]
        errors = sum(
            s.value
            for m in manager.metrics.registry.collect()
            if m.name == "patronus_operator_reconcile_errors"
            for s in m.samples
            if s.name.endswith("_total")
        )
        assert errors == 0
    finally:
        manager.stop()
        assert await asyncio.wait_for(task, 60) == EXIT_OK
        await rest.close()
        await admin.close()
        configure_logging("info", "console")
