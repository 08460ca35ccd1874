"""Marks tests by folder (tests/integration needs the real control plane, tests/e2e a cluster) and makes
root-only tests fail loudly, not skip, where they cannot run: CI runs as root, and a suite that quietly
skipped its network-namespace tests would prove nothing. Set PATRONUS_SKIP_ROOT_TESTS=1 to skip them on
purpose (a developer machine without root)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(item.fspath).relative_to(_HERE).parts
        if parts and parts[0] in ("integration", "e2e"):
            item.add_marker(getattr(pytest.mark, parts[0]))


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("root") is None or os.geteuid() == 0:
        return
    if os.environ.get("PATRONUS_SKIP_ROOT_TESTS") == "1":
        pytest.skip(
            "needs root (network namespaces, veth, nftables, TUN); skipped: PATRONUS_SKIP_ROOT_TESTS=1"
        )
    pytest.fail(
        "this test needs root (network namespaces, veth, nftables, TUN) and `make test` runs it: run as "
        "root, or set PATRONUS_SKIP_ROOT_TESTS=1 to skip root-only tests on purpose",
        pytrace=False,
    )
