"""What the HTTP API answers, as types: the OpenAPI document describes each success body from them."""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

from .domain.model import LedgerEntry, Reservation
from .store.reads import SkuView, reservation_json

__all__ = [
    "LedgerEntryOut",
    "LedgerPage",
    "OrderEventOut",
    "OrderOut",
    "ParkedEventOut",
    "ReservationLineOut",
    "ReservationOut",
    "ShipmentOut",
    "SkuStock",
    "ledger_entry_out",
    "order_out",
    "reservation_out",
    "sku_stock",
]

_State = Literal[
    "reserved",
    "committed",
    "shipped",
    "rejected",
    "cancelled",
    "payment_failed",
    "expired",
    "released",
    "converted",
]


class ReservationLineOut(msgspec.Struct, forbid_unknown_fields=True):
    sku: str
    qty: int


class ShipmentOut(msgspec.Struct, forbid_unknown_fields=True):
    status: str
    deducted: dict[str, int]
    """Units per SKU it took from on hand (empty until it left the warehouse)."""
    left: bool
    back: bool
    lost: bool


class ReservationOut(msgspec.Struct, forbid_unknown_fields=True):
    """A reservation (a checkout's, or an order's) as it stands; ``expired`` once past its TTL."""

    reservation_id: str
    state: _State
    lines: list[ReservationLineOut]
    expires_at: float | None
    created_at: float
    updated_at: float
    returned: dict[str, int]
    backordered: dict[str, int]
    shipped: dict[str, int]
    shipments: dict[str, ShipmentOut]
    returns: list[str]


class SkuStock(msgspec.Struct, forbid_unknown_fields=True):
    sku: str
    on_hand: int
    reserved: int
    committed: int
    available: int
    backordered: int
    """Units orders accepted without stock wait for (never part of ``available``)."""
    version: int


class LedgerEntryOut(msgspec.Struct, forbid_unknown_fields=True):
    version: int
    kind: str
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


class LedgerPage(msgspec.Struct, forbid_unknown_fields=True):
    sku: str
    entries: list[LedgerEntryOut]
    next_after: int | None
    """Where the next page starts (``after``); null on the last page."""


class OrderEventOut(msgspec.Struct, forbid_unknown_fields=True):
    msg_id: str
    event_type: str
    stream_seq: int
    outcome: str
    detail: str
    settled_at: float


class ParkedEventOut(msgspec.Struct, forbid_unknown_fields=True):
    msg_id: str
    stream_seq: int
    reason: str
    parked_at: float


class OrderOut(msgspec.Struct, forbid_unknown_fields=True):
    """An order's reservation and events; ``awaiting`` (and no reservation fields) while none exists yet."""

    order_id: str
    source: str
    state: _State | Literal["awaiting"]
    lines: list[ReservationLineOut]
    expires_at: float | None
    events: list[OrderEventOut]
    parked: list[ParkedEventOut]
    created_at: float | UnsetType = UNSET
    updated_at: float | UnsetType = UNSET
    returned: dict[str, int] | UnsetType = UNSET
    backordered: dict[str, int] | UnsetType = UNSET
    shipped: dict[str, int] | UnsetType = UNSET
    shipments: dict[str, ShipmentOut] | UnsetType = UNSET
    returns: list[str] | UnsetType = UNSET


def reservation_out(reservation_id: str, reservation: Reservation, now: float) -> ReservationOut:
    """``reservation`` as the API answers it at ``now``."""
    return msgspec.convert({"reservation_id": reservation_id, **reservation_json(reservation, now)}, ReservationOut)


def order_out(
    order_id: str,
    source: str,
    reservation: Reservation | None,
    events: list[dict[str, Any]],
    parked: list[dict[str, Any]],
    now: float,
) -> OrderOut:
    """An order as the API answers it at ``now`` (its events and parked ones as the reader gives them):
    its reservation's fields when it has one."""
    held: dict[str, Any] = (
        {"state": "awaiting", "lines": [], "expires_at": None}
        if reservation is None
        else reservation_json(reservation, now)
    )
    body = {"order_id": order_id, "source": source, **held}
    return msgspec.convert({**body, "events": events, "parked": parked}, OrderOut)


def sku_stock(view: SkuView) -> SkuStock:
    """A SKU's stock as the API answers it."""
    return SkuStock(
        view.sku, view.on_hand, view.reserved, view.committed, view.available, view.backordered, view.version
    )


def ledger_entry_out(entry: LedgerEntry) -> LedgerEntryOut:
    """One ledger row as the API answers it."""
    return LedgerEntryOut(
        entry.version,
        entry.kind.value,
        entry.qty,
        entry.on_hand_delta,
        entry.reserved_delta,
        entry.committed_delta,
        entry.reservation,
        entry.source,
        entry.occurred_at,
        entry.reason,
        entry.prev_hash,
        entry.hash,
    )
