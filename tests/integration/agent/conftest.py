"""Fixtures of the agent's integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.netns import Pair, two_sites


@pytest.fixture
def pair() -> Iterator[Pair]:
    """Two sites in network namespaces joined by a veth pair; deleted with everything in them."""
    with two_sites() as env:
        yield env
