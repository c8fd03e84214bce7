"""Webhooks ingress spooled while NATS was down reach COMMERCE once it is back, each exactly once,
even when the producer re-sent one of them straight to JetStream meanwhile.

Ingress runs for real, in-process (Litestar's AsyncTestClient), as in tests/integration/ingress; the
relay runs with no outboxes configured, that is with the defaults `stockwire up` relies on: the
ingress spool and the inventory outbox under the data dir.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from litestar.testing import AsyncTestClient
from prometheus_client import generate_latest

from libs.config import NatsSettings, SourceSettings, StockwireSettings, TopologySettings
from libs.natsserver import NatsServer, free_port
from libs.topology import COMMERCE, apply_topology
from services.ingress.app import build_app
from services.ingress.settings import IngressSettings
from tests.support import ce_body, ce_headers, eventually

from .support import metric_value, running_relay, sqlite_unpublished, stream_messages

SECRET = "relay-test-secret"


@contextlib.asynccontextmanager
async def ingress(nats_url: str, data_dir: Path) -> AsyncIterator[AsyncTestClient]:
    shared = StockwireSettings(
        data_dir=str(data_dir),
        nats=NatsSettings(servers=[nats_url], reconnect_wait_s=0.05, reconnect_wait_max_s=0.2),
        sources={"ce": SourceSettings(scheme="commerce-engine", secrets=[SECRET])},
    )
    app = build_app(shared, IngressSettings(publish_timeout_s=1.0))
    async with AsyncTestClient(app=app) as client:
        yield client


async def _declare_topology(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        await apply_topology(nc.jetstream(), TopologySettings())
    finally:
        await nc.close()


async def _post(client: AsyncTestClient, body: bytes) -> tuple[int, str]:
    response = await client.post("/webhooks/ce", content=body, headers=ce_headers(SECRET, body))
    return response.status_code, response.json().get("status", "")


async def test_spooled_webhooks_reach_commerce_once_deduplicated_against_a_resent_copy(
    own_nats_server: NatsServer, data_dir: Path
) -> None:
    await _declare_topology(own_nats_server.url)
    duplicates_before = metric_value(generate_latest().decode(), "outbox_relay_duplicates_total", "ingress")
    bodies = [ce_body("order.created", f"evt-{n}", order_id=f"o-{n}") for n in range(3)]

    async with ingress(own_nats_server.url, data_dir) as client:
        await eventually(lambda: _connected(client), what="ingress connected")
        own_nats_server.kill()
        await eventually(lambda: _disconnected(client), what="ingress noticed NATS is gone")
        for body in bodies:
            assert await _post(client, body) == (202, "spooled")
        assert sqlite_unpublished(data_dir / "ingress.db") == 3

        async with running_relay(own_nats_server.url, data_dir, []) as relay:
            assert [r.name for r in relay.relays] == ["ingress", "inventory"]
            own_nats_server.start()
            await eventually(lambda: _connected(client), timeout=15, what="ingress reconnected")
            # The producer did not trust the 202 and sends evt-1 again: spooled (behind what waits)
            # while the spool is not drained, else straight to JetStream, which has it.
            status, outcome = await _post(client, bodies[1])
            assert (status, outcome) in ((202, "spooled"), (200, "duplicate"))
            await eventually(lambda: _spool_drained(data_dir), timeout=15, what="spool drained into COMMERCE")
            duplicates = metric_value(generate_latest().decode(), "outbox_relay_duplicates_total", "ingress")
            assert not (data_dir / "inventory.db").exists(), "an absent outbox is waited for, not created"

    nc = await nats.connect(own_nats_server.url)
    try:
        stored = await stream_messages(nc.jetstream(), COMMERCE)
    finally:
        await nc.close()
    assert sorted(m.msg_id for m in stored) == ["ce:evt-0", "ce:evt-1", "ce:evt-2"], "each event exactly once"
    assert {m.data for m in stored} == set(bodies), "the raw bodies, byte for byte"
    # Each copy of evt-1 after the first to reach JetStream is answered duplicate (the spool keeps one
    # row per id, so a spooled re-send never reaches it).
    relay_dups = duplicates - duplicates_before
    assert relay_dups + (outcome == "duplicate") == (1 if status == 200 else 0)


async def _connected(client: AsyncTestClient) -> bool:
    return bool(client.app.state.writer.bus_connected)


async def _disconnected(client: AsyncTestClient) -> bool:
    return not client.app.state.writer.bus_connected


async def _spool_drained(data_dir: Path) -> bool:
    return sqlite_unpublished(data_dir / "ingress.db") == 0


def _stock_and_orders() -> tuple[list[bytes], list[bytes]]:
    """A receipt for X and a write-off of Y's last unit, then an order for each: applied in any other
    order, X's order is rejected and Y's reserves the unit written off."""
    spooled = [
        ce_body("inventory.received", "evt-receipt-x", sku="X", qty=1),
        ce_body("inventory.adjusted", "evt-writeoff-y", sku="Y", delta=-1),
    ]
    orders = [
        ce_body("order.created", f"evt-order-{sku}", order_id=f"o-{sku}", lines=[{"sku": sku, "qty": 1}])
        for sku in "XY"
    ]
    return spooled, orders


async def _commerce(nats_url: str) -> list[str]:
    nc = await nats.connect(nats_url)
    try:
        return [m.msg_id for m in await stream_messages(nc.jetstream(), COMMERCE)]
    finally:
        await nc.close()


_IN_ORDER = ["ce:evt-receipt-x", "ce:evt-writeoff-y", "ce:evt-order-X", "ce:evt-order-Y", "ce:evt-later"]


@pytest.mark.parametrize("relay_back", ["with-jetstream", "last"])
async def test_events_sent_after_an_outage_land_behind_the_events_spooled_during_it(
    own_nats_server: NatsServer, data_dir: Path, relay_back: str
) -> None:
    await _declare_topology(own_nats_server.url)
    spooled, orders = _stock_and_orders()

    async with ingress(own_nats_server.url, data_dir) as client, contextlib.AsyncExitStack() as relay:
        await eventually(lambda: _connected(client), what="ingress connected")
        own_nats_server.kill()
        await eventually(lambda: _disconnected(client), what="ingress noticed NATS is gone")
        for body in spooled:
            assert await _post(client, body) == (202, "spooled")
        if relay_back == "with-jetstream":
            await relay.enter_async_context(running_relay(own_nats_server.url, data_dir, []))
        own_nats_server.start()
        await eventually(lambda: _connected(client), timeout=15, what="ingress reconnected")
        # The moment ingress can publish again: before (or while) the relay drains the spool.
        for body in orders:
            status, _ = await _post(client, body)
            assert status in (200, 202)
        if relay_back == "last":
            await relay.enter_async_context(running_relay(own_nats_server.url, data_dir, []))
        await eventually(lambda: _spool_drained(data_dir), timeout=15, what="spool drained into COMMERCE")
        # Once drained (and the worker has looked again), ingress publishes directly again.
        await eventually(lambda: _gate_open(client), what="ingress saw the spool drained")
        later = ce_body("inventory.received", "evt-later", sku="X", qty=1)
        assert await _post(client, later) == (200, "accepted")

    assert await _commerce(own_nats_server.url) == _IN_ORDER, "each event in the order it was acknowledged"


async def test_a_worker_that_can_publish_queues_behind_what_another_worker_spooled(
    own_nats_server: NatsServer, data_dir: Path
) -> None:
    # Two workers share one spool file, as uvicorn's do: one has lost JetStream, the other has not.
    await _declare_topology(own_nats_server.url)
    spooled, orders = _stock_and_orders()
    unreachable = f"nats://127.0.0.1:{free_port()}"

    async with ingress(unreachable, data_dir) as cut_off, ingress(own_nats_server.url, data_dir) as connected:
        await eventually(lambda: _connected(connected), what="second worker connected")
        for body in spooled:
            assert await _post(cut_off, body) == (202, "spooled")
        for body in orders:
            assert await _post(connected, body) == (202, "spooled"), "spooled behind the other worker's events"
        async with running_relay(own_nats_server.url, data_dir, []):
            await eventually(lambda: _spool_drained(data_dir), timeout=15, what="spool drained into COMMERCE")
            await eventually(lambda: _gate_open(connected), what="ingress saw the spool drained")
            later = ce_body("inventory.received", "evt-later", sku="X", qty=1)
            assert await _post(connected, later) == (200, "accepted")

    assert await _commerce(own_nats_server.url) == _IN_ORDER


async def _gate_open(client: AsyncTestClient) -> bool:
    return not await client.app.state.writer.spool.holds_unpublished()
