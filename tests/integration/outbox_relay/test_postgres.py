"""PostgreSQL outboxes: ids are drawn before commit, so transactions commit out of id order.
Nothing may be skipped, and the stream must follow id order."""

from __future__ import annotations

import asyncio
import random
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from nats.js import JetStreamContext

from libs.natsserver import NatsServer
from libs.outbox import add_to_outbox
from libs.topology import INVENTORY
from services.outbox_relay.settings import OutboxSpec
from tests.support import eventually

from .support import Outbox, message, running_relay, stream_messages

pytestmark = pytest.mark.postgres


@pytest.fixture
def name() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


async def test_a_higher_id_committed_first_waits_for_the_lower_one(
    js: JetStreamContext, nats_server: NatsServer, data_dir: Path, postgres_url: str, name: str
) -> None:
    outbox = await Outbox.create(postgres_url)
    try:
        async with running_relay(nats_server.url, data_dir, [OutboxSpec(name, postgres_url)]) as runtime:
            relay = runtime.relay(name)
            await eventually(lambda: _leading(relay), what="leader")
            async with outbox.engine.connect() as slow:
                slow_tx = await slow.begin()
                await add_to_outbox(slow, outbox.table, [message(1)])  # draws id 1, stays open
                await outbox.write([message(2)])  # draws id 2, commits first
                epoch = relay.current_epoch
                assert epoch is not None
                waits = epoch.stats.horizon_waits
                await eventually(lambda: _held_back(relay, waits + 3), what="relay holding id 2 back")
                assert (await js.stream_info(INVENTORY)).state.messages == 0, "id 2 must not overtake id 1"
                await slow_tx.commit()
            await eventually(lambda: _unpublished_is(outbox, 0), what="both rows published")
        assert [m.msg_id for m in await stream_messages(js, INVENTORY)] == ["m-000001", "m-000002"]
    finally:
        await outbox.close()


async def test_concurrent_writers_with_interleaved_commits_skip_nothing(
    js: JetStreamContext, nats_server: NatsServer, data_dir: Path, postgres_url: str, name: str
) -> None:
    outbox = await Outbox.create(postgres_url)
    rng = random.Random(20261128)
    committed: set[str] = set()
    counter = iter(range(1_000_000))

    async def writer(transactions: int) -> None:
        for _ in range(transactions):
            rows = [message(next(counter)) for _ in range(rng.randint(1, 3))]
            async with outbox.engine.connect() as conn:
                tx = await conn.begin()
                await add_to_outbox(conn, outbox.table, rows)
                # Other writers draw ids and commit while this one is still open.
                await asyncio.sleep(rng.uniform(0, 0.004))
                if rng.random() < 0.1:
                    await tx.rollback()
                    continue
                await tx.commit()
                committed.update(r.msg_id for r in rows)

    try:
        async with running_relay(nats_server.url, data_dir, [OutboxSpec(name, postgres_url)], batch_size=20):
            await asyncio.gather(*(writer(60) for _ in range(6)))
            await eventually(lambda: _unpublished_is(outbox, 0), timeout=20, what="every committed row published")
        rows = await outbox.rows()
        stored = [m.msg_id for m in await stream_messages(js, INVENTORY)]
        assert {r.msg_id for r in rows} == committed
        assert len(stored) == len(set(stored)), "each row once"
        assert set(stored) == committed, "nothing skipped, nothing rolled back published"
        assert stored == [r.msg_id for r in rows], "in id order"
    finally:
        await outbox.close()


async def test_notify_wakes_an_idle_relay(
    js: JetStreamContext, nats_server: NatsServer, data_dir: Path, postgres_url: str, name: str
) -> None:
    outbox = await Outbox.create(postgres_url)
    try:
        async with running_relay(
            nats_server.url, data_dir, [OutboxSpec(name, postgres_url)], idle_poll_s=60.0
        ) as runtime:
            relay = runtime.relay(name)
            await eventually(lambda: _leading(relay), what="leader")
            await eventually(lambda: _idle(relay), what="relay in a long idle wait")
            wait_ends = relay.wakeup.waiting_since + relay.wakeup.waiting_s
            await outbox.write([message(1)])
            await eventually(lambda: _unpublished_is(outbox, 0), timeout=5, what="row published")
            published_at = (await outbox.rows())[0].published_at
            assert published_at is not None and published_at < wait_ends, "woken by NOTIFY, not by the poll"
    finally:
        await outbox.close()


async def test_writers_take_their_transaction_id_before_drawing_outbox_ids(postgres_url: str) -> None:
    """The promise the relay's bound relies on (libs.outbox.add_to_outbox)."""
    outbox = await Outbox.create(postgres_url)
    statements: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement)

    sa.event.listen(outbox.engine.sync_engine, "before_cursor_execute", record)
    try:
        async with outbox.engine.connect() as conn:
            tx = await conn.begin()
            await add_to_outbox(conn, outbox.table, [message(1)])
            await tx.rollback()
        xid_at = next(i for i, s in enumerate(statements) if "pg_current_xact_id()" in s)
        insert_at = next(i for i, s in enumerate(statements) if s.lstrip().upper().startswith("INSERT"))
        assert xid_at < insert_at
    finally:
        await outbox.close()


async def _leading(relay) -> bool:  # type: ignore[no-untyped-def]
    return bool(relay.lease.is_leader() and relay.current_epoch is not None)


async def _held_back(relay, waits: int) -> bool:  # type: ignore[no-untyped-def]
    return bool(relay.current_epoch.stats.horizon_waits >= waits)


async def _idle(relay) -> bool:  # type: ignore[no-untyped-def]
    return bool(relay.wakeup.waiting_s >= 1.0)


async def _unpublished_is(outbox: Outbox, count: int) -> bool:
    return await outbox.unpublished() == count
