"""Inventory when its durable consumer or its store fails under it: it recovers on its own, applies
nothing twice, and its /readyz says when it cannot consume."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from litestar.testing import AsyncTestClient
from nats.js import JetStreamContext
from sqlalchemy import event

from libs.natsserver import NatsServer
from libs.topology import COMMERCE, DEADLETTER
from tests.support import eventually

from .conftest import ClientFactory, drained, publish, sku


async def _publish_one_malformed_and_three_receipts(js: JetStreamContext) -> None:
    """Sequence 1 goes to DEADLETTER; 2-4 put 3 units of SKU A on hand."""
    await js.publish(
        "commerce.ce.inventory.received",
        b"{not json",
        headers={"Nats-Msg-Id": "ce:bad", "Stockwire-Event-Type": "inventory.received", "Stockwire-Source": "ce"},
    )
    for n in range(3):
        await publish(js, "inventory.received", f"r{n}", {"sku": "A", "qty": 1})


async def _deadletters(js: JetStreamContext) -> int:
    return (await js.stream_info(DEADLETTER)).state.messages


async def _checks(client: AsyncTestClient) -> tuple[int, dict[str, bool]]:
    response = await client.get("/readyz")
    return response.status_code, response.json()["checks"]


def _inbox(data_dir: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(data_dir / "inventory.db") as db:
        return db.execute("SELECT msg_id, outcome FROM inbox ORDER BY msg_id").fetchall()


async def test_a_deleted_consumer_is_recreated_where_it_was_and_nothing_is_applied_or_dead_lettered_twice(
    inventory: AsyncTestClient, js: JetStreamContext, data_dir: Path
) -> None:
    await _publish_one_malformed_and_three_receipts(js)
    await eventually(lambda: drained(js), what="consumer drained")
    assert await _deadletters(js) == 1
    consumer = inventory.app.state.consumer
    await eventually(lambda: _true(consumer.ack_floor == 4), what="the runner knows the ack floor")

    await js.delete_consumer(COMMERCE, "inventory")
    await publish(js, "inventory.received", "r-after", {"sku": "A", "qty": 10})

    await eventually(lambda: _applied_on_hand(inventory, 13), what="the event published after the deletion applied")
    info = await js.consumer_info(COMMERCE, "inventory")
    assert info.config.opt_start_seq == 5
    assert await _deadletters(js) == 1
    assert len(_inbox(data_dir)) == 5
    assert await _checks(inventory) == (200, {"nats_connected": True, "store_writable": True, "consumer_bound": True})


async def test_readiness_says_not_ready_while_the_consumer_cannot_be_recreated_then_it_starts_the_new_stream(
    inventory: AsyncTestClient, js: JetStreamContext
) -> None:
    for n in range(3):
        await publish(js, "inventory.received", f"r{n}", {"sku": "A", "qty": 1})
    await eventually(lambda: drained(js), what="consumer drained")
    stream = (await js.stream_info(COMMERCE)).config
    # Without its stream the consumer cannot exist.
    await js.delete_stream(COMMERCE)

    async def not_ready() -> bool:
        return await _checks(inventory) == (
            503,
            {"nats_connected": True, "store_writable": True, "consumer_bound": False},
        )

    await eventually(not_ready, what="/readyz 503 with consumer_bound false")
    # A new stream (sequences start at 1 again): the old floor (3) must not apply to it.
    await js.add_stream(stream)
    await publish(js, "inventory.received", "b1", {"sku": "B", "qty": 2})
    await eventually(lambda: _ready(inventory), what="ready again once the stream is back")
    await eventually(lambda: drained(js), what="consuming the new stream from its start")
    assert (await sku(inventory, "B"))["on_hand"] == 2


async def test_readiness_says_not_ready_while_the_store_cannot_write_and_no_delivery_is_spent(
    inventory: AsyncTestClient, js: JetStreamContext, data_dir: Path
) -> None:
    store = inventory.app.state.store
    writer = store.transactions.sync_engine  # the engine of the store's writer thread
    limit: dict[str, Any] = {"pages": None}

    # SQLite's max_page_count gives the error of a full disk (SQLITE_FULL) on a real file.
    def _cap(dbapi_connection: Any, _record: Any) -> None:
        if limit["pages"] is not None:
            cursor = dbapi_connection.cursor()
            cursor.execute(f"PRAGMA max_page_count = {limit['pages']}")
            cursor.close()

    async def reconnect() -> None:
        await store.engine.dispose()
        writer.dispose()

    for engine in (store.engine.sync_engine, writer):
        event.listen(engine, "connect", _cap)
    with sqlite3.connect(data_dir / "inventory.db") as db:
        limit["pages"] = db.execute("PRAGMA page_count").fetchone()[0]
    await reconnect()
    for n in range(200):
        await publish(js, "inventory.received", f"r{n}", {"sku": f"SKU-{n}", "qty": 1})

    async def not_ready() -> bool:
        status, checks = await _checks(inventory)
        return status == 503 and not checks["store_writable"] and not checks["consumer_bound"]

    await eventually(not_ready, what="/readyz 503 while the store is full")
    limit["pages"] = 1_000_000_000
    await reconnect()
    await eventually(lambda: drained(js), timeout=20, what="drained once the store can write")
    await eventually(lambda: _ready(inventory), what="ready again")
    assert len(_inbox(data_dir)) == 200
    assert await _deadletters(js) == 0
    info = await js.consumer_info(COMMERCE, "inventory")
    assert info.num_redelivered == 0


async def _true(value: bool) -> bool:
    return value


async def _ready(client: AsyncTestClient) -> bool:
    return (await client.get("/readyz")).status_code == 200


async def _applied_on_hand(client: AsyncTestClient, on_hand: int) -> bool:
    found = await sku(client, "A")
    return found is not None and found["on_hand"] == on_hand


async def test_a_consumer_deleted_while_the_service_was_down_resumes_at_the_recorded_floor(
    js: JetStreamContext, nats_server: NatsServer, inventory_factory: ClientFactory, data_dir: Path
) -> None:
    async with inventory_factory(nats_server.url):
        await _publish_one_malformed_and_three_receipts(js)
        await eventually(lambda: drained(js), what="consumer drained")
    assert _recorded_floor(data_dir) == 4
    await js.delete_consumer(COMMERCE, "inventory")
    await publish(js, "inventory.received", "r-after", {"sku": "A", "qty": 10})

    async with inventory_factory(nats_server.url) as client:
        await eventually(lambda: _applied_on_hand(client, 13), what="the event published while down applied")
        info = await js.consumer_info(COMMERCE, "inventory")
        assert info.config.opt_start_seq == 5
        assert await _deadletters(js) == 1
        assert len(_inbox(data_dir)) == 5


def _recorded_floor(data_dir: Path) -> int:
    with sqlite3.connect(data_dir / "inventory.db") as db:
        row = db.execute(
            "SELECT stream_seq FROM stockwire_consumer_floors WHERE consumer = 'COMMERCE/inventory'"
        ).fetchone()
    return int(row[0]) if row else 0
