"""The lab's site agents as processes: each in its site's network namespace and a private mount namespace
(wireguard-go keeps its control sockets in ``/var/run/wireguard`` and every site uses the same interface
names), with its own kubeconfig that reaches the API server through the site's forwarder.

A failed agent is reported once and not restarted: the lab is still useful (and testable) without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from patronus.controlplane import processes
from patronus.lab.forwarder import LISTEN_HOST, LISTEN_PORT
from patronus.lab.manifests import LAB_NAMESPACE
from patronus.lab.plan import LabPlan
from patronus.operator.site.children import child_names

AGENT_STOP_TIMEOUT = 10.0


def agent_kubeconfig(admin_kubeconfig: Mapping[str, Any], user: str, token: str) -> dict[str, Any]:
    """The admin kubeconfig's cluster (same CA), reached through the forwarder, with the agent's token."""
    config: dict[str, Any] = json.loads(json.dumps(admin_kubeconfig))  # a deep copy of plain data
    config["clusters"][0]["cluster"]["server"] = f"https://{LISTEN_HOST}:{LISTEN_PORT}"
    config["users"] = [{"name": user, "user": {"token": token}}]
    context = config["contexts"][0]["context"]
    context["user"] = user
    context["namespace"] = LAB_NAMESPACE
    return config


def agent_command(plan: LabPlan, site: str, kubeconfig: Path, python: str = sys.executable) -> list[str]:
    """The agent in the site's network namespace and a private mount namespace with its own wireguard dir,
    told the names the operator gave its ConfigMap and key Secret (its health and metrics ports are the
    defaults, inside the site's namespace)."""
    names = child_names(site)
    agent = shlex.join(
        [
            python, "-m", "patronus", "agent", "run", "--site", site, "--namespace", LAB_NAMESPACE,
            "--config-map", names.config_map, "--heartbeat-lease", names.lease,
            "--key-secret", names.secret, "--kubeconfig", str(kubeconfig),
        ]
    )  # fmt: skip
    inner = f"mkdir -p /var/run/wireguard && mount -t tmpfs tmpfs /var/run/wireguard && exec {agent}"
    return [
        "ip", "netns", "exec", plan.site(site).namespace,
        "unshare", "--mount", "--propagation", "private", "sh", "-c", inner,
    ]  # fmt: skip


@dataclass
class Agents:
    """The agent processes, one per site; a failed one is reported once and not restarted."""

    say: Callable[[str], None]
    running: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    reported: set[str] = field(default_factory=set)

    def start(self, site: str, args: Sequence[str], log: Path) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.running[site] = processes.spawn(args, log, env=env)

    def check(self) -> None:
        for site, process in self.running.items():
            if process.poll() is not None and site not in self.reported:
                self.reported.add(site)
                self.say(f"agent {site} exited with code {process.returncode} (its log says why)")

    async def stop(self, timeout: float = AGENT_STOP_TIMEOUT) -> None:
        """SIGTERM to all at once (they tear down in parallel), then SIGKILL what is left after ``timeout``.

        Async on purpose: while the agents tear down they may still talk to the API server, through the
        forwarders that this same loop serves.
        """
        for process in self.running.values():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(p.poll() is None for p in self.running.values()):
            await asyncio.sleep(0.05)
        for process in self.running.values():
            processes.stop(process, timeout=1.0)
        self.running.clear()
