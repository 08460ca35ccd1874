"""``patronus dev`` and ``patronus controlplane``: a local control plane for people and for scripts.

``dev up`` starts ``controlplane run`` as a detached process that owns etcd, kube-apiserver and
kube-controller-manager (and with ``--node`` a node that runs pods: containerd, kubelet, kube-proxy,
kube-scheduler), waits until it is ready, and prints the ``export KUBECONFIG=...`` line; ``dev down``
sends it SIGTERM, which stops the components and removes their files and every change to the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import click

DEV_HOME = Path(os.environ.get("PATRONUS_CACHE", Path.home() / ".cache" / "patronus")) / "dev"
_STARTUP_TIMEOUT_S = 180.0
# A node first deletes its pods, then stops and unmounts everything; SIGKILL would leave that to a sweep.
_SHUTDOWN_TIMEOUT_S = 120.0


def _pid_file() -> Path:
    return DEV_HOME / "controlplane.pid"


def _kubeconfig() -> Path:
    return DEV_HOME / "kubeconfig"


def _log() -> Path:
    return DEV_HOME / "controlplane.log"


def _running_pid() -> int | None:
    try:
        pid = int(_pid_file().read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


@click.group("controlplane")
def controlplane_group() -> None:
    """Run the real Kubernetes control plane built from upstream sources."""


@controlplane_group.command("run")
@click.option(
    "--kubeconfig-out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Where to copy the admin kubeconfig once the API server is ready.",
)
@click.option(
    "--controller-manager/--no-controller-manager",
    default=True,
    show_default=True,
    help="Also run kube-controller-manager (garbage collection, namespaces, deployments).",
)
@click.option(
    "--crds/--no-crds", "with_crds", default=True, show_default=True, help="Install the Patronus CRDs."
)
@click.option(
    "--node/--no-node",
    default=False,
    show_default=True,
    help="Also run a node with the project's images (root; the API server then binds to the node's link).",
)
def run_controlplane(kubeconfig_out: Path, controller_manager: bool, with_crds: bool, node: bool) -> None:
    """Start the control plane in the foreground until SIGTERM or Ctrl-C."""
    from patronus.controlplane import ControlPlane  # noqa: PLC0415
    from patronus.lab.files import write_atomic  # noqa: PLC0415

    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())

    components = ["etcd", "kube-apiserver"]
    components += ["kube-controller-manager"] if controller_manager or node else []
    components += ["a node (containerd, kubelet, kube-proxy, kube-scheduler)"] if node else []
    click.echo(f"starting {', '.join(components)}", err=True)
    started = time.monotonic()
    with ControlPlane(controller_manager=controller_manager, node=node) as plane:
        if with_crds:
            names = asyncio.run(_install_crds(plane.kubeconfig))
            click.echo(f"installed CRDs: {', '.join(names)}", err=True)
        write_atomic(kubeconfig_out, plane.kubeconfig.read_text(), 0o600)  # the admin's key: owner only
        click.echo(f"ready in {time.monotonic() - started:.1f}s at {plane.url}", err=True)
        click.echo(f"export KUBECONFIG={kubeconfig_out}")
        sys.stdout.flush()
        while not stopping.wait(0.5):
            dead = [p.pid for p in plane.processes() if p.poll() is not None]
            if dead:
                click.echo(f"a component exited unexpectedly (pids {dead}); stopping", err=True)
                break
    kubeconfig_out.unlink(missing_ok=True)
    click.echo("control plane stopped", err=True)


async def _install_crds(kubeconfig: Path) -> list[str]:
    from patronus.kube.crds import install_crds  # noqa: PLC0415
    from patronus.kube.rest import RestClient  # noqa: PLC0415

    async with RestClient.from_kubeconfig(kubeconfig) as client:
        return await install_crds(client)


@click.group("dev")
def dev_group() -> None:
    """A local control plane (with the CRDs) for trying Patronus with kubectl."""


@dev_group.command("up")
@click.option(
    "--node",
    is_flag=True,
    help="Also run a node that runs pods, with the project's images imported (root; builds them if needed).",
)
def dev_up(node: bool) -> None:
    """Start the local control plane in the background and print the KUBECONFIG line."""
    if (pid := _running_pid()) is not None and _kubeconfig().exists():
        click.echo(f"# already running (pid {pid})", err=True)
        click.echo(f"export KUBECONFIG={_kubeconfig()}")
        return
    DEV_HOME.mkdir(parents=True, exist_ok=True)
    _kubeconfig().unlink(missing_ok=True)
    env = dict(os.environ)
    if node:
        env.update(_build_for_node())
    with _log().open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "patronus",
                "controlplane",
                "run",
                f"--kubeconfig-out={_kubeconfig()}",
                *(["--node"] if node else []),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    _pid_file().write_text(f"{process.pid}\n")
    click.echo(f"starting the control plane (pid {process.pid}, log {_log()}) ...", err=True)
    from patronus.controlplane.node import node_lock_timeout_s  # noqa: PLC0415

    deadline = time.monotonic() + _STARTUP_TIMEOUT_S + (node_lock_timeout_s() if node else 0)
    while not _kubeconfig().exists():
        if process.poll() is not None or time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            _pid_file().unlink(missing_ok=True)
            raise click.ClickException(
                f"the control plane did not start; see {_log()}:\n{_log().read_text()[-3000:]}"
            )
        time.sleep(0.2)
    click.echo(f"export KUBECONFIG={_kubeconfig()}")


def _build_for_node() -> dict[str, str]:
    """Build (or find) the binaries and images here, where a cold build's progress can be seen."""
    from patronus.controlplane import Binaries, ControlPlaneError, ImageSet  # noqa: PLC0415

    if os.geteuid() != 0:
        raise click.ClickException("a node needs root (network namespace, cgroups, mounts)")
    try:
        binaries, images = Binaries.locate(), ImageSet.locate()
    except ControlPlaneError as error:
        raise click.ClickException(str(error)) from error
    return {
        "PATRONUS_CONTROLPLANE_DIR": str(binaries.directory),
        "PATRONUS_IMAGES_DIR": str(images.directory),
    }


@dev_group.command("down")
def dev_down() -> None:
    """Stop the local control plane; nothing of it is left running."""
    pid = _running_pid()
    if pid is None:
        click.echo("the dev control plane is not running", err=True)
        _pid_file().unlink(missing_ok=True)
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + _SHUTDOWN_TIMEOUT_S
    while _running_pid() == pid and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.2)
    if _running_pid() == pid:
        os.killpg(pid, signal.SIGKILL)
    _pid_file().unlink(missing_ok=True)
    click.echo("the dev control plane is stopped", err=True)


@dev_group.command("status")
def dev_status() -> None:
    """Say whether the local control plane runs, and how to reach it."""
    pid = _running_pid()
    if pid is None:
        click.echo("not running (start it with: patronus dev up)")
        raise SystemExit(1)
    click.echo(f"running (pid {pid})\nexport KUBECONFIG={_kubeconfig()}")
