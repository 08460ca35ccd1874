"""The report queue: never blocks the caller, latest wins per object, bounded, retried with backoff."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest

from patronus.agent.report_queue import FIELD_MANAGER, Report, ReportQueue
from patronus.kube.errors import ApiError, KubeConnectionError
from patronus.kube.fake import FakeKube
from patronus.kube.resource import PATH, SITE
from patronus.runtime.clock import FakeClock
from patronus.runtime.informer import Backoff


def path_obj(name: str) -> dict[str, object]:
    return {
        "apiVersion": "sdwan.patronus.dev/v1alpha1",
        "kind": "Path",
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {"source": "a", "destination": "b"},
    }


class NoJitter(random.Random):
    """Backoff delays without jitter, so a test can say exactly when a retry is due."""

    def random(self) -> float:
        return 1.0


def report(name: str, state: str) -> Report:
    return Report(PATH, "ns", name, {"state": state})


class Harness:
    def __init__(self, **kwargs: object) -> None:
        self.clock = FakeClock()
        self.kube = FakeKube(now=self.clock.now)
        self.kube.seed(*(path_obj(n) for n in ("p1", "p2", "p3")))
        self.gone: list[Report] = []
        backoff = Backoff(0.5, 30.0, rng=NoJitter())
        self.queue = ReportQueue(
            self.kube,
            clock=self.clock,
            backoff=backoff,
            on_not_found=self.gone.append,
            **kwargs,  # type: ignore[arg-type]
        )

    def state(self, name: str) -> str | None:
        obj = self.kube.object(PATH, "ns", name) or {}
        return (obj.get("status") or {}).get("state")

    def writes(self) -> list[str]:
        return [r.name for r in self.kube.requests if r.verb == "apply"]


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    h = Harness()
    task = asyncio.create_task(h.queue.run())
    yield h
    task.cancel()


async def test_reports_are_written_as_status_under_the_agents_field_manager(harness: Harness) -> None:
    harness.queue.put(report("p1", "up"))
    await harness.clock.settle()
    assert harness.state("p1") == "up"
    (write,) = [r for r in harness.kube.requests if r.verb == "apply"]
    assert (write.subresource, write.field_manager) == ("status", FIELD_MANAGER)
    assert harness.queue.backlog == 0
    assert harness.queue.stats.written == 1


async def test_put_never_waits_and_the_latest_report_wins_while_the_api_is_away(harness: Harness) -> None:
    harness.kube.fail_next(KubeConnectionError("connection refused"), verb="apply", times=3)
    harness.queue.put(report("p1", "up"))
    await harness.clock.settle()
    assert harness.queue.backlog == 1  # failed once, kept
    for state in ("degraded", "down", "up", "down"):
        harness.queue.put(report("p1", state))  # returns at once, replaces
        harness.queue.put(report("p2", state))
    assert harness.queue.backlog == 2
    harness.clock.advance(0.5)
    await harness.clock.settle()
    harness.clock.advance(1.0)
    await harness.clock.settle()
    assert harness.queue.stats.failed == 3
    assert harness.state("p1") is None
    harness.clock.advance(2.0)  # the backoff doubled: 0.5, 1, 2
    await harness.clock.settle()
    assert (harness.state("p1"), harness.state("p2")) == ("down", "down")
    assert harness.writes().count("p1") == 4  # three failed attempts and the latest report, not one per put
    assert harness.queue.last_error is None


async def test_backoff_resets_after_a_success(harness: Harness) -> None:
    harness.kube.fail_next(ApiError(503, "ServiceUnavailable", "etcd"), verb="apply", times=2)
    harness.queue.put(report("p1", "up"))
    await harness.clock.settle()
    harness.clock.advance(0.5)
    await harness.clock.settle()
    harness.clock.advance(1.0)
    await harness.clock.settle()
    assert harness.state("p1") == "up"
    harness.kube.fail_next(KubeConnectionError("reset"), verb="apply", times=1)
    harness.queue.put(report("p2", "up"))
    await harness.clock.settle()
    harness.clock.advance(0.5)  # back to the first delay
    await harness.clock.settle()
    assert harness.state("p2") == "up"


async def test_a_gone_object_is_dropped_and_reported(harness: Harness) -> None:
    harness.queue.put(Report(SITE, "ns", "a", {"lastHeartbeatTime": "2025-01-01T00:00:00.000Z"}))
    harness.queue.put(report("p1", "up"))
    await harness.clock.settle()
    assert [r.name for r in harness.gone] == ["a"]
    assert harness.state("p1") == "up"  # the queue went on
    assert harness.queue.stats.dropped == 1


async def test_a_refused_report_is_dropped_not_retried(harness: Harness) -> None:
    harness.kube.fail_next(ApiError(422, "Invalid", "status.state: Unsupported value"), verb="apply")
    harness.queue.put(report("p1", "sideways"))
    harness.queue.put(report("p2", "up"))
    await harness.clock.settle()
    assert harness.state("p2") == "up"
    assert harness.queue.backlog == 0
    assert harness.writes() == ["p1", "p2"]


def test_the_queue_is_bounded_and_drops_the_oldest() -> None:
    h = Harness(max_pending=2)
    for name in ("p1", "p2", "p3"):
        h.queue.put(report(name, "up"))
    assert h.queue.backlog == 2
    assert h.queue.pending(PATH, "ns", "p1") is None
    assert h.queue.stats.dropped == 1


def test_the_sites_own_report_is_never_what_the_bound_drops() -> None:
    h = Harness(max_pending=2)
    h.queue.put(Report(SITE, "ns", "a", {"lastHeartbeatTime": "2025-01-01T00:00:00.000Z"}, essential=True))
    for name in ("p1", "p2", "p3"):
        h.queue.put(report(name, "up"))
    assert h.queue.pending(SITE, "ns", "a") is not None
    assert h.queue.pending(PATH, "ns", "p3") is not None
    assert h.queue.backlog == 2
