"""A misconfigured operator says what is wrong and how to fix it, instead of waiting in silence."""

from __future__ import annotations

import asyncio
import io
import json
import urllib.error
import urllib.request

from patronus.controlplane.launcher import ControlPlane
from patronus.controlplane.processes import free_port
from patronus.kube.rest import RestClient
from patronus.operator.config import load_config
from patronus.operator.main import manager_options
from patronus.operator.wiring import register
from patronus.runtime.logs import configure_logging
from patronus.runtime.manager import EXIT_OK, Manager
from tests.integration.operator.conftest import Eventually


def ready(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except urllib.error.URLError:
        return 0, ""  # not listening yet


async def test_a_missing_lease_namespace_is_a_warning_with_the_fix_and_not_ready(
    control_plane: ControlPlane, namespace: str, eventually: Eventually
) -> None:
    lease_namespace = f"{namespace}-lease"
    health_port = free_port()
    log = io.StringIO()
    configure_logging("info", "json", stream=log)
    config = load_config(
        {
            "WATCH_NAMESPACES": namespace,
            "LEADER_ELECTION_NAMESPACE": lease_namespace,
            "BIND_ADDRESS": "127.0.0.1",
            "METRICS_PORT": str(free_port()),
            "HEALTH_PROBE_PORT": str(health_port),
            "POD_NAME": "clear-errors",
        }
    )
    rest = RestClient.from_kubeconfig(control_plane.kubeconfig, field_manager="patronus-operator")
    manager = Manager(manager_options(config), rest)
    register(manager, config)
    task = asyncio.create_task(manager.run(install_signal_handlers=False))
    try:

        async def not_ready() -> str:
            code, body = await asyncio.to_thread(ready, health_port)
            synced_but_failing = "[-]leader-election failed" in body and "[+]caches-synced ok" in body
            return body if code == 500 and synced_but_failing else ""

        await eventually(not_ready, 30, "/ready to fail on the leader election alone")
        warnings = [json.loads(line) for line in log.getvalue().splitlines() if '"warning"' in line]
        told = [w["event"] for w in warnings if "does not exist" in w["event"]]
        assert told, warnings
        assert f"kubectl create namespace {lease_namespace}" in told[0]
        assert "LEADER_ELECTION_NAMESPACE" in told[0]
        await asyncio.sleep(5)  # retrying every 2 s: said once, not once per retry
        again = [line for line in log.getvalue().splitlines() if "does not exist" in line]
        assert len(again) == 1

        control_plane.kubectl("create", "namespace", lease_namespace)
        await eventually(lambda: manager.is_leader, 30, "leading once the namespace exists")

        async def is_ready() -> bool:
            return (await asyncio.to_thread(ready, health_port))[0] == 200

        await eventually(is_ready, 30, "/ready once the lease works")
    finally:
        manager.stop()
        assert await asyncio.wait_for(task, 60) == EXIT_OK
        await rest.close()
        configure_logging("info", "console")
        control_plane.kubectl("delete", "namespace", lease_namespace, "--wait=false", check=False)
