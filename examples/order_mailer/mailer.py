"""An order-confirmation mailer: your own consumer of the INVENTORY stream, on the libs' runner.

When inventory reserves an order it publishes one ``inventory.reserved.<sku>`` event per line; when
it cannot, ``inventory.rejected.<sku>``. This consumer sends one mail per order either way. What it
gets for free from :class:`libs.consumer.PullConsumer`: batching, redelivery with backoff, dead
letters, metrics. What it adds: its own durable consumer and an idempotency inbox, so an order gets
one mail however often the events are delivered.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import msgspec
import sqlalchemy as sa
from nats.aio.msg import Msg
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.consumer import Decision
from libs.contracts import decode_inventory_event
from libs.durables import ConsumerSpec
from libs.inbox import create_inbox_schema, first_time, inbox_table
from libs.store import migrate
from libs.topology import INVENTORY

__all__ = ["CONSUMER", "Maildir", "OrderMailer", "prepare_store"]

CONSUMER = ConsumerSpec(
    stream=INVENTORY,
    durable="order-mailer",
    filter_subject="inventory.*.>",
    max_deliver=5,
    # Short: the runner's heartbeats keep a live batch; a dead process's batch comes back in seconds.
    # No backoff list: the runner's nak delays are the one retry schedule.
    ack_wait_s=4,
    max_ack_pending=1000,
    description="order confirmation mails",
)
_INBOX = inbox_table(sa.MetaData(), "mailer_inbox")


async def prepare_store(engine: AsyncEngine) -> None:
    await migrate(engine, "order-mailer", [lambda conn: create_inbox_schema(conn, _INBOX)])


@dataclass(frozen=True)
class Maildir:
    """A Maildir drop: a mail is written under ``tmp/`` and renamed into ``new/`` (atomic).

    The file name is the mail's key, so writing the same mail twice leaves one file."""

    root: Path

    def deliver(self, key: str, mail: EmailMessage) -> None:
        for sub in ("tmp", "new", "cur"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        name = key.replace("/", "_")
        staged = self.root / "tmp" / name
        staged.write_bytes(bytes(mail))
        os.replace(staged, self.root / "new" / name)


@dataclass
class OrderMailer:
    engine: AsyncEngine
    maildir: Maildir
    sender: str = "shop@example.com"

    async def handle(self, msg: Msg) -> Decision | None:
        kind = msg.subject.split(".")[1]
        if kind not in ("reserved", "rejected"):
            return None  # other movements are not this consumer's business
        try:
            event = decode_inventory_event(msg.data)
        except msgspec.DecodeError as exc:
            return Decision.dead_letter(f"not an inventory event: {exc}")
        if event.order_id is None:
            return None  # a checkout reservation, not an order
        key = f"{kind}:{event.order_id}"
        async with self.engine.begin() as conn:
            if await first_time(conn, _INBOX, key):
                # Inside the transaction: if the mail cannot be written, the inbox row rolls back too.
                self.maildir.deliver(key, self._mail(kind, event.order_id))
        return None

    def _mail(self, kind: str, order_id: str) -> EmailMessage:
        mail = EmailMessage()
        mail["From"] = self.sender
        mail["To"] = f"customer-of-{order_id}@example.com"
        if kind == "reserved":
            mail["Subject"] = f"Your order {order_id} is confirmed"
            mail.set_content(f"Good news: everything in order {order_id} is set aside for you.")
        else:
            mail["Subject"] = f"Sorry, order {order_id} is sold out"
            mail.set_content(f"We could not reserve order {order_id}: part of it sold out. You were not charged.")
        return mail
