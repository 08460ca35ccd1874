"""The agents of bench/steady.py: processes that write every Site's and Path's report on a fixed schedule.

Each report has a slot: job ``j`` of ``J`` (every Site, then every mesh Path) is due at
``epoch + round * interval + j * interval / J``, so the API server sees an even stream, as from 1,000
agents whose timers are not in step. The jobs are dealt round-robin to ``--reporters`` processes; each
keeps at most ``in_flight`` requests open and never queues more: a report that cannot start on time
starts late, and how late is measured, so the benchmark can say whether the load it claims was the load
applied. (The first version created a task per report without a bound: once the API server slowed, tens
of thousands of requests waited for a connection and failed with pool timeouts, and nobody could say how
many reports per second the operator had really seen.)

Each job is what the agent does at each heartbeat (``patronus.agent.reporting``): for a Site, renew its
heartbeat Lease, then write the Site report if the agent's own gate (``patronus.agent.report_gate``)
lets it through (a change, or the once-a-minute refresh); for a Path, write its report if the gate lets
it through. Gates start staggered, as agents started at different times are, so the refreshes spread
evenly over the minute instead of all falling in one round. A Site report is what
``patronus.agent.reporting.site_status`` writes: ``lastHeartbeatTime``, ``agent``
(the digest of the configuration the operator rendered, read from the ConfigMap's annotation, so the site
is Active as with a real agent) and ``policies``, one entry per enforced policy, whose counters grow on
every report (``--counters moving``, as with traffic) or stay at zero (``static``). A Path report is
``state``, ``health`` and ``lastChecked``. Both are server-side applies under the agent's field manager;
the response is read but not decoded (a real agent decodes it; here it would only cost the reporter CPU
it needs to keep the schedule).

Counters (shared memory, cumulative, read by the parent): see ``FIELDS``.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from patronus.agent.report_gate import ReportGate, same_path_report, same_site_report
from patronus.api.reporting import STATUS_REFRESH
from patronus.kube.resource import CONFIG_MAP, LEASE, PATH, SITE, ResourceKind
from patronus.kube.rest import RestClient
from patronus.kube.timestamps import format_micro_time, format_time
from patronus.operator.site.children.names import child_names

AGENT_FIELD_MANAGER = "patronus-agent"
CONFIG_DIGEST_ANNOTATION = "sdwan.patronus.dev/config-digest"
SITE_LABEL = "sdwan.patronus.dev/site"
# Lateness buckets (upper bounds, seconds) of a report's start against its slot.
LAG_BOUNDS = (0.1, 0.5, 1.0, 2.0, 5.0, float("inf"))
WRITES = ("leases", "sites", "paths")
FIELDS = (
    "ready", "started", "ok", "errors", "response_ms_sum",
    *(f"lag_le_{b:g}" for b in LAG_BOUNDS),
    *(f"w_{kind}" for kind in WRITES),
)  # fmt: skip
MAX_ERRORS_TOLD = 5
INDEX = {name: i for i, name in enumerate(FIELDS)}


@dataclass(frozen=True, slots=True)
class Job:
    slot: int  # position in the round, over all reporters
    kind: ResourceKind
    name: str
    policies: tuple[tuple[str, str | None], ...] = ()  # (policy, path in use) for a Site


def site_status(job: Job, digest: str, round_no: int, moving: bool, now: datetime) -> dict[str, Any]:
    policies = []
    for offset, (policy, path) in enumerate(job.policies):
        flows = (round_no * 3 + offset) if moving else 0
        entry: dict[str, Any] = {
            "name": policy,
            "active": True,
            "matchedFlows": flows,
            "bytesRouted": flows * 1500,
            "failoverCount": 0,
        }
        if path:
            entry["pathInUse"] = path
        policies.append(entry)
    return {
        "lastHeartbeatTime": format_time(now, millis=True),
        "agent": {"version": "bench", "configDigest": digest},
        "policies": policies,
    }


def path_status(now: datetime) -> dict[str, Any]:
    health = {"latencyMs": 12.5, "jitterMs": 0.4, "packetLossPct": 0.0, "healthScore": 97.9}
    return {"state": "up", "health": health, "lastChecked": format_time(now, millis=True)}


def lag_bucket(lag: float) -> str:
    return next(f"lag_le_{b:g}" for b in LAG_BOUNDS if lag <= b)


class Reporter:
    """One reporter process's share of the jobs, on the shared schedule."""

    def __init__(
        self, rest: RestClient, namespace: str, jobs: Sequence[Job], total: int, shared: Any, **options: Any
    ) -> None:
        self.rest = rest
        self.namespace = namespace
        self.jobs = jobs
        self.gap = options["interval"] / total
        self.interval = options["interval"]
        self.moving = options["moving"]
        self.in_flight = asyncio.Semaphore(options["in_flight"])
        self.shared = shared
        self.digests: dict[str, str] = {}
        self.errors_told = 0
        self.gates = {SITE.kind: ReportGate(same_site_report), PATH.kind: ReportGate(same_path_report)}
        self.stagger = max(1, round(STATUS_REFRESH / self.interval))

    async def load_digests(self) -> None:
        token: str | None = None
        while True:
            page = await self.rest.list_page(CONFIG_MAP, self.namespace, continue_token=token)
            for item in page.get("items") or []:
                meta = item["metadata"]
                site = (meta.get("labels") or {}).get(SITE_LABEL)
                if site:
                    self.digests[site] = (meta.get("annotations") or {}).get(CONFIG_DIGEST_ANNOTATION, "")
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return

    def error(self, message: str) -> None:
        self.count("errors")
        self.errors_told += 1
        if self.errors_told <= MAX_ERRORS_TOLD:  # the first few say why; the counter says how many
            print(f"reporter: {message}", file=sys.stderr, flush=True)

    def count(self, name: str, by: float = 1) -> None:
        self.shared[INDEX[name]] += by

    async def run(self, epoch: float) -> None:
        """Forever: each job at its slot (wall clock ``epoch`` is slot 0 of round 0)."""
        round_no = 0
        while True:
            for job in self.jobs:
                due = epoch + round_no * self.interval + job.slot * self.gap
                delay = due - time.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                await self.in_flight.acquire()  # waits only when in_flight requests are all open
                self.count(lag_bucket(max(0.0, time.time() - due)))
                self.count("started")
                asyncio.get_running_loop().create_task(self.send(job, round_no))
            round_no += 1

    async def send(self, job: Job, round_no: int) -> None:
        try:
            now = datetime.now(UTC)
            if job.kind == SITE:  # not `is`: jobs reach this process pickled
                renewal = {"holderIdentity": job.name, "renewTime": format_micro_time(now)}
                await self.write(LEASE, child_names(job.name).lease, "spec", renewal)
                status = site_status(job, self.digests.get(job.name, ""), round_no, self.moving, now)
            else:
                status = path_status(now)
            # The first round stands for a report written up to a minute ago: refreshes spread out.
            at = time.monotonic() - (job.slot % self.stagger) * self.interval * (round_no == 0)
            if self.gates[job.kind.kind].due(job.name, status, at):
                await self.write(job.kind, job.name, "status", status)
            self.count("ok")
        except Exception as error:  # a report lost is a report lost, as for a real agent
            self.error(f"{job.kind.plural}/{job.name}: {error!r}")
        finally:
            self.in_flight.release()

    async def write(self, kind: ResourceKind, name: str, part: str, fields: dict[str, Any]) -> None:
        """One server-side apply under the agent's field manager; raises on a refusal."""
        body = {
            "apiVersion": kind.api_version,
            "kind": kind.kind,
            "metadata": {"name": name, "namespace": self.namespace},
            part: fields,
        }
        started = time.monotonic()
        response = await self.rest.http.request(
            "PATCH",
            kind.object_path(self.namespace, name, "status" if part == "status" else None),
            params={"fieldManager": AGENT_FIELD_MANAGER, "force": "true"},
            content=orjson.dumps(body),
            headers={"Content-Type": "application/apply-patch+yaml", "Accept": "application/json"},
        )
        self.count("response_ms_sum", (time.monotonic() - started) * 1000)
        self.count(f"w_{kind.plural}")
        if response.status_code >= 400:
            raise RuntimeError(f"{kind.plural}/{name}: {response.status_code} {response.text[:300]}")


def all_jobs(
    sites: Sequence[tuple[str, tuple[tuple[str, str | None], ...]]], paths: Sequence[str]
) -> list[Job]:
    jobs = [Job(i, SITE, name, policies) for i, (name, policies) in enumerate(sites)]
    jobs += [Job(len(jobs) + i, PATH, name) for i, name in enumerate(paths)]
    return jobs


def run_reporter(  # noqa: PLR0917
    kubeconfig: str,
    namespace: str,
    jobs: list[Job],
    total: int,
    shared: Any,
    epoch: float,
    options: dict[str, Any],
) -> None:
    """The body of one reporter process."""

    async def main() -> None:
        async with RestClient.from_kubeconfig(kubeconfig, field_manager=AGENT_FIELD_MANAGER) as rest:
            reporter = Reporter(rest, namespace, jobs, total, shared, **options)
            await reporter.load_digests()
            reporter.count("ready")
            await reporter.run(epoch)

    asyncio.run(main())
