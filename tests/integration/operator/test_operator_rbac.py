"""The operator runs with exactly the permissions deploy/operator/rbac.yaml grants, and no more."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import yaml

from patronus.controlplane.launcher import ControlPlane
from patronus.controlplane.processes import free_port
from patronus.kube.resource import DEPLOYMENT, MESH, PATH, SITE
from patronus.kube.rest import RestClient
from patronus.operator.config import load_config
from patronus.operator.controllers import register
from patronus.operator.main import manager_options
from patronus.runtime.logs import configure_logging
from patronus.runtime.manager import EXIT_OK, Manager
from tests.integration.operator.conftest import Eventually
from tests.support.manifests import REPO

OPERATOR = "system:serviceaccount:patronus-system:patronus-operator"


def install_rbac(control_plane: ControlPlane) -> None:
    for name in ("namespace.yaml", "rbac.yaml"):
        result = control_plane.kubectl("apply", "-f", str(REPO / "deploy" / "operator" / name), check=False)
        assert result.returncode == 0, result.stderr


def operator_kubeconfig(control_plane: ControlPlane, directory: Path) -> Path:
    """A kubeconfig for the operator's ServiceAccount, with a real token from the TokenRequest API."""
    token = control_plane.kubectl(
        "create", "token", "patronus-operator", "-n", "patronus-system", "--duration=1h"
    ).stdout.strip()
    config = yaml.safe_load(control_plane.kubeconfig.read_text())
    config["users"] = [{"name": "operator", "user": {"token": token}}]
    config["contexts"][0]["context"]["user"] = "operator"
    path = directory / "operator.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


def can(control_plane: ControlPlane, *args: str) -> bool:
    result = control_plane.kubectl("auth", "can-i", *args, f"--as={OPERATOR}", check=False)
    return result.stdout.strip() == "yes"


def test_operator_permissions_are_least_privilege(control_plane: ControlPlane, namespace: str) -> None:
    install_rbac(control_plane)
    assert can(control_plane, "list", "sites.sdwan.patronus.dev", "-A")
    assert can(control_plane, "patch", "sites.sdwan.patronus.dev", "--subresource=status", "-n", namespace)
    assert not can(control_plane, "patch", "sites.sdwan.patronus.dev", "-n", namespace)  # users own specs
    assert not can(control_plane, "delete", "sites.sdwan.patronus.dev", "-n", namespace)
    assert can(control_plane, "create", "paths.sdwan.patronus.dev", "-n", namespace)
    assert not can(control_plane, "create", "clusterroles")
    assert not can(control_plane, "delete", "namespaces")
    assert not can(control_plane, "create", "pods", "-n", namespace)
    assert not can(control_plane, "update", "leases", "-n", namespace)
    assert can(control_plane, "update", "leases", "-n", "patronus-system")
    assert not can(control_plane, "escalate", "roles", "-n", namespace)
    assert not can(control_plane, "bind", "roles", "-n", namespace)


async def test_operator_works_with_only_its_rbac(
    control_plane: ControlPlane, namespace: str, eventually: Eventually, tmp_path: Path
) -> None:
    install_rbac(control_plane)
    kubeconfig = operator_kubeconfig(control_plane, tmp_path)
    log = io.StringIO()
    configure_logging("info", "json", stream=log)
    config = load_config(
        {
            "WATCH_NAMESPACES": namespace,
            "POD_NAMESPACE": "patronus-system",
            "POD_NAME": "rbac-test",
            "BIND_ADDRESS": "127.0.0.1",
            "METRICS_PORT": str(free_port()),
            "HEALTH_PROBE_PORT": str(free_port()),
            "LEADER_ELECTION_ID": f"patronus-operator-{namespace}",
        }
    )
    rest = RestClient.from_kubeconfig(kubeconfig, field_manager="patronus-operator")
    admin = RestClient.from_kubeconfig(control_plane.kubeconfig)
    manager = Manager(manager_options(config), rest)
    register(manager, config)
    task = asyncio.create_task(manager.run(install_signal_handlers=False))
    try:
        gv = "sdwan.patronus.dev/v1alpha1"
        for name in ("a", "b", "c"):
            await admin.create(
                {
                    "apiVersion": gv,
                    "kind": "Site",
                    "metadata": {"name": name, "namespace": namespace},
                    "spec": {"wireguard": {"endpoints": [f"{name}.example.net:51820"]}},
                }
            )
        await admin.create(
            {
                "apiVersion": gv,
                "kind": "Mesh",
                "metadata": {"name": "m", "namespace": namespace},
                "spec": {"sites": ["a", "b", "c"]},
            }
        )

        async def converged() -> bool:
            paths = (await admin.list_page(PATH, namespace))["items"]
            sites = (await admin.list_page(SITE, namespace))["items"]
            deployments = (await admin.list_page(DEPLOYMENT, namespace))["items"]
            mesh = await admin.get(MESH, namespace, "m")
            return (
                len(paths) == 6
                and len(deployments) == 3
                and all((s.get("status") or {}).get("peers") == 2 for s in sites)
                and (mesh.get("status") or {}).get("totalPaths") == 6
            )

        await eventually(converged, 60, "the operator to converge under its own RBAC")
        assert manager.is_leader
        text = log.getvalue()
        assert "forbidden" not in text.lower(), [line for line in text.splitlines() if "orbidden" in line][:3]
        errors: Any = sum(
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
