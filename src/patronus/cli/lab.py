"""``patronus lab``: the whole SD-WAN on this machine, in network namespaces, with an impairable WAN.

``lab up`` starts ``lab serve`` (the supervisor, :mod:`patronus.lab.supervisor`) as a detached process,
relays its progress while it builds the lab (that takes a while: a control plane, the operator, keys,
Paths, agents), and prints the ``export KUBECONFIG=...`` line on stdout, so ``eval "$(patronus lab up)"``
works. ``lab down`` sends the supervisor SIGTERM, which undoes everything; if the supervisor is gone
(``kill -9``), ``lab down`` still removes the namespaces it left. ``lab apiserver stop|start`` asks the
supervisor, over its control socket, to take the API server away and bring it back. Every command takes
``--prefix`` so several labs can run side by side; the default is ``pl``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from patronus.kube.resource import PATH, POLICY, SITE
from patronus.kube.rest import RestClient
from patronus.lab import control, impair, network
from patronus.lab.files import LabFiles
from patronus.lab.manifests import LAB_NAMESPACE
from patronus.lab.supervisor import serve

_STARTUP_TIMEOUT_S = 300.0
_SHUTDOWN_TIMEOUT_S = 60.0
_CONTROL_TIMEOUT_S = 150.0  # a start waits for /readyz, up to 90 s on a busy machine

_prefix_option = click.option(
    "--prefix", default="pl", show_default=True, help="The lab's name: prefix of its network namespaces."
)


def _require_root() -> None:
    if os.geteuid() != 0:
        raise click.ClickException("the lab needs root (network namespaces, veth pairs, nftables, TUN)")


def _running_pid(files: LabFiles) -> int | None:
    try:
        pid = int(files.pid.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def _read_ready(files: LabFiles) -> dict[str, Any] | None:
    try:
        ready: dict[str, Any] = json.loads(files.ready.read_text())
    except (OSError, ValueError):
        return None
    return ready


@click.group("lab")
def lab_group() -> None:
    """A local SD-WAN lab: sites in network namespaces, a real control plane, the operator, agents."""


# -- up -----------------------------------------------------------------------------------------------


def _spawn_supervisor(files: LabFiles, sites: int, prefix: str) -> subprocess.Popen[bytes]:
    """Detached (own session, no terminal), so it outlives this command and ignores its Ctrl-C."""
    files.logs.mkdir(parents=True, exist_ok=True)
    files.ready.unlink(missing_ok=True)
    files.progress.unlink(missing_ok=True)
    args = [sys.executable, "-m", "patronus", "lab", "serve", f"--sites={sites}", f"--prefix={prefix}"]
    with files.supervisor_log.open("ab") as log:
        process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    files.pid.write_text(f"{process.pid}\n")
    return process


def _follow(files: LabFiles, seen: int) -> int:
    """Echo the supervisor's new progress lines to stderr; returns how many lines were shown so far."""
    try:
        lines = files.progress.read_text().splitlines()
    except OSError:
        return seen
    for line in lines[seen:]:
        click.echo(f"  {line}", err=True)
    return max(seen, len(lines))


def _wait_ready(files: LabFiles, process: subprocess.Popen[bytes]) -> dict[str, Any]:
    deadline = time.monotonic() + _STARTUP_TIMEOUT_S
    seen = 0
    while (ready := _read_ready(files)) is None:
        seen = _follow(files, seen)
        if process.poll() is not None or time.monotonic() > deadline:
            _stop_supervisor(files, process.pid)
            tail = files.supervisor_log.read_text(errors="replace")[-4000:]
            raise click.ClickException(f"the lab did not start; see {files.supervisor_log}:\n{tail}")
        time.sleep(0.2)
    _follow(files, seen)
    return ready


def _summary(files: LabFiles, ready: dict[str, Any]) -> None:
    plan = files.load_plan()
    rows = [["SITE", "NAMESPACE", "LAN", *(f"{u.upper()} ENDPOINT" for u in plan.underlays)]]
    for site in plan.sites:
        addresses = [plan.link(site.name, u).site_address for u in plan.underlays]
        rows.append([site.name, site.namespace, site.lan_subnet, *addresses])
    click.echo(_table(rows), err=True)
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
        f"Dashboard: {_dashboard_login(files, ready)}",
        err=True,
    )


def _dashboard_login(files: LabFiles, ready: dict[str, Any]) -> str:
    """The dashboard's URL, signed in with the lab's viewer token (in the fragment: no server sees it)."""
    try:
        token = (files.root / "dashboard-token").read_text().strip()
    except OSError:
        return str(ready.get("dashboard"))
    return f"{ready.get('dashboard')}login#token={token}"


@lab_group.command("up")
@click.option("--sites", type=click.IntRange(2, 254), default=3, show_default=True, help="Number of sites.")
@_prefix_option
def lab_up(sites: int, prefix: str) -> None:
    """Start the lab in the background; prints the KUBECONFIG line once it is ready."""
    _require_root()
    files = LabFiles.for_prefix(prefix)
    ready = _read_ready(files)
    if (pid := _running_pid(files)) is not None and ready is not None:
        click.echo(f"# lab {prefix} already running (pid {pid})", err=True)
        click.echo(f"export KUBECONFIG={ready['kubeconfig']}")
        return
    if pid is not None:
        raise click.ClickException(f"lab {prefix} is starting or stopping (pid {pid}); try again later")
    if left := _sweep(files):  # a supervisor killed with -9 leaves its namespaces behind
        click.echo(f"removed namespaces {', '.join(left)} left by an earlier lab {prefix}", err=True)
    process = _spawn_supervisor(files, sites, prefix)
    click.echo(
        f"starting lab {prefix} with {sites} sites (pid {process.pid}, log {files.supervisor_log})", err=True
    )
    try:
        ready = _wait_ready(files, process)
    except KeyboardInterrupt:
        click.echo("interrupted: stopping the lab", err=True)
        _stop_supervisor(files, process.pid)
        _sweep(files)
        raise click.Abort from None
    click.echo(f"export KUBECONFIG={ready['kubeconfig']}")
    _summary(files, ready)


# -- down ---------------------------------------------------------------------------------------------


def _stop_supervisor(files: LabFiles, pid: int) -> bool:
    """SIGTERM and wait for the supervisor's own clean-up; SIGKILL its group if it hangs. True if killed."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + _SHUTDOWN_TIMEOUT_S
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if not _alive(pid):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    return True


def _alive(pid: int) -> bool:
    """Alive and not a zombie (``lab up`` may be the parent of a supervisor that failed to start)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _sweep(files: LabFiles) -> list[str]:
    """Remove what a supervisor that was killed left: its namespaces (with all in them) and files."""
    left: list[str] = []
    with contextlib.suppress(FileNotFoundError):
        plan = files.load_plan()
        left = sorted(set(network.namespaces_present(plan.prefix)) & set(plan.namespaces))
        if left:
            network.destroy(plan)
    files.clean()
    return left


@lab_group.command("down")
@_prefix_option
def lab_down(prefix: str) -> None:
    """Stop the lab; no namespace, interface or process of it is left (logs are kept)."""
    _require_root()
    files = LabFiles.for_prefix(prefix)
    pid = _running_pid(files)
    if pid is None and not files.plan.exists():
        # Nothing of this lab under this cache; its namespaces may still exist if `lab up` ran with
        # another PATRONUS_CACHE: say so rather than report a lab we never found as "down".
        if stray := network.namespaces_present(prefix):
            raise click.ClickException(
                f"lab {prefix} has no files in {files.root}, but its namespaces exist "
                f"({', '.join(stray)}): was it started with another PATRONUS_CACHE?"
            )
        click.echo(f"lab {prefix} is not running", err=True)
        return
    if pid is None:
        click.echo(f"lab {prefix}'s supervisor is not running; removing what it left", err=True)
    elif _stop_supervisor(files, pid):
        click.echo(f"the supervisor (pid {pid}) did not stop in time and was killed", err=True)
    if left := _sweep(files):
        click.echo(f"removed leftover namespaces {', '.join(left)}", err=True)
    click.echo(f"lab {prefix} is down (logs in {files.logs})", err=True)


# -- status -------------------------------------------------------------------------------------------


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def _num(value: Any, unit: str = "") -> str:
    return "-" if value is None else f"{float(value):.1f}{unit}"


def _status_rows(items: dict[str, list[dict[str, Any]]]) -> list[str]:
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
    return [_table(sites), _table(paths), _table(policies)]


async def _fetch(kubeconfig: str) -> dict[str, list[dict[str, Any]]]:
    async with RestClient.from_kubeconfig(kubeconfig) as rest:
        result: dict[str, list[dict[str, Any]]] = {}
        for key, kind in (("sites", SITE), ("paths", PATH), ("policies", POLICY)):
            page = await rest.list_page(kind, LAB_NAMESPACE)
            result[key] = sorted(page.get("items", []), key=lambda o: str(o["metadata"]["name"]))
        return result


@lab_group.command("status")
@_prefix_option
def lab_status(prefix: str) -> None:
    """Sites, Paths (state, latency, loss, health) and Policies (path in use), read from the API server."""
    files = LabFiles.for_prefix(prefix)
    ready = _read_ready(files)
    pid = _running_pid(files)
    if pid is None or ready is None:
        click.echo(f"lab {prefix} is not running" + (" (still starting)" if pid else ""))
        raise SystemExit(1)
    click.echo(f"lab {prefix}: supervisor pid {pid}, KUBECONFIG={ready['kubeconfig']}")
    click.echo(f"Prometheus {ready.get('prometheus')}, dashboard {ready.get('dashboard')}\n")
    items = asyncio.run(_fetch(str(ready["kubeconfig"])))
    click.echo("\n\n".join(_status_rows(items)))


# -- impair -------------------------------------------------------------------------------------------


@lab_group.command("impair")
@click.argument("link")
@click.option("--delay", help="Delay on what the site sends over the link, e.g. 40ms.")
@click.option("--jitter", help="Uniform jitter around the delay, e.g. 5ms.")
@click.option("--loss", help="Loss of what the site sends over the link, e.g. 5%.")
@click.option("--down/--up", "down", default=None, help="Drop everything on the link / restore it.")
@click.option("--clear", is_flag=True, help="Start from a clean link (the other options then apply on top).")
@_prefix_option
def lab_impair(
    link: str,
    *,
    delay: str | None,
    jitter: str | None,
    loss: str | None,
    down: bool | None,
    clear: bool,
    prefix: str,
) -> None:
    """Impair a WAN link such as a/fiber; options not given keep their current value."""
    _require_root()
    files = LabFiles.for_prefix(prefix)
    try:
        plan = files.load_plan()
        base = impair.Impairment() if clear else impair.current(plan, link)
        changes: dict[str, Any] = {}
        if delay is not None:
            changes["delay_ms"] = impair.parse_duration_ms(delay)
        if jitter is not None:
            changes["jitter_ms"] = impair.parse_duration_ms(jitter)
        if loss is not None:
            changes["loss_pct"] = impair.parse_percent(loss)
        if down is not None:
            changes["down"] = down
        wanted = dataclasses.replace(base, **changes)
        impair.set_impairment(plan, link, wanted)
    except FileNotFoundError as error:
        raise click.ClickException(f"lab {prefix} is not running (no {files.plan})") from error
    except (KeyError, ValueError, network.LabError) as error:
        raise click.ClickException(str(error).strip("'\"")) from error
    click.echo(f"{link}: {_describe(wanted)}")


def _describe(value: impair.Impairment) -> str:
    if value.is_clean:
        return "clean"
    parts = ["DOWN"] if value.down else []
    if value.delay_ms or value.jitter_ms:
        parts.append(f"delay {value.delay_ms:g}ms ± {value.jitter_ms:g}ms")
    if value.loss_pct:
        parts.append(f"loss {value.loss_pct:g}%")
    return ", ".join(parts)


# -- apiserver ----------------------------------------------------------------------------------------


@lab_group.command("apiserver")
@click.argument("action", type=click.Choice(control.ApiServerSwitch.ACTIONS))
@_prefix_option
def lab_apiserver(action: str, prefix: str) -> None:
    """Stop or start the lab's kube-apiserver (etcd keeps the data), or show whether it runs.

    Everything else keeps running: the operator and the agents must ride out the outage. Returns once
    done: the process gone, or the API server ready again.
    """
    _require_root()
    files = LabFiles.for_prefix(prefix)
    try:
        reply = control.request(files.control, "apiserver", action, timeout=_CONTROL_TIMEOUT_S)
    except (FileNotFoundError, ConnectionRefusedError) as error:
        missing = f"lab {prefix} is not running (nothing answers on {files.control})"
        raise click.ClickException(missing) from error
    except (control.ControlError, OSError) as error:
        raise click.ClickException(f"lab {prefix}: {error}") from error
    took = f" ({reply['seconds']:g}s)" if action != "status" else ""
    click.echo(f"kube-apiserver: {reply['state']}{took}")


# -- serve (hidden) -----------------------------------------------------------------------------------


@lab_group.command("serve", hidden=True)
@click.option("--sites", type=click.IntRange(2, 254), default=3)
@_prefix_option
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=None)
def lab_serve(sites: int, prefix: str, state_dir: Path | None) -> None:
    """The supervisor, in the foreground until SIGTERM (``lab up`` runs it detached)."""
    _require_root()
    sys.exit(asyncio.run(serve(sites, prefix, state_dir)))
