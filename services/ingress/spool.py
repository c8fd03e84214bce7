"""The spool: ingress's own outbox table, written when JetStream cannot take an event.

Commits are fsynced (``synchronous=FULL`` on SQLite) because a 202 promises the event survives a
crash of this process and of the machine. The outbox-relay drains the table into COMMERCE.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.outbox import OutboxMessage, add_to_outbox, create_outbox_schema, outbox_table
from libs.store import create_engine, migrate

from .webhook import InboundWebhook

__all__ = ["SPOOL_COMPONENT", "Spool", "spool_table"]

SPOOL_COMPONENT = "ingress.spool"
_metadata = sa.MetaData()
spool_table = outbox_table(_metadata)


class Spool:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @classmethod
    async def open(cls, url: str) -> Spool:
        engine = create_engine(url, durable_commits=True)
        await migrate(engine, SPOOL_COMPONENT, [lambda conn: create_outbox_schema(conn, spool_table)])
        return cls(engine)

    async def write(self, event: InboundWebhook) -> None:
        message = OutboxMessage(event.subject, event.msg_id, event.body, event.headers())
        async with self.engine.begin() as conn:
            await add_to_outbox(conn, spool_table, [message], now=event.received_at.timestamp())

    async def depth(self) -> int:
        async with self.engine.connect() as conn:
            query = sa.select(sa.func.count()).select_from(spool_table).where(spool_table.c.published_at.is_(None))
            return int((await conn.execute(query)).scalar_one())

    async def writable(self) -> bool:
        async with self.engine.begin() as conn:
            await conn.execute(sa.text("SELECT 1"))
        return True

    async def close(self) -> None:
        await self.engine.dispose()
