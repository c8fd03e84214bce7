"""An idempotency inbox for a consumer: which messages it has already handled, in its own store.

JetStream delivers at least once, so a consumer with side effects records each message id in the
same transaction as its effect; a redelivery finds the id and does nothing. Works on SQLite and
PostgreSQL (``INSERT … ON CONFLICT DO NOTHING``).

    async with engine.begin() as conn:
        if await first_time(conn, inbox, msg_id):
            ...  # the effect, in the same transaction
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["create_inbox_schema", "first_time", "inbox_table"]


def inbox_table(metadata: sa.MetaData, name: str = "inbox") -> sa.Table:
    """The inbox schema: one row per handled message id (at most 512 characters), with when (epoch seconds)."""
    return sa.Table(
        name,
        metadata,
        sa.Column("msg_id", sa.String(512), primary_key=True),
        sa.Column("handled_at", sa.Float, nullable=False),
    )


def create_inbox_schema(conn: Connection, table: sa.Table) -> None:
    """A migration step (see :func:`libs.store.migrate`)."""
    table.create(conn, checkfirst=True)


async def first_time(conn: AsyncConnection, table: sa.Table, msg_id: str, *, now: float | None = None) -> bool:
    """Record ``msg_id`` inside the caller's transaction; False if it was recorded before."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(table)
        .values(msg_id=msg_id, handled_at=time.time() if now is None else now)
        .on_conflict_do_nothing(index_elements=["msg_id"])
        .returning(table.c.msg_id)
    )
    result = await conn.execute(statement)
    return result.first() is not None
