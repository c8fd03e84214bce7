"""A jetstream channel pulls the same updates straight from its own durable consumer."""

from __future__ import annotations

import datetime as dt

import pytest
from nats.js import JetStreamContext
from nats.js import errors as js_errors

from libs.contracts import InventoryEvent, decode_availability, encode, inventory_subject
from libs.topology import INVENTORY

from .conftest import Notifier
from .support import AUTH, availability, publish, pull


async def _pull(js: JetStreamContext, durable: str, expected: int) -> list:  # type: ignore[type-arg]
    return await pull(js, durable, expected)


async def test_jetstream_channel_receives_the_updates_by_pulling(js: JetStreamContext, notifier: Notifier) -> None:
    created = await notifier.create_channel(name="erp", kind="jetstream", filters={"skus": ["SKU-1", "SKU.2"]})
    assert created["consumer"] == {"stream": "INVENTORY", "durable": "chan-erp"}
    assert "secret" not in created
    info = await js.consumer_info(INVENTORY, "chan-erp")
    assert sorted(info.config.filter_subjects) == ["inventory.availability.SKU-1", "inventory.availability.SKU~2E2"]

    updates = [availability(sku, v, v * 2) for v in (1, 2, 3) for sku in ("SKU-1", "SKU.2", "OTHER")]
    for update in updates:
        await publish(js, update)
    received = [decode_availability(m.data) for m in await _pull(js, "chan-erp", 6)]
    assert [(u.sku, u.version) for u in received] == [(u.sku, u.version) for u in updates if u.sku != "OTHER"]
    assert received[-1].available == 6  # a jetstream channel sees the stream as published


async def test_jetstream_channel_with_ledger_kinds_and_wildcards(js: JetStreamContext, notifier: Notifier) -> None:
    await notifier.create_channel(
        name="ledger", kind="jetstream", filters={"skus": ["TEE-*"], "kinds": ["reserved", "availability"]}
    )
    info = await js.consumer_info(INVENTORY, "chan-ledger")
    assert sorted(info.config.filter_subjects) == ["inventory.availability.>", "inventory.reserved.>"]
    event = InventoryEvent(kind="reserved", sku="TEE-1", qty=1, version=7, occurred_at="2026-01-01T00:00:00+00:00")
    await js.publish(inventory_subject("reserved", "TEE-1"), encode(event))
    await js.publish(inventory_subject("received", "TEE-1"), encode(event))
    await publish(js, availability("TEE-1", 7, 3))
    received = await _pull(js, "chan-ledger", 2)
    assert [m.subject for m in received] == ["inventory.reserved.TEE-1", "inventory.availability.TEE-1"]


async def test_filters_change_and_delete_follow_the_consumer(js: JetStreamContext, notifier: Notifier) -> None:
    await notifier.create_channel(name="erp", kind="jetstream")
    info = await js.consumer_info(INVENTORY, "chan-erp")
    assert info.config.filter_subject == "inventory.availability.>"
    changed = await notifier.client.patch("/channels/erp", json={"filters": {"skus": ["A"]}}, headers=AUTH)
    assert changed.status_code == 200
    info = await js.consumer_info(INVENTORY, "chan-erp")
    assert (info.config.filter_subject or "") in ("", "inventory.availability.A")
    assert (info.config.filter_subjects or [info.config.filter_subject]) == ["inventory.availability.A"]
    assert (await notifier.client.delete("/channels/erp", headers=AUTH)).status_code == 204
    with pytest.raises(js_errors.NotFoundError):
        await js.consumer_info(INVENTORY, "chan-erp")


async def test_a_change_its_kind_cannot_take_conflicts_with_the_stored_channel(notifier: Notifier) -> None:
    await notifier.create_channel(name="erp", kind="jetstream")
    for change in [{"url": "http://localhost:1/x"}, {"buffer": 3}, {"generate_secret": True}, {"secrets": []}]:
        answer = await notifier.client.patch("/channels/erp", json=change, headers=AUTH)
        assert answer.status_code == 409, (change, answer.text)
        assert answer.json()["error"] == "kind_mismatch", change
    await notifier.create_channel(name="shop", url="http://localhost:1/x")
    answer = await notifier.client.patch("/channels/shop", json={"filters": {"kinds": ["reserved"]}}, headers=AUTH)
    assert (answer.status_code, answer.json()["error"]) == (409, "kind_mismatch")


async def test_replay_recreates_the_consumer_from_the_time_asked(js: JetStreamContext, notifier: Notifier) -> None:
    await notifier.create_channel(name="erp", kind="jetstream")
    await publish(js, availability("A", 1, 1))
    since = dt.datetime.now(dt.UTC)
    await publish(js, availability("B", 1, 1))
    assert len(await _pull(js, "chan-erp", 2)) == 2
    replay = await notifier.client.post("/channels/erp/replay", json={"since": since.isoformat()}, headers=AUTH)
    assert replay.status_code == 202
    again = await _pull(js, "chan-erp", 1)
    assert [decode_availability(m.data).sku for m in again] == ["B"]


async def test_orphan_channel_consumers_are_removed_at_start_up(js: JetStreamContext, notifier_factory) -> None:  # type: ignore[no-untyped-def]
    from nats.js import api as js_api

    await js.add_consumer(INVENTORY, js_api.ConsumerConfig(durable_name="chan-forgotten", filter_subject="inventory.>"))
    async with notifier_factory():
        with pytest.raises(js_errors.NotFoundError):
            await js.consumer_info(INVENTORY, "chan-forgotten")
        # The notifier's own consumer is not a channel's and stays.
        assert (await js.consumer_info(INVENTORY, "channel-notifier")).name == "channel-notifier"
