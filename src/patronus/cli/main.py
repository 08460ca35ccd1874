"""``patronus``: generate CRDs, run a local control plane, and (in later commands) the operator and agent."""

from __future__ import annotations

from pathlib import Path

import click

from patronus import __version__
from patronus.api.crd import render_all_yaml, write_crds
from patronus.cli.agent import agent_group
from patronus.cli.dashboard import dashboard
from patronus.cli.dev import controlplane_group, dev_group
from patronus.cli.lab import lab_group
from patronus.cli.operator import operator_group


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="patronus")
def cli() -> None:
    """Patronus: an SD-WAN operator for Kubernetes."""


@cli.command()
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write one file per CRD into this directory instead of printing them.",
)
def crds(out_dir: Path | None) -> None:
    """Print the CustomResourceDefinitions (Site, Path, Policy, Mesh) as YAML."""
    if out_dir is None:
        click.echo(render_all_yaml(), nl=False)
        return
    for path in write_crds(out_dir):
        click.echo(f"wrote {path}", err=True)


cli.add_command(dev_group)
cli.add_command(controlplane_group)
cli.add_command(operator_group)
cli.add_command(lab_group)
cli.add_command(agent_group)
cli.add_command(dashboard)


def main() -> None:
    cli()
