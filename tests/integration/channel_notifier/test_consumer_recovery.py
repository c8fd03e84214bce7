"""The notifier owns its durable consumers: one deleted while it runs comes back where it was."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from nats.js import JetStreamContext
from nats.js import api as js_api
from sqlalchemy import event

from libs.contracts import decode_availability
from libs.topology import DEADLETTER, INVENTORY, NOTIFIER_CONSUMER
from tests.support import eventually

from .conftest import Notifier, NotifierFactory
from .support import availability, converged, publish, pull, until


async def _pull_and_ack(js: JetStreamContext, durable: str, count: int) -> list[int]:
    return [decode_availability(msg.data).version for msg in await pull(js, durable, count, timeout=2)]


async def _channel_acked_up_to_3(js: JetStreamContext, notifier: Notifier, versions: int) -> None:
    """Channel ``erp`` (jetstream) with SKU-1 versions 1..``versions`` published, its client having
    acknowledged 1-3, and the notifier having seen that floor."""
    await notifier.create_channel(name="erp", kind="jetstream")
    for version in range(1, versions + 1):
        await publish(js, availability("SKU-1", version, version))
    assert await _pull_and_ack(js, "chan-erp", 3) == [1, 2, 3]

    async def floor_known() -> bool:
        return notifier.runtime.channel_floors.seqs.get("chan-erp") == 3

    await eventually(floor_known, what="the notifier knows the channel's ack floor")


async def _channel_consumer(js: JetStreamContext) -> js_api.ConsumerInfo | None:
    try:
        return await js.consumer_info(INVENTORY, "chan-erp")
    except Exception:
        return None


async def test_a_deleted_channel_consumer_is_recreated_after_what_its_client_acknowledged(
    js: JetStreamContext, notifier_factory: NotifierFactory
) -> None:
    async with notifier_factory(registry_refresh_s=0.1) as notifier:
        await _channel_acked_up_to_3(js, notifier, 5)
        await js.delete_consumer(INVENTORY, "chan-erp")

        info = await eventually(lambda: _channel_consumer(js), what="channel consumer re-created")
        assert info.config.deliver_policy == js_api.DeliverPolicy.BY_START_SEQUENCE
        assert info.config.opt_start_seq == 4
        assert await _pull_and_ack(js, "chan-erp", 5) == [4, 5]


async def test_the_notifier_recreates_its_own_consumer_from_its_ack_floor(
    js: JetStreamContext, notifier_factory: NotifierFactory
) -> None:
    async with notifier_factory() as notifier:
        for version in range(1, 4):
            await publish(js, availability("SKU-1", version, version))
        consumer = notifier.runtime.consumer
        assert consumer is not None

        async def floor_at_3() -> bool:
            return consumer.ack_floor == 3

        await eventually(floor_at_3, what="the runner knows the ack floor")
        await js.delete_consumer(INVENTORY, NOTIFIER_CONSUMER)
        await publish(js, availability("SKU-1", 4, 4))

        async def caught_up() -> bool:
            try:
                info = await js.consumer_info(INVENTORY, NOTIFIER_CONSUMER)
            except Exception:
                return False
            return info.ack_floor.stream_seq == 4 and await notifier.runtime.consumer_bound()

        await eventually(caught_up, what="the update published after the deletion consumed")
        info = await js.consumer_info(INVENTORY, NOTIFIER_CONSUMER)
        assert info.config.opt_start_seq == 4 and info.num_redelivered == 0
        assert info.delivered.stream_seq == 4 and info.delivered.consumer_seq == 1
        assert (await js.stream_info(DEADLETTER)).state.messages == 0


async def test_a_channel_consumer_lost_with_its_stream_starts_the_new_stream_from_its_beginning(
    js: JetStreamContext, notifier_factory: NotifierFactory
) -> None:
    async with notifier_factory(registry_refresh_s=0.1) as notifier:
        await _channel_acked_up_to_3(js, notifier, 3)
        config = (await js.stream_info(INVENTORY)).config
        await js.delete_stream(INVENTORY)
        await js.add_stream(config)
        # Sequence 1 of the new stream: the old floor (3) must not make the channel skip it.
        await publish(js, availability("SKU-2", 1, 1))

        await eventually(lambda: _channel_consumer(js), what="channel consumer re-created on the new stream")
        assert await _pull_and_ack(js, "chan-erp", 1) == [1]


async def test_readiness_says_not_ready_while_the_store_cannot_write_and_no_delivery_is_spent(
    js: JetStreamContext,
    notifier: Notifier,
    sinks,
    data_dir: Path,  # type: ignore[no-untyped-def]
) -> None:
    shop = await sinks("shop")
    await notifier.create_channel(name="shop", url=shop.url, secret=shop.secret)
    store = notifier.runtime.store
    engines = [store.engine.sync_engine, *([store._sync] if store._sync is not None else [])]
    cap: dict[str, int | None] = {"pages": None}

    # SQLite's max_page_count gives the error of a full disk (SQLITE_FULL) on a real file.
    def _cap(dbapi_connection: Any, _record: Any) -> None:
        if cap["pages"] is not None:
            dbapi_connection.execute(f"PRAGMA max_page_count = {cap['pages']}")

    for engine in engines:
        event.listen(engine, "connect", _cap)
    with sqlite3.connect(data_dir / "channel-notifier.db") as db:
        cap["pages"] = db.execute("PRAGMA page_count").fetchone()[0]
    await _dispose(store)
    final = {f"SKU-{n}": availability(f"SKU-{n}", 1, n) for n in range(300)}
    for update in final.values():
        await publish(js, update)

    async def not_ready() -> bool:
        response = await notifier.client.get("/readyz")
        checks = response.json()["checks"]
        return response.status_code == 503 and not checks["store_writable"] and not checks["consumer_bound"]

    await eventually(not_ready, what="/readyz 503 while the store is full")
    cap["pages"] = None
    await _dispose(store)
    await until(lambda: converged(shop.sink, final), timeout=30, what="the channel converged once the store writes")
    await eventually(lambda: _ready(notifier), what="ready again")
    info = await js.consumer_info(INVENTORY, NOTIFIER_CONSUMER)
    assert info.num_redelivered == 0
    assert (await js.stream_info(DEADLETTER)).state.messages == 0


async def _dispose(store: Any) -> None:
    await store.engine.dispose()
    if store._sync is not None:
        store._sync.dispose()


async def _ready(notifier: Notifier) -> bool:
    return (await notifier.client.get("/readyz")).status_code == 200
