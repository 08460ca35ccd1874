"""The chart's unit tests share one Helm home per module."""

from __future__ import annotations

import pytest

from tests.support.helm import Helm


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(home=tmp_path_factory.mktemp("helm"))
