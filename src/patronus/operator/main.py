"""``patronus operator run``: configuration, clients, the manager and the controllers, wired together.

Configuration comes from the environment and the ``patronus-operator-config`` ConfigMap (environment
wins). A bad value stops start-up with a message naming the key, the value and where it came from.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from patronus.kube.client import KubeClient
from patronus.kube.errors import ApiError, NotFoundError
from patronus.kube.resource import CONFIG_MAP
from patronus.kube.rest import RestClient, load_kube_config
from patronus.operator.config import ConfigError, OperatorConfig, load_config
from patronus.operator.wiring import register as register_controllers
from patronus.runtime.logs import configure_logging, get_logger
from patronus.runtime.manager import EXIT_FAILED, Manager, ManagerOptions

log = get_logger(__name__)

Register = Callable[[Manager, OperatorConfig], None]

FIELD_MANAGER = "patronus-operator"


def manager_options(config: OperatorConfig) -> ManagerOptions:
    return ManagerOptions(
        identity=config.identity,
        watch_namespaces=config.watch_namespaces,
        max_concurrent_reconciles=config.max_concurrent_reconciles,
        resync_period=config.reconcile_interval,
        leader_election=config.leader_election_enabled,
        lease_name=config.leader_election_id,
        lease_namespace=config.leader_election_namespace,
        lease_duration=config.leader_election_lease_duration,
        renew_deadline=config.leader_election_renew_deadline,
        retry_period=config.leader_election_retry_period,
        bind_address=config.bind_address,
        metrics_port=config.metrics_port,
        health_probe_port=config.health_probe_port,
    )


async def read_config_map(client: KubeClient, namespace: str, name: str) -> dict[str, str] | None:
    """The ConfigMap's data, or None when it does not exist (the defaults and environment then apply)."""
    try:
        config_map = await client.get(CONFIG_MAP, namespace, name)
    except NotFoundError:
        return None
    data: dict[str, str] = config_map.get("data") or {}
    return data


async def run_operator(
    environ: Mapping[str, str] | None = None,
    *,
    kubeconfig: str | Path | None = None,
    register: Register = register_controllers,
) -> int:
    """Run the operator until SIGTERM; returns the process exit code."""
    environ = os.environ if environ is None else environ
    try:
        bootstrap = load_config(environ)  # enough to find the ConfigMap and to log sensibly
    except ConfigError as error:
        _report_config_error(error)
        return EXIT_FAILED
    configure_logging(bootstrap.log_level, bootstrap.log_format)

    kube_config = load_kube_config(kubeconfig)
    client = RestClient.from_kube_config(kube_config, field_manager=FIELD_MANAGER)
    try:
        namespace = bootstrap.pod_namespace or bootstrap.leader_election_namespace
        try:
            data = await read_config_map(client, namespace, bootstrap.config_map_name)
        except ApiError as error:
            log.warning(
                "cannot read the operator ConfigMap; using the environment and defaults",
                namespace=namespace,
                name=bootstrap.config_map_name,
                error=str(error),
            )
            data = None
        try:
            config = load_config(environ, data, configmap_name=f"{namespace}/{bootstrap.config_map_name}")
        except ConfigError as error:
            _report_config_error(error)
            return EXIT_FAILED
        configure_logging(config.log_level, config.log_format)
        manager = Manager(manager_options(config), client)
        register(manager, config)
        return await manager.run()
    finally:
        await client.close()


def _report_config_error(error: ConfigError) -> None:
    print("patronus operator: invalid configuration:", file=sys.stderr)
    for problem in error.problems:
        print(f"  {problem}", file=sys.stderr)
