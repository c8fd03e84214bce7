"""A row re-published after JetStream's duplicate window has passed lands in the stream twice; the
consumers' own idempotency makes that harmless.

The relay crashes after its PubAcks and before marking (the debug pause, then the task is cancelled
as a crash would leave it), the window passes, the relay restarts and publishes the rows again:
JetStream no longer remembers their ``Nats-Msg-Id`` and stores second copies. The consumer here is a
minimal stand-in using the rules of the real ones: an inbox keyed by ``Nats-Msg-Id`` in the same
transaction as the effect (inventory), and per SKU a version below or equal to the one held is
dropped (channel-notifier). It runs on the real ``channel-notifier`` durable consumer of INVENTORY.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from libs.config import NatsSettings, StockwireSettings, TopologySettings
from libs.consumer import PullConsumer, per_message
from libs.natsserver import NatsServer
from libs.outbox import OutboxMessage
from libs.store import create_engine
from libs.topology import INVENTORY, NOTIFIER_CONSUMER
from services.outbox_relay.runtime import RelayRuntime
from services.outbox_relay.settings import OutboxSpec
from tests.support import eventually

from .support import FAST, Outbox, stream_messages

WINDOW_S = 1.0


@pytest.fixture
def topology_settings() -> TopologySettings:
    return TopologySettings(duplicate_window_s=WINDOW_S)


def availability(sku: str, version: int, available: int) -> OutboxMessage:
    msg_id = f"availability:{sku}:{version}"
    body = json.dumps({"sku": sku, "version": version, "available": available}).encode()
    return OutboxMessage(f"inventory.availability.{sku}", msg_id, body, {"Nats-Msg-Id": msg_id})


class IdempotentConsumer:
    """Applies each message once: inbox row + effect in one transaction; stale versions dropped."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url)
        meta = sa.MetaData()
        self.inbox = sa.Table("inbox", meta, sa.Column("msg_id", sa.String, primary_key=True))
        self.latest = sa.Table(
            "latest",
            meta,
            sa.Column("sku", sa.String, primary_key=True),
            sa.Column("version", sa.Integer, nullable=False),
            sa.Column("available", sa.Integer, nullable=False),
        )
        self.metadata = meta
        self.deliveries = 0
        self.applied = 0

    async def setup(self) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(self.metadata.create_all)

    async def handle(self, msg: Msg) -> None:
        msg_id = (msg.headers or {})["Nats-Msg-Id"]
        if msg_id == _PROBE:
            return  # the test's own window probe, not an outbox row
        self.deliveries += 1
        doc = json.loads(msg.data)
        async with self.engine.begin() as conn:
            fresh = await conn.execute(
                sa.text("INSERT INTO inbox (msg_id) VALUES (:m) ON CONFLICT DO NOTHING RETURNING msg_id"), {"m": msg_id}
            )
            if fresh.first() is None:
                return  # seen before: acknowledged, nothing changes
            held = (
                await conn.execute(sa.select(self.latest.c.version).where(self.latest.c.sku == doc["sku"]))
            ).scalar()
            if held is not None and held >= doc["version"]:
                return
            await conn.execute(
                sa.text(
                    "INSERT INTO latest (sku, version, available) VALUES (:s, :v, :a) "
                    "ON CONFLICT (sku) DO UPDATE SET version = excluded.version, available = excluded.available"
                ),
                {"s": doc["sku"], "v": doc["version"], "a": doc["available"]},
            )
            self.applied += 1

    async def state(self) -> dict[str, tuple[int, int]]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(sa.select(self.latest))).all()
        return {r.sku: (r.version, r.available) for r in rows}


async def test_a_republish_after_the_window_lands_twice_and_consumers_apply_it_once(
    js: JetStreamContext, nats_server: NatsServer, data_dir: Path
) -> None:
    name = f"t{uuid.uuid4().hex[:8]}"
    url = f"sqlite+aiosqlite:///{data_dir / 'inventory.db'}"
    outbox = await Outbox.create(url)
    rows = [availability("A", 1, 5), availability("B", 1, 9), availability("A", 2, 4), availability("A", 3, 2)]
    await outbox.write(rows)
    shared = StockwireSettings(data_dir=str(data_dir), nats=NatsSettings(servers=[nats_server.url]))
    settings = dataclasses.replace(FAST, outboxes=[OutboxSpec(name, url)])
    try:
        crashed = RelayRuntime(shared, dataclasses.replace(settings, debug_pause_before_mark_s=60.0))
        await crashed.start()
        await eventually(lambda: _stream_count(js, len(rows)), what="rows in the stream")
        # A probe published to the same stream after the rows: each stream forgets ids on its own timer,
        # so only the stream's own forgetting of a later id says the rows' ids are forgotten too.
        await js.publish(_PROBE_SUBJECT, b"", headers={"Nats-Msg-Id": _PROBE})
        assert await outbox.unpublished() == len(rows), "acknowledged but not marked yet"
        await crashed.stop(grace_s=0.0)  # the pause is cut short: nothing gets marked, as in a crash
        assert await outbox.unpublished() == len(rows)

        await eventually(lambda: _window_passed(js), timeout=20, what="the duplicate window passed")

        restarted = RelayRuntime(shared, settings)
        await restarted.start()
        try:
            await eventually(lambda: _unpublished_is(outbox, 0), what="rows published again and marked")
        finally:
            await restarted.stop()
        # Exactly one more copy of each row: JetStream no longer knew the ids. (A publish period the
        # relay retried within this run may still be answered "duplicate"; the stream is the evidence.)
        stored = [m.msg_id for m in await stream_messages(js, INVENTORY) if m.msg_id != _PROBE]
        assert stored == [r.msg_id for r in rows] * 2, "past the window JetStream keeps both copies"

        consumer = IdempotentConsumer(f"sqlite+aiosqlite:///{data_dir / 'consumer.db'}")
        await consumer.setup()
        runner = PullConsumer(js, INVENTORY, NOTIFIER_CONSUMER, per_message(consumer.handle), fetch_timeout_s=0.2)
        task = asyncio.create_task(runner.run())
        try:
            await eventually(lambda: _delivered(consumer, 2 * len(rows)), what="every copy delivered")
        finally:
            runner.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 5)
        assert consumer.applied == len(rows), "each message applied once"
        assert await consumer.state() == {"A": (3, 2), "B": (1, 9)}, "the same state as from one copy"
        await consumer.engine.dispose()
    finally:
        await outbox.close()


async def _stream_count(js: JetStreamContext, count: int) -> bool:
    return (await js.stream_info(INVENTORY)).state.messages == count


_PROBE = f"probe-{uuid.uuid4().hex}"
_PROBE_SUBJECT = "inventory.availability.PROBE"


async def _window_passed(js: JetStreamContext) -> bool:
    """Publish the probe again: once INVENTORY stops calling it a duplicate, every id published before the
    probe's first copy is forgotten too (the same stream, the same window)."""
    ack = await js.publish(_PROBE_SUBJECT, b"", headers={"Nats-Msg-Id": _PROBE})
    return not ack.duplicate


async def _unpublished_is(outbox: Outbox, count: int) -> bool:
    return await outbox.unpublished() == count


async def _delivered(consumer: IdempotentConsumer, count: int) -> bool:
    return consumer.deliveries >= count
