"""``patronus dashboard``: the read-only web UI of one namespace's SD-WAN."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import click


@click.command("dashboard")
@click.option(
    "--namespace",
    default=lambda: os.environ.get("POD_NAMESPACE", "default"),
    show_default="$POD_NAMESPACE or default",
    help="Namespace whose Sites, Paths, Policies and Events to show.",
)
@click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Kubeconfig; default: $KUBECONFIG, then the in-cluster service account.",
)
@click.option("--bind", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8090, show_default=True, help="0: any free port."
)
@click.option("--prometheus-url", default=None, help="Read path history from this Prometheus.")
@click.option(
    "--auth/--no-auth",
    default=True,
    show_default=True,
    help="Require a bearer token that may list Sites (TokenReview + SubjectAccessReview); "
    "--no-auth only on loopback.",
)
@click.option("--url-file", type=click.Path(dir_okay=False, path_type=Path), default=None, hidden=True)
def dashboard(
    *,
    namespace: str,
    kubeconfig: Path | None,
    bind: str,
    port: int,
    prometheus_url: str | None,
    auth: bool,
    url_file: Path | None,
) -> None:
    """Serve the dashboard until SIGTERM; prints its URL once it listens."""
    from patronus.dashboard.app import DashboardOptions, check_options, serve  # noqa: PLC0415
    from patronus.kube.rest import RestClient  # noqa: PLC0415
    from patronus.runtime.logs import configure_logging  # noqa: PLC0415

    options = DashboardOptions(namespace, bind, port, prometheus_url, auth)
    try:
        check_options(options)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--no-auth") from error
    configure_logging(os.environ.get("LOG_LEVEL", "info"), os.environ.get("LOG_FORMAT", "json"))

    def listening(url: str) -> None:
        click.echo(f"dashboard: {url}", err=True)
        if url_file is not None:
            url_file.write_text(url + "\n")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        async with RestClient.from_kubeconfig(kubeconfig, field_manager="patronus-dashboard") as rest:
            await serve(options, rest, stop, listening)

    asyncio.run(main())
