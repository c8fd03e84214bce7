"""One pending delivery per (channel, SKU): the rules that give ordering and coalescing at once.

The row holds the newest version known for the SKU and the newest version the channel acknowledged.
An update older than (or equal to) what the row holds changes nothing, so a redelivered or late
message can never make a channel go backwards; while the channel is slow or down, updates overwrite
each other and only the newest is sent. A worker claims a row (a lease) before sending, so at most
one delivery per (channel, SKU) is in flight, and what it sends is always the row's newest version.

:class:`PendingDelivery` is the reference model; the store implements the same transitions in SQL
(and the integration tests run one scenario through both).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from libs.contracts import AvailabilityChanged

from .channel import Channel
from .retry import RetrySchedule

__all__ = ["DeliveryStatus", "FailurePlan", "Offer", "PendingDelivery", "fan_out", "newest_per_sku", "plan_failure"]


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
    """Given up after the retry schedule; kept, and sent again by a retry or a replay."""


@dataclass(frozen=True, slots=True)
class FailurePlan:
    status: DeliveryStatus
    attempts: int
    next_attempt_at: float


def plan_failure(
    schedule: RetrySchedule,
    *,
    attempts_before: int,
    pending_since: float,
    now: float,
    retry_after_s: float | None,
    jitter: float,
) -> FailurePlan:
    """What a failed attempt leads to; ``jitter`` is a uniform draw in [0, 1) (passed in to stay pure)."""
    attempts = attempts_before + 1
    if schedule.exhausted(attempts, pending_since, now):
        return FailurePlan(DeliveryStatus.FAILED, attempts, now)
    if retry_after_s is not None:
        wait = min(max(0.0, retry_after_s), schedule.retry_after_max_s)
    else:
        wait = jitter * schedule.ceiling(attempts_before)
    return FailurePlan(DeliveryStatus.PENDING, attempts, now + wait)


def newest_per_sku(updates: Iterable[AvailabilityChanged]) -> dict[str, AvailabilityChanged]:
    """Coalesce a batch: per SKU only the highest version survives (ties keep the first seen)."""
    newest: dict[str, AvailabilityChanged] = {}
    for update in updates:
        current = newest.get(update.sku)
        if current is None or update.version > current.version:
            newest[update.sku] = update
    return newest


Offer = tuple[int, str, int, bytes]
"""An update offered to one channel's row for the SKU: ``(channel_id, sku, version, document)``, the
document as published. A plain tuple: a batch makes one per (channel, SKU), on the hot path."""


def fan_out(newest: Mapping[str, tuple[int, bytes]], channels: Sequence[Channel]) -> list[Offer]:
    """One offer per (channel, SKU) the channel wants, from ``newest`` (SKU -> (version, document))."""
    return [
        (channel.id, sku, version, document)
        for sku, (version, document) in newest.items()
        for channel in channels
        if channel.wants(sku)
    ]


@dataclass
class PendingDelivery:
    """The reference model of one ``(channel, SKU)`` row."""

    version: int
    delivered_version: int = 0
    status: DeliveryStatus = DeliveryStatus.PENDING
    attempts: int = 0
    next_attempt_at: float = 0.0
    pending_since: float | None = 0.0
    lease_until: float | None = None

    @classmethod
    def first(cls, version: int, now: float) -> PendingDelivery:
        return cls(version=version, next_attempt_at=now, pending_since=now)

    def offer(self, version: int, now: float) -> bool:
        """A new update for the SKU; True when it replaced what the row held."""
        if version <= self.version:
            return False
        self.version = version
        if self.status is not DeliveryStatus.PENDING:
            # Backoff of a still-failing delivery carries over to its newer version; anything else starts fresh.
            self.status = DeliveryStatus.PENDING
            self.attempts = 0
            self.next_attempt_at = now
            self.pending_since = now
        return True

    def claimable(self, now: float) -> bool:
        return (
            self.status is DeliveryStatus.PENDING
            and self.next_attempt_at <= now
            and (self.lease_until is None or self.lease_until < now)
        )

    def claim(self, now: float, lease_s: float) -> int:
        """Lease the row; returns the version to send."""
        if not self.claimable(now):
            raise ValueError("row is not claimable")
        self.lease_until = now + lease_s
        return self.version

    def succeeded(self, sent_version: int, now: float) -> None:
        self.delivered_version = max(self.delivered_version, sent_version)
        self.lease_until = None
        self.attempts = 0
        self.next_attempt_at = now
        if self.version > sent_version:
            self.status = DeliveryStatus.PENDING
            self.pending_since = now
        else:
            self.status = DeliveryStatus.DELIVERED
            self.pending_since = None

    def failed(self, plan: FailurePlan) -> None:
        self.lease_until = None
        self.attempts = plan.attempts
        self.next_attempt_at = plan.next_attempt_at
        self.status = plan.status

    def resend(self, now: float) -> None:
        """A retry or a replay: send the row's version again, even if already delivered or given up."""
        self.status = DeliveryStatus.PENDING
        self.attempts = 0
        self.next_attempt_at = now
        self.pending_since = now
