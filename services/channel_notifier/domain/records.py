"""What the notifier reads and writes about deliveries: a claimed delivery, a row as the admin API shows
it, the result of one attempt (a settlement) and what that attempt did (its record in the delivery's
attempt history), and a channel name already taken."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .pending import DeliveryStatus, FailurePlan

__all__ = [
    "ATTEMPTS_KEPT",
    "MAX_ATTEMPT_ERROR",
    "AttemptRecord",
    "ClaimedDelivery",
    "DeliveryAttempt",
    "DeliveryRecord",
    "DuplicateChannel",
    "Settlement",
    "attempt_slot",
    "redact_error",
]

ATTEMPTS_KEPT = 20
"""Attempts kept per delivery row: the newest, each in the slot :func:`attempt_slot` gives it (a ring), so
a row that has been sending for months holds as many as one that failed twice. They go with their row."""
MAX_ATTEMPT_ERROR = 500
"""Characters of an attempt's error text kept (after :func:`redact_error`)."""
_REDACTED = "[redacted]"
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/?#@]*@")
_URL_QUERY = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s?#]*)\?[^\s#]*")
_MIN_SECRET_PART = 8


class DuplicateChannel(Exception):
    pass


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    id: int
    channel_id: int
    sku: str
    version: int
    document: bytes
    attempts: int
    pending_since: float
    trace_context: str | None = None
    """The update's trace context (JSON headers), while ``[tracing]`` is on."""


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    id: int
    channel_id: int
    sku: str
    version: int
    delivered_version: int
    status: str
    attempts: int
    next_attempt_at: float
    pending_since: float | None
    last_status: int | None
    last_error: str | None
    delivered_at: float | None
    updated_at: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "sku": self.sku,
            "version": self.version,
            "delivered_version": self.delivered_version,
            "status": self.status,
            "attempts": self.attempts,
            "next_attempt_at": self.next_attempt_at if self.status == DeliveryStatus.PENDING else None,
            "pending_since": self.pending_since,
            "last_status": self.last_status,
            "last_error": self.last_error,
            "delivered_at": self.delivered_at,
            "updated_at": self.updated_at,
        }


def attempt_slot(seq: int) -> int:
    """Where the ``seq``-th attempt of a row is kept: it takes the place of the one ``ATTEMPTS_KEPT`` before."""
    return seq % ATTEMPTS_KEPT


def redact_error(text: str | None, secrets: Sequence[str] = ()) -> str | None:
    """An attempt's error as kept: the channel's ``secrets`` (and a ``whsec_`` secret's key part), a URL's
    credentials and query string replaced, bounded to ``MAX_ATTEMPT_ERROR`` characters."""
    if not text:
        return text
    for secret in secrets:
        for part in (secret, secret.removeprefix("whsec_")):
            if len(part) >= _MIN_SECRET_PART:
                text = text.replace(part, _REDACTED)
    text = _URL_USERINFO.sub(rf"\1{_REDACTED}@", text)
    text = _URL_QUERY.sub(rf"\1?{_REDACTED}", text)
    return text[:MAX_ATTEMPT_ERROR]


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """What one attempt did, written with its settlement: never its request's headers or signature."""

    attempt: int
    """The delivery's attempt number in its current run (1: the first try of what it holds)."""
    started_at: float
    latency_ms: float
    outcome: str
    """An :class:`.outcome.AttemptOutcome` value."""
    status_code: int | None = None
    error: str | None = None

    @classmethod
    def of(
        cls,
        attempt: int,
        started_at: float,
        latency_s: float,
        outcome: str,
        status_code: int | None,
        error: str | None,
        secrets: Sequence[str] = (),
    ) -> AttemptRecord:
        """The record of an attempt: its latency in milliseconds (to the microsecond), its error made safe to keep."""
        latency_ms = round(max(0.0, latency_s) * 1000.0, 3)
        return cls(attempt, started_at, latency_ms, outcome, status_code, redact_error(error, secrets))


@dataclass(frozen=True, slots=True)
class DeliveryAttempt:
    """One kept attempt of a delivery row, as the admin API shows it."""

    delivery_id: int
    channel_id: int
    seq: int
    """Counts every attempt the row ever made (1, 2, ...): newest first is highest first."""
    record: AttemptRecord

    def as_dict(self, channel: str) -> dict[str, Any]:
        r = self.record
        return {
            "delivery_id": self.delivery_id,
            "channel": channel,
            "seq": self.seq,
            "attempt": r.attempt,
            "started_at": r.started_at,
            "status_code": r.status_code,
            "latency_ms": r.latency_ms,
            "error": r.error,
            "outcome": r.outcome,
        }


@dataclass(frozen=True, slots=True)
class Settlement:
    """The result of one delivery, written in a batch with others."""

    delivery_id: int
    owner: str
    now: float
    sent_version: int = 0
    succeeded: bool = False
    failure: FailurePlan | None = None
    status_code: int | None = None
    error: str | None = None
    not_before: float | None = None
    dropped: bool = False
    attempt: AttemptRecord | None = None
    """What was sent and answered, kept in the row's attempt history; None when nothing was sent."""

    @classmethod
    def success(
        cls,
        delivery_id: int,
        owner: str,
        sent_version: int,
        status_code: int,
        now: float,
        attempt: AttemptRecord | None = None,
    ) -> Settlement:
        return cls(
            delivery_id, owner, now, sent_version=sent_version, succeeded=True, status_code=status_code, attempt=attempt
        )

    @classmethod
    def failed(
        cls,
        delivery_id: int,
        owner: str,
        plan: FailurePlan,
        status_code: int | None,
        error: str,
        now: float,
        attempt: AttemptRecord | None = None,
    ) -> Settlement:
        return cls(delivery_id, owner, now, failure=plan, status_code=status_code, error=error[:1000], attempt=attempt)

    @classmethod
    def released(
        cls,
        delivery_id: int,
        owner: str,
        now: float,
        error: str | None = None,
        not_before: float | None = None,
        attempt: AttemptRecord | None = None,
    ) -> Settlement:
        """Not attempted (or not held against the delivery): give the lease back, due at ``not_before``
        (a channel's ``Retry-After`` or open circuit) or at once. ``attempt``: a request was made all the
        same (the channel answered 410), kept in the history without counting against the delivery."""
        return cls(delivery_id, owner, now, error=error, not_before=not_before, attempt=attempt)

    @classmethod
    def drop(cls, delivery_id: int, owner: str, now: float) -> Settlement:
        """The channel no longer wants this SKU (its filters changed): the row goes."""
        return cls(delivery_id, owner, now, dropped=True)
