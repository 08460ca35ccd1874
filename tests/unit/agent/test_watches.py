"""The agent's two watches, against the in-memory API: its ConfigMap (validated) and its Site (deletion)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from patronus.agent.configsource import Accepted, ConfigSource, Refused, read_config
from patronus.agent.sitewatch import SiteWatch
from patronus.kube.fake import FakeKube
from patronus.kube.resource import CONFIG_MAP, SITE
from patronus.runtime.clock import FakeClock
from tests.support.waiting import eventually
from tests.unit.agent.fakes import config


def config_map(text: str, name: str = "branch-nyc-3477a64153-agent") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "ns"},
        "data": {"config.json": text},
    }


def site(name: str = "a") -> dict[str, Any]:
    return {
        "apiVersion": "sdwan.patronus.dev/v1alpha1",
        "kind": "Site",
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {"location": "x"},
    }


GOOD = config().to_json()


@pytest.fixture
def kube() -> FakeKube:
    return FakeKube()


class Seen:
    def __init__(self) -> None:
        self.accepted: list[Accepted] = []
        self.refused: list[Refused] = []


@pytest.fixture
async def source(kube: FakeKube) -> AsyncIterator[tuple[ConfigSource, Seen]]:
    seen = Seen()
    source = ConfigSource(
        kube,
        "ns",
        "branch-nyc-3477a64153-agent",
        clock=FakeClock(),
        on_accepted=seen.accepted.append,
        on_refused=seen.refused.append,
    )
    task = asyncio.create_task(source.run())
    yield source, seen
    source.informer.stop()
    task.cancel()


def test_read_config_accepts_a_valid_text_and_names_the_problem_otherwise() -> None:
    accepted = read_config(config_map(GOOD))
    assert isinstance(accepted, Accepted)
    assert accepted.config.site == "a"
    assert len(accepted.digest) == 64
    newer = orjson.dumps({**orjson.loads(GOOD), "schemaVersion": 3}).decode()
    refused = read_config(config_map(newer))
    assert isinstance(refused, Refused)
    assert "schemaVersion 3" in refused.error
    bad = GOOD.replace('"wg-fiber"', '"wg-fiber; drop"')
    refused = read_config(config_map(bad))
    assert isinstance(refused, Refused)
    assert "interfaces.0.name" in refused.error
    missing = read_config({"metadata": {"name": "x"}, "data": {}})
    assert isinstance(missing, Refused)
    assert "config.json" in missing.error


async def test_the_named_config_map_is_watched_and_a_bad_text_refused(
    kube: FakeKube, source: tuple[ConfigSource, Seen]
) -> None:
    watcher, seen = source
    kube.seed(config_map(GOOD), config_map("{}", name="a-agent"))  # the recomputed name is not ours
    await eventually(lambda: seen.accepted, timeout=5)
    assert watcher.accepted is not None
    assert watcher.accepted.config.site == "a"

    await kube.apply(config_map(GOOD.replace('"schemaVersion":2', '"schemaVersion":9')), force=True)
    await eventually(lambda: seen.refused, timeout=5)
    assert "schemaVersion 9" in seen.refused[0].error
    assert watcher.accepted is seen.accepted[0]  # the last good one stays
    assert watcher.refused is seen.refused[0]

    await kube.apply(config_map(GOOD), force=True)  # fixed: accepted again
    await eventually(lambda: len(seen.accepted) == 2, timeout=5)
    assert watcher.refused is None


async def test_the_same_text_is_not_offered_twice(kube: FakeKube, source: tuple[ConfigSource, Seen]) -> None:
    _, seen = source
    kube.seed(config_map(GOOD))
    await eventually(lambda: seen.accepted, timeout=5)
    stored = kube.object(CONFIG_MAP, "ns", "branch-nyc-3477a64153-agent")
    assert stored is not None
    stored["metadata"]["labels"] = {"touched": "yes"}  # a metadata-only change
    await kube.replace(stored)
    for _ in range(50):
        await asyncio.sleep(0)
    assert len(seen.accepted) == 1


async def watch_site(kube: FakeKube) -> tuple[SiteWatch, asyncio.Task[None]]:
    watch = SiteWatch(kube, "ns", "a", clock=FakeClock())
    return watch, asyncio.create_task(watch.run())


async def test_a_missing_site_is_gone_at_the_first_list(kube: FakeKube) -> None:
    watch, task = await watch_site(kube)
    await asyncio.wait_for(watch.gone.wait(), 5)
    assert "does not exist" in watch.reason
    task.cancel()


async def test_a_deleted_site_is_gone_and_an_existing_one_is_not(kube: FakeKube) -> None:
    kube.seed(site("a"), site("b"))
    watch, task = await watch_site(kube)
    await eventually(lambda: watch.object is not None, timeout=5)
    await kube.delete(SITE, "ns", "b")
    for _ in range(50):
        await asyncio.sleep(0)
    assert not watch.gone.is_set()
    assert watch.reference()["metadata"]["uid"]
    await kube.delete(SITE, "ns", "a")
    await asyncio.wait_for(watch.gone.wait(), 5)
    assert watch.reason == "the Site was deleted"
    task.cancel()


def test_a_404_on_the_sites_status_means_gone() -> None:
    watch = SiteWatch(FakeKube(), "ns", "a", clock=FakeClock())
    watch.not_found()
    assert watch.gone.is_set()
