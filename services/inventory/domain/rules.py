"""Pure rules: reserve every line or none, and what an order event does in each order state."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from libs.profiles.canonical import (
    Disposition,
    OrderCancelled,
    OrderCompleted,
    OrderConfirmed,
    OrderPlaced,
    OrderShipped,
    PaymentFailed,
    PaymentRefunded,
    PaymentRetried,
    PaymentSucceeded,
    Return,
    ReturnItem,
    ReturnReceived,
    Shipment,
    ShipmentItem,
)

from .events import AFTER_SHIPPING, OrderEvent
from .model import Reservation, ReservationState

__all__ = [
    "Shortage",
    "Step",
    "decide_reservation",
    "order_step",
    "refund_restocks",
    "restocking",
    "return_units",
    "shipment_units",
]


@dataclass(frozen=True, slots=True)
class Shortage:
    sku: str
    requested: int
    available: int


def decide_reservation(lines: Mapping[str, int], available: Mapping[str, int]) -> list[Shortage]:
    """Every line fits, or the answer names each line that does not (lines already summed per SKU)."""
    return [
        Shortage(sku, qty, max(0, available.get(sku, 0)))
        for sku, qty in sorted(lines.items())
        if qty > available.get(sku, 0)
    ]


class Step(enum.Enum):
    APPLY = "apply"
    PARK = "park"
    """The event's predecessor has not been applied yet: keep it until it has."""
    IGNORE = "ignore"


S = ReservationState

_TERMINAL = frozenset({S.REJECTED, S.CANCELLED})
# Before payment: what a successful payment may still bring back to life (if the stock is there).
_REVIVABLE = frozenset({S.EXPIRED, S.PAYMENT_FAILED})
# A shipment of the order may still be reported (so a return of units not shipped yet waits for it):
# also once it is cancelled, since units that left before the cancellation may be reported after it.
_MAY_SHIP = frozenset({S.RESERVED, S.COMMITTED, S.CANCELLED}) | _REVIVABLE


def _item_sku(item: ShipmentItem | ReturnItem, order: Reservation, notes: list[str], effect: str) -> str | None:
    """The SKU an item names, or the SKU of the order's line for the product it names; None (and a note
    saying ``effect``) when the order has no such line."""
    sku = item.sku
    if sku is None and item.product_id is not None:
        sku = order.sku_of(item.product_id, item.variant_id)
    if sku is None:
        what = f"{item.product_id}" + (f"/{item.variant_id}" if item.variant_id else "")
        notes.append(f"product {what} is not a line of the order: {effect}")
    return sku


def shipment_units(event: Shipment, order: Reservation) -> tuple[dict[str, int], list[str]]:
    """Units per SKU a shipment carries, paid and free (items of one SKU added up; an item that names its
    product, not its SKU, resolved through the order's lines), and notes on items it cannot place."""
    out: dict[str, int] = {}
    notes: list[str] = []
    for item in event.items:
        sku = _item_sku(item, order, notes, "nothing deducted for it")
        if sku is None:
            continue
        if item.units:
            out[sku] = out.get(sku, 0) + item.units
    return out, notes


def restocking(event: Return) -> bool:
    """A return puts units back only once they are back: status ``complete``, or ``received_at`` set
    (Commerce Engine's ``OrderReturn``)."""
    return event.status == "complete" or event.received_at is not None


def return_units(event: Return, order: Reservation) -> tuple[dict[Disposition, dict[str, int]], list[str]]:
    """A return's units per disposition and SKU (an item that names a product, not its SKU, resolved
    through the order's own lines), and notes on items that name a product the order does not hold."""
    out: dict[Disposition, dict[str, int]] = {"restock": {}, "no_restock": {}, "cancel": {}}
    notes: list[str] = []
    for item in event.items:
        sku = _item_sku(item, order, notes, "not restocked")
        if sku is None:
            continue
        units = out[item.disposition]
        units[sku] = units.get(sku, 0) + item.quantity
    return out, notes


def refund_restocks(event: OrderPlaced, order: Reservation) -> dict[str, int]:
    """Units per SKU that ``event``'s running refund totals (``OrderLine.restocked``) put back beyond what
    ``order`` has applied already: empty when nothing is new, however often the order is sent again."""
    totals: dict[str, int] = {}
    for line in event.lines:
        if line.restocked:
            totals[line.sku] = totals.get(line.sku, 0) + line.restocked
    return {sku: n - order.restocked.get(sku, 0) for sku, n in totals.items() if n > order.restocked.get(sku, 0)}


def order_step(order: Reservation | None, event: OrderEvent) -> tuple[Step, str]:
    """What ``event`` does to ``order`` (None: the order has not been placed yet).

    Orders only move forward: an event delivered after a later fact was applied (a payment, a
    shipment, a cancellation) is ignored, never allowed to undo it. Stock leaves ``committed`` only
    through ``order.cancelled`` (released) or a shipment (deducted); see design §4.
    """
    state = order.state if order is not None else None
    if isinstance(event, OrderPlaced):
        if state is None:
            return Step.APPLY, ""
        # The whole order sent again (WooCommerce, on each change): only what it says that is new counts.
        if event.completed and (state in (S.RESERVED, S.COMMITTED) or state in _REVIVABLE):
            return Step.APPLY, ""
        if event.confirmed and (state is S.RESERVED or state in _REVIVABLE):
            return Step.APPLY, ""
        if order is not None and state is not S.REJECTED and refund_restocks(event, order):
            return Step.APPLY, ""
        return Step.IGNORE, "the order already exists"
    if isinstance(event, PaymentRetried | PaymentRefunded):
        return Step.IGNORE, f"{_name(event)} moves no stock"
    if isinstance(event, PaymentFailed) and not event.release:
        return Step.IGNORE, "a failed payment moves no stock: the hold stays until the order is cancelled or expires"
    if isinstance(event, Shipment) and event.status not in AFTER_SHIPPING:
        return Step.IGNORE, f"shipment {event.reference} is {event.status}: nothing has left the warehouse"
    if isinstance(event, Return) and not restocking(event):
        return Step.IGNORE, f"return {event.request_number} is {event.status}: units come back once it is complete"
    if state is None or order is None:
        return Step.PARK, "waiting for order.created"
    if isinstance(event, Shipment):
        return _shipment_step(order, event)
    if isinstance(event, Return):
        return _return_step(order, event)
    if state in _TERMINAL:
        return Step.IGNORE, f"the order is {state.value}"
    if isinstance(event, PaymentSucceeded | OrderConfirmed):
        if state is S.RESERVED or state in _REVIVABLE:
            return Step.APPLY, ""
        return Step.IGNORE, f"the order is already {state.value}"
    if isinstance(event, PaymentFailed):
        if state is S.RESERVED:
            return Step.APPLY, ""
        # A payment that succeeded is a later fact than any failure: a failure delivered after it (a
        # stale attempt, whatever its timestamp) never gives a paid order's stock away. Only a
        # cancellation does (design §4).
        if state in (S.COMMITTED, S.SHIPPED):
            return Step.IGNORE, f"the order is paid ({state.value}): a payment failure does not release it"
        return Step.IGNORE, f"nothing to release: the order is {state.value}"
    if isinstance(event, OrderCancelled):
        if state in (S.RESERVED, S.COMMITTED) or state in _REVIVABLE:
            return Step.APPLY, ""
        return Step.IGNORE, f"nothing to release: the order is {state.value}"
    if isinstance(event, OrderShipped | OrderCompleted):
        if state is S.COMMITTED:
            return Step.APPLY, ""
        if state is S.SHIPPED:
            return Step.IGNORE, "the order is already shipped"
        return Step.PARK, "waiting for a successful payment"
    if isinstance(event, ReturnReceived):
        if state is S.SHIPPED:
            return Step.APPLY, ""
        return Step.PARK, "waiting for the shipment"
    raise TypeError(f"not an order event: {event!r}")


def _shipment_step(order: Reservation, event: Shipment) -> tuple[Step, str]:
    state = order.state
    record = order.shipments.get(event.reference)
    if record is not None and record.left:
        if event.status == "return_to_origin" and not record.back:
            return Step.APPLY, ""
        if event.status == "lost" and not record.lost and not record.back:
            return Step.APPLY, ""
        return Step.IGNORE, f"shipment {event.reference} already left stock ({event.status} changes nothing)"
    if state is S.REJECTED:
        return Step.IGNORE, "the order is rejected: it holds no stock"
    if state in (S.COMMITTED, S.SHIPPED, S.CANCELLED):
        # A cancelled order's shipment that left before the cancellation still took its units.
        held = order.held()
        for sku, units in shipment_units(event, order)[0].items():
            if units > held.get(sku, 0) and order.backordered.get(sku, 0) > 0:
                return Step.PARK, f"waiting for stock of backordered {sku}"
        return Step.APPLY, ""
    return Step.PARK, "waiting for the order to be confirmed or paid"


def _return_step(order: Reservation, event: Return) -> tuple[Step, str]:
    if event.request_number in order.returns:
        return Step.IGNORE, f"return {event.request_number} was already restocked"
    if order.state is S.REJECTED:
        return Step.IGNORE, "the order is rejected: nothing was shipped"
    by_disposition, _ = return_units(event, order)
    units = dict(by_disposition["restock"])
    for sku, qty in by_disposition["no_restock"].items():
        units[sku] = units.get(sku, 0) + qty
    if order.state in _MAY_SHIP:
        # Cancelled units never shipped: they do not wait for a shipment.
        for sku, qty in units.items():
            # More is back than has shipped, and more of it may still ship: the shipment is late.
            if qty > order.unreturned(sku) and order.lines.get(sku, 0) > order.shipped.get(sku, 0):
                return Step.PARK, "waiting for the shipment"
    return Step.APPLY, ""


def _name(event: OrderEvent) -> str:
    return {PaymentRetried: "a payment retry", PaymentRefunded: "a refund"}.get(type(event), type(event).__name__)
