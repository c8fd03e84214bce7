"""Order histories for ``bench.inventory``: receipts, then each order's life in a producer's dialect,
bodies and headers exactly as ingress publishes them on COMMERCE.

The life of an order and its fate are drawn from a seeded generator before the dialect is looked at,
so every dialect gets the same orders (SKUs, quantities), the same fates and the same number of events
per order: the figures compare. Fates: 10 % cancelled, 10 % payment failed, 10 % never paid, the rest
paid and shipped in three steps.

============  ==========================  ===============================  ===============================
fate          Commerce Engine             Shopify                          Stockwire
============  ==========================  ===============================  ===============================
placed        order.created               orders/create (pending)          order.created
cancelled     order.cancelled             orders/cancelled (customer)      order.cancelled
failed        payment.failed              orders/updated (unpaid) [1]      payment.failed
paid          payment.success             orders/paid                      payment.successful
shipped       shipment.updated packed     fulfillments/create success      shipment.shipped
              shipment.updated shipped    fulfillments/update in_transit
              shipment.delivered          fulfillments/update delivered
============  ==========================  ===============================  ===============================

[1] Shopify has no failed-payment topic on orders: a declined payment leaves the order unpaid and sends
``orders/updated``, which, like Commerce Engine's ``payment.failed``, moves no stock. So both dialects
do the same ledger work and the comparison measures what reading each costs.

Bodies: ``lean`` carries the fields the profile reads and a few usual ones; ``full`` is the whole
resource, built from the fixtures (``tests/fixtures/commerce_engine/01-order.created.json`` and
``07-shipment.updated-shipped.json``; ``tests/fixtures/shopify/01-orders.create-a-pending.json`` and
``03-fulfillments.create-a-partial.json``) with the SKUs, quantities and ids substituted.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from libs.contracts import HEADER_EVENT_ID, HEADER_EVENT_TYPE, HEADER_MSG_ID, HEADER_RECEIVED_AT, HEADER_SOURCE
from libs.subjects import commerce_subject, event_type_levels

__all__ = ["BODIES", "DIALECTS", "ORDER_SOURCES", "Event", "delivery", "histories"]

DIALECTS = ("commerce-engine", "shopify", "stockwire")
BODIES = ("lean", "full")
ORDER_SOURCES = {"commerce-engine": "ce", "shopify": "shopify", "stockwire": "ce"}
"""The source each dialect's orders come in through; receipts come through ``shop`` (Stockwire's dialect)."""
SOURCE_PROFILES = {"ce": "commerce-engine", "shopify": "shopify", "shop": "stockwire"}
"""The profile of each source (``ce`` reads the ``stockwire`` profile for ``--dialect stockwire``)."""

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"
RECEIVED_AT = "2026-11-28T10:00:00.000000+00:00"
CE_TIME = "2026-11-28T10:00:00Z"
SHOPIFY_TIME = "2026-11-28T05:00:00-05:00"  # the same instant, in the shop's time zone as Shopify sends it
SHOPIFY_ORDER_ID = 5_735_370_000_000
SHOPIFY_FULFILLMENT_ID = 5_512_340_000_000
SHOPIFY_LINE_ITEM_ID = 16_049_880_000_000
SHOPIFY_PRODUCT_ID = 8_123_450_000_000
SHOPIFY_VARIANT_ID = 45_123_450_000_000

Items = list[tuple[str, int]]


@dataclass(frozen=True)
class Event:
    subject: str
    body: bytes
    headers: dict[str, str]


def delivery(source: str, event_type: str, event_id: str, body: bytes, *, separator: str = ".") -> Event:
    """A COMMERCE message as ingress publishes a webhook: ``commerce.<source>.<levels>``, the type as the
    producer spells it in ``Stockwire-Event-Type``, ``Nats-Msg-Id`` ``<source>:<id>``."""
    levels = event_type_levels(event_type, separator)
    if levels is None:
        raise ValueError(f"{event_type!r} is not a safe event type")
    headers = {
        HEADER_MSG_ID: f"{source}:{event_id}",
        HEADER_SOURCE: source,
        HEADER_EVENT_TYPE: event_type,
        HEADER_EVENT_ID: event_id,
        HEADER_RECEIVED_AT: RECEIVED_AT,
    }
    return Event(commerce_subject(source, levels), body, headers)


def _event(event_type: str, event_id: str, data: dict, *, source: str = "ce") -> Event:
    """A delivery in Commerce Engine's envelope (also Stockwire's): ``{"id", "event_type", "created_at", "data"}``."""
    body = json.dumps({"id": event_id, "event_type": event_type, "created_at": CE_TIME, "data": data}).encode()
    return delivery(source, event_type, event_id, body)


@cache
def _fixture(path: str) -> dict[str, Any]:
    return json.loads((FIXTURES / path).read_text())


# Commerce Engine --------------------------------------------------------------------------------------


def _ce_order(number: str, items: Items, full: bool, **status: str) -> dict:
    """A Commerce Engine ``Order``: the fields inventory reads (lean) or the fixture's whole shape (full)."""
    if not full:
        return {
            "order_number": number,
            "status": "pending",
            "payment_status": "pending",
            "order_items": [
                {"product_id": f"prd-{sku}", "variant_id": None, "sku": sku, "quantity": qty, "free_quantity": 0,
                 "product_type": "physical", "backorder": False}
                for sku, qty in items
            ],
            **status,
        }  # fmt: skip
    template = _fixture("commerce_engine/01-order.created.json")["data"]
    line = template["order_items"][0]
    lines = [
        {**line, "product_id": f"prd-{sku}", "variant_id": f"var-{sku}", "sku": sku, "quantity": qty,
         "free_quantity": 0, "is_free_item": False, "product_type": "physical", "backorder": False}
        for sku, qty in items
    ]  # fmt: skip
    return {
        **template,
        "order_number": number,
        "status": "pending",
        "payment_status": "pending",
        "payment_success_date": None,
        "order_items_count": len(lines),
        "order_items": lines,
        **status,
    }


def _ce_shipment(number: str, items: Items, full: bool) -> dict:
    """A Commerce Engine ``OrderShipment`` plus ``order_number``, without its status."""
    if not full:
        return {
            "order_number": number,
            "reference_number": f"{number}-shp",
            "shipment_items": [{"sku": s, "quantity": q, "free_quantity": 0} for s, q in items],
        }
    template = _fixture("commerce_engine/07-shipment.updated-shipped.json")["data"]
    line = template["shipment_items"][0]
    lines = [
        {**line, "product_id": f"prd-{sku}", "variant_id": f"var-{sku}", "sku": sku, "quantity": qty,
         "free_quantity": 0, "is_free_item": False}
        for sku, qty in items
    ]  # fmt: skip
    return {
        **template,
        "order_number": number,
        "reference_number": f"{number}-shp",
        "shipment_items_count": len(lines),
        "shipment_items": lines,
    }


def _commerce_engine_life(order_id: str, n: int, items: Items, fate: str, full: bool) -> list[Event]:
    data = _ce_order(order_id, items, full)
    life: list[tuple[str, dict]] = [("order.created", data)]
    if fate == "cancelled":
        life.append(("order.cancelled", {**data, "status": "cancelled"} if full else data))
    elif fate == "failed":
        life.append(("payment.failed", {**data, "payment_status": "failed"} if full else data))
    elif fate == "paid":
        shipment = _ce_shipment(order_id, items, full)
        life += [
            ("payment.success", {**data, "status": "confirmed", "payment_status": "success"} if full else data),
            ("shipment.updated", {**shipment, "status": "packed"}),
            ("shipment.updated", {**shipment, "status": "shipped"}),
            ("shipment.delivered", {**shipment, "status": "delivered"}),
        ]
    return [_event(event_type, f"{order_id}-{i}", body) for i, (event_type, body) in enumerate(life)]


# Stockwire --------------------------------------------------------------------------------------------


def _stockwire_life(order_id: str, n: int, items: Items, fate: str, full: bool) -> list[Event]:
    data: dict = {"order_id": order_id}
    life = [("order.created", {**data, "lines": [{"sku": s, "qty": q} for s, q in items]})]
    if fate == "cancelled":
        life.append(("order.cancelled", data))
    elif fate == "failed":
        life.append(("payment.failed", data))
    elif fate == "paid":
        life += [("payment.successful", data), ("shipment.shipped", data)]
    return [_event(event_type, f"{order_id}-{i}", body) for i, (event_type, body) in enumerate(life)]


# Shopify ----------------------------------------------------------------------------------------------


def _sku_number(sku: str) -> int:
    return int(sku.rsplit("-", 1)[1])


def _shopify_line(order: int, j: int, sku: str, qty: int, full: bool, template: dict | None = None) -> dict:
    number = _sku_number(sku)
    ids = {
        "id": SHOPIFY_LINE_ITEM_ID + order * 10 + j,
        "product_id": SHOPIFY_PRODUCT_ID + number,
        "variant_id": SHOPIFY_VARIANT_ID + number,
        "sku": sku,
        "quantity": qty,
    }
    if not full:
        return {**ids, "requires_shipping": True}
    assert template is not None
    return {**template, **ids, "admin_graphql_api_id": f"gid://shopify/LineItem/{ids['id']}",
            "current_quantity": qty, "gift_card": False, "requires_shipping": True}  # fmt: skip


def _shopify_order(n: int, items: Items, full: bool) -> dict:
    """A Shopify REST ``Order`` as ``orders/create`` delivers it, unpaid: lean or the fixture's whole shape."""
    order_id = SHOPIFY_ORDER_ID + n
    if not full:
        return {
            "id": order_id,
            "name": f"#{1001 + n}",
            "order_number": 1001 + n,
            "created_at": SHOPIFY_TIME,
            "updated_at": SHOPIFY_TIME,
            "financial_status": "pending",
            "fulfillment_status": None,
            "line_items": [_shopify_line(n, j, sku, qty, False) for j, (sku, qty) in enumerate(items)],
        }
    template = _fixture("shopify/01-orders.create-a-pending.json")["body"]
    line = {**template["line_items"][0], "fulfillment_status": None}
    lines = []
    for j, (sku, qty) in enumerate(items):
        lines.append({**_shopify_line(n, j, sku, qty, True, line), "fulfillable_quantity": qty})
    return {
        **template,
        "id": order_id,
        "admin_graphql_api_id": f"gid://shopify/Order/{order_id}",
        "name": f"#{1001 + n}",
        "number": 1 + n,
        "order_number": 1001 + n,
        "created_at": SHOPIFY_TIME,
        "updated_at": SHOPIFY_TIME,
        "processed_at": SHOPIFY_TIME,
        "financial_status": "pending",
        "fulfillment_status": None,
        "line_items": lines,
    }


def _shopify_fulfillment(n: int, items: Items, full: bool) -> dict:
    """A Shopify REST ``Fulfillment`` of the whole order, without its status."""
    fulfillment_id = SHOPIFY_FULFILLMENT_ID + n
    head = {
        "id": fulfillment_id,
        "order_id": SHOPIFY_ORDER_ID + n,
        "name": f"#{1001 + n}.1",
        "created_at": SHOPIFY_TIME,
        "updated_at": SHOPIFY_TIME,
    }
    if not full:
        lines = [_shopify_line(n, j, sku, qty, False) for j, (sku, qty) in enumerate(items)]
        return {**head, "line_items": lines}
    template = _fixture("shopify/03-fulfillments.create-a-partial.json")["body"]
    line = {**template["line_items"][0], "fulfillable_quantity": 0, "fulfillment_status": "fulfilled"}
    lines = [_shopify_line(n, j, sku, qty, True, line) for j, (sku, qty) in enumerate(items)]
    return {**template, **head, "admin_graphql_api_id": f"gid://shopify/Fulfillment/{fulfillment_id}",
            "line_items": lines}  # fmt: skip


def _shopify_life(order_id: str, n: int, items: Items, fate: str, full: bool) -> list[Event]:
    order = _shopify_order(n, items, full)
    life: list[tuple[str, dict]] = [("orders/create", order)]
    if fate == "cancelled":
        cancelled = {"cancelled_at": SHOPIFY_TIME, "cancel_reason": "customer", "financial_status": "voided"}
        life.append(("orders/cancelled", {**order, **cancelled, **({"closed_at": SHOPIFY_TIME} if full else {})}))
    elif fate == "failed":
        life.append(("orders/updated", order))
    elif fate == "paid":
        fulfillment = _shopify_fulfillment(n, items, full)
        life += [
            ("orders/paid", {**order, "financial_status": "paid"}),
            ("fulfillments/create", {**fulfillment, "status": "success", "shipment_status": None}),
            ("fulfillments/update", {**fulfillment, "status": "success", "shipment_status": "in_transit"}),
            ("fulfillments/update", {**fulfillment, "status": "success", "shipment_status": "delivered"}),
        ]
    source = ORDER_SOURCES["shopify"]
    return [
        delivery(source, topic, str(uuid.uuid4()), json.dumps(body).encode(), separator="/") for topic, body in life
    ]


LIVES: dict[str, Callable[[str, int, Items, str, bool], list[Event]]] = {
    "commerce-engine": _commerce_engine_life,
    "shopify": _shopify_life,
    "stockwire": _stockwire_life,
}


def histories(
    orders: int,
    *,
    skus: int = 500,
    hot: int = 5,
    seed: int = 42,
    dialect: str = "commerce-engine",
    bodies: str = "lean",
) -> list[Event]:
    """Receipts (Stockwire's dialect, through ``shop``), then each order's life in ``dialect`` through
    :data:`ORDER_SOURCES` ``[dialect]``; ``bodies``: ``lean`` or ``full`` (see the module)."""
    if dialect not in LIVES:
        raise ValueError(f"dialect {dialect!r}: one of {', '.join(LIVES)}")
    if bodies not in BODIES or (bodies == "full" and dialect == "stockwire"):
        raise ValueError(f"bodies {bodies!r}: lean, or full for commerce-engine and shopify")
    life = LIVES[dialect]
    full = bodies == "full"
    rng = random.Random(seed)
    run = uuid.uuid4().hex[:8]
    names = [f"SKU-{i:04d}" for i in range(skus)]
    stock = [(s, 10_000) for s in names[hot:]] + [(s, orders // 20) for s in names[:hot]]
    events = [_event("inventory.received", f"{run}-r-{s}", {"sku": s, "qty": q}, source="shop") for s, q in stock]
    for n in range(orders):
        pool = names[:hot] if rng.random() < 0.2 else names[hot:]
        items = [(s, rng.randint(1, 2)) for s in rng.sample(pool, rng.randint(1, 3))]
        draw = rng.random()
        fate = "cancelled" if draw < 0.1 else "failed" if draw < 0.2 else "unpaid" if draw < 0.3 else "paid"
        events += life(f"{run}-o{n}", n, items, fate, full)
    return events
