"""The informer against the in-memory FakeKube: list, watch, relist on 410, and cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from patronus.kube.fake import FakeKube
from patronus.kube.resource import CONFIG_MAP
from patronus.runtime.informer import Informer
from tests.support.waiting import eventually


def config_map(name: str, **data: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "ns"},
        "data": data,
    }


async def test_lists_then_follows_the_watch() -> None:
    fake = FakeKube()
    fake.seed(config_map("a"))
    informer = Informer(fake, CONFIG_MAP, "ns")
    added: list[str] = []
    informer.add_handler(on_add=lambda obj: added.append(obj["metadata"]["name"]))
    task = asyncio.create_task(informer.run())
    try:
        assert await informer.wait_for_sync(5)
        await fake.create(config_map("b"))
        await eventually(lambda: added == ["a", "b"], timeout=5, what="both ConfigMaps seen")
    finally:
        informer.stop()
        await asyncio.wait_for(task, 5)


async def test_a_compacted_version_relists_and_misses_nothing() -> None:
    fake = FakeKube()
    informer = Informer(fake, CONFIG_MAP, "ns")
    task = asyncio.create_task(informer.run())
    try:
        assert await informer.wait_for_sync(5)
        informer.pause()
        await fake.create(config_map("while-away"))
        fake.compact()
        informer.resume()
        await eventually(lambda: informer.indexer.get("ns", "while-away"), timeout=5, what="the relist")
        assert informer.stats.gone >= 1 or informer.stats.lists >= 2
    finally:
        informer.stop()
        await asyncio.wait_for(task, 5)


class SlowToCloseWatches(FakeKube):
    """Closing a watch takes a while, as closing an HTTP stream can."""

    async def watch(self, *args: Any, **kwargs: Any) -> AsyncIterator[dict[str, Any]]:
        try:
            async for event in super().watch(*args, **kwargs):
                yield event
        finally:
            await asyncio.sleep(0.3)


async def test_a_cancellation_that_lands_while_a_watch_closes_is_not_swallowed() -> None:
    fake = SlowToCloseWatches()
    informer = Informer(fake, CONFIG_MAP, "ns")
    task = asyncio.create_task(informer.run())
    assert await informer.wait_for_sync(5)
    await eventually(lambda: informer.stats.watches >= 1, timeout=5, what="a watch open")
    informer.reconnect()  # the informer starts closing its watch ...
    await asyncio.sleep(0.1)
    task.cancel()  # ... and the task running it is cancelled meanwhile
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 2)
