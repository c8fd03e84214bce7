"""Orders in Commerce Engine's dialect, and the story of each: what its store sends, in what order.

An order is keyed by its ``order_number`` (``ORD-<run>-000001``); its items carry free units, free gift
lines, bundles, digital products and, now and then, a backorder line. Payments succeed, fail and are
retried, or fail for good; paid orders are confirmed and shipped in one to three shipments, each
reported once per status (scheduled → packed → shipped → in transit → out for delivery → delivered),
under both vocabularies; some shipments are cancelled before they leave, come back to origin or are
lost; returns name products, not SKUs; refunds and completion follow. Each webhook carries the
canonical event the ``commerce-engine`` profile reads from it (the unit tests hold them equal).

Two rules keep the ground truth exact (see :mod:`.model`): every order has a stocked line that is not
a backorder, so inventory's decision on it shows on the INVENTORY stream; and an order with a
backorder line is paid and never completed, its backorder waiting in a scheduled shipment, so which
paid order got units that turned up does not change any SKU's totals.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable, Sequence
from typing import Any

from libs.profiles.canonical import (
    CanonicalEvent,
    OrderCancelled,
    OrderCompleted,
    OrderConfirmed,
    OrderLine,
    OrderPlaced,
    PaymentFailed,
    PaymentRefunded,
    PaymentRetried,
    PaymentSucceeded,
    Return,
    ReturnItem,
    ReturnStatus,
    Shipment,
    ShipmentItem,
    ShipmentStatus,
)

from .catalogue import Assortment
from .ce_payloads import customer, order_document, return_document, shipment_document, with_status
from .config import OrderMix, SimConfig
from .draws import Ids, draw_fate, pick_distinct
from .plan import Fate, Line, PlannedOrder, Webhook

__all__ = ["draw_order", "order_webhooks"]

Timed = list[tuple[float, Webhook]]
Step = tuple[str, ShipmentStatus]

_PAID_FATES = (Fate.PAID, Fate.SHIPPED, Fate.RETURNED)


def _line(shop: Assortment, sku: str, qty: int, free: int = 0, backorder: bool = False) -> Line:
    product = shop.products[sku]
    return Line(sku, qty, free, product.product_type, backorder, product.product_id, product.variant_id)


def draw_order(rng: random.Random, config: SimConfig, index: int, shop: Assortment) -> PlannedOrder:
    mix, catalogue = config.mix, config.catalogue
    fate = draw_fate(rng, mix)
    skus = pick_distinct(rng, shop.names, shop.weights, rng.randint(1, min(catalogue.max_lines, len(shop.names))))
    lines = [_line(shop, sku, rng.randint(1, catalogue.max_qty), int(rng.random() < mix.free_units)) for sku in skus]
    if shop.gifts and rng.random() < mix.gift:
        lines.append(_line(shop, rng.choice(shop.gifts), 0, free=1))
    if shop.bundles and rng.random() < mix.bundle:
        lines.append(_line(shop, rng.choice(shop.bundles), 1))
    if shop.digital and rng.random() < mix.digital:
        lines.append(_line(shop, rng.choice(shop.digital), 1))
    if fate in _PAID_FATES and rng.random() < mix.backorder:
        # The hottest SKU the order does not hold already: the one most likely sold out when it comes.
        hottest = next((sku for sku in shop.hot if sku not in skus), None)
        if hottest is not None:
            lines.append(_line(shop, hottest, rng.randint(1, catalogue.max_qty + 1), backorder=True))
    return PlannedOrder(config.order_number(index), tuple(lines), fate)


def _placed(order: PlannedOrder, paid: bool) -> OrderPlaced:
    lines = tuple(
        OrderLine(
            sku=line.sku,
            quantity=line.units,
            product_type=line.product_type,
            backorder=line.backorder,
            product_id=line.product_id,
            variant_id=line.variant_id,
        )
        for line in order.lines
    )
    return OrderPlaced(order_key=order.order_id, lines=lines, confirmed=paid)


def _groups(rng: random.Random, lines: Sequence[Line]) -> list[list[Line]]:
    """``lines`` spread over one to three shipments, none empty."""
    count = rng.randint(1, min(3, len(lines)))
    shuffled = list(lines)
    rng.shuffle(shuffled)
    groups: list[list[Line]] = [[line] for line in shuffled[:count]]
    for line in shuffled[count:]:
        rng.choice(groups).append(line)
    return groups


def _journey(rng: random.Random, mix: OrderMix) -> list[Step]:
    """One shipment's (event type, status) reports, from ``shipment.created`` on."""
    steps: list[Step] = [("shipment.created", "scheduled"), ("shipment.updated", "packed")]
    if rng.random() >= mix.shipped_step_missing:
        name = "shipment.shipped" if rng.random() < mix.aliases else "shipment.updated"
        steps.append((name, "shipped"))
        if rng.random() < mix.reported_twice:
            steps.append(("shipment.updated" if name == "shipment.shipped" else "shipment.shipped", "shipped"))
    steps.append(("shipment.updated", "in_transit"))
    end = rng.random()
    if end < mix.return_to_origin:
        return [*steps, ("shipment.updated", "return_to_origin")]
    if end < mix.return_to_origin + mix.lost:
        return [*steps, ("shipment.updated", "lost")]
    if rng.random() >= mix.delivered:
        return steps if rng.random() < 0.5 else [*steps, ("shipment.updated", "out_for_delivery")]
    delivered = "shipment.delivered" if rng.random() < mix.aliases else "shipment.updated"
    return [*steps, ("shipment.updated", "out_for_delivery"), (delivered, "delivered")]


def _interleaved(rng: random.Random, journeys: list[list[Any]]) -> list[Any]:
    """Every journey's steps, in its own order, the journeys merged at random (shipments travel at once)."""
    queues = [list(reversed(journey)) for journey in journeys if journey]
    merged = []
    while queues:
        queue = rng.choice(queues)
        merged.append(queue.pop())
        if not queue:
            queues.remove(queue)
    return merged


class _Story:
    """The webhooks of one order, written as its store would send them."""

    def __init__(self, rng: random.Random, ids: Ids, order: PlannedOrder, config: SimConfig, now: dt.datetime) -> None:
        self.rng, self.ids, self.order, self.config = rng, ids, order, config
        self.at = now.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        self.received_at = dt.datetime.fromisoformat(self.at.replace("Z", "+00:00")).timestamp()
        self.suffix = order.order_id.removeprefix("ORD-")
        self.document = order_document(order.order_id, order.lines, customer(rng), self.at)
        self.cancels_a_shipment = order.fate is Fate.CANCELLED_PAID and rng.random() < config.mix.shipment_cancelled
        """Paid, then its shipment is cancelled before it leaves, then the order is cancelled."""

    def hook(self, event_type: str, data: dict[str, Any], event: CanonicalEvent, after: bool) -> Webhook:
        oid, source = self.order.order_id, self.config.order_source
        return Webhook(self.ids.event(), event_type, data, oid, after, source, "commerce-engine", event)

    def order_event(
        self, event_type: str, status: str, payment: str, event: CanonicalEvent, after: bool = False
    ) -> Webhook:
        data = with_status(self.document, status, payment, self.at if payment == "success" else None)
        return self.hook(event_type, data, event, after)

    def shipment(
        self, event_type: str, status: ShipmentStatus, reference: str, lines: Sequence[Line], awb: str
    ) -> Webhook:
        oid = self.order.order_id
        data = shipment_document(oid, reference, status, lines, awb, self.at)
        items = tuple(
            ShipmentItem(
                sku=item["sku"],
                product_id=item.get("product_id"),
                variant_id=item.get("variant_id"),
                quantity=item["quantity"],
                free_quantity=item["free_quantity"],
            )
            for item in data["shipment_items"]
        )
        event = Shipment(order_key=oid, reference=reference, status=status, items=items)
        return self.hook(event_type, data, event, True)

    def sale(self, position: float) -> Timed:
        """What comes before anyone knows whether inventory took the order: placing it and paying."""
        rng, mix, oid, fate = self.rng, self.config.mix, self.order.order_id, self.order.fate
        gap: Callable[[], float] = lambda: rng.uniform(*mix.follow_up_gap)  # noqa: E731
        # Paid at checkout: the order comes confirmed and paid, and no payment event follows.
        prepaid = fate in (*_PAID_FATES, Fate.CANCELLED_PAID) and rng.random() < mix.placed_paid
        status, payment = ("confirmed", "success") if prepaid else ("pending", "pending")
        timed = [(position, self.order_event("order.created", status, payment, _placed(self.order, prepaid)))]
        if rng.random() < mix.placed_again:
            again = self.order_event("order.created", status, payment, _placed(self.order, prepaid))
            timed.append((position + gap(), again))
        at = position + gap()

        def failed() -> Webhook:
            return self.order_event("payment.failed", "pending", "failed", PaymentFailed(order_key=oid))

        def retried() -> Webhook:
            return self.order_event("payment.retried", "pending", "pending", PaymentRetried(order_key=oid))

        if fate is Fate.ABANDONED:
            return timed
        if fate is Fate.PAYMENT_FAILED:
            timed.append((at, failed()))
            if rng.random() < 0.5:
                at += gap()
                timed += [(at, retried()), (at + gap(), failed())]
            return timed
        if fate is Fate.CANCELLED_UNPAID:
            return [
                *timed,
                (at, self.order_event("order.cancelled", "cancelled", "pending", OrderCancelled(order_key=oid))),
            ]
        if not prepaid:
            timed += self.payment(at, failed, retried)
            at = timed[-1][0]
        if rng.random() < mix.late_failure:
            timed.append(
                (at + gap(), self.order_event("payment.failed", "confirmed", "failed", PaymentFailed(order_key=oid)))
            )
        if fate is Fate.CANCELLED_PAID and not self.cancels_a_shipment:
            at += gap()
            timed.append(
                (at, self.order_event("order.cancelled", "cancelled", "success", OrderCancelled(order_key=oid)))
            )
            timed += [(at + gap(), webhook) for webhook in self.refund("cancelled", after=False)]
        return timed

    def payment(self, at: float, failed: Callable[[], Webhook], retried: Callable[[], Webhook]) -> Timed:
        """A payment that succeeds, at once or after a failure and a retry."""
        rng, mix, oid = self.rng, self.config.mix, self.order.order_id
        timed: Timed = []
        if rng.random() < mix.payment_retried:
            timed.append((at, failed()))
            at += rng.uniform(*mix.follow_up_gap)
            timed.append((at, retried()))
            at += rng.uniform(*mix.follow_up_gap)
        name = "payment.successful" if rng.random() < mix.aliases else "payment.success"
        timed.append((at, self.order_event(name, "confirmed", "success", PaymentSucceeded(order_key=oid))))
        return timed

    def refund(self, status: str, after: bool = True) -> list[Webhook]:
        oid = self.order.order_id
        outcome = "payment.refund.success" if self.rng.random() < 0.9 else "payment.refund.failed"
        return [
            self.order_event(kind, status, "success", PaymentRefunded(order_key=oid), after)
            for kind in ("payment.refund.initiated", outcome)
        ]

    def follow_ups(self) -> list[Webhook]:
        """What the store sends once the order is paid (sent only if inventory took it)."""
        rng, mix, fate, oid = self.rng, self.config.mix, self.order.fate, self.order.order_id
        if fate not in (*_PAID_FATES, Fate.CANCELLED_PAID):
            return []
        if fate is Fate.CANCELLED_PAID and not self.cancels_a_shipment:
            return []
        out = []
        if rng.random() < mix.confirmed:
            out.append(self.order_event("order.confirmed", "confirmed", "success", OrderConfirmed(order_key=oid), True))
        stocked = [line for line in self.order.lines if line.stocked and not line.backorder]
        waiting = [line for line in self.order.lines if line.backorder]
        if waiting:
            out.append(self.shipment("shipment.created", "scheduled", f"SHP-{self.suffix}-B", waiting, self.awb()))
        if fate is Fate.CANCELLED_PAID:
            reference, awb = f"SHP-{self.suffix}-1", self.awb()
            out += [self.shipment(kind, status, reference, stocked, awb) for kind, status in self.not_yet_shipped()]
            out.append(self.shipment("shipment.cancelled", "cancelled", reference, stocked, awb))
            out.append(self.order_event("order.cancelled", "cancelled", "success", OrderCancelled(order_key=oid), True))
            return out + self.refund("cancelled")
        if fate is Fate.PAID:
            # Kept: paid and committed, at most being packed when the run ends.
            if rng.random() < 0.5:
                reference, awb = f"SHP-{self.suffix}-1", self.awb()
                out += [self.shipment(kind, status, reference, stocked, awb) for kind, status in self.not_yet_shipped()]
            return out
        return out + self.shipments(stocked, waiting)

    def not_yet_shipped(self) -> list[Step]:
        scheduled: list[Step] = [("shipment.created", "scheduled")]
        return scheduled + [("shipment.updated", "packed")] * (self.rng.random() < 0.5)

    def awb(self) -> str:
        return f"{self.rng.randrange(10**13):013d}"

    def shipments(self, stocked: Sequence[Line], waiting: Sequence[Line]) -> list[Webhook]:
        rng, mix, oid = self.rng, self.config.mix, self.order.order_id
        groups = _groups(rng, stocked)
        journeys = []
        for n, lines in enumerate(groups, 1):
            reference, awb = f"SHP-{self.suffix}-{n}", self.awb()
            journeys.append([(kind, status, reference, lines, awb) for kind, status in _journey(rng, mix)])
        out = [self.shipment(*step) for step in _interleaved(rng, journeys)]
        delivered = [journey for journey in journeys if journey[-1][1] == "delivered"]
        if len(delivered) == len(journeys) and not waiting and rng.random() < mix.completed:
            out.append(self.order_event("order.completed", "complete", "success", OrderCompleted(order_key=oid), True))
        if self.order.fate is Fate.RETURNED and delivered:
            out += self.returned([(journey[-1][2], line) for journey in delivered for line in journey[-1][3]])
        if any(journey[-1][1] == "lost" for journey in journeys):
            out += self.refund("shipped")
        return out

    def returned(self, shipped: Sequence[tuple[str, Line]]) -> list[Webhook]:
        """A return of some delivered units, named by product; it comes back complete or is turned down."""
        rng, mix, oid = self.rng, self.config.mix, self.order.order_id
        picked = [(ref, line) for ref, line in shipped if rng.random() < 0.7] or [shipped[0]]
        items = [(ref, line, rng.randint(1, line.units)) for ref, line in picked]
        request = f"RET-{self.suffix}-1"
        complete = rng.random() < mix.restock
        statuses: list[ReturnStatus] = ["created"]
        if rng.random() < 0.3:
            statuses.append("approved")
        statuses.append("complete" if complete else "rejected")
        out = []
        for status in statuses:
            data = return_document(oid, request, status, items, self.at)
            event = Return(
                order_key=oid,
                request_number=request,
                status=status,
                received_at=self.received_at if status == "complete" else None,
                items=tuple(
                    ReturnItem(
                        product_id=line.product_id or line.sku,
                        variant_id=line.variant_id,
                        quantity=units,
                        shipment_number=ref,
                    )
                    for ref, line, units in items
                ),
            )
            # Commerce Engine documents no event for a return that got further than initiated: the
            # fixtures README; the profile reads how far it got from status and received_at.
            out.append(self.hook("return.initiated", data, event, True))
        return out + (self.refund("complete") if complete else [])


def order_webhooks(
    rng: random.Random, ids: Ids, order: PlannedOrder, position: float, config: SimConfig, now: dt.datetime
) -> tuple[Timed, tuple[Webhook, ...]]:
    """The order's webhooks in the sale (with planned positions) and its follow-ups after acceptance."""
    story = _Story(rng, ids, order, config, now)
    timed = story.sale(position)
    return timed, tuple(story.follow_ups())
