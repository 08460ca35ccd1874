"""The lab's eyes: Prometheus scraping the operator and every agent, and the dashboard, both on loopback.

Started by the supervisor once the agents run, undone on its exit stack like every other step:

- a :class:`~patronus.lab.metrics_forwarder.MetricsForwarder` gives each agent's metrics port (inside its
  site namespace) a loopback port in the root namespace;
- Debian's ``prometheus`` scrapes those and the operator every second and evaluates the quickened rules
  (:mod:`patronus.lab.prometheus`);
- ``patronus dashboard`` runs as its own process with authentication on, as in a cluster: the lab makes a
  ``dashboard-viewer`` ServiceAccount that may list Sites in the lab namespace and mints its token, so
  the URL ``lab up`` prints signs in with it (the token travels in the URL's fragment, which no server
  sees; the file holding it is readable by root only).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from patronus.controlplane import processes
from patronus.kube.client import KubeClient
from patronus.kube.errors import AlreadyExistsError
from patronus.kube.resource import ROLE, ROLE_BINDING
from patronus.lab import prometheus
from patronus.lab.files import write_atomic
from patronus.lab.metrics_forwarder import MetricsForwarder
from patronus.lab.plan import LabPlan

AGENT_METRICS_PORT = 9102
VIEWER = "dashboard-viewer"
_DASHBOARD_TIMEOUT = 60.0


@dataclass(frozen=True)
class Urls:
    prometheus: str
    dashboard: str
    login: str


def viewer_manifests(namespace: str) -> list[dict[str, Any]]:
    """A ServiceAccount that may read the SD-WAN objects of ``namespace`` (what the dashboard checks)."""
    meta = {"name": VIEWER, "namespace": namespace}
    rules = [
        {
            "apiGroups": ["sdwan.patronus.dev"],
            "resources": ["sites", "paths", "policies", "meshes"],
            "verbs": ["get", "list", "watch"],
        }
    ]
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {"apiVersion": ROLE.api_version, "kind": "Role", "metadata": meta, "rules": rules},
        {
            "apiVersion": ROLE_BINDING.api_version,
            "kind": "RoleBinding",
            "metadata": meta,
            "roleRef": {"apiGroup": ROLE.group, "kind": "Role", "name": VIEWER},
            "subjects": [{"kind": "ServiceAccount", "name": VIEWER, "namespace": namespace}],
        },
    ]


def dashboard_command(kubeconfig: Path, namespace: str, prometheus_url: str, url_file: Path) -> list[str]:
    return [
        sys.executable, "-m", "patronus", "dashboard", f"--kubeconfig={kubeconfig}",
        f"--namespace={namespace}", "--bind=127.0.0.1", "--port=0",
        f"--prometheus-url={prometheus_url}", f"--url-file={url_file}",
    ]  # fmt: skip


async def start(
    *,
    plan: LabPlan,
    root: Path,
    logs: Path,
    operator_metrics_port: int,
    admin: KubeClient,
    admin_kubeconfig: Path,
    namespace: str,
    mint_token: Callable[[str], Awaitable[str]],
    stack: contextlib.AsyncExitStack,
) -> Urls:
    """Start the forwarder, Prometheus and the dashboard; every undo goes on ``stack``."""
    forwarder = MetricsForwarder(AGENT_METRICS_PORT)
    stack.push_async_callback(forwarder.close)
    ports = await forwarder.start({site.name: site.namespace for site in plan.sites})
    config = prometheus.write_files(root / "prometheus", operator_metrics_port, ports)
    port = processes.free_port()
    server = await prometheus.start(
        config, root / "prometheus" / "data", port, logs / "prometheus.log", targets=1 + len(ports)
    )
    stack.callback(processes.stop, server)
    prometheus_url = f"http://127.0.0.1:{port}"

    for manifest in viewer_manifests(namespace):
        with contextlib.suppress(AlreadyExistsError):
            await admin.create(manifest)
    token = await mint_token(VIEWER)
    url_file = root / "dashboard.url"
    url_file.unlink(missing_ok=True)
    command = dashboard_command(admin_kubeconfig, namespace, prometheus_url, url_file)
    dashboard = processes.spawn(command, logs / "dashboard.log")
    stack.callback(processes.stop, dashboard)
    url = await _wait_for_url(url_file, dashboard)
    write_atomic(root / "dashboard-token", token + "\n", 0o600)  # never readable by others, even briefly
    return Urls(prometheus_url, url, f"{url}login#token={token}")


async def _wait_for_url(url_file: Path, process: Any) -> str:
    deadline = time.monotonic() + _DASHBOARD_TIMEOUT
    while not url_file.exists() or not url_file.read_text().strip():
        if process.poll() is not None:
            raise RuntimeError(f"the dashboard exited with code {process.returncode} (see dashboard.log)")
        if time.monotonic() > deadline:
            raise TimeoutError("the dashboard did not start listening")
        await asyncio.sleep(0.1)
    return url_file.read_text().strip()
