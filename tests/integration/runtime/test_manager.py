"""The manager and controllers in-process against the real API server."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition

from patronus.controlplane.launcher import ControlPlane
from patronus.controlplane.processes import free_port
from patronus.kube.resource import CONFIG_MAP, SECRET, ObjectKey, ResourceKind
from patronus.kube.rest import RestClient
from patronus.runtime.controller import Result
from patronus.runtime.manager import EXIT_OK, Manager, ManagerOptions


@pytest.fixture
async def manager(control_plane: ControlPlane, namespace: str) -> AsyncIterator[Manager]:
    rest = RestClient.from_kubeconfig(control_plane.kubeconfig)
    options = ManagerOptions(
        identity="in-process",
        watch_namespaces=(namespace,),
        leader_election=False,
        bind_address="127.0.0.1",
        metrics_port=free_port(),
        health_probe_port=free_port(),
        max_concurrent_reconciles=2,
        resync_period=3600,
    )
    yield Manager(options, rest)
    await rest.close()


async def _status(port: int, path: str) -> int:
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}{path}") as response,
        ):
            return response.status
    except aiohttp.ClientError:
        return 0


async def _eventually(check: Any, timeout: float, what: str) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.05)
    assert await check(), what


async def test_ready_only_after_caches_synced(manager: Manager, kube_client: Any) -> None:
    group = f"t{uuid.uuid4().hex[:8]}.patronus.dev"
    widgets = ResourceKind(group, "v1", "Widget", "widgets")
    manager.cache(widgets)  # the CRD does not exist yet: its LIST fails, so the cache cannot sync
    run = asyncio.create_task(manager.run(install_signal_handlers=False))
    port = manager.options.health_probe_port
    try:
        await _eventually(lambda: _alive(port), 10, "the health server")
        for _ in range(5):
            assert await _status(port, "/ready") == 500
            await asyncio.sleep(0.2)
        crd = CustomResourceDefinition.from_dict(
            {
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "CustomResourceDefinition",
                "metadata": {"name": f"widgets.{group}"},
                "spec": {
                    "group": group,
                    "scope": "Namespaced",
                    "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
                    "versions": [
                        {
                            "name": "v1",
                            "served": True,
                            "storage": True,
                            "schema": {"openAPIV3Schema": {"type": "object"}},
                        }
                    ],
                },
            }
        )
        kube_client.create(crd)
        try:
            await _eventually(lambda: _is(port, "/ready", 200), 40, "/ready after the CRD appears")
            assert await _status(port, "/healthz") == 200
        finally:
            kube_client.delete(CustomResourceDefinition, f"widgets.{group}")
    finally:
        manager.stop()
        assert await asyncio.wait_for(run, 30) == EXIT_OK


async def _alive(port: int) -> bool:
    return await _status(port, "/healthz") != 0


async def _is(port: int, path: str, code: int) -> bool:
    return await _status(port, path) == code


class FlakyReconciler:
    """Fails the first two reconciles of each key, then succeeds; records every call."""

    def __init__(self) -> None:
        self.calls: Counter[ObjectKey] = Counter()
        self.concurrent = 0
        self.max_concurrent_same_key = 0
        self._running: Counter[ObjectKey] = Counter()

    async def reconcile(self, key: ObjectKey) -> Result | None:
        self.calls[key] += 1
        self._running[key] += 1
        self.max_concurrent_same_key = max(self.max_concurrent_same_key, self._running[key])
        try:
            await asyncio.sleep(0.01)
            if self.calls[key] <= 2:
                raise RuntimeError("transient failure")
            return None
        finally:
            self._running[key] -= 1


async def test_errors_are_retried_and_children_enqueue_their_owner(
    manager: Manager, kube_client: Any, namespace: str
) -> None:
    reconciler = FlakyReconciler()
    controller = manager.controller("flaky", reconciler, CONFIG_MAP).owns(manager.cache(SECRET))
    run = asyncio.create_task(manager.run(install_signal_handlers=False))
    rest = manager.client
    try:
        owner = await rest.create(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner", "namespace": namespace}}
        )
        key = ObjectKey(namespace, "owner")
        await _eventually(lambda: _at_least(reconciler.calls, key, 3), 20, "retries until success")
        errors = manager.metrics.reconcile_errors_total.labels(controller="flaky")._value.get()
        assert errors >= 2
        calls_before = reconciler.calls[key]
        await rest.create(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": "child",
                    "namespace": namespace,
                    "ownerReferences": [
                        {
                            "apiVersion": "v1",
                            "kind": "ConfigMap",
                            "name": "owner",
                            "uid": owner["metadata"]["uid"],
                        }
                    ],
                },
            }
        )
        await _eventually(
            lambda: _at_least(reconciler.calls, key, calls_before + 1),
            20,
            "a child's event to enqueue its owner",
        )
        assert reconciler.max_concurrent_same_key == 1
        assert controller.queue.num_requeues(key) == 0  # forgotten after success
    finally:
        manager.stop()
        assert await asyncio.wait_for(run, 30) == EXIT_OK


async def _at_least(calls: Counter[ObjectKey], key: ObjectKey, count: int) -> bool:
    return calls[key] >= count


async def test_periodic_tasks_run_while_leading_and_stop_with_the_manager(manager: Manager) -> None:
    ticks: list[float] = []

    def tick() -> None:
        ticks.append(time.monotonic())
        if len(ticks) == 2:
            raise RuntimeError("one bad scan")  # logged; the next ones still come

    manager.every("test", 0.1, tick)
    run = asyncio.create_task(manager.run(install_signal_handlers=False))
    try:
        await _eventually(lambda: _ticked(ticks, 5), 10, "five ticks")
    finally:
        manager.stop()
        assert await asyncio.wait_for(run, 30) == EXIT_OK
    after = len(ticks)
    await asyncio.sleep(0.3)
    assert len(ticks) == after, "no tick once the manager stopped"
    assert all(later - earlier >= 0.09 for earlier, later in itertools.pairwise(ticks))


async def _ticked(ticks: list[float], count: int) -> bool:
    return len(ticks) >= count
