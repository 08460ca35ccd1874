"""A leader Lease that cannot be taken at all (no namespace, no rights) is said once, with the fix."""

from __future__ import annotations

import pytest

from patronus.kube.errors import ApiError, NotFoundError
from patronus.kube.fake import FakeKube
from patronus.kube.resource import LEASE
from patronus.runtime.clock import FakeClock
from patronus.runtime.leaderelection import LeaderElectionConfig, LeaderElector


def elector(kube: FakeKube) -> LeaderElector:
    config = LeaderElectionConfig("patronus-operator", "patronus-system", "pod-a")
    return LeaderElector(kube, config, clock=FakeClock())


@pytest.mark.parametrize(
    ("error", "hint"),
    [
        (
            NotFoundError(404, "NotFound", 'namespaces "patronus-system" not found'),
            "kubectl create namespace",
        ),
        (ApiError(403, "Forbidden", "leases is forbidden"), "grant the operator's ServiceAccount"),
    ],
)
async def test_a_lease_that_cannot_be_taken_is_a_problem_until_it_can(error: ApiError, hint: str) -> None:
    kube = FakeKube()
    candidate = elector(kube)
    kube.fail_next(error, verb="create", kind=LEASE, times=2)
    assert not await candidate._try_acquire_or_renew()
    assert candidate.problem is not None
    assert hint in candidate.problem
    assert "patronus-system" in candidate.problem
    assert not await candidate._try_acquire_or_renew()
    assert await candidate._try_acquire_or_renew(), "the namespace appeared"
    assert candidate.problem is None


async def test_someone_else_holding_the_lease_is_no_problem() -> None:
    kube = FakeKube()
    assert await elector(kube)._try_acquire_or_renew()
    other = LeaderElector(kube, LeaderElectionConfig("patronus-operator", "patronus-system", "pod-b"))
    assert not await other._try_acquire_or_renew()
    assert other.problem is None
