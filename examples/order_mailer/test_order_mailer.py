"""The mailer over a real nats-server and SQLite: one mail per order, duplicates absorbed, garbage dead-lettered."""

from __future__ import annotations

import asyncio
import email
from pathlib import Path

from nats.js import JetStreamContext

from libs.consumer import PullConsumer, per_message
from libs.contracts import InventoryEvent, encode
from libs.durables import ensure_durable
from libs.store import create_engine, database_url
from libs.subjects import inventory_subject
from libs.topology import DEADLETTER
from tests.support import eventually

from .mailer import CONSUMER, Maildir, OrderMailer, prepare_store


def _event(kind: str, sku: str, order_id: str, version: int) -> InventoryEvent:
    return InventoryEvent(
        kind=kind, sku=sku, qty=1, version=version, occurred_at="2026-11-28T10:00:00+00:00", order_id=order_id
    )


async def _publish(js: JetStreamContext, event: InventoryEvent, msg_id: str) -> None:
    await js.publish(inventory_subject(event.kind, event.sku), encode(event), headers={"Nats-Msg-Id": msg_id})


async def test_one_mail_per_order_however_often_it_is_delivered(js: JetStreamContext, data_dir: Path) -> None:
    engine = create_engine(database_url("", data_dir, "mailer"))
    await prepare_store(engine)
    assert await ensure_durable(js, CONSUMER) == "created consumer INVENTORY/order-mailer"
    maildir = Maildir(data_dir / "mail")
    consumer = PullConsumer(
        js,
        CONSUMER.stream,
        CONSUMER.durable,
        per_message(OrderMailer(engine, maildir).handle),
        fetch_timeout_s=0.2,
        max_deliver=2,
    )
    running = asyncio.create_task(consumer.run())
    try:
        # Order o-1 reserves two lines (two events); o-2 is rejected; then both arrive again under new ids,
        # as after a replay, and one message is not an inventory event at all.
        events = [
            _event("reserved", "A", "o-1", 1),
            _event("reserved", "B", "o-1", 1),
            _event("rejected", "A", "o-2", 1),
        ]
        for n, event in enumerate(events):
            await _publish(js, event, f"first-{n}")
        for n, event in enumerate(events):
            await _publish(js, event, f"again-{n}")
        await _publish(js, _event("received", "A", "x", 2), "unrelated")
        await js.publish(inventory_subject("reserved", "C"), b"not json", headers={"Nats-Msg-Id": "garbage"})

        async def settled() -> bool:
            info = await js.consumer_info(CONSUMER.stream, CONSUMER.durable)
            dead = await js.stream_info(DEADLETTER)
            return info.num_pending == 0 and info.num_ack_pending == 0 and dead.state.messages == 1

        await eventually(settled, timeout=15, what="every message settled and the garbage dead-lettered")
    finally:
        consumer.stop()
        await running
        await engine.dispose()
    mails = sorted((data_dir / "mail" / "new").iterdir())
    assert [m.name for m in mails] == ["rejected:o-2", "reserved:o-1"]
    subjects = [email.message_from_bytes(m.read_bytes())["Subject"] for m in mails]
    assert subjects == ["Sorry, order o-2 is sold out", "Your order o-1 is confirmed"]
    dead = await js.get_msg(DEADLETTER, 1)
    assert dead.headers and "not an inventory event" in dead.headers["Stockwire-Error"]


async def test_ensure_durable_is_idempotent(js: JetStreamContext) -> None:
    assert await ensure_durable(js, CONSUMER) == "created consumer INVENTORY/order-mailer"
    assert await ensure_durable(js, CONSUMER) == "consumer INVENTORY/order-mailer up to date"
