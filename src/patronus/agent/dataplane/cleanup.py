"""Undo everything the data plane set up in a namespace; safe to call twice or on a half-built state.

Used when the agent stops for good (Site deleted) and by tests. Order matters only for tidiness: the
nftables table first (no more marking), then our ``ip rule`` entries and their tables, then each
interface's qdisc and the interface itself (which also stops wireguard-go).
"""

from __future__ import annotations

from collections.abc import Iterable

from patronus.agent.dataplane import qos, validate
from patronus.agent.dataplane.commands import CommandError, Runner, run
from patronus.agent.dataplane.routing import TABLE_NAME, remove_path_rules
from patronus.agent.dataplane.wireguard import remove_interface


def delete_table(netns: str | None = None, table_name: str = TABLE_NAME, runner: Runner = run) -> None:
    """Delete ``inet <table_name>`` if it exists."""
    command = ["nft", "delete", "table", "inet", validate.table(table_name)]
    result = runner(command, netns=netns, check=False)
    if result.returncode != 0 and "No such file" not in result.stderr:
        raise CommandError(command, result.returncode, result.stderr, result.stdout)


def teardown(
    netns: str | None,
    interfaces: Iterable[str],
    *,
    shaped_interfaces: Iterable[str] = (),
    table_name: str = TABLE_NAME,
    runner: Runner = run,
) -> None:
    """Remove our nft table, our ``ip rule`` entries (and flush their tables), qdiscs and ``interfaces``.

    ``interfaces`` are ours (WireGuard) and are deleted; ``shaped_interfaces`` are not ours (an underlay
    we shaped) and only lose their root qdisc.
    """
    delete_table(netns, table_name, runner)
    remove_path_rules(netns, runner=runner)
    for name in shaped_interfaces:
        qos.clear(name, netns, runner)
    for name in interfaces:
        qos.clear(name, netns, runner)
        remove_interface(name, netns=netns, runner=runner)
