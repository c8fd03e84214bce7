"""Shopify, Stripe and WooCommerce deliveries (``tests/fixtures/{shopify,stripe,woocommerce}``) through the
running services, each signed as its platform signs it.

One stack with four sources: ``shop`` (Stockwire's own dialect, for stock receipts), ``shopify``, ``woo``
(the ``woocommerce`` profile) and ``stripe`` (its payments name Shopify's orders: ``orders_source``).
Each fixture's body is sent as the bytes it was signed over, with the fixture's own headers and the
platform's signature header; after every step the ledger is read back through inventory's API and
compared with what the step must have done, row by row.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import nats
import pytest
from nats.js import JetStreamContext

from stockwire.stack import DEV_SOURCE, Stack, dev_source_secret
from tests.commerce_engine import receipt
from tests.e2e.flash_sale.conftest import running_stack
from tests.e2e.inventory.conftest import drained
from tests.support import LedgerRow, ce_headers, chained_rows, eventually

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

FIXTURES = Path(__file__).parents[2] / "fixtures"
TEE, BLUE_TEE, MUG, CAP = "TEE-RED-M", "TEE-BLU-L", "MUG-BLK", "CAP-GRY"
SKUS = (TEE, BLUE_TEE, MUG, CAP)
ORDER_A, ORDER_B, ORDER_C, ORDER_D, ORDER_E = (
    "5735370481727",
    "5735371530303",
    "5735374250559",
    "5735376872001",
    "5735382007871",
)
STOCK = {TEE: 20, BLUE_TEE: 10, MUG: 10, CAP: 10}

Levels = tuple[int, int, int, int, int]
"""on_hand, reserved, committed, available, backordered."""
Row = LedgerRow


@dataclass(frozen=True)
class Delivery:
    """One fixture as the platform sends it: the raw body and its headers (the signature not yet added)."""

    platform: str
    name: str
    headers: dict[str, str]
    body: bytes

    @property
    def document(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.body)
        return loaded


def fixture(platform: str, number: int) -> Delivery:
    [path] = (FIXTURES / platform).glob(f"{number:02d}-*.json")
    stored = json.loads(path.read_text())
    body = stored["raw"].encode() if "raw" in stored else json.dumps(stored["body"]).encode()
    return Delivery(platform, path.stem, dict(stored["headers"]), body)


def hmac_sha256(secret: str, message: bytes) -> bytes:
    return hmac.new(secret.encode(), message, hashlib.sha256).digest()


def shopify_signature(secret: str, body: bytes) -> dict[str, str]:
    """Shopify: base64 HMAC-SHA256 of the raw body under the app's client secret."""
    return {"X-Shopify-Hmac-Sha256": base64.b64encode(hmac_sha256(secret, body)).decode()}


def woocommerce_signature(secret: str, body: bytes) -> dict[str, str]:
    """WooCommerce: base64 HMAC-SHA256 of the raw body under the webhook's secret."""
    return {"X-WC-Webhook-Signature": base64.b64encode(hmac_sha256(secret, body)).decode()}


def stripe_signature(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """Stripe: ``t=<unix s>,v1=<hex HMAC-SHA256 of "<t>.<body>">``."""
    t = int(time.time()) if timestamp is None else timestamp
    return {"Stripe-Signature": f"t={t},v1={hmac_sha256(secret, f'{t}.'.encode() + body).hex()}"}


SIGNERS = {"shopify": shopify_signature, "woocommerce": woocommerce_signature, "stripe": stripe_signature}
SOURCE_OF = {"shopify": "shopify", "woocommerce": "woo", "stripe": "stripe"}


def msg_id(delivery: Delivery) -> str:
    """The inbox key (and ledger source) ingress gives the delivery: ``<source>:<event id>``."""
    if delivery.platform == "shopify":
        return f"shopify:{delivery.headers['X-Shopify-Webhook-Id']}"
    if delivery.platform == "woocommerce":
        # WooCommerce's delivery id may stand for several events: the body's digest is appended to it.
        digest = hashlib.sha256(delivery.body).hexdigest()[:16]
        return f"woo:{delivery.headers['X-WC-Webhook-Delivery-ID']}.{digest}"
    return f"stripe:{delivery.document['id']}"


@dataclass
class Books:
    """What inventory's ledger must hold: rows per SKU, and the levels they add up to."""

    rows: dict[str, list[Row]] = field(default_factory=lambda: {sku: [] for sku in SKUS})

    def move(
        self, sku: str, kind: str, qty: int, source: str, *, on_hand: int = 0, reserved: int = 0, committed: int = 0
    ) -> None:
        self.rows[sku].append((kind, qty, on_hand, reserved, committed, source))

    def reserve(self, source: str, lines: dict[str, int]) -> None:
        for sku, qty in lines.items():
            self.move(sku, "reserved", qty, source, reserved=qty)

    def commit(self, source: str, lines: dict[str, int]) -> None:
        for sku, qty in lines.items():
            self.move(sku, "committed", qty, source, reserved=-qty, committed=qty)

    def deduct(self, source: str, lines: dict[str, int]) -> None:
        for sku, qty in lines.items():
            self.move(sku, "deducted", qty, source, on_hand=-qty, committed=-qty)

    def restock(self, source: str, lines: dict[str, int]) -> None:
        for sku, qty in lines.items():
            self.move(sku, "returned", qty, source, on_hand=qty)

    def levels(self, sku: str) -> Levels:
        on_hand = sum(row[2] for row in self.rows[sku])
        reserved = sum(row[3] for row in self.rows[sku])
        committed = sum(row[4] for row in self.rows[sku])
        return on_hand, reserved, committed, on_hand - reserved - committed, 0


@dataclass
class Platforms:
    """The producers (signed deliveries) and the readers (inventory's API, JetStream)."""

    stack: Stack
    http: httpx.AsyncClient
    js: JetStreamContext
    secrets: dict[str, str]
    books: Books = field(default_factory=Books)

    async def post(self, source: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return await self.http.post(f"{self.stack.url('ingress')}/webhooks/{source}", content=body, headers=headers)

    async def deliver(self, delivery: Delivery) -> str:
        """POST the fixture signed as its platform signs it; returns ingress's ``status``."""
        source = SOURCE_OF[delivery.platform]
        headers = {**delivery.headers, **SIGNERS[delivery.platform](self.secrets[source], delivery.body)}
        # Stripe sends `Content-Type: application/json; charset=utf-8`; its fixtures keep no headers.
        if not any(name.lower() == "content-type" for name in headers):
            headers["Content-Type"] = "application/json; charset=utf-8"
        response = await self.post(source, delivery.body, headers)
        assert response.status_code == 200, f"{delivery.name}: {response.status_code} {response.text}"
        status: str = response.json()["status"]
        return status

    async def step(self, delivery: Delivery) -> str:
        """Send one new delivery, wait until inventory settled it; returns its inbox key."""
        before = await self.last_seq()
        assert await self.deliver(delivery) == "accepted", delivery.name
        assert await self.last_seq() == before + 1  # kept in COMMERCE
        await self.settled()
        return msg_id(delivery)

    async def receive(self, event_id: str, sku: str, qty: int) -> None:
        body = json.dumps(receipt(event_id, sku, qty)).encode()
        response = await self.post(DEV_SOURCE, body, ce_headers(self.secrets[DEV_SOURCE], body))
        assert response.status_code == 200 and response.json()["status"] == "accepted", response.text
        await self.settled()
        self.books.move(sku, "received", qty, f"{DEV_SOURCE}:{event_id}", on_hand=qty)

    async def shelve(self) -> None:
        """Stock on the shelf, in Stockwire's own dialect on ``shop`` (the platforms' counts are not read)."""
        for sku, qty in STOCK.items():
            await self.receive(f"recv-{sku}", sku, qty)
        await self.check()

    async def last_seq(self) -> int:
        return int((await self.js.stream_info("COMMERCE")).state.last_seq)

    async def settled(self) -> None:
        await eventually(lambda: drained(self.js), timeout=20, what="inventory settled COMMERCE")

    async def inventory(self, path: str, **params: str) -> httpx.Response:
        return await self.http.get(f"{self.stack.url('inventory')}{path}", params=params)

    async def order(self, order_id: str, source: str) -> dict[str, Any]:
        response = await self.inventory(f"/orders/{order_id}", source=source)
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        assert answer["order_id"] == order_id and answer["source"] == source
        return answer

    async def outcomes(self, order_id: str, source: str) -> dict[str, str]:
        """The order's events as inventory's inbox settled them: msg_id -> outcome."""
        return {e["msg_id"]: e["outcome"] for e in (await self.order(order_id, source))["events"]}

    async def levels(self, sku: str) -> Levels:
        response = await self.inventory(f"/skus/{quote(sku, safe='')}")
        assert response.status_code == 200, response.text
        s = response.json()
        assert s["version"] == len(await self.ledger(sku))
        return s["on_hand"], s["reserved"], s["committed"], s["available"], s["backordered"]

    async def ledger(self, sku: str) -> list[Row]:
        return chained_rows((await self.inventory(f"/skus/{quote(sku, safe='')}/ledger")).json()["entries"])

    async def check(self) -> None:
        """Inventory's ledger and levels are exactly the expected books."""
        assert {sku: await self.ledger(sku) for sku in SKUS} == self.books.rows
        assert {sku: await self.levels(sku) for sku in SKUS} == {sku: self.books.levels(sku) for sku in SKUS}

    async def unmapped(self, delivery: Delivery) -> None:
        """A topic left unmapped on purpose: answered 2xx, kept in COMMERCE, moves nothing."""
        await self.step(delivery)
        msg = await self.js.get_msg("COMMERCE", await self.last_seq(), direct=True)
        assert (msg.headers or {}).get("Nats-Msg-Id") == msg_id(delivery)
        topic = delivery.headers.get("X-Shopify-Topic") or delivery.headers["X-WC-Webhook-Topic"]
        assert msg.subject == f"commerce.{SOURCE_OF[delivery.platform]}.{topic.replace('/', '.')}"
        await self.check()


@pytest.fixture
async def platforms(tmp_path: Path) -> AsyncIterator[Platforms]:
    keys = {
        "shopify": secrets.token_hex(24),
        "woo": secrets.token_hex(24),
        "stripe": f"whsec_{secrets.token_urlsafe(24)}",
    }
    env = {
        "STOCKWIRE__SOURCES__SHOPIFY__PROFILE": "shopify",
        "STOCKWIRE__SOURCES__SHOPIFY__SECRETS": keys["shopify"],
        "STOCKWIRE__SOURCES__WOO__PROFILE": "woocommerce",
        "STOCKWIRE__SOURCES__WOO__SECRETS": keys["woo"],
        "STOCKWIRE__SOURCES__STRIPE__PROFILE": "stripe",
        "STOCKWIRE__SOURCES__STRIPE__SECRETS": keys["stripe"],
        "STOCKWIRE__SOURCES__STRIPE__ORDERS_SOURCE": "shopify",
        # Holds must outlive the story on a slow machine (the demo's TTL is seconds).
        "STOCKWIRE__INVENTORY__RESERVATION_TTL_S": "900",
    }
    async with running_stack(tmp_path / "stack", env=env) as stack, httpx.AsyncClient(timeout=10) as http:
        assert stack.nats_url is not None
        nc = await nats.connect(stack.nats_url)
        try:
            keys[DEV_SOURCE] = dev_source_secret(stack.data_dir)
            yield Platforms(stack, http, nc.jetstream(), keys)
        finally:
            await nc.close()


async def test_shopify_orders_through_the_ledger(platforms: Platforms) -> None:
    """Shopify's orders A, B, C and the topics left unmapped."""
    await platforms.shelve()
    await shopify_orders(platforms, platforms.books)


async def test_stripe_payments_woocommerce_orders_and_one_number_from_two_sources(platforms: Platforms) -> None:
    """Shopify's order E paid through Stripe, WooCommerce's orders, and order 1001 of two sources."""
    await platforms.shelve()
    await stripe_payments(platforms, platforms.books)
    await woocommerce_orders(platforms, platforms.books)
    await same_number_from_two_sources(platforms, platforms.books)


async def shopify_orders(p: Platforms, books: Books) -> None:
    def shopify(number: int) -> Delivery:
        return fixture("shopify", number)

    # Order A: placed pending (the gift card, no SKU, holds nothing), then paid.
    placed = await p.step(shopify(1))
    books.reserve(placed, {TEE: 3, MUG: 1, CAP: 2})
    await p.check()
    assert (await p.order(ORDER_A, "shopify"))["state"] == "reserved"
    paid = await p.step(shopify(2))
    books.commit(paid, {TEE: 3, MUG: 1, CAP: 2})
    await p.check()
    assert (await p.order(ORDER_A, "shopify"))["state"] == "committed"

    # Partial fulfilments deduct exactly what each carried; its carrier updates take nothing twice.
    first = await p.step(shopify(3))
    books.deduct(first, {TEE: 2, MUG: 1})
    await p.check()
    for update in (4, 5):
        carrier = await p.step(shopify(update))
        assert (await p.outcomes(ORDER_A, "shopify"))[carrier] == "ignored"
    await p.check()
    second = await p.step(shopify(6))
    books.deduct(second, {TEE: 1})
    await p.check()
    order = await p.order(ORDER_A, "shopify")
    assert order["state"] == "committed" and order["shipped"] == {TEE: 3, MUG: 1}

    # The refund restocks the returned tee and not the mug (no_restock); the cancel refund gives the
    # two caps that never shipped back, and the order ends shipped.
    refund = await p.step(shopify(7))
    books.restock(refund, {TEE: 1})
    await p.check()
    cancel = await p.step(shopify(8))
    books.move(CAP, "released", 2, cancel, committed=-2)
    await p.check()
    order = await p.order(ORDER_A, "shopify")
    assert order["state"] == "shipped" and order["shipped"] == {TEE: 3, MUG: 1}
    assert order["returns"] == ["1012345670011", "1012345670012"]
    events = await p.outcomes(ORDER_A, "shopify")
    assert [events[key] for key in (placed, paid, first, second, refund, cancel)] == ["applied"] * 6

    await p.unmapped(shopify(9))  # orders/updated

    # Order B: placed paid (committed at once), cancelled (released); its cancel refund releases nothing again.
    placed_b = await p.step(shopify(10))
    books.reserve(placed_b, {BLUE_TEE: 2})
    books.commit(placed_b, {BLUE_TEE: 2})
    await p.check()
    cancelled_b = await p.step(shopify(11))
    books.move(BLUE_TEE, "released", 2, cancelled_b, committed=-2)
    await p.check()
    await p.step(shopify(12))
    await p.check()
    assert (await p.order(ORDER_B, "shopify"))["state"] == "cancelled"

    # orders/partially_fulfilled (of an order never seen) and inventory_levels/update: unmapped.
    await p.unmapped(shopify(15))
    assert (await p.inventory(f"/orders/{ORDER_D}", source="shopify")).status_code == 404
    await p.unmapped(shopify(17))

    # Order C (cash on delivery): placed pending, then reported fulfilled as a whole, with no
    # fulfillments/create: every unit it held left stock, paid or not.
    placed_c = await p.step(shopify(13))
    books.reserve(placed_c, {MUG: 1})
    await p.check()
    fulfilled_c = await p.step(shopify(14))
    settled = {e["msg_id"]: e for e in (await p.order(ORDER_C, "shopify"))["events"]}[fulfilled_c]
    assert settled["outcome"] == "applied", f"orders/fulfilled of a pending order: {settled}"
    books.commit(fulfilled_c, {MUG: 1})
    books.deduct(fulfilled_c, {MUG: 1})
    await p.check()
    assert (await p.order(ORDER_C, "shopify"))["state"] == "shipped"


async def stripe_payments(p: Platforms, books: Books) -> None:
    def stripe(number: int) -> Delivery:
        return fixture("stripe", number)

    # Shopify's order E, to be paid through Stripe: held.
    placed_e = await p.step(fixture("shopify", 16))
    books.reserve(placed_e, {TEE: 1})
    await p.check()
    assert (await p.order(ORDER_E, "shopify"))["state"] == "reserved"

    created = await p.step(stripe(1))  # payment_intent.created: unmapped
    await p.check()
    # The first card is declined: the PaymentIntent is retried, the hold stays.
    failed = await p.step(stripe(2))
    await p.check()
    order = await p.order(ORDER_E, "shopify")
    assert order["state"] == "reserved" and order["lines"] == [{"sku": TEE, "qty": 1}]
    assert {e["msg_id"]: e["outcome"] for e in order["events"]}[failed] == "ignored"
    assert created not in {e["msg_id"] for e in order["events"]}

    # The retry succeeds: order E is committed, in Shopify's namespace.
    succeeded = await p.step(stripe(3))
    books.commit(succeeded, {TEE: 1})
    await p.check()
    order = await p.order(ORDER_E, "shopify")
    assert order["state"] == "committed"
    assert {e["msg_id"]: e["outcome"] for e in order["events"]}[succeeded] == "applied"
    assert (await p.inventory(f"/orders/{ORDER_E}", source="stripe")).status_code == 404

    # The charge refunded: money only, no stock moves.
    refunded = await p.step(stripe(4))
    await p.check()
    assert (await p.outcomes(ORDER_E, "shopify"))[refunded] == "ignored"
    assert (await p.order(ORDER_E, "shopify"))["state"] == "committed"

    # A payment that names no order under metadata.order_id (a gift card's; one whose id is under
    # another key this source is not configured to read) is dead-lettered, naming the field.
    admin = {"authorization": f"Bearer {p.stack.admin_token}"}
    url = f"{p.stack.url('inventory')}/deadletters"
    for number in (5, 6):
        no_order = stripe(number)
        await p.step(no_order)
        await p.check()

        async def dead_letter(key: str = msg_id(no_order)) -> dict[str, Any] | None:
            response = await p.http.get(url, headers=admin)
            assert response.status_code == 200, response.text
            found = [d for d in response.json()["deadletters"] if d["original_msg_id"] == key]
            return found[0] if found else None

        letter = await eventually(dead_letter, timeout=20, what=f"{no_order.name} dead-lettered")
        assert letter is not None
        assert letter["consumer"] == "inventory" and letter["source"] == "stripe"
        assert letter["original_subject"] == "commerce.stripe.payment_intent.succeeded"
        assert "data.object.metadata.order_id" in letter["reason"], letter["reason"]
    assert (await p.http.get(url)).status_code == 401  # not without the admin token
    assert (await p.order(ORDER_E, "shopify"))["state"] == "committed"

    # Refused at the door, each 401, nothing kept: a wrong secret, a stale timestamp, a tampered body,
    # no signature at all.
    good = stripe(3)
    now = int(time.time())
    body = good.body
    tampered = body.replace(b'"amount": 8497', b'"amount": 1')
    assert tampered != body
    wrong = {
        "wrong secret": (body, stripe_signature("whsec_not-the-endpoint-secret", body, now)),
        "stale timestamp": (body, stripe_signature(p.secrets["stripe"], body, now - 301)),
        "tampered body": (tampered, stripe_signature(p.secrets["stripe"], body, now)),
        "missing header": (body, {}),
    }
    before = await p.last_seq()
    for case, (sent, signature) in wrong.items():
        response = await p.post("stripe", sent, {"Content-Type": "application/json", **signature})
        assert response.status_code == 401, f"{case}: {response.status_code} {response.text}"
    assert await p.last_seq() == before
    await p.check()


async def woocommerce_orders(p: Platforms, books: Books) -> None:
    def woo(number: int) -> Delivery:
        return fixture("woocommerce", number)

    # The URL test on saving the webhook: a form body, unsigned; answered 200 and kept nowhere.
    ping = woo(0)
    before = await p.last_seq(), (await p.js.stream_info("DEADLETTER")).state.last_seq
    response = await p.post("woo", ping.body, ping.headers)
    assert response.status_code == 200 and response.json() == {"status": "ping"}, response.text
    assert (await p.last_seq(), (await p.js.stream_info("DEADLETTER")).state.last_seq) == before

    # 1001: pending holds, on-hold commits (WooCommerce reduced the stock), processing changes nothing,
    # completed ships, refunded puts back what each line's restocked total says.
    pending = await p.step(woo(1))
    books.reserve(pending, {TEE: 3, MUG: 1})
    await p.check()
    assert (await p.order("1001", "woo"))["state"] == "reserved"
    on_hold = await p.step(woo(2))
    books.commit(on_hold, {TEE: 3, MUG: 1})
    await p.check()
    assert (await p.order("1001", "woo"))["state"] == "committed"
    processing = await p.step(woo(3))
    await p.check()
    completed = await p.step(woo(4))
    books.deduct(completed, {TEE: 3, MUG: 1})
    await p.check()
    assert (await p.order("1001", "woo"))["state"] == "shipped"
    refunded = await p.step(woo(5))
    books.restock(refunded, {TEE: 3, MUG: 1})
    await p.check()
    order = await p.order("1001", "woo")
    assert order["state"] == "shipped" and order["returned"] == {TEE: 3, MUG: 1}
    events = {e["msg_id"]: e["outcome"] for e in order["events"]}
    assert [events[key] for key in (pending, on_hold, processing, completed, refunded)] == [
        "applied",
        "applied",
        "ignored",
        "applied",
        "applied",
    ]

    # 1002: paid at checkout (committed at once), then cancelled: released.
    paid = await p.step(woo(6))
    books.reserve(paid, {BLUE_TEE: 2})
    books.commit(paid, {BLUE_TEE: 2})
    await p.check()
    cancelled = await p.step(woo(7))
    books.move(BLUE_TEE, "released", 2, cancelled, committed=-2)
    await p.check()
    assert (await p.order("1002", "woo"))["state"] == "cancelled"

    # 1003: pending, then the payment failed: the hold goes back.
    pending = await p.step(woo(8))
    books.reserve(pending, {CAP: 1})
    await p.check()
    failed = await p.step(woo(9))
    books.move(CAP, "released", 1, failed, reserved=-1)
    await p.check()
    assert (await p.order("1003", "woo"))["state"] == "payment_failed"

    # 1004: a block-checkout draft, as older and newer WooCommerce send it: unmapped, nothing held.
    await p.unmapped(woo(10))
    await p.unmapped(woo(11))
    assert (await p.inventory("/orders/1004", source="woo")).status_code == 404


async def same_number_from_two_sources(p: Platforms, books: Books) -> None:
    """Order 1001 of the ``shop`` source is not WooCommerce's order 1001."""
    document = {
        "id": "shop-order-1001",
        "event_type": "order.created",
        "created_at": "2026-12-01T10:00:00Z",
        "data": {"order_id": "1001", "lines": [{"sku": CAP, "qty": 1}]},
    }
    body = json.dumps(document).encode()
    response = await p.post(DEV_SOURCE, body, ce_headers(p.secrets[DEV_SOURCE], body))
    assert response.status_code == 200 and response.json()["status"] == "accepted", response.text
    await p.settled()
    books.reserve(f"{DEV_SOURCE}:shop-order-1001", {CAP: 1})
    await p.check()

    response = await p.inventory("/orders/1001")
    assert response.status_code == 409 and response.json()["error"] == "ambiguous_order", response.text
    woo = await p.order("1001", "woo")
    assert woo["state"] == "shipped" and sorted(woo["lines"], key=lambda line: line["sku"]) == [
        {"sku": MUG, "qty": 1},
        {"sku": TEE, "qty": 3},
    ]
    shop = await p.order("1001", DEV_SOURCE)
    assert shop["state"] == "reserved" and shop["lines"] == [{"sku": CAP, "qty": 1}]
    assert [e["msg_id"] for e in shop["events"]] == [f"{DEV_SOURCE}:shop-order-1001"]
