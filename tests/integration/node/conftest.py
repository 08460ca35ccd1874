"""Tests of the node run first in a session: `node_exclusive` tests start a node of their own (through
`patronus dev up --node`), which cannot run beside the session's `node_cluster` (one node per machine)."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.get_closest_marker("node_exclusive") is None)
