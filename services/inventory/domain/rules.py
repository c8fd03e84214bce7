"""Two pure rules: reserve every line or none, and what an order event does in each order state."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from .events import (
    OrderCancelled,
    OrderCreated,
    OrderEvent,
    PaymentFailed,
    PaymentSucceeded,
    ReturnReceived,
    Shipped,
)
from .model import ReservationState

__all__ = ["Shortage", "Step", "decide_reservation", "order_step"]


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


def order_step(state: ReservationState | None, event: OrderEvent) -> tuple[Step, str]:
    """What ``event`` does to an order in ``state`` (None: ``order.created`` not applied yet).

    Orders only move forward: an event delivered after a later fact was applied (a payment, a
    shipment, a cancellation) is ignored, never allowed to undo it. Stock leaves ``committed`` only
    through ``order.cancelled`` (released) or a shipment (deducted); see design §4.
    """
    if isinstance(event, OrderCreated):
        return (Step.APPLY, "") if state is None else (Step.IGNORE, "the order already exists")
    if state is None:
        return Step.PARK, "waiting for order.created"
    if state in _TERMINAL:
        return Step.IGNORE, f"the order is {state.value}"
    if isinstance(event, PaymentSucceeded):
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
    if isinstance(event, Shipped):
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
