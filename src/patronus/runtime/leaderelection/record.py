"""The pure part of leader election: the record a Lease holds, the records we write, and expiry as we
observe it (on our monotonic clock, from when we last saw the record change)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from patronus.kube.client import Object
from patronus.kube.timestamps import format_micro_time, parse_time


@dataclass(frozen=True, slots=True)
class LeaderElectionRecord:
    """The election-relevant part of a Lease's spec."""

    holder_identity: str = ""
    lease_duration_seconds: int = 0
    acquire_time: datetime | None = None
    renew_time: datetime | None = None
    leader_transitions: int = 0

    @classmethod
    def from_lease(cls, lease: Object) -> LeaderElectionRecord:
        spec = lease.get("spec") or {}
        return cls(
            holder_identity=str(spec.get("holderIdentity") or ""),
            lease_duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
            acquire_time=parse_time(spec.get("acquireTime")),
            renew_time=parse_time(spec.get("renewTime")),
            leader_transitions=int(spec.get("leaseTransitions") or 0),
        )

    def to_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "holderIdentity": self.holder_identity,
            "leaseDurationSeconds": self.lease_duration_seconds,
            "leaseTransitions": self.leader_transitions,
        }
        if self.acquire_time is not None:
            spec["acquireTime"] = format_micro_time(self.acquire_time)
        if self.renew_time is not None:
            spec["renewTime"] = format_micro_time(self.renew_time)
        return spec


def desired_record(
    identity: str, lease_duration_seconds: int, old: LeaderElectionRecord | None, wall: datetime
) -> LeaderElectionRecord:
    """The record that takes or keeps the lease: acquireTime kept while ours, else one more transition."""
    mine = LeaderElectionRecord(identity, lease_duration_seconds, wall, wall, 0)
    if old is None:
        return mine
    if old.holder_identity == identity:
        return replace(mine, acquire_time=old.acquire_time, leader_transitions=old.leader_transitions)
    return replace(mine, leader_transitions=old.leader_transitions + 1)


def released_record(old: LeaderElectionRecord, wall: datetime) -> LeaderElectionRecord:
    """What release() writes: no holder and a 1s lease, so a standby takes over on its next try."""
    return LeaderElectionRecord("", 1, wall, wall, old.leader_transitions)


@dataclass(slots=True)
class Observation:
    """The last lease record we saw and when it last changed, on our monotonic clock."""

    record: LeaderElectionRecord | None = None
    changed_at: float = 0.0

    def observe(self, record: LeaderElectionRecord, now: float) -> bool:
        """Remember ``record``; returns True (and restarts the expiry clock) when it differs from the last."""
        if record == self.record:
            return False
        self.record = record
        self.changed_at = now
        return True

    def held_by_other(self, identity: str, now: float) -> bool:
        """Someone else holds the lease and, as far as we have seen, still renews it."""
        record = self.record
        if record is None or not record.holder_identity or record.holder_identity == identity:
            return False
        return now < self.changed_at + record.lease_duration_seconds

    def expires_in(self, identity: str, now: float) -> float | None:
        """Seconds until another holder's lease expires as we observed it (None: not held by another)."""
        if not self.held_by_other(identity, now):
            return None
        assert self.record is not None
        return max(0.0, self.changed_at + self.record.lease_duration_seconds - now)

    def valid(self, now: float) -> bool:
        return self.record is not None and now < self.changed_at + self.record.lease_duration_seconds
