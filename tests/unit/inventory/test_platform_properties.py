"""Random Shopify, WooCommerce and Stripe + Shopify histories, read through their source profiles:
duplicated and reordered, they end in the same projection as one clean delivery, and availability
never goes below zero on the way.

Each delivery is built as the platform sends it (``WebhookScheme.delivery``: body, signature and the
platform's headers, X-Shopify-Topic / X-Shopify-Webhook-Id, X-WC-Webhook-Topic /
X-WC-Webhook-Delivery-ID, Stripe's Event), then accepted by ingress (``accept_webhook``) into the
COMMERCE message the inventory consumes: ``Stockwire-Event-Type`` is the platform's topic,
``Stockwire-Event-Id`` its id (WooCommerce's delivery id with the body's digest). Bodies carry the
fields the profiles read (``libs/profiles/data/*.toml``) in the shapes of ``tests/fixtures/<platform>``.
Stock comes first from the ``shop`` source in Stockwire's own dialect, more than all orders ask for.

The messy delivery shuffles each order's events, interleaves the orders freely and delivers some
messages again later (a platform's retry, a redelivery): the same message id, the same body.
``STOCKWIRE_PROPERTY_EXAMPLES`` sets the number of examples of each test (default 60).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from libs.config import SourceSettings
from libs.profiles import SourceProfiles
from libs.schemes import SCHEMES
from services.ingress.webhook import accept_webhook
from services.inventory.adapters.wire import Envelope
from services.inventory.domain.workspace import Outcome

from .histories import MemoryInventory

EXAMPLES = int(os.environ.get("STOCKWIRE_PROPERTY_EXAMPLES", "60"))
PROPERTY = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Product and variant ids as in tests/fixtures/shopify (WooCommerce: product 50 variations 53/56, simple 60, 70).
SHOPIFY_PRODUCTS = {
    "TEE-RED-M": (8123450001001, 45123450001011),
    "TEE-BLU-L": (8123450001001, 45123450001012),
    "MUG-BLK": (8123450002001, 45123450002011),
    "CAP-GRY": (8123450003001, 45123450003011),
}
WOO_PRODUCTS = {"TEE-RED-M": (50, 53), "TEE-BLU-L": (50, 56), "MUG-BLK": (60, 0), "CAP-GRY": (70, 0)}
SKUS = tuple(SHOPIFY_PRODUCTS)
STOCK = 100  # per SKU, received before any order: more than every order together asks for

SOURCES = {
    "shop": SourceSettings(scheme="commerce-engine", profile="stockwire", secrets=["shop-secret"]),
    "shopify": SourceSettings(scheme="shopify", secrets=["shpss_secret"]),
    "woo": SourceSettings(scheme="woocommerce", secrets=["wc-secret"]),
    "stripe": SourceSettings(scheme="stripe", secrets=["whsec_secret"], orders_source="shopify"),
}
START = 1_795_000_000  # 2026-11-18, Unix seconds
SHOP_TZ = dt.timezone(dt.timedelta(hours=-5))


def _ingest(source: str, event_id: str, event_type: str, data: dict[str, Any], at: int) -> Envelope:
    """The COMMERCE message ingress makes of ``data`` sent by ``source``'s platform at ``at``."""
    config = SOURCES[source]
    scheme = SCHEMES[config.scheme]
    body, headers = scheme.delivery(config.secrets[0], event_id=event_id, event_type=event_type, data=data, now=at)
    when = dt.datetime.fromtimestamp(at, dt.UTC)
    event = accept_webhook(source, config, headers, body, max_body_bytes=1 << 20, now=when)
    envelope = Envelope(event.subject, event.body, event.headers())
    assert envelope.headers["Stockwire-Event-Type"] == event_type
    assert envelope.headers["Stockwire-Event-Id"].startswith(event_id)
    return envelope


@dataclass
class _Clock:
    """Ids and the platforms' times: every event a minute after the one before."""

    t: int = 0
    n: int = 0

    def tick(self) -> int:
        self.t += 60
        return START + self.t

    def next(self) -> int:
        self.n += 1
        return self.n


@dataclass
class _Order:
    name: str
    events: list[Envelope] = field(default_factory=list)
    story: list[str] = field(default_factory=list)

    def add(self, envelope: Envelope, what: str) -> None:
        self.events.append(envelope)
        self.story.append(what)


@dataclass
class _History:
    stock: list[Envelope]
    orders: list[_Order]

    def clean(self) -> list[Envelope]:
        return [*self.stock, *(e for order in self.orders for e in order.events)]

    def messy(self, rng: random.Random, duplicate_p: float = 0.25) -> list[Envelope]:
        """Stock first; then each order's events shuffled, the orders interleaved at random; some
        messages delivered again, later."""
        queues = []
        for order in self.orders:
            events = list(order.events)
            rng.shuffle(events)
            queues.append(events)
        out = list(self.stock)
        while any(queues):
            queue = rng.choice([q for q in queues if q])
            out.append(queue.pop(0))
        for event in list(out):
            if rng.random() < duplicate_p:
                out.insert(rng.randint(out.index(event) + 1, len(out)), event)
        return out

    def describe(self, deliveries: Sequence[Envelope]) -> str:
        names = {id(e): what for order in self.orders for e, what in zip(order.events, order.story, strict=True)}
        return ", ".join(names.get(id(e), e.event_type) for e in deliveries)


def _stock() -> list[Envelope]:
    return [_ingest("shop", f"recv-{sku}", "inventory.received", {"sku": sku, "qty": STOCK}, START) for sku in SKUS]


def _pick_lines(draw: st.DrawFn) -> dict[str, int]:
    skus = draw(st.lists(st.sampled_from(SKUS), min_size=1, max_size=3, unique=True))
    return {sku: draw(st.integers(1, 3)) for sku in skus}


# --- Shopify ---------------------------------------------------------------------------------------
def _shopify_time(at: int) -> str:
    return dt.datetime.fromtimestamp(at, SHOP_TZ).isoformat()


@dataclass
class _ShopifyOrder:
    """One Shopify order as the store sees it, and the webhooks it has sent so far."""

    order: _Order
    id: int
    number: int
    lines: dict[str, int]
    line_ids: dict[str, int]
    gift_card: bool
    created: int
    financial: str = "pending"
    fulfilled: dict[str, int] = field(default_factory=dict)
    cancelled: dict[str, int] = field(default_factory=dict)  # units refunded as `cancel`, never fulfilled
    refunded: dict[str, int] = field(default_factory=dict)  # fulfilled units refunded (return, no_restock)
    cancelled_at: int | None = None

    def unfulfilled(self, sku: str) -> int:
        return self.lines[sku] - self.fulfilled.get(sku, 0) - self.cancelled.get(sku, 0)

    def line_item(self, sku: str, quantity: int | None = None) -> dict[str, Any]:
        product_id, variant_id = SHOPIFY_PRODUCTS[sku]
        done = self.fulfilled.get(sku, 0)
        return {
            "id": self.line_ids[sku],
            "sku": sku,
            "name": sku,
            "quantity": self.lines[sku] if quantity is None else quantity,
            "current_quantity": self.lines[sku] - self.cancelled.get(sku, 0) - self.refunded.get(sku, 0),
            "fulfillable_quantity": self.unfulfilled(sku),
            "fulfillment_status": "fulfilled" if not self.unfulfilled(sku) else ("partial" if done else None),
            "fulfillment_service": "manual",
            "product_id": product_id,
            "variant_id": variant_id,
            "requires_shipping": True,
            "gift_card": False,
            "variant_inventory_management": "shopify",
        }

    def _gift_card_line(self) -> dict[str, Any]:
        return {
            "id": self.line_ids["gift"],
            "sku": "",
            "name": "Gift card",
            "quantity": 1,
            "fulfillment_status": None,
            "product_id": 8123450009001,
            "variant_id": 45123450009011,
            "requires_shipping": False,
            "gift_card": True,
        }

    def body(self, at: int) -> dict[str, Any]:
        """The Order resource now (orders/create, orders/paid, orders/cancelled, orders/updated)."""
        done = sum(self.fulfilled.values())
        whole = all(not self.unfulfilled(sku) for sku in self.lines) and done
        items = [self.line_item(sku) for sku in self.lines]
        if self.gift_card:
            items.append(self._gift_card_line())
        return {
            "id": self.id,
            "name": f"#{self.number}",
            "order_number": self.number,
            "created_at": _shopify_time(self.created),
            "updated_at": _shopify_time(at),
            "financial_status": self.financial,
            "fulfillment_status": "fulfilled" if whole else ("partial" if done else None),
            "cancelled_at": _shopify_time(self.cancelled_at) if self.cancelled_at else None,
            "cancel_reason": "customer" if self.cancelled_at else None,
            "payment_gateway_names": ["stripe"],
            "line_items": items,
        }

    def send(self, clock: _Clock, topic: str, data: dict[str, Any] | None = None, what: str = "") -> int:
        at = clock.tick()
        webhook_id = f"{clock.next():08x}-5ed0-42f5-92f5-{self.id:012x}"
        self.order.add(
            _ingest("shopify", webhook_id, topic, self.body(at) if data is None else data, at),
            f"{self.order.name}:{topic}{what}",
        )
        return at


def _stripe_payment(clock: _Clock, shop: _ShopifyOrder, event_type: str) -> None:
    """A PaymentIntent event for ``shop``'s order, the order id in its metadata."""
    at = clock.tick()
    succeeded = event_type == "payment_intent.succeeded"
    intent = {
        "id": f"pi_3Qd{shop.id:013d}",
        "object": "payment_intent",
        "amount": 8497,
        "currency": "usd",
        "created": START,
        "status": "succeeded" if succeeded else "requires_payment_method",
        "metadata": {"order_id": str(shop.id)},
        "last_payment_error": None if succeeded else {"type": "card_error", "code": "card_declined"},
    }
    event_id = f"evt_3Qd{clock.next():06d}{shop.id:013d}"
    shop.order.add(_ingest("stripe", event_id, event_type, intent, at), f"{shop.order.name}:stripe:{event_type}")


def _shopify_order(draw: st.DrawFn, clock: _Clock, index: int, *, stripe: bool) -> _Order:
    number = 1041 + index
    order_id = 5735370481727 + index * 1_048_583
    lines = _pick_lines(draw)
    line_ids = {sku: order_id * 4 + i for i, sku in enumerate([*lines, "gift"])}
    shop = _ShopifyOrder(_Order(f"#{number}"), order_id, number, lines, line_ids, draw(st.booleans()), clock.tick())
    paid_at_checkout = not stripe and draw(st.booleans())
    shop.financial = "paid" if paid_at_checkout else "pending"
    shop.send(clock, "orders/create", what=f"({shop.financial} {lines})")

    def pay() -> None:
        shop.financial = "paid"
        shop.send(clock, "orders/paid")

    cash_on_delivery = False
    if paid_at_checkout:
        if draw(st.booleans()):  # Shopify also sends orders/paid for an order paid at checkout
            shop.send(clock, "orders/paid")
    elif stripe:
        attempts = draw(st.sampled_from(("ok", "declined-then-ok", "declined-twice-then-ok", "declined", "none")))
        for _ in range(attempts.count("declined") + attempts.count("twice")):
            _stripe_payment(clock, shop, "payment_intent.payment_failed")
        if attempts.endswith("ok"):
            _stripe_payment(clock, shop, "payment_intent.succeeded")
            shop.financial = "paid"
            if draw(st.booleans()):  # the store marks the order paid as well
                shop.send(clock, "orders/paid")
    elif draw(st.booleans()):
        pay()
    else:
        cash_on_delivery = draw(st.booleans())  # fulfilled first, paid on delivery
    if draw(st.integers(0, 4)) == 4:
        shop.send(clock, "orders/updated", what="(noise)")

    def fulfil(n: int) -> None:
        items = {}
        for sku in lines:
            if shop.unfulfilled(sku):
                units = draw(st.integers(0, shop.unfulfilled(sku)))
                if units:
                    items[sku] = units
        if not items:
            return
        for sku, units in items.items():
            shop.fulfilled[sku] = shop.fulfilled.get(sku, 0) + units
        at = clock.tick()
        fulfillment = {
            "id": 5512340007811 + index * 100 + n,
            "order_id": order_id,
            "name": f"#{number}.{n + 1}",
            "status": "success",
            "shipment_status": None,
            "location_id": 78412309871,
            "tracking_company": "UPS",
            "created_at": _shopify_time(at),
            "updated_at": _shopify_time(at),
            "line_items": [shop.line_item(sku, units) for sku, units in items.items()],
        }
        shop.send(clock, "fulfillments/create", fulfillment, f"({items})")
        if not any(shop.unfulfilled(sku) for sku in lines) and draw(st.booleans()):
            shop.send(clock, "orders/fulfilled")  # the order's every unit is fulfilled (or cancelled)
        for status in draw(st.sampled_from(((), ("in_transit",), ("delivered",), ("in_transit", "delivered")))):
            at = clock.tick()
            update = {**fulfillment, "shipment_status": status, "updated_at": _shopify_time(at)}
            shop.send(clock, "fulfillments/update", update, f"({status})")

    def refund() -> None:
        # Returned units back on the shelf, others refunded and kept, unfulfilled ones cancelled.
        refund_items = []
        for sku in lines:
            kept = shop.fulfilled.get(sku, 0) - shop.refunded.get(sku, 0)
            choices = [("skip", 0)]
            if kept:
                choices += [("return", kept), ("no_restock", kept)]
            if shop.unfulfilled(sku):
                choices.append(("cancel", shop.unfulfilled(sku)))
            restock_type, most = draw(st.sampled_from(choices))
            if restock_type == "skip":
                continue
            units = draw(st.integers(1, most))
            if restock_type == "cancel":
                shop.cancelled[sku] = shop.cancelled.get(sku, 0) + units
            else:
                shop.refunded[sku] = shop.refunded.get(sku, 0) + units
            refund_items.append((sku, units, restock_type))
        _shopify_refund(clock, shop, refund_items, index)

    # Zero to two fulfilments (a pending order is fulfilled only when paid on delivery), and maybe a
    # refund of a paid order before, between or after them.
    fulfilments = draw(st.integers(0, 2)) if shop.financial == "paid" or cash_on_delivery else 0
    refund_at = draw(st.integers(0, fulfilments)) if draw(st.booleans()) else None
    for n in range(fulfilments + 1):
        if n == refund_at and shop.financial == "paid":
            refund()
        if n < fulfilments:
            fulfil(n)
    if cash_on_delivery and draw(st.booleans()):
        pay()
        if refund_at is not None:
            refund()

    left = {sku: shop.unfulfilled(sku) for sku in lines if shop.unfulfilled(sku)}
    if left and draw(st.booleans()):
        # Cancelled while not everything was fulfilled: orders/cancelled, and the refund it makes.
        for sku, units in left.items():
            shop.cancelled[sku] = shop.cancelled.get(sku, 0) + units
        shop.cancelled_at = clock.t + START + 60
        shop.financial = "refunded" if shop.financial == "paid" else "voided"
        shop.send(clock, "orders/cancelled")
        _shopify_refund(clock, shop, [(sku, units, "cancel") for sku, units in left.items()], index + 50)
    return shop.order


def _shopify_refund(clock: _Clock, shop: _ShopifyOrder, items: list[tuple[str, int, str]], n: int) -> None:
    at = clock.tick()
    refund = {
        "id": 1012345670011 + n * 1000 + len(shop.order.events),
        "order_id": shop.id,
        "created_at": _shopify_time(at),
        "processed_at": _shopify_time(at),
        "note": None,
        "restock": any(kind != "no_restock" for _, _, kind in items),
        "refund_line_items": [
            {
                "id": 612345670101 + i,
                "quantity": units,
                "line_item_id": shop.line_ids[sku],
                "location_id": None if kind == "no_restock" else 78412309871,
                "restock_type": kind,
                "line_item": shop.line_item(sku),
            }
            for i, (sku, units, kind) in enumerate(items)
        ],
        "transactions": [],
    }
    shop.send(clock, "refunds/create", refund, f"({[(s, u, k) for s, u, k in items]})")


@st.composite
def shopify_histories(draw: st.DrawFn, *, stripe: bool = False) -> _History:
    clock = _Clock()
    stock = _stock()
    orders = [_shopify_order(draw, clock, i, stripe=stripe) for i in range(draw(st.integers(1, 4)))]
    return _History(stock, orders)


# --- WooCommerce -----------------------------------------------------------------------------------
def _woo_time(at: int) -> str:
    return dt.datetime.fromtimestamp(at, dt.UTC).replace(tzinfo=None).isoformat()


@dataclass
class _WooOrder:
    order: _Order
    id: int
    lines: dict[str, int]
    gift_card: bool
    created: int
    restocked: dict[str, int] = field(default_factory=dict)
    sent: int = 0

    def body(self, status: str, at: int) -> dict[str, Any]:
        reduced = status in ("on-hold", "processing", "completed", "refunded")
        items = []
        for i, (sku, qty) in enumerate(self.lines.items()):
            product_id, variation_id = WOO_PRODUCTS[sku]
            meta: list[dict[str, Any]] = []
            if reduced:
                meta.append(
                    {"id": self.id * 10 + i, "key": "_reduced_stock", "value": str(qty - self.restocked.get(sku, 0))}
                )
            if self.restocked.get(sku):
                meta.append(
                    {"id": self.id * 10 + 5 + i, "key": "_restock_refunded_items", "value": str(self.restocked[sku])}
                )
            items.append(
                {
                    "id": self.id * 10 + i,
                    "name": sku,
                    "product_id": product_id,
                    "variation_id": variation_id,
                    "quantity": qty,
                    "meta_data": meta,
                    "sku": sku,
                    "price": 12.5,
                }
            )
        if self.gift_card:
            items.append(
                {
                    "id": self.id * 10 + 9,
                    "name": "E-Gift Card",
                    "product_id": 80,
                    "variation_id": 0,
                    "quantity": 1,
                    "meta_data": [],
                    "sku": "",
                    "price": 25,
                }
            )
        return {
            "id": self.id,
            "status": status,
            "currency": "USD",
            "date_created_gmt": _woo_time(self.created),
            "date_modified_gmt": _woo_time(at),
            "date_paid_gmt": _woo_time(at) if status in ("processing", "completed") else None,
            "meta_data": [{"id": 9101, "key": "is_vat_exempt", "value": "no"}],
            "line_items": items,
            "refunds": [],
        }

    def send(self, clock: _Clock, status: str) -> None:
        at = clock.tick()
        topic = "order.created" if not self.sent else "order.updated"
        webhook = 12 if topic == "order.created" else 13
        # WC_Webhook::get_new_delivery_id(): the webhook's id and the current second, hashed; two
        # deliveries in one second share it (here: every other minute of the clock).
        delivery_id = hashlib.md5(f"{webhook}{at // 120}".encode()).hexdigest()
        self.sent += 1
        restocked = {sku: n for sku, n in self.restocked.items() if n}
        what = f"{self.order.name}:{topic}({status}{f' restocked {restocked}' if restocked else ''})"
        self.order.add(_ingest("woo", delivery_id, topic, self.body(status, at), at), what)


_WOO_PATHS = (
    ("pending", "processing"),
    ("pending", "on-hold", "processing"),
    ("checkout-draft", "pending", "processing"),
    ("processing",),
    ("pending", "failed", "processing"),
    ("pending", "failed"),
    ("processing", "cancelled"),
    ("pending", "cancelled"),
    ("pending", "on-hold", "cancelled"),
)


def _woo_order(draw: st.DrawFn, clock: _Clock, index: int) -> _Order:
    lines = _pick_lines(draw)
    woo = _WooOrder(_Order(f"woo-{1001 + index}"), 1001 + index, lines, draw(st.booleans()), clock.tick())
    path = draw(st.sampled_from(_WOO_PATHS))

    def partial_refund(status: str) -> None:
        # A refund of some units, restock ticked: the line's running total goes up; the status stays.
        sku = draw(st.sampled_from(sorted(lines)))
        left = lines[sku] - woo.restocked.get(sku, 0)
        if left:
            woo.restocked[sku] = woo.restocked.get(sku, 0) + draw(st.integers(1, left))
        woo.send(clock, status)

    for status in path:
        woo.send(clock, status)
        if draw(st.integers(0, 5)) == 5:  # saved again, nothing changed but the time
            woo.send(clock, status)
    if path[-1] != "processing":
        return woo.order
    if draw(st.integers(0, 3)) == 3:
        partial_refund("processing")
    if not draw(st.booleans()):
        return woo.order
    woo.send(clock, "completed")
    if draw(st.integers(0, 3)) == 3:
        partial_refund("completed")
    if draw(st.booleans()):
        # Refunded in full: the status says so; restock ticked puts every unit back, or none.
        if draw(st.booleans()):
            woo.restocked = dict(lines)
        woo.send(clock, "refunded")
    return woo.order


@st.composite
def woo_histories(draw: st.DrawFn) -> _History:
    clock = _Clock()
    stock = _stock()
    orders = [_woo_order(draw, clock, i) for i in range(draw(st.integers(1, 4)))]
    return _History(stock, orders)


# --- running and comparing --------------------------------------------------------------------------
def _run(deliveries: Sequence[Envelope]) -> MemoryInventory:
    memory = MemoryInventory(profiles=SourceProfiles(SOURCES))
    for i, message in enumerate(deliveries):
        result = memory.deliver(message)
        assert result.outcome not in (Outcome.FAILED, Outcome.DEAD_LETTERED), f"#{i} {message.event_type}: {result}"
        for state in memory.ws.skus.values():
            assert state.available >= 0, f"#{i} {message.event_type}: {state.sku} oversold: {state}"
            assert state.reserved >= 0 and state.committed >= 0 and state.backordered >= 0, f"#{i}: {state}"
    return memory


def _projection(memory: MemoryInventory) -> dict[str, Any]:
    skus = {
        s.sku: {
            "on_hand": s.on_hand,
            "reserved": s.reserved,
            "committed": s.committed,
            "available": s.available,
            "backordered": s.backordered,
        }
        for s in memory.ws.skus.values()
    }
    orders = {key: (r.state.value, r.held()) for key, r in memory.ws.reservations.items()}
    return {"skus": skus, "orders": orders, "parked": memory.parked()}


def _check(history: _History, seed: int) -> None:
    for order in history.orders:
        note(f"{order.name}: " + ", ".join(order.story))
    clean = _run(history.clean())
    messy_deliveries = history.messy(random.Random(seed))
    note("delivered: " + history.describe(messy_deliveries))
    messy = _run(messy_deliveries)
    expected, got = _projection(clean), _projection(messy)
    note(f"clean: {json.dumps(expected, default=str)}")
    note(f"messy: {json.dumps(got, default=str)}")
    assert got == expected
    # Every order was placed (none lost to a misread payload).
    assert len(expected["orders"]) == len(history.orders)


@PROPERTY
@given(history=shopify_histories(), seed=st.integers(0, 2**32 - 1))
def test_shopify_histories_duplicated_and_reordered_end_as_one_clean_delivery(history: _History, seed: int) -> None:
    _check(history, seed)


@PROPERTY
@given(history=woo_histories(), seed=st.integers(0, 2**32 - 1))
def test_woocommerce_histories_duplicated_and_reordered_end_as_one_clean_delivery(history: _History, seed: int) -> None:
    _check(history, seed)


@PROPERTY
@given(history=shopify_histories(stripe=True), seed=st.integers(0, 2**32 - 1))
def test_stripe_payments_of_shopify_orders_duplicated_and_reordered_end_as_one_clean_delivery(
    history: _History, seed: int
) -> None:
    _check(history, seed)
