"""Orders in Stockwire's own dialect: ``order.created {order_id, lines: [{sku, qty}]}``, payments,
cancellations, whole-order shipments and returns by SKU (the ``stockwire`` profile).

The chaos suite and some end-to-end tests send this dialect; ``--dialect stockwire`` selects it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from libs.profiles.canonical import (
    CanonicalEvent,
    OrderCancelled,
    OrderLine,
    OrderPlaced,
    OrderShipped,
    PaymentFailed,
    PaymentSucceeded,
    ReturnLine,
    ReturnReceived,
)

from .catalogue import Assortment
from .config import SimConfig
from .draws import Ids, draw_fate, pick_distinct
from .plan import Fate, Line, PlannedOrder, Webhook

__all__ = ["draw_order", "order_webhooks"]

Timed = list[tuple[float, Webhook]]


def draw_order(rng: random.Random, config: SimConfig, index: int, shop: Assortment) -> PlannedOrder:
    catalogue = config.catalogue
    skus = pick_distinct(rng, shop.names, shop.weights, rng.randint(1, min(catalogue.max_lines, len(shop.names))))
    lines = tuple(Line(sku, rng.randint(1, catalogue.max_qty)) for sku in skus)
    fate = draw_fate(rng, config.mix)
    returned = _returned_lines(rng, lines) if fate is Fate.RETURNED else ()
    restock = fate is Fate.RETURNED and rng.random() < config.mix.restock
    return PlannedOrder(config.order_number(index), lines, fate, returned, restock)


def _returned_lines(rng: random.Random, lines: Sequence[Line]) -> tuple[Line, ...]:
    picked = [line for line in lines if rng.random() < 0.7] or [lines[0]]
    return tuple(Line(line.sku, rng.randint(1, line.qty)) for line in picked)


def order_webhooks(
    rng: random.Random, ids: Ids, order: PlannedOrder, position: float, config: SimConfig
) -> tuple[Timed, tuple[Webhook, ...]]:
    """The order's webhooks in the sale (with planned positions) and its follow-ups after acceptance."""
    oid, mix = order.order_id, config.mix

    def hook(event_type: str, data: Mapping[str, Any], event: CanonicalEvent, after: bool = False) -> Webhook:
        return Webhook(ids.event(), event_type, data, oid, after, config.source, "stockwire", event)

    amount = sum(line.qty for line in order.lines) * 4999
    created = {
        "order_id": oid,
        "customer_id": f"cus_{rng.randrange(10**8):08d}",
        "currency": "EUR",
        "total_cents": amount,
        "lines": [line.as_json() for line in order.lines],
    }
    placed = OrderPlaced(order_key=oid, lines=tuple(OrderLine(sku=line.sku, quantity=line.qty) for line in order.lines))
    timed = [(position, hook("order.created", created, placed))]
    gap: Callable[[], float] = lambda: rng.uniform(*mix.follow_up_gap)  # noqa: E731
    paid_at = position + gap()
    payment = {"order_id": oid, "payment_id": f"pay_{rng.randrange(10**10):010d}", "amount_cents": amount}
    success_type = "payment.captured" if rng.random() < mix.aliases else "payment.successful"
    if order.fate is Fate.PAYMENT_FAILED:
        failed = {**payment, "reason": "card_declined"}
        timed.append((paid_at, hook("payment.failed", failed, PaymentFailed(order_key=oid, release=True))))
    elif order.fate is Fate.CANCELLED_UNPAID:
        unpaid = {"order_id": oid, "reason": "customer"}
        timed.append((paid_at, hook("order.cancelled", unpaid, OrderCancelled(order_key=oid))))
    elif order.fate is not Fate.ABANDONED:
        timed.append((paid_at, hook(success_type, payment, PaymentSucceeded(order_key=oid))))
        if order.fate is Fate.CANCELLED_PAID:
            cancel = {"order_id": oid, "reason": "customer", "refund": True}
            timed.append((paid_at + gap(), hook("order.cancelled", cancel, OrderCancelled(order_key=oid))))
    follow_ups: list[Webhook] = []
    if order.fate in (Fate.SHIPPED, Fate.RETURNED):
        ship_type = "order.fulfilled" if rng.random() < mix.aliases else "shipment.shipped"
        shipment = {"order_id": oid, "carrier": "DHL", "tracking": f"JD{rng.randrange(10**12):012d}"}
        follow_ups.append(hook(ship_type, shipment, OrderShipped(order_key=oid), after=True))
    if order.fate is Fate.RETURNED:
        lines = [line.as_json() for line in order.returned_lines]
        returned = {"order_id": oid, "lines": lines, "restock": order.restock}
        back = tuple(ReturnLine(sku=line.sku, quantity=line.qty) for line in order.returned_lines)
        event = ReturnReceived(order_key=oid, lines=back, restock=order.restock)
        follow_ups.append(hook("return.received", returned, event, after=True))
    return timed, tuple(follow_ups)
