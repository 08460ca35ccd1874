"""What the agent writes: a path's status per check, and its Site's report (heartbeat, agent, policies)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from patronus.agent.dataplane.routing import PolicyCounters
from patronus.agent.probe_stats import CheckResult, summarize
from patronus.agent.report_queue import Report, ReportQueue
from patronus.agent.reporting import (
    SiteReporter,
    agent_report,
    path_status,
    policy_reports,
    site_status,
)
from patronus.agent.switcher import PolicyRecord
from patronus.api.site import SiteStatus
from patronus.kube.errors import ApiError
from patronus.kube.fake import FakeKube
from patronus.kube.resource import LEASE, SITE
from patronus.runtime.clock import FakeClock
from tests.unit.agent.fakes import LTE

WHEN = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


def test_path_status_of_a_check() -> None:
    status = path_status(summarize([10.0, 12.0, 11.0]), WHEN)
    assert status == {
        "state": "up",
        "health": {"packetLossPct": 0.0, "healthScore": status["health"]["healthScore"], "latencyMs": 11.0,
                   "jitterMs": 1.5},
        "lastChecked": "2026-01-02T03:04:05.678Z",
    }  # fmt: skip


def test_a_down_path_has_no_latency_and_an_unknown_one_no_measurement() -> None:
    down = path_status(summarize([None, None]), WHEN)
    assert down["state"] == "down"
    assert "latencyMs" not in down["health"]
    unknown = path_status(CheckResult(5, 0, None, None, 0.0, 0.0, "unknown"), WHEN)
    assert unknown == {"state": "unknown", "lastChecked": "2026-01-02T03:04:05.678Z"}


def test_the_site_report_says_what_the_kernel_does() -> None:
    entries = policy_reports(
        ["voice", "bulk"],
        {"voice": LTE, "bulk": None},
        {"voice": PolicyRecord(2, WHEN)},
        {"voice": PolicyCounters(10, 1500, 3)},
    )
    agent = agent_report(
        version="0.1.0", config_digest="ab" * 32, config_error=None, data_plane_error="x" * 5000
    )
    status = site_status(WHEN, agent, entries)
    assert status["lastHeartbeatTime"] == "2026-01-02T03:04:05.678Z"
    assert status["agent"]["configDigest"] == "ab" * 32
    assert "configError" not in status["agent"]  # released, so a fixed error disappears
    assert len(status["agent"]["dataPlaneError"]) == 1024
    assert status["policies"] == [
        {"name": "bulk", "active": True, "matchedFlows": 0, "bytesRouted": 0, "failoverCount": 0},
        {"name": "voice", "active": True, "pathInUse": LTE, "matchedFlows": 3, "bytesRouted": 1500,
         "failoverCount": 2, "lastFailoverTime": "2026-01-02T03:04:05.678000Z"},
    ]  # fmt: skip
    SiteStatus.model_validate(status)  # the CRD's own model accepts it


def test_a_policy_not_installed_is_not_active() -> None:
    (entry,) = policy_reports(["voice"], {}, {}, {})
    assert (entry.active, entry.path_in_use) == (False, None)


async def test_the_site_reporter_reports_on_a_timer_and_when_kicked() -> None:
    clock = FakeClock()
    kube = FakeKube()
    kube.seed({"apiVersion": SITE.api_version, "kind": "Site", "metadata": {"name": "a", "namespace": "ns"},
               "spec": {}})  # fmt: skip
    queue = ReportQueue(kube, clock=clock)
    builds = 0

    def build() -> dict[str, object]:
        nonlocal builds
        builds += 1
        return {"lastHeartbeatTime": f"2026-01-01T00:00:{builds:02d}.000Z"}

    reporter = SiteReporter(queue, namespace="ns", site="a", clock=clock, build=build, interval=10.0)
    tasks = [asyncio.create_task(reporter.run()), asyncio.create_task(queue.run())]
    await clock.settle()
    assert builds == 1
    clock.advance(9.0)
    await clock.settle()
    assert builds == 1
    reporter.kick()
    await clock.settle()
    assert builds == 2
    clock.advance(10.0)
    await clock.settle()
    assert builds == 3
    site = kube.object(SITE, "ns", "a") or {}
    assert site["status"]["lastHeartbeatTime"] == "2026-01-01T00:00:03.000Z"
    assert all(r.kind != "policies" for r in kube.requests)  # the agent never writes a Policy
    for task in tasks:
        task.cancel()


async def test_with_a_lease_the_heartbeat_renews_it_and_the_site_is_written_on_change() -> None:
    clock = FakeClock()
    kube = FakeKube()
    kube.seed({"apiVersion": SITE.api_version, "kind": "Site", "metadata": {"name": "a", "namespace": "ns"},
               "spec": {}})  # fmt: skip
    lease_meta = {"name": "a-agent", "namespace": "ns"}
    kube.seed({"apiVersion": LEASE.api_version, "kind": "Lease", "metadata": lease_meta,
               "spec": {"leaseDurationSeconds": 30}})  # fmt: skip
    queue = ReportQueue(kube, clock=clock)
    digest = "d1"

    def build() -> dict[str, object]:
        return {"lastHeartbeatTime": clock.now().isoformat(), "agent": {"configDigest": digest}}

    reporter = SiteReporter(
        queue, namespace="ns", site="a", clock=clock, build=build, lease="a-agent", refresh=60.0
    )
    tasks = [asyncio.create_task(reporter.run()), asyncio.create_task(queue.run())]

    def writes() -> tuple[int, int]:
        return (
            sum(1 for r in kube.requests if r.kind == "sites" and r.verb == "apply"),
            sum(1 for r in kube.requests if r.kind == "leases" and r.verb == "apply"),
        )

    await clock.settle()
    assert writes() == (1, 1), "the first beat writes both"
    for _ in range(3):
        clock.advance(10.0)
        await clock.settle()
    assert writes() == (1, 4), "unchanged: only the Lease is renewed"
    lease = kube.object(LEASE, "ns", "a-agent") or {}
    assert lease["spec"]["renewTime"].endswith("Z")
    assert lease["spec"]["holderIdentity"] == "a"
    assert lease["spec"]["leaseDurationSeconds"] == 30, "the operator's field is left alone"
    digest = "d2"
    reporter.kick()
    await clock.settle()
    assert writes() == (2, 5), "a change is written at once"
    for _ in range(6):
        clock.advance(10.0)
        await clock.settle()
    assert writes() == (3, 11), "and an unchanged report once a minute"
    for task in tasks:
        task.cancel()


async def test_without_its_lease_the_agent_beats_in_its_site_status_for_a_while() -> None:
    clock = FakeClock()
    kube = FakeKube()
    kube.seed({"apiVersion": SITE.api_version, "kind": "Site", "metadata": {"name": "a", "namespace": "ns"},
               "spec": {}})  # fmt: skip
    # The API server answers an apply to a Lease that is gone with 403: creating it is not the agent's.
    forbidden = ApiError(403, "Forbidden", "leases.coordination.k8s.io is forbidden")
    kube.fail_next(forbidden, verb="apply", kind=LEASE, times=3)
    reporter: SiteReporter | None = None

    def refused(report: Report) -> None:
        assert reporter is not None
        if report.kind == LEASE:
            reporter.lease_missing()

    queue = ReportQueue(kube, clock=clock, on_refused=refused)
    reporter = SiteReporter(
        queue, namespace="ns", site="a", clock=clock, build=lambda: {"agent": {}}, lease="a-agent"
    )
    tasks = [asyncio.create_task(reporter.run()), asyncio.create_task(queue.run())]

    def site_writes() -> int:
        return sum(1 for r in kube.requests if r.kind == "sites" and r.verb == "apply")

    await clock.settle()
    assert site_writes() == 1
    for _ in range(3):
        clock.advance(10.0)
        await clock.settle()
    assert site_writes() == 4, "no Lease to renew: every beat goes in the Site status"
    for _ in range(9):
        clock.advance(10.0)
        await clock.settle()
    # Renewals fail at 0, 10 and 20 s: the status carries the beat until 60 s after the last (70 s), then
    # waits for the refresh (130 s).
    assert site_writes() == 8, "once the Lease is renewed again, the status waits for the refresh"
    lease = kube.object(LEASE, "ns", "a-agent") or {}
    assert "renewTime" in lease.get("spec", {})
    for task in tasks:
        task.cancel()
