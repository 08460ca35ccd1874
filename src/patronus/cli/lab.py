"""``patronus lab``: the whole SD-WAN on this machine, in network namespaces, with an impairable WAN.

``lab up`` starts ``lab serve`` (the supervisor, :mod:`patronus.lab.supervisor`) as a detached process,
relays its progress while it builds the lab (that takes a while: a control plane, the operator, keys,
Paths, agents), and prints the ``export KUBECONFIG=...`` line on stdout, so ``eval "$(patronus lab up)"``
works. ``lab down`` sends the supervisor SIGTERM, which undoes everything; if the supervisor is gone
(``kill -9``), ``lab down`` still removes the namespaces it left. ``lab apiserver stop|start`` asks the
supervisor, over its control socket, to take the API server away and bring it back. Every command takes
``--prefix`` so several labs can run side by side; the default is ``pl``.

The commands are here; :mod:`.lab_supervisor` starts, follows, stops and sweeps up the supervisor
process, and :mod:`.lab_render` holds what the commands print.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

import click

from patronus.cli import lab_render, lab_supervisor
from patronus.kube.resource import PATH, POLICY, SITE
from patronus.kube.rest import RestClient
from patronus.lab import control, impair, network
from patronus.lab.files import LabFiles
from patronus.lab.manifests import LAB_NAMESPACE
from patronus.lab.supervisor import serve

_CONTROL_TIMEOUT_S = 150.0  # a start waits for /readyz, up to 90 s on a busy machine

_prefix_option = click.option(
    "--prefix", default="pl", show_default=True, help="The lab's name: prefix of its network namespaces."
)


def _require_root() -> None:
    if os.geteuid() != 0:
        raise click.ClickException("the lab needs root (network namespaces, veth pairs, nftables, TUN)")


@click.group("lab")
def lab_group() -> None:
    """A local SD-WAN lab: sites in network namespaces, a real control plane, the operator, agents."""


# -- up -----------------------------------------------------------------------------------------------


@lab_group.command("up")
@click.option("--sites", type=click.IntRange(2, 254), default=3, show_default=True, help="Number of sites.")
@_prefix_option
def lab_up(sites: int, prefix: str) -> None:
    """Start the lab in the background; prints the KUBECONFIG line once it is ready."""
    _require_root()
    files = LabFiles.for_prefix(prefix)
    ready = lab_supervisor.read_ready(files)
    if (pid := lab_supervisor.running_pid(files)) is not None and ready is not None:
        click.echo(f"# lab {prefix} already running (pid {pid})", err=True)
        click.echo(f"export KUBECONFIG={ready['kubeconfig']}")
        return
    if pid is not None:
        raise click.ClickException(f"lab {prefix} is starting or stopping (pid {pid}); try again later")
    if left := lab_supervisor.sweep(files):  # a supervisor killed with -9 leaves its namespaces behind
        click.echo(f"removed namespaces {', '.join(left)} left by an earlier lab {prefix}", err=True)
    process = lab_supervisor.spawn_supervisor(files, sites, prefix)
    click.echo(
        f"starting lab {prefix} with {sites} sites (pid {process.pid}, log {files.supervisor_log})", err=True
    )
    try:
        ready = lab_supervisor.wait_ready(files, process)
    except KeyboardInterrupt:
        click.echo("interrupted: stopping the lab", err=True)
        lab_supervisor.stop_supervisor(files, process.pid)
        lab_supervisor.sweep(files)
        raise click.Abort from None
    click.echo(f"export KUBECONFIG={ready['kubeconfig']}")
    lab_render.print_summary(files, ready)


# -- down ---------------------------------------------------------------------------------------------


@lab_group.command("down")
@_prefix_option
def lab_down(prefix: str) -> None:
    """Stop the lab; no namespace, interface or process of it is left (logs are kept)."""
    _require_root()
    files = LabFiles.for_prefix(prefix)
    pid = lab_supervisor.running_pid(files)
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
    elif lab_supervisor.stop_supervisor(files, pid):
        click.echo(f"the supervisor (pid {pid}) did not stop in time and was killed", err=True)
    if left := lab_supervisor.sweep(files):
        click.echo(f"removed leftover namespaces {', '.join(left)}", err=True)
    click.echo(f"lab {prefix} is down (logs in {files.logs})", err=True)


# -- status -------------------------------------------------------------------------------------------


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
    ready = lab_supervisor.read_ready(files)
    pid = lab_supervisor.running_pid(files)
    if pid is None or ready is None:
        click.echo(f"lab {prefix} is not running" + (" (still starting)" if pid else ""))
        raise SystemExit(1)
    click.echo(f"lab {prefix}: supervisor pid {pid}, KUBECONFIG={ready['kubeconfig']}")
    click.echo(f"Prometheus {ready.get('prometheus')}, dashboard {ready.get('dashboard')}\n")
    items = asyncio.run(_fetch(str(ready["kubeconfig"])))
    click.echo("\n\n".join(lab_render.status_tables(items)))


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
    click.echo(f"{link}: {lab_render.describe_impairment(wanted)}")


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
