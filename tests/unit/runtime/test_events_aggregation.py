"""The pure parts of event recording: keys, aggregation, the token bucket spam filter (on a fake clock)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from patronus.runtime.clock import FakeClock
from patronus.runtime.events import (
    EventCorrelator,
    EventRecorder,
    ObjectRef,
    SpamFilter,
    TokenBucket,
    event_name,
)


def obj(name: str = "site-a", uid: str = "uid-1", rv: str = "1", namespace: str = "ns") -> dict:
    return {
        "apiVersion": "patronus.dev/v1alpha1",
        "kind": "Site",
        "metadata": {"name": name, "namespace": namespace, "uid": uid, "resourceVersion": rv},
    }


REF = ObjectRef.from_object(obj())


def correlator(clock: FakeClock, **kwargs) -> EventCorrelator:
    return EventCorrelator(component="patronus-operator", host="node-1", **kwargs)


def emit(
    c: EventCorrelator, clock: FakeClock, *, ref: ObjectRef = REF, type_="Warning", reason="R", message="m"
):
    return c.correlate(ref, type_, reason, message, now=clock.monotonic(), wall=clock.now())


def test_object_ref_from_an_object():
    assert ObjectRef("patronus.dev/v1alpha1", "Site", "site-a", "ns", "uid-1", "1") == REF
    assert REF.event_namespace == "ns"
    node = ObjectRef.from_object({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "uid": "u"}})
    assert (node.kind, node.name, node.namespace, node.event_namespace) == ("Node", "n1", "", "default")
    with pytest.raises(ValueError, match=r"metadata\.name"):
        ObjectRef.from_object({"apiVersion": "v1", "kind": "Pod", "metadata": {}})


def test_a_repeat_within_the_window_patches_the_same_event():
    clock = FakeClock()
    c = correlator(clock)
    first = emit(c, clock)
    clock.advance(30)
    second = emit(c, clock)
    clock.advance(30)
    third = emit(c, clock)
    assert first is not None
    assert second is not None
    assert third is not None
    assert first.action == "create"
    assert first.count == 1
    assert (second.action, second.count, third.action, third.count) == ("patch", 2, "patch", 3)
    assert first.name == second.name == third.name
    assert third.first_timestamp == first.first_timestamp
    assert third.last_timestamp == first.first_timestamp + timedelta(seconds=60)


def test_without_aggregation_every_repeat_is_a_new_event_and_the_spam_filter_still_holds():
    # A writer allowed to create Events but not patch them (a site agent's Role).
    clock = FakeClock()
    c = correlator(clock, aggregate=False, spam_filter=SpamFilter(burst=3, refill_per_second=0.0))
    writes = [emit(c, clock) for _ in range(5)]
    made = [w for w in writes if w is not None]
    assert [(w.action, w.count) for w in made] == [("create", 1)] * 3
    assert len({w.name for w in made}) == 3
    assert writes[3:] == [None, None]


@pytest.mark.parametrize(
    "change",
    [
        {"type_": "Normal"},
        {"reason": "Other"},
        {"message": "different"},
        {"ref": ObjectRef.from_object(obj(name="site-b", uid="uid-2"))},
        {"ref": ObjectRef.from_object(obj(uid="uid-recreated"))},  # same name, a new object
    ],
)
def test_any_difference_in_the_key_makes_a_new_event(change):
    clock = FakeClock()
    c = correlator(clock)
    first = emit(c, clock)
    other = emit(c, clock, **change)
    assert first is not None
    assert other is not None
    assert other.action == "create"
    assert other.count == 1
    assert other.name != first.name


def test_resource_version_is_not_part_of_the_key():
    clock = FakeClock()
    c = correlator(clock)
    emit(c, clock, ref=ObjectRef.from_object(obj(rv="1")))
    again = emit(c, clock, ref=ObjectRef.from_object(obj(rv="2")))
    assert again is not None
    assert (again.action, again.count) == ("patch", 2)
    assert again.ref.resource_version == "2"


def test_a_repeat_after_the_window_starts_a_new_event():
    clock = FakeClock()
    c = correlator(clock, window=600)
    first = emit(c, clock)
    clock.advance(601)
    later = emit(c, clock)
    assert first is not None
    assert later is not None
    assert (later.action, later.count) == ("create", 1)
    assert later.name != first.name


def test_event_names_follow_client_go_and_stay_unique_on_a_frozen_clock():
    clock = FakeClock()
    c = correlator(clock)
    names = {emit(c, clock, message=str(i)).name for i in range(5)}  # type: ignore[union-attr]
    assert len(names) == 5
    assert all(name.startswith("site-a.") for name in names)
    long = event_name("x" * 300, 1)
    assert len(long) <= 253
    assert long.endswith(".1")


def test_messages_are_truncated_before_keying():
    clock = FakeClock()
    c = correlator(clock)
    first = emit(c, clock, message="a" * 2000)
    second = emit(c, clock, message="a" * 1024 + "b")
    assert first is not None
    assert second is not None
    assert len(first.message) == 1024
    assert (second.action, second.count) == ("patch", 2)


def test_token_bucket_burst_and_refill():
    bucket = TokenBucket(burst=3, refill_per_second=0.5, now=0.0)
    assert [bucket.try_take(0.0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.try_take(1.0)  # half a token
    assert bucket.try_take(2.0)
    assert not bucket.try_take(2.0)
    assert [bucket.try_take(100.0) for _ in range(4)] == [True, True, True, False]  # capped at burst


def test_spam_filter_defaults_are_client_go_and_per_object():
    spam = SpamFilter()
    assert (spam.burst, spam.refill_per_second) == (25, 1 / 300)
    assert sum(spam.allow("a", 0.0) for _ in range(100)) == 25
    assert spam.allow("b", 0.0)  # another object has its own bucket
    assert not spam.allow("a", 299.0)
    assert spam.allow("a", 301.0)  # one token per five minutes


def test_spam_filter_forgets_the_least_recently_used_objects():
    spam = SpamFilter(burst=1, max_keys=2)
    assert spam.allow("a", 0.0)
    assert spam.allow("b", 0.0)
    assert spam.allow("c", 0.0)  # evicts "a"
    assert spam.allow("a", 0.0)  # a fresh bucket


def test_correlator_drops_the_excess_but_keeps_counting():
    clock = FakeClock()
    c = correlator(clock, spam_filter=SpamFilter(burst=2, refill_per_second=1 / 300))
    results = [emit(c, clock) for _ in range(5)]
    assert [r is not None for r in results] == [True, True, False, False, False]
    clock.advance(300)
    after = emit(c, clock)
    assert after is not None
    assert (after.action, after.count) == ("patch", 6)  # the dropped repeats still counted


def test_spam_is_judged_per_object_not_per_reason():
    clock = FakeClock()
    c = correlator(clock, spam_filter=SpamFilter(burst=3))
    outcomes = [emit(c, clock, reason=f"R{i}") for i in range(4)]
    assert [o is not None for o in outcomes] == [True, True, True, False]
    assert emit(c, clock, ref=ObjectRef.from_object(obj(name="quiet", uid="u2"))) is not None


def test_recorder_drops_and_counts_when_its_queue_is_full():
    clock = FakeClock()
    drops: list[str] = []
    recorder = EventRecorder(None, "patronus-operator", clock=clock, max_queue=3, on_drop=drops.append)  # type: ignore[arg-type]
    for i in range(5):
        recorder.event(obj(), "Normal", "Synced", f"message {i}")
    assert drops == ["queue_full", "queue_full"]
    assert recorder.dropped == {"queue_full": 2}
    assert recorder.dropped_total == 2


def test_recorder_rejects_unknown_event_types():
    recorder = EventRecorder(None, "patronus-operator", clock=FakeClock())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Normal or Warning"):
        recorder.event(obj(), "Error", "R", "m")  # type: ignore[arg-type]
