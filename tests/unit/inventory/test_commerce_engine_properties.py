"""Random histories in Commerce Engine's dialect: duplicated and reordered per order, they end in the
same projection as one clean delivery; availability never goes below zero; backorders fill in order.

Orders are built from the fields the ``commerce-engine`` profile reads (the fixtures carry the whole
published shape); stock comes from the ``shop`` source in Stockwire's own dialect.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from services.inventory.adapters.wire import Envelope
from services.inventory.domain.model import order_key
from services.inventory.domain.workspace import Outcome

from .histories import MemoryInventory

PLENTY = ("TEE", "MUG", "CAP")  # stocked before any order, more than every order together asks for
LATE = "JKT"  # only backorder lines ask for it; its stock arrives after the orders
DIGITAL = "EBOOK"


def _product(sku: str) -> tuple[str, str | None]:
    return f"prd-{sku}", (None if sku in ("MUG", DIGITAL) else f"var-{sku}")


@dataclass
class _Ids:
    n: int = 0

    def next(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}-{self.n:05d}"


def _message(source: str, event_type: str, event_id: str, data: dict[str, Any], ts: int) -> Envelope:
    body = {"id": event_id, "event_type": event_type, "created_at": 1_790_000_000 + ts, "data": data}
    headers = {
        "Nats-Msg-Id": f"{source}:{event_id}",
        "Stockwire-Source": source,
        "Stockwire-Event-Type": event_type,
        "Stockwire-Event-Id": event_id,
    }
    return Envelope(f"commerce.{source}.{event_type}", json.dumps(body).encode(), headers)


@dataclass
class _Order:
    number: str
    lines: list[tuple[str, int, int, bool]]
    """(sku, quantity, free_quantity, backorder)"""
    events: list[Envelope] = field(default_factory=list)


def _item(sku: str, quantity: int, free: int, backorder: bool) -> dict[str, Any]:
    product_id, variant_id = _product(sku)
    return {
        "product_id": product_id,
        "variant_id": variant_id,
        "sku": sku,
        "quantity": quantity,
        "free_quantity": free,
        "product_type": "digital" if sku == DIGITAL else "physical",
        "backorder": backorder,
    }


_STEPS_SHIPPED = (
    ("scheduled", "packed", "shipped", "in_transit", "delivered"),
    ("scheduled", "out_for_delivery", "delivered"),  # its `shipped` update never sent
    ("packed", "shipped", "return_to_origin"),
    ("shipped", "lost"),
)


def _build_order(draw: st.DrawFn, ids: _Ids, clock: list[int], index: int) -> _Order:
    order = _Order(f"ORD-{index:03d}", [])
    for sku in draw(st.lists(st.sampled_from((*PLENTY, LATE, DIGITAL)), min_size=1, max_size=3, unique=True)):
        quantity = draw(st.integers(0, 3))
        free = draw(st.integers(0 if quantity else 1, 1))
        order.lines.append((sku, quantity, free, sku == LATE))
    placed = {"order_number": order.number, "order_items": [_item(*line) for line in order.lines]}

    def send(event_type: str, data: dict[str, Any]) -> None:
        clock[0] += 1
        order.events.append(_message("ce", event_type, ids.next("evt"), data, clock[0]))

    send("order.created", placed)
    fate = draw(st.sampled_from(("abandoned", "cancelled", "paid", "shipped", "shipped", "partly-then-cancelled")))
    if fate == "abandoned":
        if draw(st.booleans()):
            send("payment.failed", placed)
        return order
    if fate == "cancelled":
        send("order.cancelled", placed)
        return order
    if draw(st.booleans()):
        send("payment.failed", placed)
        send("payment.retried", placed)
    send(draw(st.sampled_from(("payment.success", "payment.successful", "order.confirmed"))), placed)
    if draw(st.booleans()):  # a stale failure delivered after the success
        send("payment.failed", placed)
    if draw(st.booleans()):  # the producer re-emits the order under a new event id
        send("order.created", placed)
    if fate == "paid":
        return order
    physical = [line for line in order.lines if line[0] != DIGITAL]
    split = draw(st.integers(1, max(1, len(physical))))
    groups = [physical[i::split] for i in range(split)]
    left: list[tuple[str, int]] = []
    for n, group in enumerate(groups):
        if not group:
            continue
        reference = f"SHP-{order.number}-{n}"
        shipment = {
            "order_number": order.number,
            "reference_number": reference,
            "shipment_items": [
                {"sku": sku, "quantity": quantity, "free_quantity": free} for sku, quantity, free, _ in group
            ],
        }
        if fate == "partly-then-cancelled" and n > 0:
            steps: Sequence[str] = ("scheduled", "cancelled")
        else:
            steps = draw(st.sampled_from(_STEPS_SHIPPED))
        for status in steps:
            name = "shipment.updated" if status not in ("shipped", "delivered") else f"shipment.{status}"
            send(draw(st.sampled_from((name, "shipment.updated"))), {**shipment, "status": status})
        if "return_to_origin" not in steps and "cancelled" not in steps:
            left += [(sku, quantity + free) for sku, quantity, free, _ in group]
    if fate == "partly-then-cancelled":
        send("order.cancelled", placed)
    if left and draw(st.booleans()):
        sku, units = draw(st.sampled_from(left))
        product_id, variant_id = _product(sku)
        back = {
            "order_number": order.number,
            "request_number": f"RET-{order.number}",
            "items": [{"shipment_number": "?", "product_id": product_id, "variant_id": variant_id, "quantity": units}],
        }
        send("return.initiated", {**back, "status": "created"})
        send("return.initiated", {**back, "status": "complete", "received_at": "2026-12-01T10:00:00Z"})
    if fate == "shipped" and draw(st.booleans()):
        send("order.completed", placed)
    return order


@dataclass
class _History:
    stock: list[Envelope]
    orders: list[_Order]
    late_stock: list[Envelope]

    def clean(self) -> list[Envelope]:
        return [*self.stock, *(e for o in self.orders for e in o.events), *self.late_stock]

    def messy(self, rng: random.Random) -> list[Envelope]:
        """Each order's events in any order (orders keep their places), some delivered twice."""
        out = list(self.stock)
        for order in self.orders:
            events = list(order.events)
            rng.shuffle(events)
            out += events
        out += self.late_stock
        for event in list(out):
            if rng.random() < 0.2:
                out.insert(rng.randint(out.index(event) + 1, len(out)), event)
        return out


@st.composite
def histories(draw: st.DrawFn) -> _History:
    ids, clock = _Ids(), [0]
    stock = [_message("shop", "inventory.received", ids.next("recv"), {"sku": sku, "qty": 100}, 0) for sku in PLENTY]
    orders = [_build_order(draw, ids, clock, i) for i in range(draw(st.integers(1, 4)))]
    late = [
        _message("shop", "inventory.received", ids.next("recv"), {"sku": LATE, "qty": qty}, clock[0] + 1)
        for qty in draw(st.lists(st.integers(1, 4), max_size=2))
    ]
    return _History(stock, orders, late)


def _describe(message: Envelope) -> str:
    data = json.loads(message.body)["data"]
    what = data.get("status") or data.get("order_number") or data.get("sku")
    return f"{message.headers['Stockwire-Event-Id']}:{message.event_type}({what})"


def _run(deliveries: Sequence[Envelope]) -> MemoryInventory:
    memory = MemoryInventory.commerce_engine()
    for message in deliveries:
        result = memory.deliver(message)
        assert result.outcome is not Outcome.FAILED, result.detail
        for state in memory.ws.skus.values():
            assert state.available >= 0 and state.reserved >= 0 and state.committed >= 0 and state.backordered >= 0
    return memory


def _projection(memory: MemoryInventory) -> dict[str, Any]:
    skus = {s.sku: (s.on_hand, s.reserved, s.committed, s.backordered) for s in memory.ws.skus.values()}
    orders = {
        key: (r.state.value, r.held(), r.backordered, r.shipped, r.returned)
        for key, r in memory.ws.reservations.items()
    }
    return {"skus": skus, "orders": orders, "parked": memory.parked()}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=histories(), seed=st.integers(0, 2**32 - 1))
def test_duplicated_and_reordered_per_order_ends_as_one_clean_delivery(history: _History, seed: int) -> None:
    clean = _projection(_run(history.clean()))
    messy = history.messy(random.Random(seed))
    for order in history.orders:
        note(f"{order.number} {order.lines}: " + ", ".join(_describe(e) for e in order.events))
    note("delivered: " + ", ".join(_describe(e) for e in messy))
    assert _projection(_run(messy)) == clean
    assert DIGITAL not in clean["skus"]


@settings(max_examples=100, deadline=None)
@given(
    wanted=st.lists(st.integers(1, 4), min_size=2, max_size=5),
    receipts=st.lists(st.integers(1, 6), min_size=1, max_size=4),
    paid=st.lists(st.booleans(), min_size=5, max_size=5),
)
def test_backorders_fill_oldest_first_and_never_leave_stock_available_while_one_waits(
    wanted: list[int], receipts: list[int], paid: list[bool]
) -> None:
    ids = _Ids()
    memory = MemoryInventory.commerce_engine()
    numbers = []
    for i, qty in enumerate(wanted):
        number = f"ORD-BO-{i}"
        numbers.append(number)
        placed = {"order_number": number, "order_items": [_item(LATE, qty, 0, True)]}
        assert memory.deliver(_message("ce", "order.created", ids.next("evt"), placed, i)).outcome is Outcome.APPLIED
        if paid[i]:
            memory.deliver(_message("ce", "payment.success", ids.next("evt"), placed, i))
    for qty in receipts:
        memory.deliver(_message("shop", "inventory.received", ids.next("recv"), {"sku": LATE, "qty": qty}, 99))
        waiting = [memory.ws.reservations[order_key(n, "ce")].backordered.get(LATE, 0) for n in numbers]
        # Filled oldest first: once one order still waits, every later order waits for all it asked.
        first = next((i for i, w in enumerate(waiting) if w), len(waiting))
        assert waiting[first + 1 :] == wanted[first + 1 :]
        state = memory.ws.skus[LATE]
        assert state.backordered == sum(waiting)
        assert state.available == 0 or state.backordered == 0
        held = {n: memory.ws.reservations[order_key(n, "ce")].held().get(LATE, 0) for n in numbers}
        assert state.reserved + state.committed == sum(held.values())
