from __future__ import annotations

import pytest

from services.channel_notifier.domain.breaker import BreakerState, CircuitBreaker


def test_opens_after_consecutive_failures_only() -> None:
    breaker = CircuitBreaker(failure_threshold=3, open_s=5, open_max_s=40)
    breaker.record_failure(0)
    breaker.record_failure(0)
    breaker.record_success(0)  # resets the streak
    breaker.record_failure(1)
    breaker.record_failure(1)
    assert breaker.state(1) is BreakerState.CLOSED
    breaker.record_failure(2)
    assert breaker.state(2) is BreakerState.OPEN
    assert breaker.allowance(2, 8) == 0
    assert breaker.retry_at() == 7


def test_half_open_lets_one_probe_through() -> None:
    breaker = CircuitBreaker(failure_threshold=1, open_s=5, open_max_s=40)
    breaker.record_failure(0)
    assert breaker.allowance(4.9, 8) == 0
    assert breaker.state(5) is BreakerState.HALF_OPEN
    assert breaker.allowance(5, 8) == 1
    breaker.started(5)
    assert breaker.allowance(5.1, 8) == 0  # the probe is in flight
    breaker.record_success(6)
    assert breaker.state(6) is BreakerState.CLOSED
    assert breaker.allowance(6, 8) == 8


def test_failed_probe_reopens_for_twice_as_long_up_to_the_max() -> None:
    breaker = CircuitBreaker(failure_threshold=1, open_s=5, open_max_s=12)
    breaker.record_failure(0)
    opened = []
    now = 0.0
    for _ in range(4):
        now = breaker.retry_at()
        assert breaker.state(now) is BreakerState.HALF_OPEN
        breaker.started(now)
        breaker.record_failure(now)
        assert breaker.state(now) is BreakerState.OPEN
        opened.append(breaker.retry_at() - now)
    assert opened == [10, 12, 12, 12]
    breaker.record_success(breaker.retry_at())
    breaker.record_failure(100)
    assert breaker.retry_at() - 100 == 5  # a success resets the open time


def test_released_probe_can_be_retried() -> None:
    breaker = CircuitBreaker(failure_threshold=1, open_s=1, open_max_s=1)
    breaker.record_failure(0)
    breaker.started(1)
    assert breaker.allowance(1, 4) == 0
    breaker.release(1)
    assert breaker.allowance(1, 4) == 1


def test_failures_reported_while_open_do_not_extend_it() -> None:
    breaker = CircuitBreaker(failure_threshold=1, open_s=5, open_max_s=40)
    breaker.record_failure(0)
    breaker.record_failure(3)  # a delivery that started before the circuit opened
    assert breaker.retry_at() == 5


def test_invalid_configuration() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(failure_threshold=0)
    with pytest.raises(ValueError):
        CircuitBreaker(open_s=10, open_max_s=5)
