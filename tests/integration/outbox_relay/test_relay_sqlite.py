"""The relay on a SQLite outbox against the session's nats-server."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from nats.aio.client import Client
from nats.js import JetStreamContext
from prometheus_client import generate_latest

from libs.natsserver import NatsServer
from libs.outbox import outbox_nudge_subject
from libs.topology import INVENTORY
from services.outbox_relay.settings import OutboxSpec
from services.outbox_relay.store import SqliteOutboxStore
from tests.support import eventually

from .support import Outbox, message, metric_value, running_relay, stream_messages


@pytest.fixture
def name() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


async def test_rows_reach_the_stream_once_in_id_order_and_are_marked(
    js: JetStreamContext, nats_server: NatsServer, data_dir: Path, name: str
) -> None:
    url = f"sqlite+aiosqlite:///{data_dir / 'inventory.db'}"
    outbox = await Outbox.create(url)
    try:
        await outbox.write([message(n) for n in range(120)])
        async with running_relay(nats_server.url, data_dir, [OutboxSpec(name, url)]):
            await eventually(lambda: _unpublished_is(outbox, 0), what="all rows marked published")
            await outbox.write([message(n) for n in range(120, 130)])
            await eventually(lambda: _unpublished_is(outbox, 0), what="later rows marked too")
            metrics = generate_latest().decode()
        stored = await stream_messages(js, INVENTORY)
        assert [m.msg_id for m in stored] == [f"m-{n:06d}" for n in range(130)]
        first = stored[0]
        assert first.subject == "inventory.reserved.sku-0"
        assert first.headers["Test-N"] == "0" and first.data == b'{"n": 0}'
        assert metric_value(metrics, "outbox_relay_published_total", name) == 130
        assert metric_value(metrics, "outbox_relay_duplicates_total", name) == 0
        assert metric_value(metrics, "outbox_relay_leader", name) == 1
    finally:
        await outbox.close()


async def test_the_relay_waits_for_the_table_its_writer_creates(
    js: JetStreamContext, nats_server: NatsServer, data_dir: Path, name: str
) -> None:
    url = f"sqlite+aiosqlite:///{data_dir / 'later.db'}"
    async with running_relay(nats_server.url, data_dir, [OutboxSpec(name, url)]) as runtime:
        relay = runtime.relay(name)
        await eventually(lambda: _nats_up(runtime), what="relay connected")
        assert not relay.table_ready
        assert not (data_dir / "later.db").exists(), "the relay never creates its writer's database"
        outbox = await Outbox.create(url)
        try:
            await outbox.write([message(1)])
            await eventually(lambda: _unpublished_is(outbox, 0), timeout=15, what="row of the late table published")
            assert relay.table_ready
        finally:
            await outbox.close()
    assert [m.msg_id for m in await stream_messages(js, INVENTORY)] == ["m-000001"]


async def test_a_commit_wakes_an_idle_relay_without_waiting_for_its_poll(
    js: JetStreamContext, nats_server: NatsServer, data_dir: Path, name: str
) -> None:
    url = f"sqlite+aiosqlite:///{data_dir / 'inventory.db'}"
    outbox = await Outbox.create(url)
    try:
        # A poll this long would fail the deadline below: only the change watcher can make it.
        async with running_relay(nats_server.url, data_dir, [OutboxSpec(name, url)], idle_poll_s=60.0) as runtime:
            await eventually(lambda: _leading(runtime, name), what="leader")
            await outbox.write([message(1)])
            await eventually(lambda: _unpublished_is(outbox, 0), timeout=5, what="first row")
            await eventually(lambda: _idle(runtime, name), what="relay in a long idle wait")
            wait_ends = _wait_end(runtime, name)
            await outbox.write([message(2)])
            await eventually(lambda: _unpublished_is(outbox, 0), timeout=5, what="row after an idle spell")
            assert (await outbox.rows())[-1].published_at < wait_ends, "published before the poll would have read"
    finally:
        await outbox.close()


async def test_a_nats_nudge_wakes_the_relay(
    js: JetStreamContext, nc: Client, nats_server: NatsServer, data_dir: Path, name: str
) -> None:
    url = f"sqlite+aiosqlite:///{data_dir / 'inventory.db'}"
    outbox = await Outbox.create(url)
    try:
        # Neither the poll nor the file watcher (checking once a minute) can deliver in time: the nudge must.
        async with running_relay(
            nats_server.url, data_dir, [OutboxSpec(name, url)], idle_poll_s=60.0, change_check_s=60.0
        ) as runtime:
            await eventually(lambda: _leading(runtime, name), what="leader")
            await eventually(lambda: _idle(runtime, name), what="relay in a long idle wait")
            wait_ends = _wait_end(runtime, name)
            await outbox.write([message(1)])
            await nc.publish(outbox_nudge_subject(name), b"")
            await eventually(lambda: _unpublished_is(outbox, 0), timeout=5, what="nudged row published")
            assert (await outbox.rows())[-1].published_at < wait_ends, "published before the poll would have read"
    finally:
        await outbox.close()


async def test_rows_jetstream_already_has_count_as_duplicates(
    js: JetStreamContext, nats_server: NatsServer, data_dir: Path, name: str
) -> None:
    url = f"sqlite+aiosqlite:///{data_dir / 'inventory.db'}"
    outbox = await Outbox.create(url)
    try:
        rows = [message(n) for n in range(5)]
        for row in rows[:3]:  # e.g. the producer re-sent these straight to JetStream
            await js.publish(row.subject, row.payload, headers=dict(row.headers))
        await outbox.write(rows)
        async with running_relay(nats_server.url, data_dir, [OutboxSpec(name, url)]):
            await eventually(lambda: _unpublished_is(outbox, 0), what="all rows marked")
            metrics = generate_latest().decode()
        assert metric_value(metrics, "outbox_relay_duplicates_total", name) == 3
        assert metric_value(metrics, "outbox_relay_published_total", name) == 5
        assert [m.msg_id for m in await stream_messages(js, INVENTORY)] == [r.msg_id for r in rows]
    finally:
        await outbox.close()


async def test_published_rows_are_deleted_after_retention_but_the_newest_stays(
    js: JetStreamContext, nats_server: NatsServer, data_dir: Path, name: str
) -> None:
    url = f"sqlite+aiosqlite:///{data_dir / 'inventory.db'}"
    outbox = await Outbox.create(url)
    try:
        await outbox.write([message(n) for n in range(10)])
        async with running_relay(
            nats_server.url, data_dir, [OutboxSpec(name, url)], retention_s=0.0, cleanup_interval_s=0.05
        ):
            await eventually(lambda: _row_count_is(outbox, 1), what="published rows cleaned up")
            rows = await outbox.rows()
            assert [r.msg_id for r in rows] == ["m-000009"] and rows[0].published_at is not None
            await outbox.write([message(10)])
            await eventually(lambda: _unpublished_is(outbox, 0), what="new row published")
            assert max(r.id for r in await outbox.rows()) > rows[0].id, "ids keep growing"
        assert len(await stream_messages(js, INVENTORY)) == 11
    finally:
        await outbox.close()


async def test_backlog_gauges_while_jetstream_refuses(
    js: JetStreamContext, nats_server: NatsServer, data_dir: Path, name: str
) -> None:
    url = f"sqlite+aiosqlite:///{data_dir / 'inventory.db'}"
    outbox = await Outbox.create(url)
    try:
        # No stream captures these subjects: every publish gets "no responders" and is retried.
        await outbox.write([message(n, prefix="nowhere.at.all") for n in range(4)])
        async with running_relay(nats_server.url, data_dir, [OutboxSpec(name, url)]):

            async def stuck() -> str | None:
                text = generate_latest().decode()
                backlog = metric_value(text, "outbox_relay_backlog_rows", name)
                errors = metric_value(text, "outbox_relay_publish_errors_total", name)
                age = metric_value(text, "outbox_relay_oldest_unpublished_age_seconds", name)
                return text if backlog == 4 and errors >= 8 and age > 0 else None

            await eventually(stuck, what="backlog of 4, repeated errors, a growing age")
            assert await outbox.unpublished() == 4, "nothing is marked without a PubAck"
    finally:
        await outbox.close()


async def _unpublished_is(outbox: Outbox, count: int) -> bool:
    return await outbox.unpublished() == count


async def _row_count_is(outbox: Outbox, count: int) -> bool:
    return len(await outbox.rows()) == count


async def _nats_up(runtime) -> bool:  # type: ignore[no-untyped-def]
    return bool(runtime.nats_connected)


async def _leading(runtime, name: str) -> bool:  # type: ignore[no-untyped-def]
    return bool(runtime.relay(name).lease.is_leader())


async def _idle(runtime, name: str) -> bool:  # type: ignore[no-untyped-def]
    # The idle wait has grown past a second: a row published before it ends was read on a wake-up.
    return bool(runtime.relay(name).wakeup.waiting_s >= 1.0)


def _wait_end(runtime, name: str) -> float:  # type: ignore[no-untyped-def]
    wakeup = runtime.relay(name).wakeup
    return float(wakeup.waiting_since + wakeup.waiting_s)


async def test_a_row_that_appears_behind_the_cursor_is_still_published(
    js: JetStreamContext, nats_server: NatsServer, data_dir: Path, name: str
) -> None:
    """Only a writer breaking the rules can do this (here: an explicit id below the ones already read);
    the relay's sweep publishes such a row late rather than never."""
    url = f"sqlite+aiosqlite:///{data_dir / 'inventory.db'}"
    outbox = await Outbox.create(url)
    try:
        async with outbox.engine.begin() as conn:
            await conn.execute(sa.insert(outbox.table), [_explicit(1000 + n, n) for n in range(20)])
        async with running_relay(nats_server.url, data_dir, [OutboxSpec(name, url)], sweep_interval_s=0.2):
            await eventually(lambda: _unpublished_is(outbox, 0), what="rows published")
            async with outbox.engine.begin() as conn:
                await conn.execute(sa.insert(outbox.table), [_explicit(5, 99)])
            await eventually(lambda: _unpublished_is(outbox, 0), what="the late row published")
        stored = [m.msg_id for m in await stream_messages(js, INVENTORY)]
        assert stored == [f"m-{n:06d}" for n in range(20)] + ["m-000099"]
    finally:
        await outbox.close()


def _explicit(row_id: int, n: int) -> dict[str, object]:
    m = message(n)
    return {
        "id": row_id,
        "subject": m.subject,
        "msg_id": m.msg_id,
        "headers": json.dumps(m.headers),
        "payload": m.payload,
        "created_at": time.time(),
    }


@pytest.mark.parametrize(
    ("method", "stage"),
    [("read", "the publisher is reading rows"), ("mark_published", "the settler is marking rows published")],
)
async def test_an_epoch_that_gets_nowhere_is_ended_and_the_next_one_publishes(
    js: JetStreamContext,
    nats_server: NatsServer,
    data_dir: Path,
    name: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    method: str,
    stage: str,
) -> None:
    url = f"sqlite+aiosqlite:///{data_dir / 'inventory.db'}"
    outbox = await Outbox.create(url)
    never = asyncio.Event()
    hung: list[str] = []
    real = getattr(SqliteOutboxStore, method)

    async def hangs_once(self: SqliteOutboxStore, *args: object) -> object:
        if not hung:  # an await that is never answered, whatever it was
            hung.append(method)
            await never.wait()
        return await real(self, *args)

    monkeypatch.setattr(SqliteOutboxStore, method, hangs_once)
    try:
        await outbox.write([message(n) for n in range(30)])
        with caplog.at_level(logging.WARNING, logger="stockwire.outbox_relay"):
            async with running_relay(nats_server.url, data_dir, [OutboxSpec(name, url)], stall_s=0.5):
                await eventually(lambda: _unpublished_is(outbox, 0), what="all rows marked published")
        assert hung == [method]
        assert any("no progress for" in r.getMessage() and stage in r.getMessage() for r in caplog.records)
        stored = await stream_messages(js, INVENTORY)
        assert [m.msg_id for m in stored if m.msg_id.startswith("m-")][-30:] == [f"m-{n:06d}" for n in range(30)]
    finally:
        await outbox.close()
