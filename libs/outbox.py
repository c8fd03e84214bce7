"""The transactional outbox (design §5): the table every service writes its outgoing messages to.

A service inserts outbox rows in the same transaction as its state change; the outbox-relay
publishes them in id order with ``Nats-Msg-Id`` = ``msg_id`` and marks them published. ``msg_id`` is
unique, so writing the same message twice (a retried request, a replayed event) keeps one row.

Commit order. On SQLite one writer holds the database at a time, so ids are handed out in commit
order. On PostgreSQL they are not: a transaction can take id 5, another id 6 and commit first. The
relay therefore publishes an id only once every transaction that could still commit a lower one has
ended (see ``services/outbox_relay`` and docs/outbox.md). That needs one promise from writers, which
:func:`add_to_outbox` keeps: the transaction has its transaction id *before* it draws an outbox id.
It also sends a ``NOTIFY`` (delivered at commit) so a relay wakes at once. Writers that insert rows
by other means lose the strict order (the relay still publishes such rows, but possibly late). Add
outbox rows after taking the locks that order them (best: last in the transaction), so that a
transaction that waited for another draws its ids after that one committed.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping, Sequence

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.statements import execute_many

__all__ = [
    "OUTBOX_TABLE",
    "OutboxMessage",
    "add_to_outbox",
    "add_to_outbox_sync",
    "create_outbox_schema",
    "outbox_notify_channel",
    "outbox_nudge_subject",
    "outbox_table",
]

OUTBOX_TABLE = "outbox"

_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class OutboxMessage(msgspec.Struct, frozen=True):
    """One message to publish: its subject, its ``Nats-Msg-Id`` (JetStream drops a second publish of the
    same id within the stream's duplicate window), the payload bytes and extra headers."""

    subject: str
    msg_id: str
    payload: bytes
    headers: dict[str, str] = {}


def outbox_table(metadata: sa.MetaData, name: str = OUTBOX_TABLE) -> sa.Table:
    """The outbox schema, shared by every writer and by the relay."""
    table = sa.Table(
        name,
        metadata,
        sa.Column("id", _BigId, primary_key=True, autoincrement=True),
        sa.Column("subject", sa.String(512), nullable=False),
        sa.Column("msg_id", sa.String(512), nullable=False),
        sa.Column("headers", sa.Text, nullable=False, default="{}"),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("published_at", sa.Float, nullable=True),
        sa.UniqueConstraint("msg_id", name=f"uq_{name}_msg_id"),
        # Without AUTOINCREMENT SQLite reuses the highest id once that row is deleted, and an id
        # must never come back below what a relay has already read.
        sqlite_autoincrement=True,
    )
    sa.Index(f"ix_{name}_unpublished", table.c.published_at, table.c.id)
    return table


def create_outbox_schema(conn: Connection, table: sa.Table) -> None:
    """A migration step: create the outbox table and its indexes."""
    table.create(conn, checkfirst=True)


def outbox_nudge_subject(outbox: str) -> str:
    """Core-NATS subject a writer may publish to after commit so the relay wakes at once."""
    return f"stockwire.outbox.{outbox}.committed"


def outbox_notify_channel(table_name: str) -> str:
    """PostgreSQL ``LISTEN`` channel on which :func:`add_to_outbox` announces new rows (at commit)."""
    return f"stockwire_outbox_{table_name}"


# Compact JSON with sorted keys, as json.dumps(separators=(",", ":"), sort_keys=True) writes it but for
# non-ASCII characters, kept as UTF-8 rather than escaped; a tenth of its CPU (headers of every row).
_encode_headers = msgspec.json.Encoder(order="sorted").encode


def _rows(messages: Sequence[OutboxMessage], now: float) -> list[Mapping[str, object]]:
    return [
        {
            "subject": m.subject,
            "msg_id": m.msg_id,
            "headers": _encode_headers(m.headers).decode(),
            "payload": m.payload,
            "created_at": now,
        }
        for m in messages
    ]


async def add_to_outbox(
    conn: AsyncConnection, table: sa.Table, messages: Sequence[OutboxMessage], *, now: float | None = None
) -> int:
    """Insert messages inside the caller's transaction; a msg_id already there is kept as it is.

    Returns how many rows were new. :func:`add_to_outbox_sync` is the same for a synchronous body.
    """
    if not messages:
        return 0
    return await conn.run_sync(add_to_outbox_sync, table, messages, now=now)


def add_to_outbox_sync(
    conn: Connection, table: sa.Table, messages: Sequence[OutboxMessage], *, now: float | None = None
) -> int:
    """:func:`add_to_outbox` in a synchronous transaction body (a ``Connection``)."""
    if not messages:
        return 0
    dialect = conn.dialect.name
    if dialect == "postgresql":
        # The transaction id first, then the row ids: the relay's commit-order rule relies on it.
        conn.execute(
            sa.text("SELECT pg_current_xact_id(), pg_notify(:channel, '')"),
            {"channel": outbox_notify_channel(table.name)},
        )
    rows = _rows(messages, time.time() if now is None else now)
    if dialect == "sqlite":
        # SQLite counts the rows an executemany inserted, leaving out those ON CONFLICT skipped.
        return execute_many(conn, _insert_new(table, dialect), rows) or 0
    # RETURNING counts the new rows where executemany's rowcount is not reliable (asyncpg).
    result = conn.execute(_insert_new(table, dialect).returning(table.c.id), rows)
    return len(result.all())


@functools.cache
def _insert_new(table: sa.Table, dialect: str) -> sa.Insert:
    """``INSERT`` of outbox rows that keeps a row already holding the msg_id; built once per table and dialect."""
    insert = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    return insert.on_conflict_do_nothing(index_elements=["msg_id"])
