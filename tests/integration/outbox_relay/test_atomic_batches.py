"""The relay commits a batch bound for one stream with ``allow_atomic`` as one atomic batch, and publishes
message by message where a batch may repeat what JetStream has (all of an atomic batch would be refused)
or where the stream does not take atomic batches."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from nats.js import JetStreamContext
from nats.js import api as js_api
from prometheus_client import generate_latest

from libs.contracts import HEADER_BATCH_ID
from libs.natsserver import NatsServer
from libs.topology import INVENTORY
from services.outbox_relay.settings import OutboxSpec
from tests.support import eventually

from .support import Outbox, message, metric_value, running_relay, stream_messages


@pytest.fixture
def name() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


async def _all_published(outbox: Outbox) -> bool:
    return await outbox.unpublished() == 0


def _assert_counted(metrics: str, outbox: str, *, published: int, duplicates: int) -> None:
    assert metric_value(metrics, "outbox_relay_published_total", outbox) == published
    assert metric_value(metrics, "outbox_relay_duplicates_total", outbox) == duplicates


async def test_batches_after_a_clean_one_go_out_atomically_in_id_order(
    js: JetStreamContext, nats_server: NatsServer, data_dir: Path, name: str
) -> None:
    assert (await js.stream_info(INVENTORY)).config.allow_atomic, "the declared topology allows atomic batches"
    outbox = await Outbox.create(f"sqlite+aiosqlite:///{data_dir / 'inventory.db'}")
    try:
        async with running_relay(nats_server.url, data_dir, [OutboxSpec(name, outbox.url)], batch_size=40):
            # An epoch's batches go out message by message until one has settled with no duplicate.
            await outbox.write([message(n) for n in range(40)])
            await eventually(lambda: _all_published(outbox), what="the first rows marked published")
            await outbox.write([message(n) for n in range(40, 200)])
            await eventually(lambda: _all_published(outbox), what="all rows marked published")
            metrics = generate_latest().decode()
        stored = await stream_messages(js, INVENTORY)
        assert [m.msg_id for m in stored] == [f"m-{n:06d}" for n in range(200)]
        assert not any(HEADER_BATCH_ID in m.headers for m in stored[:40])
        batches = [m.headers.get(HEADER_BATCH_ID) for m in stored[40:]]
        assert None not in batches and len(set(batches)) == 4, "rows 40-199 in four atomic batches of 40"
        _assert_counted(metrics, name, published=200, duplicates=0)
    finally:
        await outbox.close()


async def test_a_batch_repeating_stored_messages_is_refused_whole_then_published_one_by_one(
    js: JetStreamContext, nats_server: NatsServer, data_dir: Path, name: str
) -> None:
    outbox = await Outbox.create(f"sqlite+aiosqlite:///{data_dir / 'inventory.db'}")
    rows = [message(n) for n in range(240)]
    try:
        async with running_relay(
            nats_server.url, data_dir, [OutboxSpec(name, outbox.url)], batch_size=40, retry_initial_s=0.05
        ):
            await outbox.write(rows[:40])
            await eventually(lambda: _all_published(outbox), what="the first rows marked published")
            # Stored already (e.g. an earlier leader published them and died before marking): once batches
            # are atomic, the one holding rows 80-119 is refused whole as a duplicate.
            for row in rows[90:100]:
                await js.publish(row.subject, row.payload, headers=dict(row.headers))
            await outbox.write(rows[40:200])
            await eventually(lambda: _all_published(outbox), what="rows 40-199 marked published")
            await outbox.write(rows[200:])
            await eventually(lambda: _all_published(outbox), what="all rows marked published")
            metrics = generate_latest().decode()
        stored = await stream_messages(js, INVENTORY)
        expected = [r.msg_id for r in rows[:40] + rows[90:100] + rows[40:90] + rows[100:]]
        assert [m.msg_id for m in stored] == expected, "each row stored once, the new ones in id order"
        number = {m.msg_id: int(m.headers["Test-N"]) for m in stored}
        assert not any(HEADER_BATCH_ID in m.headers for m in stored if 80 <= number[m.msg_id] < 120)
        assert all(HEADER_BATCH_ID in m.headers for m in stored if number[m.msg_id] >= 200), "atomic again"
        _assert_counted(metrics, name, published=240, duplicates=10)
    finally:
        await outbox.close()


async def test_a_stream_without_allow_atomic_is_published_to_one_message_at_a_time(
    js: JetStreamContext, nats_server: NatsServer, data_dir: Path, name: str
) -> None:
    stream, prefix = f"PLAIN_{name}", f"plain{name}"
    await js.add_stream(
        js_api.StreamConfig(name=stream, subjects=[f"{prefix}.>"], allow_atomic=False, allow_direct=True)
    )
    outbox = await Outbox.create(f"sqlite+aiosqlite:///{data_dir / 'plain.db'}")
    try:
        async with running_relay(nats_server.url, data_dir, [OutboxSpec(name, outbox.url)], batch_size=40):
            await outbox.write([message(n, prefix=prefix) for n in range(40)])
            await eventually(lambda: _all_published(outbox), what="the first rows marked published")
            await outbox.write([message(n, prefix=prefix) for n in range(40, 120)])
            await eventually(lambda: _all_published(outbox), what="all rows marked published")
            metrics = generate_latest().decode()
        stored = await stream_messages(js, stream)
        assert [m.msg_id for m in stored] == [f"m-{n:06d}" for n in range(120)]
        assert not any(HEADER_BATCH_ID in m.headers for m in stored)
        # Asked first, not learnt from a refusal: no batch failed on the way.
        assert metric_value(metrics, "outbox_relay_publish_errors_total", name) == 0
    finally:
        await outbox.close()
        await js.delete_stream(stream)
