"""What the lab commands print: the sites and their WAN endpoints after ``lab up``, the tables of ``lab
status`` (Sites, Paths, Policies from their status), and an impairment in words."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from patronus.lab import impair
from patronus.lab.files import LabFiles
from patronus.lab.manifests import LAB_NAMESPACE


def print_summary(files: LabFiles, ready: dict[str, Any]) -> None:
    plan = files.load_plan()
    rows = [["SITE", "NAMESPACE", "LAN", *(f"{u.upper()} ENDPOINT" for u in plan.underlays)]]
    for site in plan.sites:
        addresses = [plan.link(site.name, u).site_address for u in plan.underlays]
        rows.append([site.name, site.namespace, site.lan_subnet, *addresses])
    click.echo(table(rows), err=True)
    first = plan.sites[0].name
    kubectl = ready.get("kubectl", "kubectl")
    click.echo(
        "\nTry next:\n"
        f"  {kubectl} get sites,paths,policies -n {LAB_NAMESPACE}\n"
        f"  {kubectl} get paths,policies -n {LAB_NAMESPACE} -w\n"
        f"  patronus lab impair {first}/fiber --delay 40ms --jitter 5ms --loss 5% --prefix {plan.prefix}\n"
        f"  patronus lab status --prefix {plan.prefix}\n"
        f"  patronus lab down --prefix {plan.prefix}\n"
        f"Logs: {ready.get('logs')}\n"
        f"Prometheus: {ready.get('prometheus')}\n"
        f"Dashboard: {dashboard_login(files, ready)}",
        err=True,
    )


def dashboard_login(files: LabFiles, ready: dict[str, Any]) -> str:
    """The dashboard's URL, signed in with the lab's viewer token (in the fragment: no server sees it)."""
    try:
        token = (files.root / "dashboard-token").read_text().strip()
    except OSError:
        return str(ready.get("dashboard"))
    return f"{ready.get('dashboard')}login#token={token}"


def table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def _num(value: Any, unit: str = "") -> str:
    return "-" if value is None else f"{float(value):.1f}{unit}"


def status_tables(items: dict[str, list[dict[str, Any]]]) -> list[str]:
    sites = [["SITE", "PHASE", "ACTIVE PATHS", "HEALTH"]]
    for obj in items["sites"]:
        st = obj.get("status") or {}
        sites.append(
            [
                obj["metadata"]["name"],
                st.get("phase", "-"),
                str(st.get("activePaths", "-")),
                _num(st.get("healthScore")),
            ]
        )
    paths = [["PATH", "STATE", "LATENCY", "JITTER", "LOSS", "HEALTH"]]
    for obj in items["paths"]:
        st = obj.get("status") or {}
        health = st.get("health") or {}
        paths.append(
            [
                obj["metadata"]["name"],
                st.get("state", "-"),
                _num(health.get("latencyMs"), "ms"),
                _num(health.get("jitterMs"), "ms"),
                _num(health.get("packetLossPct"), "%"),
                _num(health.get("healthScore")),
            ]
        )
    policies = [["POLICY", "ACTIVE", "PATH IN USE", "FAILOVERS"]]
    for obj in items["policies"]:
        st = obj.get("status") or {}
        in_use = (st.get("pathInUse") or {}).get("pathId", "-")
        policies.append(
            [obj["metadata"]["name"], str(st.get("active", "-")), in_use, str(st.get("failoverCount", 0))]
        )
    return [table(sites), table(paths), table(policies)]


def describe_impairment(value: impair.Impairment) -> str:
    if value.is_clean:
        return "clean"
    parts = ["DOWN"] if value.down else []
    if value.delay_ms or value.jitter_ms:
        parts.append(f"delay {value.delay_ms:g}ms ± {value.jitter_ms:g}ms")
    if value.loss_pct:
        parts.append(f"loss {value.loss_pct:g}%")
    return ", ".join(parts)
