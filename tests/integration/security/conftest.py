"""The in-process operator of tests/integration/operator, for the attacks here."""

from tests.integration.operator.conftest import eventually, operator

__all__ = ["eventually", "operator"]
