"""What one Site status write costs the API server, by the number of policy entries it carries.

    .venv/bin/python bench/status_cost.py [--sites 20] [--rounds 10] [--policies 0,50,250]
                                          [--modes apply,merge] [--crds as-is,no-cel]

An agent reports every policy it enforces in its Site's ``status.policies`` about every 10 s. This
measures the kube-apiserver's CPU time (user + system, from ``/proc/<pid>/stat``) per status write on a
fresh local control plane, for each number of entries, each way of writing (``apply``: server-side apply
under the agent's field manager, as the agent does; ``merge``: a JSON merge patch of the status) and each
CRD variant (``as-is``: the generated CRD; ``no-cel``: the same without its CEL rules, to see what they
cost). The baseline is the same write with no policy entries, in the same control plane.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from patronus.api.crd import all_crds
from patronus.controlplane import ControlPlane
from patronus.kube.crds import established
from patronus.kube.resource import CUSTOM_RESOURCE_DEFINITION, NAMESPACE, SITE
from patronus.kube.rest import RestClient
from patronus.kube.timestamps import format_time

KEY = "u3TIrcxVqJhNxDXYP5Ujt9xZ7kNOnkshoeMcIvJx2ic="
NS = "bench"
LOADAVG = Path("/proc/loadavg")


def without_cel(node: Any) -> Any:
    """A copy of a schema with every ``x-kubernetes-validations`` removed."""
    if isinstance(node, dict):
        return {k: without_cel(v) for k, v in node.items() if k != "x-kubernetes-validations"}
    if isinstance(node, list):
        return [without_cel(v) for v in node]
    return node


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def status(site: int, sites: int, round_no: int, policies: int) -> dict[str, Any]:
    entries = [
        {
            "name": f"policy-{j}",
            "active": True,
            "matchedFlows": round_no * 3 + j,
            "bytesRouted": (round_no * 3 + j) * 1500,
            "failoverCount": 0,
            "pathInUse": f"mesh.s{site}.s{(site + 1) % sites}.fiber",
        }
        for j in range(policies)
    ]
    return {"lastHeartbeatTime": format_time(datetime.now(UTC), millis=True), "policies": entries}


async def install(client: RestClient, variant: str) -> None:
    crds = [copy.deepcopy(crd) if variant == "as-is" else without_cel(crd) for crd in all_crds()]
    for crd in crds:
        await client.apply(crd, field_manager="bench", force=True, kind=CUSTOM_RESOURCE_DEFINITION)
    for _ in range(300):
        names = [crd["metadata"]["name"] for crd in crds]
        if all([established(await client.get(CUSTOM_RESOURCE_DEFINITION, None, n)) for n in names]):
            return
        await asyncio.sleep(0.1)
    raise TimeoutError("CRDs not established")


async def write(client: RestClient, mode: str, site: int, body: dict[str, Any]) -> None:
    name = f"s{site}"
    if mode == "merge":
        await client.patch_merge(SITE, NS, name, {"status": body}, subresource="status")
        return
    obj = {"apiVersion": SITE.api_version, "kind": SITE.kind, "metadata": {"name": name, "namespace": NS}}
    await client.apply(
        {**obj, "status": body}, field_manager="patronus-agent", subresource="status", kind=SITE
    )


async def measure(variant: str, args: argparse.Namespace) -> list[tuple[str, int, float]]:
    results = []
    with ControlPlane() as plane:
        client = RestClient.from_kubeconfig(plane.kubeconfig)
        try:
            await install(client, variant)
            await client.create(
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}, kind=NAMESPACE
            )
            for i in range(args.sites):
                spec = {
                    "location": "bench",
                    "wireguard": {"publicKey": KEY, "endpoints": [f"10.0.0.{i + 1}:51820"]},
                }
                meta = {"name": f"s{i}", "namespace": NS}
                await client.create(
                    {"apiVersion": SITE.api_version, "kind": SITE.kind, "metadata": meta, "spec": spec}
                )
            pid = next(p.pid for p in plane.processes() if "kube-apiserver" in str(p.args))
            for mode in args.modes.split(","):
                for policies in (int(p) for p in args.policies.split(",")):
                    before, started = cpu_seconds(pid), time.monotonic()
                    for round_no in range(args.rounds):
                        bodies = [status(i, args.sites, round_no, policies) for i in range(args.sites)]
                        await asyncio.gather(*(write(client, mode, i, b) for i, b in enumerate(bodies)))
                    per_write = (cpu_seconds(pid) - before) / (args.rounds * args.sites)
                    results.append((mode, policies, per_write))
                    print(
                        f"  {variant:6s} {mode:5s} {policies:4d} policies: {per_write * 1000:6.1f} ms"
                        f" API server CPU per write ({args.rounds * args.sites} writes,"
                        f" {time.monotonic() - started:.1f} s)",
                        flush=True,
                    )
        finally:
            await client.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--policies", default="0,50,250")
    parser.add_argument("--modes", default="apply,merge")
    parser.add_argument("--crds", default="as-is,no-cel")
    args = parser.parse_args()
    print(f"load at start: {LOADAVG.read_text().strip()}")
    for variant in args.crds.split(","):
        results = asyncio.run(measure(variant, args))
        base = {mode: cost for mode, policies, cost in results if policies == 0}
        for mode, policies, cost in results:
            if policies and base.get(mode):
                per_entry = (cost - base[mode]) / policies
                print(
                    f"  {variant} {mode} {policies} policies: {cost / base[mode]:.1f}x the write with none,"
                    f" {per_entry * 1000:.2f} ms per entry"
                )
    print(f"load at end: {LOADAVG.read_text().strip()}")


if __name__ == "__main__":
    main()
