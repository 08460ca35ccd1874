"""A controller's filter on its own kind: updates it rejects never reach the queue; creations, deletions,
updates it accepts and resyncs always do (informer over FakeKube, nothing reconciled)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from patronus.kube.fake import FakeKube
from patronus.kube.resource import CONFIG_MAP, ObjectKey
from patronus.runtime.cache import Object
from patronus.runtime.controller import Controller, Result
from patronus.runtime.informer import Informer
from patronus.runtime.sources import KindCache
from tests.support.waiting import eventually

KEY = ObjectKey("ns", "a")
World = tuple[FakeKube, Informer]


class NeverCalled:
    async def reconcile(self, key: ObjectKey) -> Result | None:
        raise AssertionError("no worker runs in these tests")


def config_map(**data: str) -> Object:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "a", "namespace": "ns"},
        "data": data,
    }


def only_key_b(old: Object, new: Object) -> bool:
    return bool(old.get("data", {}).get("b") != new.get("data", {}).get("b"))


@pytest.fixture
async def world() -> AsyncIterator[World]:
    fake = FakeKube()
    informer = Informer(fake, CONFIG_MAP, "ns")
    task = asyncio.create_task(informer.run())
    assert await informer.wait_for_sync(5)
    yield fake, informer
    informer.stop()
    await asyncio.wait_for(task, 5)


async def _queued(controller: Controller, world: World, change: Callable[[], Awaitable[object]]) -> bool:
    """Whether ``change`` (a write to FakeKube) put KEY in the queue, once the informer has seen it."""
    fake, informer = world
    await change()
    await eventually(
        lambda: informer.indexer.resource_version == str(fake.resource_version),
        timeout=5,
        what="the informer caught up with the write",
    )
    if len(controller.queue) == 0:
        return False
    assert await controller.queue.get() == KEY
    controller.queue.done(KEY)
    return True


async def test_rejected_updates_never_reach_the_queue(world: World) -> None:
    fake, informer = world
    controller = Controller(
        "cm", NeverCalled(), KindCache(CONFIG_MAP, [informer]), resync_period=None, on_update=only_key_b
    )
    assert await _queued(controller, world, lambda: fake.create(config_map(a="1"))), "a creation counts"
    assert not await _queued(controller, world, lambda: fake.apply(config_map(a="2"), field_manager="t"))
    assert await _queued(controller, world, lambda: fake.apply(config_map(a="2", b="1"), field_manager="t"))
    assert await _queued(controller, world, lambda: fake.delete(CONFIG_MAP, "ns", "a")), "a deletion counts"


async def test_a_resync_queues_what_the_filter_would_reject(world: World) -> None:
    fake, informer = world
    controller = Controller(
        "cm", NeverCalled(), KindCache(CONFIG_MAP, [informer]), resync_period=None, on_update=lambda *_: False
    )
    assert await _queued(controller, world, lambda: fake.create(config_map(a="1")))
    assert not await _queued(controller, world, lambda: fake.apply(config_map(a="2"), field_manager="t"))
    assert controller.enqueue_all() == 1
    assert await controller.queue.get() == KEY


async def test_without_a_filter_every_update_counts(world: World) -> None:
    fake, informer = world
    controller = Controller("cm", NeverCalled(), KindCache(CONFIG_MAP, [informer]), resync_period=None)
    assert await _queued(controller, world, lambda: fake.create(config_map(a="1")))
    assert await _queued(controller, world, lambda: fake.apply(config_map(a="2"), field_manager="t"))
