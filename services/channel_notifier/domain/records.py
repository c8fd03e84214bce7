"""What the notifier reads and writes about deliveries: a claimed delivery, a row as the admin API shows
it, the result of one attempt (a settlement), and a channel name already taken."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .pending import DeliveryStatus, FailurePlan

__all__ = ["ClaimedDelivery", "DeliveryRecord", "DuplicateChannel", "Settlement"]


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

    @classmethod
    def success(cls, delivery_id: int, owner: str, sent_version: int, status_code: int, now: float) -> Settlement:
        return cls(delivery_id, owner, now, sent_version=sent_version, succeeded=True, status_code=status_code)

    @classmethod
    def failed(
        cls, delivery_id: int, owner: str, plan: FailurePlan, status_code: int | None, error: str, now: float
    ) -> Settlement:
        return cls(delivery_id, owner, now, failure=plan, status_code=status_code, error=error[:1000])

    @classmethod
    def released(
        cls, delivery_id: int, owner: str, now: float, error: str | None = None, not_before: float | None = None
    ) -> Settlement:
        """Not attempted (or not held against the delivery): give the lease back, due at ``not_before``
        (a channel's ``Retry-After`` or open circuit) or at once."""
        return cls(delivery_id, owner, now, error=error, not_before=not_before)

    @classmethod
    def drop(cls, delivery_id: int, owner: str, now: float) -> Settlement:
        """The channel no longer wants this SKU (its filters changed): the row goes."""
        return cls(delivery_id, owner, now, dropped=True)
