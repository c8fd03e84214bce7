"""The state inventory keeps: per-SKU quantities, reservations (orders and checkout holds), ledger rows."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BACKORDER_KINDS",
    "GENESIS_HASH",
    "Backorder",
    "LedgerEntry",
    "LedgerKind",
    "Reservation",
    "ReservationKind",
    "ReservationState",
    "ShipmentRecord",
    "SkuState",
    "cart_key",
    "order_key",
    "order_ref",
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
    BACKORDERED = "backordered"
    """Demand accepted without stock (no quantity moves; ``backordered`` rises by ``qty``)."""
    FILLED = "filled"
    """Stock that arrived taken by a backorder (``backordered`` falls, reserved or committed rises)."""
    DROPPED = "dropped"
    """Backordered demand given up (the order was cancelled): ``backordered`` falls, nothing else."""
    LOST = "lost"
    """A shipment the carrier lost: recorded, nothing moves (its units already left on hand)."""


BACKORDER_KINDS: dict[LedgerKind, int] = {
    LedgerKind.BACKORDERED: 1,
    LedgerKind.FILLED: -1,
    LedgerKind.DROPPED: -1,
}
"""How each kind moves a SKU's backordered units (the sign applied to ``qty``); other kinds do not."""


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


def order_key(order_id: str, orders: str = "") -> str:
    """An order's reservation key: ``order:<orders>:<order_id>``, ``orders`` being the namespace of the
    source whose order it is (a source name, which holds no ``:``), so that the same number from two
    sources is two orders. Without a namespace: ``order:<order_id>``, the key of orders recorded by a
    release that had none (their ledger rows still carry it)."""
    return f"order:{orders}:{order_id}" if orders else f"order:{order_id}"


def order_ref(ref: str) -> tuple[str | None, str]:
    """The (namespace, order id) of an order key's reference (what follows ``order:``)."""
    namespace, sep, order_id = ref.partition(":")
    return (namespace, order_id) if sep else (None, ref)


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
    backordered: int = 0
    """Units orders accepted without stock, waiting for it (never part of ``available``)."""

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved - self.committed

    def copy(self) -> SkuState:
        return SkuState(
            self.sku,
            self.on_hand,
            self.reserved,
            self.committed,
            self.version,
            self.last_hash,
            self.counted_at,
            self.backordered,
        )


@dataclass(slots=True)
class ShipmentRecord:
    """One shipment of an order as far as stock is concerned: what it took off the shelf, once."""

    status: str
    deducted: dict[str, int] = field(default_factory=dict)
    """Units per SKU it took from on hand (empty until it left the warehouse)."""
    left: bool = False
    """It left the warehouse (a status from ``shipped`` on was seen)."""
    back: bool = False
    """It came back to origin and its units were put back on hand."""
    lost: bool = False

    def copy(self) -> ShipmentRecord:
        return ShipmentRecord(self.status, dict(self.deducted), self.left, self.back, self.lost)

    def as_json(self) -> dict[str, object]:
        return {
            "status": self.status,
            "deducted": self.deducted,
            "left": self.left,
            "back": self.back,
            "lost": self.lost,
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> ShipmentRecord:
        return cls(
            str(value.get("status", "")),
            {str(k): int(v) for k, v in dict(value.get("deducted", {})).items()},
            bool(value.get("left", False)),
            bool(value.get("back", False)),
            bool(value.get("lost", False)),
        )


@dataclass(frozen=True, slots=True)
class Backorder:
    """Units of one SKU an order waits for; filled oldest first (``since``, then ``order``)."""

    sku: str
    order: str
    """The order's reservation key."""
    qty: int
    since: float
    seq: int = 0
    """The placing event's stream sequence: orders placed in one transaction keep their stream order."""

    @property
    def sort_key(self) -> tuple[float, int, str]:
        return (self.since, self.seq, self.order)


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
    backordered: dict[str, int] = field(default_factory=dict)
    """Units of ``lines`` accepted without stock and not filled yet: not held."""
    shipped: dict[str, int] = field(default_factory=dict)
    """Units of ``lines`` that left the warehouse (deducted from on hand)."""
    shipments: dict[str, ShipmentRecord] = field(default_factory=dict)
    """The order's shipments by their reference (Commerce Engine: ``reference_number``)."""
    returns: list[str] = field(default_factory=list)
    """Return requests already restocked (Commerce Engine: ``request_number``): each restocks once."""
    products: dict[str, str] = field(default_factory=dict)
    """``product_id`` and ``product_id/variant_id`` -> SKU, from the order's lines: how a return that
    names products finds its SKUs."""
    unattributed: dict[str, int] = field(default_factory=dict)
    """Shipped units no shipment has named yet (the order was reported shipped or complete as a whole):
    a shipment reported later takes its units from here instead of from stock."""
    restocked: dict[str, int] = field(default_factory=dict)
    """The running total of units per SKU refunds put back (``OrderLine.restocked``) applied so far."""

    @property
    def kind(self) -> ReservationKind:
        return split_key(self.key)[0]

    @property
    def ref(self) -> str:
        return split_key(self.key)[1]

    def held(self) -> dict[str, int]:
        """Units per SKU the reservation holds: its lines, less what is backordered or shipped."""
        if self.state not in (ReservationState.RESERVED, ReservationState.COMMITTED):
            return {}
        out = {}
        for sku, qty in self.lines.items():
            left = qty - self.backordered.get(sku, 0) - self.shipped.get(sku, 0)
            if left > 0:
                out[sku] = left
        return out

    def reserved_qty(self) -> dict[str, int]:
        return self.held() if self.state is ReservationState.RESERVED else {}

    def committed_qty(self) -> dict[str, int]:
        return self.held() if self.state is ReservationState.COMMITTED else {}

    def sku_of(self, product_id: str, variant_id: str | None) -> str | None:
        """The SKU of the order's line for a product (and variant), None when the order has no such line."""
        found = self.products.get(f"{product_id}/{variant_id}") if variant_id is not None else None
        return found or self.products.get(product_id)

    def unreturned(self, sku: str) -> int:
        """Units of ``sku`` shipped and not returned yet."""
        return max(0, self.shipped.get(sku, 0) - self.returned.get(sku, 0))

    def detail_json(self) -> dict[str, object]:
        """What the store keeps beside lines and returned (one JSON column)."""
        return {
            "backordered": self.backordered,
            "shipped": self.shipped,
            "shipments": {ref: record.as_json() for ref, record in self.shipments.items()},
            "returns": self.returns,
            "products": self.products,
            "unattributed": self.unattributed,
            "restocked": self.restocked,
        }

    def load_detail(self, value: dict[str, Any]) -> None:
        """Read back :meth:`detail_json` (an empty object: an order of an earlier release)."""
        self.backordered = {str(k): int(v) for k, v in dict(value.get("backordered", {})).items()}
        self.shipped = {str(k): int(v) for k, v in dict(value.get("shipped", {})).items()}
        self.shipments = {str(k): ShipmentRecord.from_json(v) for k, v in dict(value.get("shipments", {})).items()}
        self.returns = [str(r) for r in value.get("returns", [])]
        self.products = {str(k): str(v) for k, v in dict(value.get("products", {})).items()}
        self.unattributed = {str(k): int(v) for k, v in dict(value.get("unattributed", {})).items()}
        self.restocked = {str(k): int(v) for k, v in dict(value.get("restocked", {})).items()}

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
            dict(self.backordered),
            dict(self.shipped),
            {ref: record.copy() for ref, record in self.shipments.items()},
            list(self.returns),
            dict(self.products),
            dict(self.unattributed),
            dict(self.restocked),
        )

    def __deepcopy__(self, memo: dict[int, object]) -> Reservation:
        return self.copy()


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
