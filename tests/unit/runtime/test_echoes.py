"""The echo of a reconcile's own write does not requeue it; every other change still does (informers over
FakeKube, writes through the recording client, nothing reconciled)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from patronus.kube.fake import FakeKube
from patronus.kube.resource import CONFIG_MAP, SECRET, ObjectKey
from patronus.runtime.cache import Object
from patronus.runtime.controller import Controller, Result
from patronus.runtime.echoes import OwnWrites, RecordingClient, replaying, writing_as
from patronus.runtime.informer import Informer
from patronus.runtime.sources import KindCache
from tests.support.waiting import eventually

OWNER = ObjectKey("ns", "a")
OTHER = ObjectKey("ns", "b")


class NeverCalled:
    async def reconcile(self, key: ObjectKey) -> Result | None:
        raise AssertionError("no worker runs in these tests")


def config_map(name: str = "a", **data: str) -> Object:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "ns"},
        "data": data,
    }


def secret_of(owner: Object, **data: str) -> Object:
    reference = {"apiVersion": "v1", "kind": "ConfigMap", "name": "a", "uid": owner["metadata"]["uid"]}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "a-child", "namespace": "ns", "ownerReferences": [reference]},
        "stringData": data,
    }


class World:
    def __init__(self, fake: FakeKube, maps: Informer, secrets: Informer) -> None:
        self.fake, self.maps, self.secrets = fake, maps, secrets
        self.writes = OwnWrites()
        self.client = RecordingClient(fake, self.writes)
        self.controller = Controller(
            "cm",
            NeverCalled(),
            KindCache(CONFIG_MAP, [maps]),
            resync_period=None,
            own_writes=self.writes,
        ).owns(KindCache(SECRET, [secrets]))

    async def queued(
        self, change: Callable[[], Awaitable[object]], *, on: Informer | None = None
    ) -> list[ObjectKey]:
        """The keys ``change`` (a write to the kind ``on`` watches) put in the queue, once it is seen."""
        informer = on or self.maps
        await change()
        current = str(self.fake.resource_version)
        await eventually(
            lambda: informer.indexer.resource_version == current,
            timeout=5,
            what="the informer caught up with the write",
        )
        keys = []
        while len(self.controller.queue):
            key = await self.controller.queue.get()
            self.controller.queue.done(key)
            keys.append(key)
        return keys

    def as_reconcile(
        self, key: ObjectKey, write: Callable[[], Awaitable[object]]
    ) -> Callable[[], Awaitable[object]]:
        async def run() -> object:
            with writing_as("cm", key):
                return await write()

        return run


@pytest.fixture
async def world() -> AsyncIterator[World]:
    fake = FakeKube()
    maps, secrets = Informer(fake, CONFIG_MAP, "ns"), Informer(fake, SECRET, "ns")
    tasks = [asyncio.create_task(informer.run()) for informer in (maps, secrets)]
    assert await maps.wait_for_sync(5)
    assert await secrets.wait_for_sync(5)
    yield World(fake, maps, secrets)
    for informer in (maps, secrets):
        informer.stop()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)


def apply(world: World, obj: Object) -> Callable[[], Awaitable[object]]:
    return lambda: world.client.apply(obj, field_manager="t")


async def test_a_reconciles_own_write_to_its_object_does_not_requeue_it(world: World) -> None:
    assert await world.queued(lambda: world.fake.create(config_map(x="1"))) == [OWNER], "a creation counts"
    assert await world.queued(world.as_reconcile(OWNER, apply(world, config_map(x="2")))) == []
    assert world.writes.skipped == 1
    assert await world.queued(lambda: world.fake.apply(config_map(x="3"), field_manager="u")) == [OWNER]
    assert await world.queued(apply(world, config_map(x="4"))) == [OWNER], "written outside a reconcile"


async def test_the_same_write_by_another_key_or_controller_requeues(world: World) -> None:
    await world.queued(lambda: world.fake.create(config_map(x="1")))
    assert await world.queued(world.as_reconcile(OTHER, apply(world, config_map(x="2")))) == [OWNER]

    async def by_another_controller() -> object:
        with writing_as("other", OWNER):
            return await world.client.apply(config_map(x="3"), field_manager="t")

    assert await world.queued(by_another_controller) == [OWNER]
    assert world.writes.skipped == 0


async def test_a_childs_echo_skips_only_its_writer(world: World) -> None:
    owner: Object = {}

    async def create_owner() -> None:
        owner.update(await world.fake.create(config_map(x="1")))

    assert await world.queued(create_owner) == [OWNER]
    created = world.as_reconcile(OWNER, lambda: world.client.create(secret_of(owner, k="1"), kind=SECRET))
    assert await world.queued(created, on=world.secrets) == [], "the owner's own creation of its child"
    changed = world.as_reconcile(OTHER, apply(world, secret_of(owner, k="2")))
    assert await world.queued(changed, on=world.secrets) == [OWNER], "another reconcile changed the child"
    deleted = await world.queued(lambda: world.fake.delete(SECRET, "ns", "a-child"), on=world.secrets)
    assert deleted == [OWNER], "deletions count"


async def test_a_relisted_version_is_never_an_echo(world: World) -> None:
    await world.queued(lambda: world.fake.create(config_map(x="1")))
    world.maps.pause()
    await world.fake.apply(config_map(x="1", y="someone else"), field_manager="u")
    await world.as_reconcile(OWNER, apply(world, config_map(x="2")))()
    world.fake.compact()  # the watch cannot resume: the informer relists and sees both writes as one
    world.maps.resume()
    assert await world.queued(lambda: asyncio.sleep(0)) == [OWNER]
    assert world.writes.skipped == 0


def test_only_writes_inside_a_reconcile_are_recorded() -> None:
    writes = OwnWrites()
    written = {**config_map(), "metadata": {"name": "a", "namespace": "ns", "resourceVersion": "7"}}
    writes.record(written)
    assert len(writes) == 0
    with writing_as("cm", OWNER):
        writes.record(written)
    assert len(writes) == 1
    with replaying():
        assert not writes.is_echo(written, "cm", OWNER)
    assert not writes.is_echo(
        {**written, "metadata": {**written["metadata"], "resourceVersion": "8"}}, "cm", OWNER
    )
    assert writes.is_echo(written, "cm", OWNER)


def test_the_table_is_bounded() -> None:
    writes = OwnWrites(max_entries=2)
    with writing_as("cm", OWNER):
        for name in ("a", "b", "c"):
            writes.record(
                {**config_map(name), "metadata": {"name": name, "namespace": "ns", "resourceVersion": "1"}}
            )
    assert len(writes) == 2
    assert not writes.is_echo(
        {**config_map("a"), "metadata": {"name": "a", "namespace": "ns", "resourceVersion": "1"}}, "cm", OWNER
    )
