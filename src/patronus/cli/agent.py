"""``patronus agent run``: the SD-WAN core of one Site (in its pod, on a branch box, or in the lab)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import click


@click.group("agent")
def agent_group() -> None:
    """The site agent: WireGuard tunnels, path probes, failover, policy routing and QoS."""


@agent_group.command("run")
@click.option("--site", required=True, help="Name of the Site this agent runs.")
@click.option(
    "--namespace",
    default=lambda: os.environ.get("POD_NAMESPACE", "default"),
    show_default="$POD_NAMESPACE",
    help="Namespace of the Site.",
)
@click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Kubeconfig; default: $KUBECONFIG, then the in-cluster service account.",
)
@click.option(
    "--key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File with the WireGuard private key; default: read the Site's key Secret via the API.",
)
@click.option("--probe-port", type=int, default=None, help="UDP port for path probes (default 51900).")
def run(
    site: str, namespace: str, kubeconfig: Path | None, key_file: Path | None, probe_port: int | None
) -> None:
    """Run the agent until SIGTERM; it removes its interfaces, rules and qdiscs on the way out."""
    from patronus.agent.runtime import PROBE_PORT, AgentOptions, SiteAgent  # noqa: PLC0415
    from patronus.kube.rest import RestClient  # noqa: PLC0415
    from patronus.runtime.logs import configure_logging  # noqa: PLC0415

    configure_logging(os.environ.get("LOG_LEVEL", "info"), os.environ.get("LOG_FORMAT", "json"))
    options = AgentOptions(
        site=site, namespace=namespace, key_file=key_file, probe_port=probe_port or PROBE_PORT
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        async with RestClient.from_kubeconfig(kubeconfig, field_manager="patronus-agent") as rest:
            await SiteAgent(options, rest).run(stop)

    asyncio.run(main())
    sys.exit(0)
