"""``patronus operator run``."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click


@click.group("operator")
def operator_group() -> None:
    """The Patronus operator (Site, Mesh, Path and Policy controllers)."""


@operator_group.command("run")
@click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Kubeconfig to use; default: $KUBECONFIG, then the in-cluster service account, then ~/.kube/config.",
)
def run(kubeconfig: Path | None) -> None:
    """Run the operator until SIGTERM. Configuration: environment variables and the
    patronus-operator-config ConfigMap (see the README); LOG_LEVEL=debug for debug logs."""
    from patronus.operator.main import run_operator  # noqa: PLC0415 - keep `patronus --help` fast

    sys.exit(asyncio.run(run_operator(kubeconfig=kubeconfig)))
