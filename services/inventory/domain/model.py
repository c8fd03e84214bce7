"""The state inventory keeps: per-SKU quantities, reservations (orders and checkout holds), ledger rows."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

__all__ = [
    "GENESIS_HASH",
    "LedgerEntry",
    "LedgerKind",
    "Reservation",
    "ReservationKind",
    "ReservationState",
    "SkuState",
    "cart_key",
    "order_key",
    "split_key",
]

GENESIS_HASH = "0" * 64


class LedgerKind(enum.StrEnum):
    RECEIVED = "received"
    ADJUSTED = "adjusted"
    RESERVED = "reserved"
    COMMITTED = "committed"
    DEDUCTED = "deducted"
    RELEASED = "released"
    EXPIRED = "expired"
    RETURNED = "returned"


class ReservationKind(enum.StrEnum):
    ORDER = "order"
    CART = "cart"
    """A hold taken at checkout through ``POST /reservations``."""


class ReservationState(enum.StrEnum):
    RESERVED = "reserved"
    COMMITTED = "committed"
    SHIPPED = "shipped"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    PAYMENT_FAILED = "payment_failed"
    EXPIRED = "expired"
    RELEASED = "released"
    """A checkout hold given back (``DELETE /reservations/{id}``)."""
    CONVERTED = "converted"
    """A checkout hold an order took over."""


def order_key(order_id: str) -> str:
    return f"order:{order_id}"


def cart_key(reservation_id: str) -> str:
    return f"cart:{reservation_id}"


def split_key(key: str) -> tuple[ReservationKind, str]:
    kind, _, ref = key.partition(":")
    return ReservationKind(kind), ref


@dataclass(slots=True)
class SkuState:
    sku: str
    on_hand: int = 0
    reserved: int = 0
    committed: int = 0
    version: int = 0
    last_hash: str = GENESIS_HASH
    counted_at: float | None = None
    """When the last absolute count applied was taken: an older count is recorded, not applied."""

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved - self.committed

    def copy(self) -> SkuState:
        return SkuState(
            self.sku, self.on_hand, self.reserved, self.committed, self.version, self.last_hash, self.counted_at
        )


@dataclass(slots=True)
class Reservation:
    """An order's place in its state machine, or a checkout hold; ``lines`` are summed per SKU."""

    key: str
    state: ReservationState
    lines: dict[str, int]
    created_at: float
    updated_at: float
    expires_at: float | None = None
    """Set while the reservation holds stock as ``reserved``; past it, the hold is treated as released."""
    returned: dict[str, int] = field(default_factory=dict)
    """Units returned so far per SKU (restocked or not): a return never restocks more than was shipped."""

    @property
    def kind(self) -> ReservationKind:
        return split_key(self.key)[0]

    @property
    def ref(self) -> str:
        return split_key(self.key)[1]

    def reserved_qty(self) -> dict[str, int]:
        return dict(self.lines) if self.state is ReservationState.RESERVED else {}

    def committed_qty(self) -> dict[str, int]:
        return dict(self.lines) if self.state is ReservationState.COMMITTED else {}

    def overdue(self, now: float) -> bool:
        return self.state is ReservationState.RESERVED and self.expires_at is not None and self.expires_at <= now

    def copy(self) -> Reservation:
        return Reservation(
            self.key,
            self.state,
            dict(self.lines),
            self.created_at,
            self.updated_at,
            self.expires_at,
            dict(self.returned),
        )


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One movement of one SKU. ``version`` numbers a SKU's rows from 1; ``hash`` chains them."""

    sku: str
    version: int
    kind: LedgerKind
    qty: int
    on_hand_delta: int
    reserved_delta: int
    committed_delta: int
    reservation: str | None
    source: str
    occurred_at: str
    reason: str
    prev_hash: str
    hash: str
