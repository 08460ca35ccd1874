"""An in-process operator (all four controllers) watching the test's namespace, on the real API server."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from patronus.controlplane.launcher import ControlPlane
from patronus.controlplane.processes import free_port
from patronus.kube.rest import RestClient
from patronus.operator.config import load_config
from patronus.operator.main import manager_options
from patronus.operator.wiring import register
from patronus.runtime.logs import configure_logging
from patronus.runtime.manager import EXIT_OK, Manager

Eventually = Callable[..., Awaitable[Any]]


class RunningOperator:
    def __init__(self, manager: Manager, log: io.StringIO) -> None:
        self.manager = manager
        self.log = log
        self.rest = manager.client

    def reconciles(self) -> float:
        total = 0.0
        for metric in self.manager.metrics.registry.collect():
            if metric.name == "patronus_operator_reconcile":
                total += sum(s.value for s in metric.samples if s.name.endswith("_total"))
        return total

    def reconcile_errors(self) -> float:
        return sum(
            s.value
            for m in self.manager.metrics.registry.collect()
            if m.name == "patronus_operator_reconcile_errors"
            for s in m.samples
            if s.name.endswith("_total")
        )

    async def settle(self, quiet: float = 1.0, timeout: float = 60.0) -> None:
        """Wait until every queue is empty and no reconcile ran for ``quiet`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last, since = self.reconciles(), loop.time()
        while loop.time() < deadline:
            await asyncio.sleep(0.1)
            busy = any(len(c.queue) or c.queue.processing() for c in self.manager.controllers)
            now_count = self.reconciles()
            if busy or now_count != last:
                last, since = now_count, loop.time()
            elif loop.time() - since >= quiet:
                return
        raise AssertionError("the operator did not settle")


@pytest.fixture
async def operator(control_plane: ControlPlane, namespace: str) -> AsyncIterator[RunningOperator]:
    log = io.StringIO()
    configure_logging("info", "json", stream=log)
    config = load_config(
        {
            "WATCH_NAMESPACES": namespace,
            "LEADER_ELECTION_ENABLED": "false",
            "BIND_ADDRESS": "127.0.0.1",
            "METRICS_PORT": str(free_port()),
            "HEALTH_PROBE_PORT": str(free_port()),
            "POD_NAME": "test-operator",
            "AGENT_IMAGE": "registry.example/patronus-agent:test",
        }
    )
    rest = RestClient.from_kubeconfig(control_plane.kubeconfig, field_manager="patronus-operator")
    manager = Manager(manager_options(config), rest)
    register(manager, config)
    task = asyncio.create_task(manager.run(install_signal_handlers=False))
    async with asyncio.timeout(60):
        while not manager.caches_synced():
            await asyncio.sleep(0.05)
    yield RunningOperator(manager, log)
    manager.stop()
    assert await asyncio.wait_for(task, 60) == EXIT_OK
    await rest.close()
    configure_logging("info", "console")


@pytest.fixture
def eventually() -> Eventually:
    async def wait(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
        async with asyncio.timeout(timeout):
            while True:
                value = check()
                if asyncio.iscoroutine(value):
                    value = await value
                if value:
                    return value
                await asyncio.sleep(0.1)
        raise AssertionError(what)  # pragma: no cover

    return wait


def load_example(path: Path, namespace: str) -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
    for doc in docs:
        doc["metadata"]["namespace"] = namespace
    return docs
