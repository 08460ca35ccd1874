"""What a candidate is configured with, checked as client-go's ``NewLeaderElector`` checks it."""

from __future__ import annotations

from dataclasses import dataclass

JITTER_FACTOR = 1.2  # client-go's leaderelection.JitterFactor


@dataclass(frozen=True, slots=True)
class LeaderElectionConfig:
    """One candidate: the Lease it competes for, its identity, and client-go's three timings."""

    lease_name: str
    lease_namespace: str
    identity: str
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    release_on_cancel: bool = True
    jitter_factor: float = JITTER_FACTOR

    def __post_init__(self) -> None:
        # client-go's NewLeaderElector checks, with the reason each matters.
        if not self.lease_name or not self.lease_namespace:
            raise ValueError("leader election needs a lease name and namespace")
        if not self.identity:
            raise ValueError("leader election needs a non-empty identity")
        if self.retry_period <= 0:
            raise ValueError(f"retry_period ({self.retry_period}s) must be positive")
        if self.lease_duration < 1:
            raise ValueError(f"lease_duration ({self.lease_duration}s) must be at least 1s (whole seconds)")
        if self.lease_duration <= self.renew_deadline:
            raise ValueError(
                f"lease_duration ({self.lease_duration}s) must be longer than renew_deadline "
                f"({self.renew_deadline}s), or a standby could take over before the leader steps down"
            )
        if self.renew_deadline <= JITTER_FACTOR * self.retry_period:
            raise ValueError(
                f"renew_deadline ({self.renew_deadline}s) must be longer than {JITTER_FACTOR} x retry_period "
                f"({self.retry_period}s), or a single slow retry would cost the lease"
            )
        if self.jitter_factor < 0:
            raise ValueError("jitter_factor must not be negative")

    @property
    def lease_duration_seconds(self) -> int:
        return int(self.lease_duration)  # client-go truncates too
