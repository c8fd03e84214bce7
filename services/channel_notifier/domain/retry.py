"""When to try a failed delivery again: exponential backoff with full jitter, and ``Retry-After``."""

from __future__ import annotations

import datetime as dt
import email.utils
import random
from dataclasses import dataclass

from libs.backoff import backoff_ceiling, backoff_delay

__all__ = ["RetrySchedule", "parse_retry_after"]


@dataclass(frozen=True, slots=True)
class RetrySchedule:
    """Attempt ``n`` (0 for the first retry) waits ``uniform(0, min(cap, base * 2**n))`` ("full jitter").

    A delivery is given up after ``max_attempts`` failed attempts or once it has been pending for
    ``give_up_after_s``, whichever comes first; given-up deliveries are kept and can be replayed.
    """

    base_s: float = 0.5
    cap_s: float = 60.0
    max_attempts: int = 15
    give_up_after_s: float = 3600.0
    retry_after_max_s: float = 3600.0

    def __post_init__(self) -> None:
        if self.base_s <= 0 or self.cap_s < self.base_s:
            raise ValueError("retry schedule: need 0 < base <= cap")
        if self.max_attempts < 1 or self.give_up_after_s <= 0:
            raise ValueError("retry schedule: max_attempts >= 1 and give_up_after_s > 0 are required")

    def ceiling(self, attempt: int) -> float:
        """The upper bound of the wait before retry number ``attempt`` (0-based)."""
        return backoff_ceiling(attempt, self.base_s, self.cap_s)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        return backoff_delay(attempt, self.base_s, self.cap_s, rng=rng)

    def exhausted(self, attempts: int, pending_since: float, now: float) -> bool:
        """``attempts`` failed so far, pending since ``pending_since``: give up?"""
        return attempts >= self.max_attempts or now - pending_since >= self.give_up_after_s


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), or None.

    A value that cannot be read is ignored (None) rather than trusted; a date in the past means now (0).
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isdigit():
        return float(int(text))
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, when.timestamp() - now)
