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


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("\xb2", None),  # '²': str.isdigit() says yes, int() says no
        ("\u0663", None),  # Arabic-Indic three
        ("\uff13", None),  # full-width three
        ("\xff\xfe", None),
        ("\x00", None),
        ("1\xb2", None),
        ("+5", None),
        ("-0", None),
        ("1e3", None),
        ("0x10", None),
        ("inf", None),
        ("nan", None),
        ("00042", 42.0),
        ("9" * 15, 999_999_999_999_999.0),
        ("9" * 16, 999_999_999_999_999.0),
        ("9" * 5000, 999_999_999_999_999.0),  # over int()'s 4,300-digit limit
        ("1" + "0" * 400, 999_999_999_999_999.0),  # over float's range
        ("Mon, 01 Jan 0001 00:00:00 GMT", 0.0),
        ("Fri, 31 Dec 9999 23:59:59 GMT", 253_402_300_799.0 - 1_700_000_000.0),  # the caller caps it
        ("Fri, 31 Dec 99999 23:59:59 GMT", None),
        ("Mon, 32 Jan 2024 00:00:00 GMT", None),
        ("Mon, 01 Jan 2024 25:61:61 GMT", None),
        ("Mon, 01 Jan 2024 00:00:00 +9999", None),
        ("Mon, 01 Jan 2024 00:00:00 GMT" + " x" * 1000, None),
        (",,,", None),
        (" \t ", None),
    ],
)
def test_retry_after_never_raises(value: str, expected: float | None) -> None:
    assert parse_retry_after(value, now=1_700_000_000.0) == expected


@given(st.text(max_size=80))
def test_retry_after_never_raises_on_any_text(value: str) -> None:
    result = parse_retry_after(value, now=1_700_000_000.0)
    assert result is None or 0.0 <= result < float("inf")


@given(st.binary(max_size=80))
def test_retry_after_never_raises_on_any_header_bytes(raw: bytes) -> None:
    result = parse_retry_after(raw.decode("latin-1"), now=1_700_000_000.0)
    assert result is None or 0.0 <= result < float("inf")
