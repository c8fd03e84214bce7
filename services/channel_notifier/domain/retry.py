"""When to try a failed delivery again: exponential backoff with full jitter, and ``Retry-After``."""

from __future__ import annotations

import datetime as dt
import email.utils
import math
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


_MAX_DELTA_DIGITS = 15
"""Longer delta-seconds (more than 31 million years) are read as this many nines; the caller caps them."""


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (RFC 9110, 10.2.3), or None; never raises.

    ``value`` is the header as the channel sent it (bytes decoded as latin-1, so any byte may appear).
    Delta-seconds are ASCII digits only (not ``²`` or other Unicode digits, not a sign or a fraction),
    of any length: a huge number is returned as a huge wait (``999999999999999.0``) for the caller to
    cap. An HTTP-date in the past means now (0). Anything else (garbage, an impossible date, an empty
    value) is ignored (None) rather than trusted.
    """
    if value is None:
        return None
    text = value.strip(" \t")
    if not text:
        return None
    if text.isascii() and text.isdigit():
        digits = text.lstrip("0") or "0"
        return float(digits) if len(digits) <= _MAX_DELTA_DIGITS else float("9" * _MAX_DELTA_DIGITS)
    if not text.isascii() or len(text) > 64:
        return None
    try:
        when = email.utils.parsedate_to_datetime(text)
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        wait = when.timestamp() - now
    except Exception:  # the email parser raises several types on odd dates; none may escape a header read
        return None
    return max(0.0, wait) if math.isfinite(wait) else None
