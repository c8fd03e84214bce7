from __future__ import annotations

import email.utils
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.channel_notifier.domain.pending import DeliveryStatus, plan_failure
from services.channel_notifier.domain.retry import RetrySchedule, parse_retry_after


def test_ceiling_doubles_up_to_the_cap() -> None:
    schedule = RetrySchedule(base_s=0.5, cap_s=10.0)
    assert [schedule.ceiling(n) for n in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert schedule.ceiling(10_000) == 10.0


@given(st.integers(min_value=0, max_value=200), st.integers(min_value=0, max_value=2**32))
def test_full_jitter_stays_within_zero_and_the_ceiling(attempt: int, seed: int) -> None:
    schedule = RetrySchedule(base_s=0.1, cap_s=30.0)
    delay = schedule.delay(attempt, random.Random(seed))
    assert 0.0 <= delay <= schedule.ceiling(attempt)


def test_full_jitter_spreads_over_the_whole_range() -> None:
    schedule = RetrySchedule(base_s=1.0, cap_s=8.0)
    rng = random.Random(7)
    delays = [schedule.delay(3, rng) for _ in range(2000)]
    assert min(delays) < 0.5 and max(delays) > 7.5  # not "ceiling plus a little noise"


def test_invalid_schedule_is_refused() -> None:
    with pytest.raises(ValueError):
        RetrySchedule(base_s=0, cap_s=1)
    with pytest.raises(ValueError):
        RetrySchedule(base_s=2, cap_s=1)
    with pytest.raises(ValueError):
        RetrySchedule(max_attempts=0)


def test_exhausted_by_attempts_or_by_age() -> None:
    schedule = RetrySchedule(max_attempts=3, give_up_after_s=100)
    assert not schedule.exhausted(2, pending_since=0, now=50)
    assert schedule.exhausted(3, pending_since=0, now=50)
    assert schedule.exhausted(1, pending_since=0, now=100)


def test_plan_failure_uses_jitter_times_ceiling() -> None:
    schedule = RetrySchedule(base_s=1.0, cap_s=60.0, max_attempts=10)
    plan = plan_failure(schedule, attempts_before=2, pending_since=0, now=1000, retry_after_s=None, jitter=0.5)
    assert plan.status is DeliveryStatus.PENDING
    assert plan.attempts == 3
    assert plan.next_attempt_at == pytest.approx(1000 + 0.5 * 4.0)


def test_plan_failure_honours_retry_after_capped() -> None:
    schedule = RetrySchedule(base_s=1.0, cap_s=60.0, retry_after_max_s=120)
    plan = plan_failure(schedule, attempts_before=0, pending_since=0, now=10, retry_after_s=30, jitter=0.0)
    assert plan.next_attempt_at == 40
    capped = plan_failure(schedule, attempts_before=0, pending_since=0, now=10, retry_after_s=86400, jitter=0.0)
    assert capped.next_attempt_at == 130


def test_plan_failure_gives_up() -> None:
    schedule = RetrySchedule(max_attempts=2)
    plan = plan_failure(schedule, attempts_before=1, pending_since=0, now=5, retry_after_s=None, jitter=0.9)
    assert (plan.status, plan.attempts) == (DeliveryStatus.FAILED, 2)


@pytest.mark.parametrize(("value", "expected"), [("0", 0.0), ("120", 120.0), (" 7 ", 7.0)])
def test_retry_after_seconds(value: str, expected: float) -> None:
    assert parse_retry_after(value, now=1000.0) == expected


def test_retry_after_http_date() -> None:
    now = 1_700_000_000.0
    header = email.utils.formatdate(now + 90, usegmt=True)
    assert parse_retry_after(header, now) == pytest.approx(90, abs=1)
    past = email.utils.formatdate(now - 90, usegmt=True)
    assert parse_retry_after(past, now) == 0.0


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "1.5", "Mon, 99 Foo 2020"])
def test_retry_after_unreadable_is_ignored(value: str | None) -> None:
    assert parse_retry_after(value, now=0.0) is None
