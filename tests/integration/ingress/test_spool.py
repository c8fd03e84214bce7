"""Every 2xx means durable: when JetStream is away, the event is in the spool before we answer."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sqlite3
from pathlib import Path

import nats
import sqlalchemy as sa
from nats.aio.client import Client
from nats.js import JetStreamContext

from libs.natsserver import NatsServer
from libs.store import database_url
from services.ingress.publisher import DurableWriter, Outcome
from services.ingress.spool import Spool, spool_table
from services.ingress.webhook import InboundWebhook
from tests.support import ce_body, ce_headers, eventually

from .conftest import CE_SECRET, ClientFactory


def _spool_rows(data_dir: Path) -> list[sqlite3.Row]:
    with sqlite3.connect(data_dir / "ingress.db") as db:
        db.row_factory = sqlite3.Row
        return db.execute("SELECT * FROM outbox ORDER BY id").fetchall()


async def test_jetstream_down_spools_the_exact_event_and_answers_202(
    own_nats_server: NatsServer, data_dir: Path, ingress_factory: ClientFactory
) -> None:
    async with ingress_factory(own_nats_server.url) as client:
        own_nats_server.kill()
        app = client.app
        await eventually(lambda: _disconnected(app), what="ingress noticed NATS is gone")
        body = ce_body("order.created", "evt-spool", order_id="o-7", lines=[{"sku": "A.B", "qty": 2}])
        response = await client.post("/webhooks/ce", content=body, headers=ce_headers(CE_SECRET, body))
        assert response.status_code == 202, response.text
        assert response.json() == {"status": "spooled"}
        again = await client.post("/webhooks/ce", content=body, headers=ce_headers(CE_SECRET, body))
        assert again.status_code == 202
        rows = _spool_rows(data_dir)
        assert len(rows) == 1, "a retried delivery is spooled once"
        row = rows[0]
        assert row["subject"] == "commerce.ce.order.created"
        assert row["msg_id"] == "ce:evt-spool"
        assert bytes(row["payload"]) == body
        assert row["published_at"] is None
        headers = json.loads(row["headers"])
        assert headers["Nats-Msg-Id"] == "ce:evt-spool"
        assert headers["Stockwire-Source"] == "ce" and headers["Stockwire-Event-Type"] == "order.created"
        assert "Stockwire-Received-At" in headers
        metrics = await _wait_for_spool_depth(client, 1)
        assert "ingress_spool_depth 1.0" in metrics
        assert (await client.get("/readyz")).status_code == 200, "ingress stays ready while it can spool"


async def _disconnected(app) -> bool:  # type: ignore[no-untyped-def]
    return not app.state.writer.bus_connected


async def _wait_for_spool_depth(client, depth: int) -> str:  # type: ignore[no-untyped-def]
    async def probe() -> str | None:
        text = (await client.get("/metrics")).text
        return text if f"ingress_spool_depth {float(depth)}" in text else None

    return await eventually(probe, what=f"spool depth {depth}")


async def test_a_pub_ack_that_never_comes_spools_the_event(
    nats_server: NatsServer, nc: Client, data_dir: Path, ingress_factory: ClientFactory
) -> None:
    # No stream captures this subject here, but a core subscriber does: the publish reaches a
    # responder that never acks, which is what a JetStream stuck behind a slow disk looks like.
    js = nc.jetstream()
    for info in await js.streams_info():
        await js.delete_stream(info.config.name)
    silent = await nc.subscribe("commerce.>", cb=_ignore)
    await nc.flush()
    try:
        async with ingress_factory(nats_server.url, publish_timeout_s=0.3) as client:
            body = ce_body("payment.successful", "evt-timeout", order_id="o-1")
            response = await client.post("/webhooks/ce", content=body, headers=ce_headers(CE_SECRET, body))
            assert response.status_code == 202 and response.json()["status"] == "spooled"
        assert [row["msg_id"] for row in _spool_rows(data_dir)] == ["ce:evt-timeout"]
    finally:
        await silent.unsubscribe()


async def _ignore(_msg: object) -> None:
    return None


async def test_no_stream_at_all_spools(nats_server: NatsServer, data_dir: Path, ingress_factory: ClientFactory) -> None:
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    for info in await js.streams_info():
        await js.delete_stream(info.config.name)
    await nc.close()
    async with ingress_factory(nats_server.url) as client:
        body = ce_body("order.created", "evt-nostream")
        response = await client.post("/webhooks/ce", content=body, headers=ce_headers(CE_SECRET, body))
        assert response.status_code == 202
    assert len(_spool_rows(data_dir)) == 1


async def test_neither_jetstream_nor_spool_answers_503(
    own_nats_server: NatsServer, data_dir: Path, ingress_factory: ClientFactory
) -> None:
    async with ingress_factory(own_nats_server.url) as client:
        own_nats_server.kill()
        await eventually(lambda: _disconnected(client.app), what="ingress noticed NATS is gone")
        with sqlite3.connect(data_dir / "ingress.db") as db:
            db.execute("DROP TABLE outbox")
        body = ce_body("order.created", "evt-lost")
        response = await client.post("/webhooks/ce", content=body, headers=ce_headers(CE_SECRET, body))
        assert response.status_code == 503
        assert response.json()["error"] == "unavailable"


async def test_after_nats_comes_back_ingress_reconnects_and_publishes_again(
    own_nats_server: NatsServer, data_dir: Path, ingress_factory: ClientFactory
) -> None:
    nc = await nats.connect(own_nats_server.url)
    from libs.config import TopologySettings
    from libs.topology import apply_topology

    await apply_topology(nc.jetstream(), TopologySettings())
    await nc.close()
    async with ingress_factory(own_nats_server.url) as client:
        own_nats_server.kill()
        await eventually(lambda: _disconnected(client.app), what="ingress noticed NATS is gone")
        own_nats_server.start()
        await eventually(lambda: _connected(client.app), timeout=15, what="ingress reconnected")
        up = ce_body("inventory.received", "evt-after-outage", sku="A", qty=1)
        response = await client.post("/webhooks/ce", content=up, headers=ce_headers(CE_SECRET, up))
        assert response.status_code == 200 and response.json()["status"] == "accepted"
    assert _spool_rows(data_dir) == []
    # With events spooled during the outage and no relay yet, see
    # tests/integration/outbox_relay/test_ingress_spool.py: new events queue behind them.


async def _connected(app) -> bool:  # type: ignore[no-untyped-def]
    return bool(app.state.writer.bus_connected)


async def _spool_pair(data_dir: Path) -> tuple[Spool, Spool]:
    """Two workers' views of one spool file (uvicorn's workers share it), re-checking at once."""
    url = database_url("", data_dir, "ingress")
    return await Spool.open(url, recheck_s=0.0), await Spool.open(url, recheck_s=0.0)


def _inbound(event_id: str) -> InboundWebhook:
    return InboundWebhook("ce", event_id, "order.created", b"{}", dt.datetime.now(dt.UTC))


async def test_what_one_worker_spools_holds_back_every_worker_until_published(data_dir: Path) -> None:
    first, second = await _spool_pair(data_dir)
    try:
        assert not await first.holds_unpublished() and not await second.holds_unpublished()
        await first.write(_inbound("evt-1"))
        assert await second.holds_unpublished(), "the other worker sees the spooled row"
        assert await first.holds_unpublished()
        with sqlite3.connect(data_dir / "ingress.db") as db:
            db.execute("UPDATE outbox SET published_at = 1")
        assert not await second.holds_unpublished(), "drained: publish directly again"
        assert not first.marker or not first.marker.exists()
        # Known empty, the gate does not read the database: with the table gone it still answers.
        with sqlite3.connect(data_dir / "ingress.db") as db:
            db.execute("ALTER TABLE outbox RENAME TO outbox_away")
        assert not await first.holds_unpublished()
        with sqlite3.connect(data_dir / "ingress.db") as db:
            db.execute("ALTER TABLE outbox_away RENAME TO outbox")
    finally:
        await first.close()
        await second.close()


async def test_rows_left_from_before_a_crash_hold_back_direct_publishing(data_dir: Path) -> None:
    first, second = await _spool_pair(data_dir)
    await first.write(_inbound("evt-before-crash"))
    await first.close()
    await second.close()
    # An OS crash can lose the (unsynced) marker file while the fsynced row survives.
    assert first.marker is not None
    first.marker.unlink()
    reopened = await Spool.open(database_url("", data_dir, "ingress"))
    try:
        assert await reopened.holds_unpublished()
    finally:
        await reopened.close()


async def test_an_unreadable_spool_that_may_hold_rows_is_never_overtaken(
    own_nats_server: NatsServer, data_dir: Path, ingress_factory: ClientFactory
) -> None:
    async with ingress_factory(own_nats_server.url) as client:
        spool: Spool = client.app.state.writer.spool
        assert spool.marker is not None
        spool.marker.touch()
        with sqlite3.connect(data_dir / "ingress.db") as db:
            db.execute("ALTER TABLE outbox RENAME TO outbox_away")
        body = ce_body("order.created", "evt-unsure")
        response = await client.post("/webhooks/ce", content=body, headers=ce_headers(CE_SECRET, body))
        assert response.status_code == 503 and response.json()["error"] == "unavailable"


async def test_on_postgresql_every_worker_asks_the_database(postgres_url: str) -> None:
    first, second = await Spool.open(postgres_url), await Spool.open(postgres_url)
    try:
        assert first.marker is None, "a local file cannot speak for pods sharing the table"
        assert not await second.holds_unpublished()
        await first.write(_inbound("evt-pg"))
        assert await second.holds_unpublished()
        async with first.engine.begin() as conn:
            await conn.execute(sa.update(spool_table).values(published_at=1.0))
        assert not await second.holds_unpublished()
    finally:
        await first.close()
        await second.close()


async def test_no_answer_after_a_spooled_write_ever_finds_the_gate_open_while_the_row_waits(data_dir: Path) -> None:
    # Writers, gate checks that clear the marker, and a relay marking rows published, all at once on one
    # file: whenever a check that starts after a write has returned says "drained", that row is published.
    writer, checker = await _spool_pair(data_dir)
    relay = await Spool.open(database_url("", data_dir, "ingress"), recheck_s=0.0)
    stop = asyncio.Event()
    violations: list[str] = []

    async def publish_everything() -> None:
        while not stop.is_set():
            async with relay.engine.begin() as conn:
                await conn.execute(
                    sa.update(spool_table).where(spool_table.c.published_at.is_(None)).values(published_at=1.0)
                )
            await asyncio.sleep(0.01)  # rows wait a while, as behind a real relay

    async def keep_checking() -> None:
        while not stop.is_set():
            await checker.holds_unpublished()
            await asyncio.sleep(0)  # a check of an absent marker never suspends

    async def write_and_check(n: int) -> None:
        await writer.write(_inbound(f"evt-race-{n}"))
        if not await checker.holds_unpublished():
            async with relay.engine.connect() as conn:
                query = sa.select(spool_table.c.published_at).where(spool_table.c.msg_id == f"ce:evt-race-{n}")
                if (await conn.execute(query)).scalar_one() is None:
                    violations.append(f"evt-race-{n}")

    background = [asyncio.create_task(publish_everything()), asyncio.create_task(keep_checking())]
    try:
        for n in range(150):
            await write_and_check(n)
    finally:
        stop.set()
        await asyncio.gather(*background)
        for spool in (writer, checker, relay):
            await spool.close()
    assert violations == []


async def test_an_event_that_arrives_before_the_first_connection_waits_for_it_rather_than_spooling(
    js: JetStreamContext, nats_server: NatsServer, data_dir: Path
) -> None:
    # A freshly started ingress that spooled its first events would hold every later event behind the
    # spool until the relay drains it, although JetStream is only one connect away.
    spool = await Spool.open(database_url("", data_dir, "ingress"))
    writer = DurableWriter(spool, publish_timeout_s=2.0, startup_wait_s=10.0)
    nc = await nats.connect(nats_server.url)

    async def connect_a_moment_later() -> None:
        await asyncio.sleep(0.3)  # stands for the connect that is still under way: not a wait for anything
        writer.attach(nc, nc.jetstream())

    try:
        connecting = asyncio.create_task(connect_a_moment_later())
        written = await writer.write(_inbound("evt-early"))
        await connecting
        assert written.outcome is Outcome.ACCEPTED and written.stream_seq is not None
        assert await spool.depth() == 0
    finally:
        await nc.close()
        await spool.close()


async def test_past_the_start_up_window_an_event_is_spooled_at_once(data_dir: Path) -> None:
    spool = await Spool.open(database_url("", data_dir, "ingress"))
    writer = DurableWriter(spool, publish_timeout_s=2.0, startup_wait_s=0.0)
    try:
        assert (await writer.write(_inbound("evt-no-bus"))).outcome is Outcome.SPOOLED
        assert await spool.depth() == 1
    finally:
        await spool.close()
