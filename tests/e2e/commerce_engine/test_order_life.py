"""Order A of the Commerce Engine fixtures through the running services, webhook to sales channel.

Ingress verifies Commerce Engine's signature for the ``ce`` source (read with the ``commerce-engine``
profile) and the ``shop`` source (stock receipts in Stockwire's own dialect); inventory keeps the ledger; the
outbox relay and the channel-notifier carry availability to a channel sink. After every step the
ledger is read back through inventory's API and the sink is waited on until it shows the step's
availability; at the end the sink must have seen exactly the versions whose availability changed.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import nats
import pytest
from nats.js import JetStreamContext

from libs.signing import generate_standard_secret
from stockwire.demo.sinks import ChannelSink, SinkServer
from stockwire.stack import DEV_SOURCE, Stack, dev_source_secret
from tests.commerce_engine import BOOK, BOX, JACKET, MUG, ORDER_A, TEE, load, receipt
from tests.e2e.flash_sale.conftest import running_stack
from tests.e2e.inventory.conftest import drained
from tests.support import LedgerRow, ce_headers, chained_rows, eventually

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

SKUS = (TEE, MUG, BOX, JACKET)
Levels = tuple[int, int, int, int, int]
"""on_hand, reserved, committed, available, backordered."""
Row = LedgerRow


def ce(number: int) -> str:
    """The inbox key (and ledger source) of fixture ``number`` from the ``ce`` source."""
    return f"ce:{load(number)['id']}"


@dataclass
class Expected:
    """What every reader should see after a step: the ledger, its projection and the channel."""

    levels: dict[str, Levels] = field(default_factory=dict)
    """SKUs stock was ever recorded for (inventory answers 404 for the others)."""
    rows: dict[str, list[Row]] = field(default_factory=lambda: {sku: [] for sku in SKUS})
    channel: dict[str, tuple[int, int]] = field(default_factory=dict)
    """SKU -> (version, available) the sink holds: the last version whose available changed."""


@dataclass
class Shop:
    """The producer side (signed webhooks) and the readers (inventory's API, JetStream, the sink)."""

    stack: Stack
    http: httpx.AsyncClient
    js: JetStreamContext
    sink: ChannelSink
    secrets: dict[str, str]

    async def send(self, document: dict[str, Any], source: str = "ce") -> str:
        """POST the webhook signed as its producer signs it; returns ingress's ``status``."""
        body = json.dumps(document).encode()
        url = f"{self.stack.url('ingress')}/webhooks/{source}"
        response = await self.http.post(url, content=body, headers=ce_headers(self.secrets[source], body))
        assert response.status_code == 200, response.text
        status: str = response.json()["status"]
        return status

    async def step(self, document: dict[str, Any], outcome: str | None = None, source: str = "ce") -> None:
        """Send one new event, wait until inventory settled it, and check what it did to the order."""
        assert await self.send(document, source) == "accepted"
        await self.settled()
        if outcome is not None:
            assert (await self.order_events())[f"{source}:{document['id']}"] == outcome

    async def settled(self) -> None:
        await eventually(lambda: drained(self.js), timeout=20, what="inventory settled COMMERCE")

    async def inventory(self, path: str) -> httpx.Response:
        return await self.http.get(f"{self.stack.url('inventory')}{path}")

    async def order_events(self) -> dict[str, str]:
        """Order A's events as inventory's inbox settled them: msg_id -> outcome."""
        answer = (await self.inventory(f"/orders/{ORDER_A}")).json()
        return {event["msg_id"]: event["outcome"] for event in answer["events"]}

    async def levels(self, sku: str) -> Levels | None:
        response = await self.inventory(f"/skus/{quote(sku, safe='')}")
        if response.status_code == 404:
            return None
        s = response.json()
        assert s["version"] == len(await self.ledger(sku))
        return s["on_hand"], s["reserved"], s["committed"], s["available"], s["backordered"]

    async def ledger(self, sku: str) -> list[Row]:
        return chained_rows((await self.inventory(f"/skus/{quote(sku, safe='')}/ledger")).json()["entries"])

    async def check(self, expected: Expected) -> None:
        assert {sku: await self.levels(sku) for sku in SKUS} == {sku: expected.levels.get(sku) for sku in SKUS}
        assert {sku: await self.ledger(sku) for sku in SKUS} == expected.rows

        async def channel_caught_up() -> bool:
            return self.sink.cache == expected.channel

        await eventually(channel_caught_up, timeout=20, what=f"the channel shows {expected.channel}")


@pytest.fixture
async def sink() -> AsyncIterator[SinkServer]:
    server = await SinkServer(ChannelSink("storefront", [generate_standard_secret()])).start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def shop(tmp_path: Path, sink: SinkServer) -> AsyncIterator[Shop]:
    ce_secret = secrets.token_hex(24)
    env = {
        "STOCKWIRE__SOURCES__CE__SCHEME": "commerce-engine",
        "STOCKWIRE__SOURCES__CE__PROFILE": "commerce-engine",
        "STOCKWIRE__SOURCES__CE__SECRETS": ce_secret,
        # Order A is paid within a second; the demo's short hold would still race a slow machine.
        "STOCKWIRE__INVENTORY__RESERVATION_TTL_S": "900",
    }
    async with running_stack(tmp_path / "stack", env=env) as stack, httpx.AsyncClient(timeout=10) as http:
        channel = {"name": "storefront", "kind": "webhook", "url": sink.url, "secret": sink.sink.secrets[0]}
        admin = {"authorization": f"Bearer {stack.admin_token}"}
        response = await http.post(f"{stack.url('channel-notifier')}/channels", json=channel, headers=admin)
        assert response.status_code == 201, response.text
        assert stack.nats_url is not None
        nc = await nats.connect(stack.nats_url)
        try:
            source_secrets = {"ce": ce_secret, DEV_SOURCE: dev_source_secret(stack.data_dir)}
            yield Shop(stack, http, nc.jetstream(), sink.sink, source_secrets)
        finally:
            await nc.close()


async def test_order_a_from_signed_webhooks_to_the_sales_channel(shop: Shop) -> None:
    want = Expected()
    for sku, qty in ((TEE, 10), (MUG, 5), (BOX, 2)):
        await shop.step(receipt(f"recv-{sku}", sku, qty), source=DEV_SOURCE)
        want.levels[sku] = (qty, 0, 0, qty, 0)
        want.rows[sku].append(("received", qty, qty, 0, 0, f"shop:recv-{sku}"))
        want.channel[sku] = (1, qty)
    await shop.check(want)

    # Placed: 2 + 1 free tees, a free mug, the bundle as its own SKU; the e-book holds no stock and the
    # jacket is backordered, which leaves its availability (0) as it was: the channel hears nothing of it.
    await shop.step(load(1), "applied")
    for sku, qty, (on_hand, available) in ((TEE, 3, (10, 7)), (MUG, 1, (5, 4)), (BOX, 1, (2, 1))):
        want.levels[sku] = (on_hand, qty, 0, available, 0)
        want.rows[sku].append(("reserved", qty, 0, qty, 0, ce(1)))
        want.channel[sku] = (2, available)
    want.levels[JACKET] = (0, 0, 0, 0, 1)
    want.rows[JACKET].append(("backordered", 1, 0, 0, 0, ce(1)))
    await shop.check(want)
    assert (await shop.inventory(f"/skus/{BOOK}")).status_code == 404

    # The same delivery again stops at ingress; the same order re-emitted under a new id reserves nothing.
    before = (await shop.js.stream_info("COMMERCE")).state.last_seq
    assert await shop.send(load(1)) == "duplicate"
    assert (await shop.js.stream_info("COMMERCE")).state.last_seq == before
    await shop.step(load(1, event_id="evt_re_emitted_order_a"), "ignored")
    await shop.check(want)

    # Paid: every held unit moves from reserved to committed (available unchanged: no channel update).
    await shop.step(load(2), "applied")
    for sku in (TEE, MUG, BOX):
        on_hand, qty, _, available, _ = want.levels[sku]
        want.levels[sku] = (on_hand, 0, qty, available, 0)
        want.rows[sku].append(("committed", qty, 0, -qty, qty, ce(2)))
    await shop.check(want)
    await shop.step(load(4), "ignored")  # order.confirmed: already committed
    for scheduled_or_packed in (5, 6):
        await shop.step(load(scheduled_or_packed), "ignored")
    await shop.check(want)

    # Shipment 1 left: its own items are deducted, once, whatever updates follow.
    await shop.step(load(7), "applied")
    for sku in (TEE, MUG, BOX):
        on_hand, _, qty, available, _ = want.levels[sku]
        want.levels[sku] = (on_hand - qty, 0, 0, available, 0)
        want.rows[sku].append(("deducted", qty, -qty, 0, -qty, ce(7)))
    await shop.check(want)
    for later in (8, 9, 10):  # shipped under its earlier name, in transit, delivered
        await shop.step(load(later), "ignored")
    await shop.check(want)

    # Shipment 2 carries the backordered jacket: out for delivery before the stock was recorded, it
    # waits; the receipt fills the backorder first and releases the shipment in the same transaction.
    await shop.step(load(11), "ignored")
    await shop.step(load(12), "parked")
    await shop.check(want)
    await shop.step(receipt("recv-jacket", JACKET, 2), source=DEV_SOURCE)
    assert (await shop.order_events())[ce(12)] == "applied"
    want.levels[JACKET] = (1, 0, 0, 1, 0)
    want.rows[JACKET] += [
        ("received", 2, 2, 0, 0, "shop:recv-jacket"),
        ("filled", 1, 0, 0, 1, "shop:recv-jacket"),
        ("deducted", 1, -1, 0, -1, ce(12)),
    ]
    want.channel[JACKET] = (4, 1)
    await shop.check(want)
    await shop.step(load(13), "ignored")

    # The return names a product and variant: created moves nothing, complete restocks one tee.
    await shop.step(load(14), "ignored")
    await shop.step(load(15), "applied")
    want.levels[TEE] = (8, 0, 0, 8, 0)
    want.rows[TEE].append(("returned", 1, 1, 0, 0, ce(15)))
    want.channel[TEE] = (5, 8)
    await shop.check(want)
    assert await shop.send(load(15)) == "duplicate"
    await shop.step(load(16), "ignored")  # order.completed: everything already shipped
    await shop.check(want)

    order = (await shop.inventory(f"/orders/{ORDER_A}")).json()
    assert order["state"] == "shipped" and order["parked"] == []
    assert order["shipped"] == {TEE: 3, MUG: 1, BOX: 1, JACKET: 1} and order["returns"] == ["RET-000101-1"]
    # Every availability the channel was sent, in order: one per version that changed it, none twice.
    assert shop.sink.versions == {TEE: [1, 2, 5], MUG: [1, 2], BOX: [1, 2], JACKET: [4]}
    assert shop.sink.backwards() == {} and shop.sink.bad_signatures == 0
