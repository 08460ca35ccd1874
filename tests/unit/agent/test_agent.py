"""The whole agent against the in-memory API server and kernel: configuration, failover with the API away,
reports catching up, a refused configuration, and the Site's deletion."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from patronus.agent.agent import AgentOptions, Outcome, SiteAgent
from patronus.agent.keys import KeySecret
from patronus.agent.probe_stats import summarize
from patronus.kube.errors import KubeConnectionError
from patronus.kube.fake import FakeKube
from patronus.kube.resource import CONFIG_MAP, EVENT, POLICY, SITE
from patronus.runtime.clock import FakeClock
from tests.support.waiting import eventually
from tests.unit.agent.fakes import FIBER, LTE, FakeKernel, config, secret

CONFIG_MAP_NAME = "branch-a-3477a64153-agent"
GOOD, DOWN = summarize([10.0] * 5), summarize([None] * 5)


def config_text(**changes: Any) -> str:
    raw = orjson.loads(config(overlay="127.0.0.1").to_json())
    return orjson.dumps({**raw, **changes}).decode()


def config_map(text: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": CONFIG_MAP_NAME, "namespace": "ns"},
            "data": {"config.json": text}}  # fmt: skip


@dataclass
class Running:
    agent: SiteAgent
    kube: FakeKube
    kernel: FakeKernel
    clock: FakeClock
    stop: asyncio.Event
    task: asyncio.Task[Outcome]

    def site_status(self) -> dict[str, Any]:
        return dict((self.kube.object(SITE, "ns", "a") or {}).get("status") or {})

    def voice(self) -> dict[str, Any]:
        return next((p for p in self.site_status().get("policies") or [] if p["name"] == "voice"), {})

    def events(self, reason: str) -> list[dict[str, Any]]:
        return [e for e in self.kube.objects(EVENT, "ns") if e.get("reason") == reason]


@pytest.fixture
async def running() -> AsyncIterator[Running]:
    clock = FakeClock()
    kube = FakeKube(now=clock.now)
    kube.seed(
        {"apiVersion": SITE.api_version, "kind": "Site", "metadata": {"name": "a", "namespace": "ns"},
         "spec": {}},
        config_map(config_text()),
        secret("a-wireguard"),
    )  # fmt: skip
    kernel = FakeKernel()
    options = AgentOptions(
        site="a", namespace="ns", config_map=CONFIG_MAP_NAME, key=KeySecret("a-wireguard"),
        probe_port=0, health_port=None, metrics_port=None,
    )  # fmt: skip
    agent = SiteAgent(options, kube, clock=clock, runner=kernel)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    world = Running(agent, kube, kernel, clock, stop, task)
    await eventually(lambda: world.voice().get("pathInUse") == FIBER, what="the first report")
    yield world
    stop.set()
    await asyncio.wait_for(task, 10)


async def test_the_configuration_is_applied_and_reported(running: Running) -> None:
    assert set(running.kernel.links) == {"wg-fiber", "wg-lte"}
    status = running.site_status()
    assert status["agent"]["configDigest"] == running.agent.core.applied.digest  # type: ignore[union-attr]
    assert "configError" not in status["agent"]
    assert "dataPlaneError" not in status["agent"]
    assert running.voice() == {"name": "voice", "active": True, "pathInUse": FIBER, "matchedFlows": 0,
                               "bytesRouted": 0, "failoverCount": 0}  # fmt: skip
    assert running.agent.ready()
    assert not [r for r in running.kube.requests if r.kind == POLICY.plural and r.is_write]


async def test_failover_does_not_wait_for_the_api_and_the_report_catches_up(running: Running) -> None:
    core = running.agent.core
    await core.on_check(FIBER, GOOD)
    await core.on_check(LTE, GOOD)
    running.kube.fail_next(KubeConnectionError("connection refused"), verb="apply", times=4)
    running.kube.fail_next(KubeConnectionError("connection refused"), verb="create", times=4)
    await core.on_check(FIBER, DOWN)  # returns without any API call succeeding
    assert running.agent.core.dataplane.kernel_paths == {"voice": LTE}
    assert len(running.kernel.switches()) == 1
    assert running.voice()["pathInUse"] == FIBER  # the API has not heard yet
    for _ in range(12):  # reports back off 0.5, 1, 2, 4 s (jittered), Events 2, 4, 6, 8 s: both retry
        running.clock.advance(2.0)
        await asyncio.sleep(0.05)
    await eventually(lambda: running.voice().get("pathInUse") == LTE, what="the report to catch up")
    assert running.voice()["failoverCount"] == 1
    assert running.voice()["lastFailoverTime"]
    await eventually(lambda: running.events("PolicyFailover"), what="the failover Event")


async def test_a_refused_switch_is_reported_and_retried(running: Running) -> None:
    core = running.agent.core
    running.kernel.fail_switch = True
    await core.on_check(FIBER, GOOD)
    await core.on_check(LTE, GOOD)
    await core.on_check(FIBER, DOWN)
    await eventually(
        lambda: "dataPlaneError" in running.site_status().get("agent", {}), what="the error report"
    )
    assert running.voice()["pathInUse"] == FIBER
    assert running.voice()["failoverCount"] == 0
    assert "No buffer space" in running.site_status()["agent"]["dataPlaneError"]
    running.kernel.fail_switch = False
    running.clock.advance(1.0)
    await core.on_check(FIBER, DOWN)
    await eventually(lambda: running.voice().get("pathInUse") == LTE, what="the retried switch")
    await eventually(
        lambda: "dataPlaneError" not in running.site_status()["agent"], what="the error to clear"
    )


async def test_a_refused_configuration_keeps_the_data_plane_and_says_why(running: Running) -> None:
    before = len(running.kernel.calls)
    digest = running.site_status()["agent"]["configDigest"]
    await running.kube.apply(config_map(config_text(schemaVersion=9)), force=True)
    await eventually(lambda: running.site_status()["agent"].get("configError"), what="the configError")
    assert "schemaVersion 9" in running.site_status()["agent"]["configError"]
    assert running.site_status()["agent"]["configDigest"] == digest
    (event,) = await eventually(lambda: running.events("ConfigRefused"), what="the Warning Event")
    assert (event["type"], event["involvedObject"]["kind"], event["involvedObject"]["name"]) == (
        "Warning",
        "Site",
        "a",
    )
    assert not [
        c
        for c in running.kernel.calls[before:]
        if c.args[:3] in (["ip", "link", "del"], ["nft", "delete", "table"])
    ]

    await running.kube.apply(config_map(config_text()), force=True)
    await eventually(lambda: "configError" not in running.site_status()["agent"], what="the error to clear")


async def test_a_changed_configuration_is_applied_live(running: Running) -> None:
    raw = orjson.loads(config_text())
    raw["interfaces"] = raw["interfaces"][:1]
    raw["paths"] = raw["paths"][:1]
    raw["policies"][0]["action"] = {"primaryPath": FIBER}
    await running.kube.apply(config_map(orjson.dumps(raw).decode()), force=True)
    await eventually(lambda: set(running.kernel.links) == {"wg-fiber"}, what="wg-lte to go")
    assert not running.task.done()


async def test_the_sites_deletion_tears_down_and_ends_the_agent(running: Running) -> None:
    await running.kube.delete(SITE, "ns", "a")
    outcome = await asyncio.wait_for(running.task, 10)
    assert outcome is Outcome.SITE_GONE
    assert running.kernel.links == {}
    assert running.kernel.tables == set()


async def test_a_404_on_the_heartbeat_also_ends_the_agent(running: Running) -> None:
    running.agent.site_watch.informer.pause()  # the watch misses the deletion: the report finds it
    site = running.kube.object(SITE, "ns", "a")
    assert site is not None
    running.kube._objects.pop((SITE.plural, "ns", "a"))  # gone without an event
    running.agent.core.site_reporter.kick()
    outcome = await asyncio.wait_for(running.task, 10)
    assert outcome is Outcome.SITE_GONE
    assert running.kernel.links == {}
    assert running.kube.object(CONFIG_MAP, "ns", CONFIG_MAP_NAME) is not None
