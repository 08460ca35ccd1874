"""client-go's rate limiters: exponential per item, token bucket overall, max of both."""

from __future__ import annotations

import pytest

from patronus.runtime.clock import FakeClock
from patronus.runtime.ratelimit import (
    BucketRateLimiter,
    ItemExponentialFailureRateLimiter,
    MaxOfRateLimiter,
    default_controller_rate_limiter,
)


def test_exponential_backoff_doubles_from_5ms() -> None:
    limiter = ItemExponentialFailureRateLimiter()
    delays = [limiter.when("a") for _ in range(5)]
    assert delays == pytest.approx([0.005, 0.010, 0.020, 0.040, 0.080])
    assert limiter.num_requeues("a") == 5


def test_exponential_backoff_caps_at_max_delay() -> None:
    limiter = ItemExponentialFailureRateLimiter(0.005, 1000.0)
    delays = [limiter.when("a") for _ in range(30)]
    # 0.005 * 2**17 = 655 s, 2**18 would be 1310 s: capped from the 19th failure on.
    assert delays[17] == pytest.approx(655.36)
    assert delays[18:] == [1000.0] * 12
    for _ in range(2000):  # huge failure counts must not overflow
        assert limiter.when("a") == 1000.0


def test_forget_resets_one_item_only() -> None:
    limiter = ItemExponentialFailureRateLimiter()
    for _ in range(3):
        limiter.when("a")
        limiter.when("b")
    limiter.forget("a")
    assert limiter.num_requeues("a") == 0
    assert limiter.when("a") == pytest.approx(0.005)
    assert limiter.when("b") == pytest.approx(0.04)


def test_bucket_allows_burst_then_paces_at_qps() -> None:
    clock = FakeClock()
    limiter = BucketRateLimiter(qps=10, burst=3, clock=clock)
    assert [limiter.when(i) for i in range(3)] == [0.0, 0.0, 0.0]
    # Reservations beyond the burst queue up 100 ms apart.
    assert [limiter.when(i) for i in range(3)] == pytest.approx([0.1, 0.2, 0.3])
    clock.advance(0.3)  # the three reservations are now paid off
    assert limiter.when("x") == pytest.approx(0.1)
    clock.advance(100)  # refills to the burst, never beyond
    assert [limiter.when(i) for i in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.when("y") == pytest.approx(0.1)
    assert limiter.num_requeues("y") == 0


def test_bucket_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="positive"):
        BucketRateLimiter(qps=0)


def test_max_of_takes_the_longest_and_tells_every_limiter() -> None:
    clock = FakeClock()
    exponential = ItemExponentialFailureRateLimiter(1.0, 100.0)
    bucket = BucketRateLimiter(qps=1, burst=1, clock=clock)
    limiter = MaxOfRateLimiter(exponential, bucket)
    assert limiter.when("a") == 1.0  # bucket 0, backoff 1
    assert limiter.when("b") == 1.0  # bucket 1 (reservation), backoff 1
    assert limiter.when("a") == 2.0  # bucket 2, backoff 2
    assert limiter.num_requeues("a") == 2
    limiter.forget("a")
    assert exponential.num_requeues("a") == 0
    with pytest.raises(ValueError, match="at least one"):
        MaxOfRateLimiter()


def test_default_controller_rate_limiter() -> None:
    clock = FakeClock()
    limiter = default_controller_rate_limiter(clock)
    assert limiter.when("a") == pytest.approx(0.005)
    assert limiter.when("a") == pytest.approx(0.010)
    for i in range(98):
        limiter.when(i)
    # The 101st failure overall exceeds the 100 burst: the bucket's 0.1 s beats a fresh item's 5 ms.
    assert limiter.when("fresh") == pytest.approx(0.1)
