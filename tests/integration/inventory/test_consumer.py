"""The COMMERCE consumer against a real nats-server and a real SQLite store."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient
from nats.aio.client import Client
from nats.js import JetStreamContext

from libs.config import TopologySettings
from libs.contracts import decode_availability, decode_inventory_event
from libs.natsserver import NatsServer
from libs.outbox import outbox_nudge_subject
from tests.support import eventually

from .conftest import ClientFactory, drained, metric, publish, sku


def _outbox(data_dir: Path) -> list[tuple[str, str, bytes]]:
    with sqlite3.connect(data_dir / "inventory.db") as db:
        return db.execute("SELECT subject, msg_id, payload FROM outbox ORDER BY id").fetchall()


async def test_events_are_applied_and_announced_through_the_outbox(
    inventory: AsyncTestClient, js: JetStreamContext, nc: Client, data_dir: Path
) -> None:
    nudges = []

    async def on_nudge(msg: object) -> None:
        nudges.append(msg)

    sub = await nc.subscribe(outbox_nudge_subject("inventory"), cb=on_nudge)
    await publish(js, "inventory.received", "r1", {"sku": "TSHIRT.RED L", "qty": 5})
    await publish(js, "order.created", "c1", {"order_id": "o1", "lines": [{"sku": "TSHIRT.RED L", "qty": 2}]})
    await publish(js, "payment.successful", "p1", {"order_id": "o1"})
    await eventually(lambda: drained(js), what="consumer drained")

    assert await sku(inventory, "TSHIRT.RED L") == {
        "sku": "TSHIRT.RED L",
        "on_hand": 5,
        "reserved": 0,
        "committed": 2,
        "available": 3,
        "backordered": 0,
        "version": 3,
    }
    rows = _outbox(data_dir)
    subjects = [subject for subject, _, _ in rows]
    assert "inventory.received.TSHIRT~2ERED~20L" in subjects
    assert "inventory.reserved.TSHIRT~2ERED~20L" in subjects
    assert "inventory.committed.TSHIRT~2ERED~20L" in subjects
    snapshots = [decode_availability(p) for s, _, p in rows if s.startswith("inventory.availability.")]
    assert snapshots and snapshots[-1].available == 3 and snapshots[-1].version >= 2
    committed = next(decode_inventory_event(p) for s, _, p in rows if s.startswith("inventory.committed."))
    assert (committed.order_id, committed.qty, committed.version, committed.source_event_id) == ("o1", 2, 3, "ce:p1")
    await eventually(lambda: _truthy(nudges), what="outbox nudge published")
    await sub.unsubscribe()


APPLIED = "inventory_events_applied_total"


async def _metric(client: AsyncTestClient, name: str, **labels: str) -> float:
    return metric((await client.get("/metrics")).text, name, **labels)


async def _truthy(items: list) -> bool:
    return bool(items)


async def test_payment_before_order_is_parked_then_applied_and_the_order_shows_its_trail(
    inventory: AsyncTestClient, js: JetStreamContext
) -> None:
    parked_before = await _metric(inventory, APPLIED, event_type="payment.successful", outcome="parked")
    await publish(js, "inventory.received", "r1", {"sku": "A", "qty": 1})
    await publish(js, "payment.successful", "p1", {"order_id": "o-early"})
    await eventually(lambda: drained(js), what="payment handled")
    early = (await inventory.get("/orders/o-early")).json()
    assert early["state"] == "awaiting"
    assert [p["msg_id"] for p in early["parked"]] == ["ce:p1"]
    assert await _metric(inventory, APPLIED, event_type="payment.successful", outcome="parked") == parked_before + 1

    await publish(js, "order.created", "c1", {"order_id": "o-early", "lines": [{"sku": "A", "qty": 1}]})
    await eventually(lambda: drained(js), what="order handled")
    order = (await inventory.get("/orders/o-early")).json()
    assert order["state"] == "committed"
    assert order["parked"] == []
    assert [(e["event_type"], e["outcome"]) for e in order["events"]] == [
        ("payment.successful", "applied"),
        ("order.created", "applied"),
    ]
    assert [e["stream_seq"] for e in order["events"]] == [2, 3]
    assert (await sku(inventory, "A"))["committed"] == 1


async def test_cancel_before_order_leaves_nothing_reserved(inventory: AsyncTestClient, js: JetStreamContext) -> None:
    await publish(js, "inventory.received", "r1", {"sku": "A", "qty": 3})
    await publish(js, "order.cancelled", "x1", {"order_id": "o2"})
    await publish(js, "order.created", "c2", {"order_id": "o2", "lines": [{"sku": "A", "qty": 2}]})
    await eventually(lambda: drained(js), what="consumer drained")
    assert (await sku(inventory, "A"))["reserved"] == 0
    assert (await sku(inventory, "A"))["available"] == 3
    assert (await inventory.get("/orders/o2")).json()["state"] == "cancelled"


async def test_a_late_payment_failure_never_frees_a_paid_unit_for_another_order(
    inventory: AsyncTestClient, js: JetStreamContext
) -> None:
    await publish(js, "inventory.received", "r1", {"sku": "ONE", "qty": 1})
    await publish(js, "order.created", "c1", {"order_id": "o1", "lines": [{"sku": "ONE", "qty": 1}]})
    await publish(js, "payment.successful", "p1", {"order_id": "o1"}, created_at="2026-11-28T10:05:00Z")
    # Delivered after the success, stamped before it.
    await publish(js, "payment.failed", "f1", {"order_id": "o1"}, created_at="2026-11-28T10:04:00Z")
    await publish(js, "order.created", "c2", {"order_id": "o2", "lines": [{"sku": "ONE", "qty": 1}]})
    await publish(js, "shipment.shipped", "s1", {"order_id": "o1"}, created_at="2026-11-28T10:30:00Z")
    await eventually(lambda: drained(js), what="consumer drained")

    o1 = (await inventory.get("/orders/o1")).json()
    assert o1["state"] == "shipped"
    assert [(e["event_type"], e["outcome"]) for e in o1["events"]] == [
        ("order.created", "applied"),
        ("payment.successful", "applied"),
        ("payment.failed", "ignored"),
        ("shipment.shipped", "applied"),
    ]
    assert (await inventory.get("/orders/o2")).json()["state"] == "rejected"
    assert await sku(inventory, "ONE") == {
        "sku": "ONE",
        "on_hand": 0,
        "reserved": 0,
        "committed": 0,
        "available": 0,
        "backordered": 0,
        "version": 4,
    }


async def test_fifty_concurrent_orders_for_the_last_unit_reserve_exactly_one(
    inventory: AsyncTestClient, js: JetStreamContext
) -> None:
    rejections_before = await _metric(inventory, "inventory_oversell_rejections_total", path="event")
    await publish(js, "inventory.received", "r1", {"sku": "LAST", "qty": 1})
    await asyncio.gather(
        *(
            publish(js, "order.created", f"c{i}", {"order_id": f"o{i}", "lines": [{"sku": "LAST", "qty": 1}]})
            for i in range(50)
        )
    )
    await eventually(lambda: drained(js), what="consumer drained")
    states = [(await inventory.get(f"/orders/o{i}")).json()["state"] for i in range(50)]
    assert states.count("reserved") == 1
    assert states.count("rejected") == 49
    assert await sku(inventory, "LAST") == {
        "sku": "LAST",
        "on_hand": 1,
        "reserved": 1,
        "committed": 0,
        "available": 0,
        "backordered": 0,
        "version": 2,
    }
    assert await _metric(inventory, "inventory_oversell_rejections_total", path="event") == rejections_before + 49


async def _deadletters(js: JetStreamContext, count: int) -> list:
    sub = await js.pull_subscribe("deadletter.>", stream="DEADLETTER")
    try:
        return await sub.fetch(count, timeout=1)
    finally:
        await sub.unsubscribe()


async def test_a_malformed_event_goes_to_deadletter_and_the_stream_moves_on(
    inventory: AsyncTestClient, js: JetStreamContext
) -> None:
    await js.publish(
        "commerce.ce.inventory.received",
        b"{not json",
        headers={"Nats-Msg-Id": "ce:bad", "Stockwire-Event-Type": "inventory.received", "Stockwire-Source": "ce"},
    )
    await publish(js, "inventory.received", "good", {"sku": "A", "qty": 2})
    await eventually(lambda: drained(js), what="consumer drained")
    assert (await sku(inventory, "A"))["on_hand"] == 2
    [dead] = await _deadletters(js, 1)
    assert dead.subject == "deadletter.inventory.commerce.ce.inventory.received"
    assert dead.data == b"{not json"
    assert "not valid JSON" in dead.headers["Stockwire-Error"]
    assert dead.headers["Stockwire-Original-Seq"] == "1"


async def test_poison_fields_are_dead_lettered_at_once_and_their_batch_neighbours_applied(
    js: JetStreamContext, nats_server: NatsServer, inventory_factory: ClientFactory
) -> None:
    # Published before inventory starts, so that the first fetch takes them as one batch.
    await publish(js, "inventory.received", "good-1", {"sku": "A", "qty": 2})
    order = {"order_id": "o-poison", "lines": [{"sku": "A", "qty": 1}]}
    await publish(js, "order.created", "poison-time", order, created_at=10**400)
    await publish(js, "inventory.adjusted", "poison-count", {"sku": "A", "on_hand": 9, "counted_at": 1e20})
    await publish(js, "inventory.received", "poison-qty", {"sku": "A", "qty": 10**30})
    await publish(js, "inventory.received", "good-2", {"sku": "A", "qty": 3})
    async with inventory_factory(nats_server.url) as client:
        await eventually(lambda: drained(js), what="consumer drained")
        assert (await sku(client, "A"))["on_hand"] == 5
        dead = await _deadletters(js, 3)
        reasons = {d.headers["Stockwire-Original-Seq"]: d.headers["Stockwire-Error"] for d in dead}
        assert sorted(reasons) == ["2", "3", "4"]
        assert reasons["2"].startswith("malformed: created_at: ")
        assert reasons["3"].startswith("malformed: data.counted_at: ")
        assert reasons["4"].startswith("malformed: data.qty: ")
        # Settled on the first delivery: nothing waited for a retry.
        assert (await js.consumer_info("COMMERCE", "inventory")).num_redelivered == 0


# Few deliveries, so that giving up comes quickly (redeliveries follow the runner's retry schedule).
_FEW_DELIVERIES = TopologySettings(max_deliver=2, ack_wait_s=5)


@pytest.mark.parametrize("topology_settings", [_FEW_DELIVERIES])
async def test_an_event_the_store_keeps_failing_on_is_dead_lettered_after_max_deliver(
    topology_settings: TopologySettings,
    js: JetStreamContext,
    nats_server: NatsServer,
    inventory_factory: ClientFactory,
    data_dir: Path,
) -> None:
    # A real, persistent failure for one event only: a trigger refuses ledger rows for this SKU.
    async with inventory_factory(nats_server.url, topology=topology_settings) as client:
        with sqlite3.connect(data_dir / "inventory.db") as db:
            db.execute(
                "CREATE TRIGGER poison BEFORE INSERT ON ledger WHEN NEW.sku = 'POISON' "
                "BEGIN SELECT RAISE(ABORT, 'poisoned row'); END"
            )
        labels = {"event_type": "inventory.received", "outcome": "dead_lettered"}
        dead_before = await _metric(client, APPLIED, **labels)
        await publish(js, "inventory.received", "p-1", {"sku": "POISON", "qty": 1})
        await publish(js, "inventory.received", "ok-1", {"sku": "FINE", "qty": 4})
        await eventually(lambda: drained(js), timeout=20, what="poison dead-lettered")
        assert (await sku(client, "FINE"))["on_hand"] == 4
        assert await sku(client, "POISON") is None
        [dead] = await _deadletters(js, 1)
        assert "failed 2 deliveries" in dead.headers["Stockwire-Error"]
        assert "poisoned row" in dead.headers["Stockwire-Error"]
        assert await _metric(client, APPLIED, **labels) == dead_before + 1


async def test_an_event_parked_too_long_goes_to_deadletter_with_the_reason(
    js: JetStreamContext, nats_server: NatsServer, inventory_factory: ClientFactory
) -> None:
    async with inventory_factory(nats_server.url, park_limit_s=0.3, sweep_interval_s=0.1) as client:
        await publish(js, "shipment.shipped", "s-orphan", {"order_id": "never"})
        [dead] = await eventually(lambda: _deadletters(js, 1), timeout=10, what="parked event dead-lettered")
        assert dead.subject == "deadletter.inventory.commerce.ce.shipment.shipped"
        assert "waiting for order.created" in dead.headers["Stockwire-Error"]

        async def forgotten() -> dict | None:
            order = (await client.get("/orders/never")).json()
            return order if not order["parked"] else None

        order = await eventually(forgotten, what="given-up event removed from the parked ones")
        assert [e["outcome"] for e in order["events"]] == ["dead_lettered"]
        # Its order arriving later no longer revives it.
        await publish(js, "order.created", "c-late", {"order_id": "never", "lines": [{"sku": "A", "qty": 1}]})
        await eventually(lambda: drained(js), what="order handled")
        assert (await client.get("/orders/never")).json()["state"] == "rejected"


async def test_unknown_event_types_are_kept_in_commerce_and_ignored(
    inventory: AsyncTestClient, js: JetStreamContext
) -> None:
    before = await _metric(inventory, APPLIED, event_type="other", outcome="ignored")
    await publish(js, "customer.created", "cu1", {"id": "x"})
    await eventually(lambda: drained(js), what="consumer drained")
    assert await _metric(inventory, APPLIED, event_type="other", outcome="ignored") == before + 1
    assert (await js.stream_info("COMMERCE")).state.messages == 1


async def test_an_unmapped_type_is_counted_by_its_source_and_its_own_type(
    inventory: AsyncTestClient, js: JetStreamContext
) -> None:
    labels = {"event_type": "loyalty.points.earned", "source": "ce"}  # as the exposition orders them
    before = await _metric(inventory, "inventory_unmapped_events_total", **labels)
    await publish(js, "loyalty.points.earned", "lp1", {"id": "x"})
    await publish(js, "loyalty.points.earned", "lp1", {"id": "x"})  # a duplicate is not counted again
    await publish(js, "loyalty.points.earned", "lp2", {"id": "y"})
    await eventually(lambda: drained(js), what="consumer drained")
    assert await _metric(inventory, "inventory_unmapped_events_total", **labels) == before + 2


async def test_readiness_reports_nats_store_and_consumer(inventory: AsyncTestClient) -> None:
    response = await inventory.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"nats_connected": True, "store_writable": True, "consumer_bound": True}
    body = json.loads((await inventory.get("/schema/openapi.json")).text)
    assert "/reservations" in body["paths"]


async def test_an_http_only_replica_reports_what_the_consumer_has_pending(
    js: JetStreamContext, nats_server: NatsServer, inventory_factory: ClientFactory
) -> None:
    async with inventory_factory(nats_server.url, consume=False, metrics_interval_s=0.05) as client:
        for i in range(3):
            await publish(js, "inventory.received", f"r{i}", {"sku": "A", "qty": 1})

        async def pending() -> bool:
            return await _metric(client, "inventory_consumer_pending") == 3

        await eventually(pending, what="consumer pending gauge")
        assert (await client.get("/readyz")).json()["checks"]["consumer_bound"] is True
        assert await sku(client, "A") is None
