"""Steady state: what the operator costs while every site's agent reports, against the same idle operator.

    .venv/bin/python bench/steady.py [--sites 1000] [--mesh-sites 40] [--policies 500] [--interval 10]
                                     [--seconds 120]

One control plane, the workload of bench/converge.py (Sites, a full mesh over the first --mesh-sites,
Policies), the operator in this process and nothing else in it. Once everything has converged:

1. Idle window (the baseline): --seconds with no agent reporting; the operator only resyncs.
2. Reporting window: a separate process plays every site's agent, as agents report: each Site's status
   (heartbeat, agent report, its policies' counters) and each mesh Path's status (state, health,
   lastChecked) once per --interval, spread evenly over the interval, with the agent's field manager.

For each window: the operator's CPU seconds (this process, getrusage) over wall seconds, as a share of
one core; the API server's and the reporter's CPU for scale; the writes the reporter made and the writes
the operator made in answer (it should make almost none: a heartbeat changes nothing it owns). The goal
(issue 13): under 10 % of one core with 1,000 sites reporting every 10 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from converge import (
    NODE_PORT_RANGE,
    SERVICE_RANGE,
    CountingRestClient,
    Workload,
    create_all,
    list_all,
    make_workload,
    operator_config,
)

from patronus.controlplane import ControlPlane
from patronus.kube.crds import install_crds
from patronus.kube.resource import PATH, POLICY, SITE
from patronus.kube.rest import RestClient
from patronus.kube.timestamps import format_time
from patronus.operator.main import manager_options
from patronus.operator.wiring import register
from patronus.runtime.logs import configure_logging
from patronus.runtime.manager import Manager

AGENT_FIELD_MANAGER = "patronus-agent"


def cpu_of(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def converged(rest: RestClient, namespace: str, work: Workload) -> bool:
    def current(obj: dict[str, Any]) -> bool:
        status = obj.get("status") or {}
        return bool(status.get("observedGeneration") == obj["metadata"].get("generation"))

    sites = await list_all(rest, SITE, namespace)
    policies = await list_all(rest, POLICY, namespace)
    paths = await list_all(rest, PATH, namespace)
    return (
        len(sites) == len(work.sites)
        and all(current(s) for s in sites)
        and len(policies) == len(work.policies)
        and all(current(p) for p in policies)
        and len(paths) >= len(work.path_names)
    )


# -- the reporter process ------------------------------------------------------------------------------


def site_report(name: str, policies: list[str], now: datetime) -> dict[str, Any]:
    stamp = format_time(now, millis=True)
    return {
        "lastHeartbeatTime": stamp,
        "agent": {"version": "bench", "configDigest": "0" * 64},
        "policies": [
            {"name": policy, "active": True, "matchedFlows": 0, "bytesRouted": 0, "failoverCount": 0}
            for policy in policies
        ],
    }


def path_report(now: datetime) -> dict[str, Any]:
    health = {"latencyMs": 12.5, "jitterMs": 0.4, "packetLossPct": 0.0, "healthScore": 97.9}
    return {"state": "up", "health": health, "lastChecked": format_time(now, millis=True)}


async def report_forever(kubeconfig: str, namespace: str, args: argparse.Namespace) -> None:
    work = make_workload(args.sites, args.mesh_sites, args.policies)
    jobs: list[tuple[Any, str, Any]] = [
        (SITE, site["metadata"]["name"], work.policies_at.get(site["metadata"]["name"], []))
        for site in work.sites
    ]
    jobs += [(PATH, name, None) for name in work.path_names]
    gap = args.interval / len(jobs)
    writes = 0
    async with RestClient.from_kubeconfig(kubeconfig, field_manager=AGENT_FIELD_MANAGER) as rest:
        start = time.monotonic()
        tick = 0
        while True:
            kind, name, policies = jobs[tick % len(jobs)]
            now = datetime.now(UTC)
            status = site_report(name, policies, now) if kind is SITE else path_report(now)
            body = {
                "apiVersion": kind.api_version,
                "kind": kind.kind,
                "metadata": {"name": name, "namespace": namespace},
                "status": status,
            }
            asyncio.get_running_loop().create_task(_apply(rest, kind, body))
            writes += 1
            tick += 1
            delay = start + tick * gap - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if tick % len(jobs) == 0:
                print(
                    f"reporter: {writes} writes, behind {max(0.0, -delay):.2f}s", file=sys.stderr, flush=True
                )


async def _apply(rest: RestClient, kind: Any, body: dict[str, Any]) -> None:
    try:
        await rest.apply(body, field_manager=AGENT_FIELD_MANAGER, force=True, subresource="status", kind=kind)
    except Exception as error:  # a report lost is a report lost, as for a real agent: log and go on
        print(f"reporter: {kind.plural}/{body['metadata']['name']}: {error}", file=sys.stderr)


# -- the operator process (this one) -------------------------------------------------------------------


async def measure(plane: ControlPlane, args: argparse.Namespace) -> None:
    namespace = "bench-steady"
    plane.kubectl("create", "namespace", namespace)
    config = operator_config(namespace, args)
    rest = CountingRestClient.open(plane.kubeconfig, "patronus-operator")
    manager = Manager(manager_options(config), rest)
    register(manager, config)
    task = asyncio.create_task(manager.run(install_signal_handlers=False))
    work = make_workload(args.sites, args.mesh_sites, args.policies)
    async with RestClient.from_kubeconfig(plane.kubeconfig, field_manager="bench-creator") as creator:
        started = time.monotonic()
        await create_all(creator, namespace, work, 20, [])
        while not await converged(creator, namespace, work):
            await asyncio.sleep(2)
        print(
            f"converged in {time.monotonic() - started:.0f} s; settling for {args.interval * 2:.0f} s",
            flush=True,
        )
        await asyncio.sleep(args.interval * 2)

    apiserver = next(p.pid for p in plane.processes() if "kube-apiserver" in str(p.args))
    idle = await window("idle (no agent reports)", args.seconds, rest, apiserver, None)
    reporter = subprocess.Popen(
        [sys.executable, __file__, "--reporter", str(plane.kubeconfig), namespace, *_passthrough(args)]
    )
    try:
        await asyncio.sleep(args.interval)  # one whole round before measuring
        loaded = await window("agents reporting", args.seconds, rest, apiserver, reporter.pid)
    finally:
        reporter.send_signal(signal.SIGTERM)
        reporter.wait(10)
    manager.stop()
    await asyncio.wait_for(task, 60)
    await rest.close()
    ratio = loaded["share"] / max(idle["share"], 1e-9)
    print(
        f"\noperator CPU: {loaded['share']:.1%} of one core with {args.sites} sites reporting every "
        f"{args.interval:g} s, against {idle['share']:.1%} idle (ratio {ratio:.1f}); goal: under 10 %"
    )


async def window(
    title: str, seconds: float, rest: CountingRestClient, apiserver: int, reporter: int | None
) -> dict[str, float]:
    cpu0, api0, rep0, writes0 = (
        own_cpu(),
        cpu_of(apiserver),
        cpu_of(reporter) if reporter else 0.0,
        sum(rest.writes.values()),
    )
    wall0 = time.monotonic()
    await asyncio.sleep(seconds)
    wall = time.monotonic() - wall0
    result = {
        "share": (own_cpu() - cpu0) / wall,
        "apiserver": (cpu_of(apiserver) - api0) / wall,
        "reporter": ((cpu_of(reporter) - rep0) / wall) if reporter else 0.0,
        "operator_writes": float(sum(rest.writes.values()) - writes0),
    }
    print(
        f"{title}: {wall:.0f} s; operator {result['share']:.1%} of a core, kube-apiserver "
        f"{result['apiserver']:.1%}, reporter {result['reporter']:.1%}; operator writes "
        f"{result['operator_writes']:.0f}",
        flush=True,
    )
    return result


def _passthrough(args: argparse.Namespace) -> list[str]:
    return [
        f"--sites={args.sites}",
        f"--mesh-sites={args.mesh_sites}",
        f"--policies={args.policies}",
        f"--interval={args.interval}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sites", type=int, default=1000)
    parser.add_argument("--mesh-sites", type=int, default=40)
    parser.add_argument("--policies", type=int, default=500)
    parser.add_argument("--workers", type=int, default=5)
    parser.add_argument("--reconcile-interval", default="30s")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between one agent's reports")
    parser.add_argument("--seconds", type=float, default=120.0, help="length of each measured window")
    parser.add_argument("--reporter", nargs=2, metavar=("KUBECONFIG", "NAMESPACE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reporter:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        asyncio.run(report_forever(args.reporter[0], args.reporter[1], args))
        return
    configure_logging("warning", "console")
    with ControlPlane(
        controller_manager=True, extra_apiserver_args=[SERVICE_RANGE, NODE_PORT_RANGE]
    ) as plane:

        async def run() -> None:
            async with RestClient.from_kubeconfig(plane.kubeconfig, field_manager="bench-crds") as admin:
                await install_crds(admin)
            await measure(plane, args)

        asyncio.run(run())


if __name__ == "__main__":
    main()
