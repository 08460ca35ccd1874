"""The operator inside the lab: the production manager and controllers, as a task of the supervisor's
event loop, watching only the lab namespace and with no leader election."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from patronus.controlplane import processes
from patronus.kube.rest import RestClient
from patronus.lab.manifests import LAB_NAMESPACE
from patronus.operator.config import load_config
from patronus.operator.main import FIELD_MANAGER, manager_options
from patronus.operator.wiring import register
from patronus.runtime.manager import Manager


@dataclass
class Operator:
    """The operator's manager running as a task of the supervisor's loop, with its two clients."""

    manager: Manager
    task: asyncio.Task[int]
    client: RestClient

    async def stop(self) -> None:
        self.manager.stop()
        try:
            await asyncio.wait_for(self.task, 60.0)
        except (Exception, asyncio.CancelledError):
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        finally:
            await self.client.close()


async def start_operator(kubeconfig: Path) -> Operator:
    """The operator as in production, but watching only the lab namespace and with no leader election."""
    config = load_config(
        {
            "WATCH_NAMESPACES": LAB_NAMESPACE,
            "LEADER_ELECTION_ENABLED": "false",
            "BIND_ADDRESS": "127.0.0.1",
            "METRICS_PORT": str(processes.free_port()),
            "HEALTH_PROBE_PORT": str(processes.free_port()),
            "POD_NAME": "lab-operator",
            "AGENT_IMAGE": "patronus-lab/agent:local",
            "RECONCILE_INTERVAL": "30s",
        }
    )
    client = RestClient.from_kubeconfig(kubeconfig, field_manager=FIELD_MANAGER)
    manager = Manager(manager_options(config), client)
    register(manager, config)
    task = asyncio.create_task(manager.run(install_signal_handlers=False), name="operator")
    return Operator(manager, task, client)
