"""The events inventory applies: a COMMERCE message read into one of Stockwire's canonical events.

Reading the wire (headers, JSON, a source's profile) is the adapter's job (:mod:`..adapters.wire`);
the domain sees only :class:`CommerceEvent`, whose ``payload`` is one of the canonical events of
:mod:`libs.profiles.canonical` — whatever dialect the producer spoke.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from libs.profiles.canonical import (
    ORDER_EVENTS,
    SHIPPED_STATUSES,
    CanonicalEvent,
    OrderEvent,
    OrderLine,
    OrderPlaced,
    ReturnReceived,
    Shipment,
    StockAdjusted,
    StockReceived,
    Unmapped,
)

from .model import order_key

__all__ = [
    "AFTER_SHIPPING",
    "BEFORE_SHIPPING",
    "CommerceEvent",
    "OrderEvent",
    "RawMessage",
    "stocked_lines",
    "summed_lines",
]

# Commerce Engine's ShipmentStatus (@commercengine/storefront-sdk 0.15.0): from `shipped` on, the
# shipment's units have left the warehouse.
AFTER_SHIPPING = SHIPPED_STATUSES
BEFORE_SHIPPING = frozenset({"unscheduled", "schedule_requested", "scheduled", "packed", "cancelled"})


@dataclass(frozen=True, slots=True)
class RawMessage:
    """The message as it came off the bus, kept with the event: a parked event is stored with it, and
    the sweeper dead-letters it as it came."""

    subject: str
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    stream_seq: int = 0


@dataclass(frozen=True, slots=True)
class CommerceEvent:
    """One event to apply. ``msg_id`` is its inbox key (``<source>:<event id>``); ``source_ts`` the
    producer's time (epoch seconds; 0 when absent), which orders one order's parked events."""

    msg_id: str
    event_type: str
    payload: CanonicalEvent
    stream_seq: int = 0
    source_ts: float = 0.0
    envelope: RawMessage | None = None
    replay: bool = False
    """Republished from DEADLETTER: it may be applied although the inbox says it was dead-lettered."""
    orders: str = ""
    """Whose orders the event's order key names: its source's name, or the source its configuration
    names (``orders_source``: a payment provider reporting a storefront's orders)."""

    def __deepcopy__(self, memo: dict[int, object]) -> CommerceEvent:
        return self  # immutable: a copy of a workspace shares its events

    @property
    def order_id(self) -> str | None:
        """The order as the inbox records it: ``<orders>:<order key>``; None for events of no order."""
        payload = self.payload
        if not isinstance(payload, ORDER_EVENTS):
            return None
        return f"{self.orders}:{payload.order_key}" if self.orders else payload.order_key

    @property
    def order_reservation(self) -> str | None:
        """The reservation key of the event's order (:func:`~.model.order_key`)."""
        payload = self.payload
        return order_key(payload.order_key, self.orders) if isinstance(payload, ORDER_EVENTS) else None

    @property
    def skus(self) -> frozenset[str]:
        """The SKUs the event names itself (an order's later events are resolved through the order)."""
        payload = self.payload
        if isinstance(payload, StockReceived | StockAdjusted):
            return frozenset((payload.sku,))
        if isinstance(payload, OrderPlaced | ReturnReceived):
            return frozenset(line.sku for line in payload.lines)
        if isinstance(payload, Shipment):
            return frozenset(item.sku for item in payload.items if item.sku is not None)
        return frozenset()

    @property
    def handled(self) -> bool:
        return not isinstance(self.payload, Unmapped)


def stocked_lines(lines: Iterable[OrderLine]) -> list[OrderLine]:
    """The lines that take stock: digital goods never do (a bundle is its own SKU)."""
    return [line for line in lines if line.product_type != "digital"]


def summed_lines(lines: Iterable[Any]) -> dict[str, int]:
    """Units per SKU (``quantity``), lines naming the same SKU added up, in SKU order."""
    out: dict[str, int] = {}
    for line in lines:
        out[line.sku] = out.get(line.sku, 0) + line.quantity
    return dict(sorted(out.items()))
