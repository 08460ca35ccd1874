"""``patronus agent run``: the SD-WAN core of one Site (in its pod, on a branch box, or in the lab)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import click

from patronus.agent.keys import DEFAULT_SECRET_KEY, KeyFile, KeySecret, KeySource

DEFAULT_HEALTH_PORT = 8081
DEFAULT_METRICS_PORT = 9102
DEFAULT_PROBE_PORT = 51900
API_TIMEOUT_SECONDS = 10.0


@click.group("agent")
def agent_group() -> None:
    """The site agent: WireGuard tunnels, path probes, failover, policy routing and QoS."""


def _key_source(key_file: Path | None, key_secret: str | None, key_secret_key: str) -> KeySource:
    if (key_file is None) == (key_secret is None):
        raise click.UsageError("give exactly one of --key-file and --key-secret")
    return KeyFile(key_file) if key_file is not None else KeySecret(str(key_secret), key_secret_key)


@agent_group.command("run")
@click.option("--site", required=True, help="Name of the Site this agent runs.")
@click.option(
    "--namespace",
    default=lambda: os.environ.get("POD_NAMESPACE", "default"),
    show_default="$POD_NAMESPACE",
    help="Namespace of the Site.",
)
@click.option(
    "--config-map",
    required=True,
    help="The ConfigMap with this site's rendered configuration (the name the operator gave it; "
    "Site status.configMap shows it). Changes are applied live.",
)
@click.option(
    "--heartbeat-lease",
    default=None,
    help="The Lease the operator made for this agent's heartbeat (Site status.heartbeatLease shows it); "
    "renewed every 10 s. Without it the heartbeat goes into the Site status every 10 s.",
)
@click.option(
    "--key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File with the WireGuard private key (a mounted Secret, or a branch box's key).",
)
@click.option("--key-secret", default=None, help="Or: the Secret with the private key, read through the API.")
@click.option(
    "--key-secret-key", default=DEFAULT_SECRET_KEY, show_default=True, help="The key in --key-secret's data."
)
@click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Kubeconfig; default: $KUBECONFIG, then the in-cluster service account.",
)
@click.option("--probe-port", type=click.IntRange(1, 65535), default=DEFAULT_PROBE_PORT, show_default=True,
              help="UDP port for path probes (answered on the overlay address only).")  # fmt: skip
@click.option(
    "--health-address", default="0.0.0.0", show_default=True, help="Address for /healthz and /ready."
)
@click.option("--health-port", type=click.IntRange(0, 65535), default=DEFAULT_HEALTH_PORT, show_default=True,
              help="Port for /healthz and /ready; 0 serves none.")  # fmt: skip
@click.option("--metrics-address", default="0.0.0.0", show_default=True, help="Address for /metrics.")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=DEFAULT_METRICS_PORT,
              show_default=True, help="Prometheus exporter port (/metrics); 0 serves none.")  # fmt: skip
def run(
    *,
    site: str,
    namespace: str,
    config_map: str,
    heartbeat_lease: str | None,
    key_file: Path | None,
    key_secret: str | None,
    key_secret_key: str,
    kubeconfig: Path | None,
    probe_port: int,
    health_address: str,
    health_port: int,
    metrics_address: str,
    metrics_port: int,
) -> None:
    """Run the agent until SIGTERM, or until its Site is deleted; either way it removes its interfaces,
    rules, nftables tables and qdiscs first, and exits 0.

    The agent applies each new configuration live, and refuses one that fails validation (a Warning
    Event on the Site and status.agent.configError) while the last good one keeps running.
    """
    from patronus.agent.agent import AgentOptions, SiteAgent  # noqa: PLC0415
    from patronus.kube.rest import RestClient  # noqa: PLC0415
    from patronus.runtime.logs import configure_logging  # noqa: PLC0415

    key = _key_source(key_file, key_secret, key_secret_key)
    configure_logging(os.environ.get("LOG_LEVEL", "info"), os.environ.get("LOG_FORMAT", "json"))
    options = AgentOptions(
        site=site,
        namespace=namespace,
        config_map=config_map,
        heartbeat_lease=heartbeat_lease,
        key=key,
        probe_port=probe_port,
        health_address=health_address,
        health_port=health_port or None,
        metrics_address=metrics_address,
        metrics_port=metrics_port or None,
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        async with RestClient.from_kubeconfig(
            kubeconfig, field_manager="patronus-agent", timeout=API_TIMEOUT_SECONDS
        ) as rest:
            await SiteAgent(options, rest).run(stop)

    asyncio.run(main())
    sys.exit(0)
