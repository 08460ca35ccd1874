"""The pure part of leader election: config checks, the records we write, and expiry as we observe it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from patronus.runtime.leaderelection import (
    LeaderElectionConfig,
    LeaderElectionRecord,
    Observation,
    desired_record,
    released_record,
)

T0 = datetime(2025, 1, 1, 12, 0, 0, 500, tzinfo=UTC)
T1 = datetime(2025, 1, 1, 12, 0, 5, 500, tzinfo=UTC)


def test_config_defaults_are_the_operator_contract():
    config = LeaderElectionConfig("patronus-operator", "patronus-system", "pod-a")
    assert (config.lease_duration, config.renew_deadline, config.retry_period) == (15.0, 10.0, 2.0)
    assert config.release_on_cancel
    assert config.lease_duration_seconds == 15


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"lease_duration": 10, "renew_deadline": 10},
            "lease_duration .* must be longer than renew_deadline",
        ),
        (
            {"renew_deadline": 2.4, "retry_period": 2},
            r"renew_deadline .* must be longer than 1.2 x retry_period",
        ),
        ({"retry_period": 0}, "retry_period .* must be positive"),
        ({"lease_duration": 0.9, "renew_deadline": 0.5, "retry_period": 0.1}, "at least 1s"),
        ({"identity": ""}, "identity"),
        ({"lease_name": ""}, "lease name"),
    ],
)
def test_config_rejects_unsafe_settings(kwargs, message):
    args = {"lease_name": "l", "lease_namespace": "ns", "identity": "me", **kwargs}
    with pytest.raises(ValueError, match=message):
        LeaderElectionConfig(**args)


def test_taking_a_free_lease_counts_a_transition_keeping_it_does_not():
    taken = desired_record("a", 15, None, T0)
    assert taken == LeaderElectionRecord("a", 15, T0, T0, 0)
    renewed = desired_record("a", 15, taken, T1)
    assert renewed == LeaderElectionRecord("a", 15, T0, T1, 0)  # acquireTime kept
    stolen = desired_record("b", 15, renewed, T1)
    assert stolen == LeaderElectionRecord("b", 15, T1, T1, 1)


def test_release_clears_the_holder_and_shortens_the_lease():
    record = LeaderElectionRecord("a", 15, T0, T0, 4)
    assert released_record(record, T1) == LeaderElectionRecord("", 1, T1, T1, 4)


def test_record_round_trips_through_a_lease():
    record = LeaderElectionRecord("a", 15, T0, T1, 2)
    lease = {"metadata": {"name": "l"}, "spec": record.to_spec()}
    assert LeaderElectionRecord.from_lease(lease) == record
    assert LeaderElectionRecord.from_lease({"metadata": {"name": "l"}}) == LeaderElectionRecord()


def test_micro_time_always_has_six_fractional_digits():
    whole = datetime(2025, 1, 1, tzinfo=UTC)
    spec = LeaderElectionRecord("a", 15, whole, whole, 0).to_spec()
    assert spec["renewTime"] == "2025-01-01T00:00:00.000000Z"
    assert LeaderElectionRecord.from_lease({"spec": spec}).renew_time == whole


def test_expiry_is_measured_from_when_we_saw_the_record_change():
    seen = Observation()
    other = LeaderElectionRecord("b", 15, T0, T0, 0)
    assert seen.observe(other, now=100.0)
    assert seen.held_by_other("a", now=114.9)
    assert not seen.held_by_other("a", now=115.0)  # unchanged for a whole lease duration: expired
    # The same record again (no renewal) does not restart the clock ...
    assert not seen.observe(other, now=110.0)
    assert not seen.held_by_other("a", now=115.0)
    # ... a renewal does, whatever wall-clock time the holder wrote.
    assert seen.observe(LeaderElectionRecord("b", 15, T0, T0.replace(year=1999), 0), now=114.0)
    assert seen.held_by_other("a", now=128.0)


def test_a_released_or_own_lease_is_not_held_by_another():
    seen = Observation()
    seen.observe(LeaderElectionRecord("", 1, T0, T0, 3), now=0.0)
    assert not seen.held_by_other("a", now=0.0)
    seen.observe(LeaderElectionRecord("a", 15, T0, T0, 3), now=0.0)
    assert not seen.held_by_other("a", now=0.0)
    assert seen.held_by_other("b", now=0.0)
    assert seen.valid(14.0)
    assert not seen.valid(15.0)
