"""The spool: ingress's own outbox table, written when JetStream cannot take an event.

Commits are fsynced (``synchronous=FULL`` on SQLite) because a 202 promises the event survives a
crash of this process and of the machine. The outbox-relay drains the table into COMMERCE.

Order: an event acknowledged earlier must reach COMMERCE earlier, so while the spool holds an
unpublished row new events are spooled behind it (:mod:`.service_layer.handlers` says how). This
module is the store: the table, the SQL unit of work those handlers run in, and the marker file that
is their gate's flag on SQLite.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from libs.outbox import OutboxMessage, add_to_outbox, create_outbox_schema, outbox_table
from libs.store import Transaction, create_engine, migrate

from .service_layer import handlers
from .webhook import InboundWebhook

COMMERCE_PREFIX = "commerce"

__all__ = ["PENDING_MARKER_SUFFIX", "SPOOL_COMPONENT", "MarkerFile", "Spool", "SqlUnitOfWork", "spool_table"]

SPOOL_COMPONENT = "ingress.spool"
# Next to the SQLite file: exists whenever the spool may hold an unpublished row.
PENDING_MARKER_SUFFIX = ".pending"
_metadata = sa.MetaData()
spool_table = outbox_table(_metadata)
_UNPUBLISHED = sa.select(sa.exists().where(spool_table.c.published_at.is_(None)))


def _marker_path(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database + PENDING_MARKER_SUFFIX)


class MarkerFile:
    """The gate's flag on SQLite: a file next to the database that exists whenever the spool *may*
    hold an unpublished row (see :mod:`.service_layer.handlers`).

    The file is not fsynced: after an OS crash it may be gone while fsynced rows remain, so
    :meth:`Spool.open` sets it at every start and the first request checks the database. It may
    outlive the last row (only a request that looks clears it): that costs one query, never an order.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def is_set(self) -> bool:
        return self.path.exists()

    def set(self) -> None:
        self.path.touch()

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


class SqlUnitOfWork(Transaction):
    """One transaction on the spool's engine (:class:`libs.store.Transaction`): ``BEGIN IMMEDIATE`` on
    SQLite, so it holds the single write lock from its start; that is what serialises the marker with
    the rows."""

    async def add(self, message: OutboxMessage, now: float) -> bytes | None:
        if await add_to_outbox(self.conn, spool_table, [message], now=now):
            return None
        query = sa.select(spool_table.c.payload).where(spool_table.c.msg_id == message.msg_id)
        existing = (await self.conn.execute(query)).scalar_one_or_none()
        return None if existing is None else bytes(existing)

    async def holds_unpublished(self) -> bool:
        return await _unpublished(self.conn)


class Spool:
    """The spool table, the gate that keeps acknowledged events in order, and the queries around them.

    The gate, on SQLite (the default: one file shared by the uvicorn workers of one pod), is a
    :class:`MarkerFile`. Why no acknowledged event can be overtaken: every transaction on SQLite is
    ``BEGIN IMMEDIATE`` (libs.store), so setting the marker with a row and clearing it after counting
    none are serialised by SQLite's single write lock. A clear that runs first is followed by the
    writer's set; a writer that runs first has committed its row before the counting transaction
    starts, so the row is counted and the marker stays. Hence once a 202 is out, the marker exists
    until the relay has published that row, and any request that *arrives* after the 202 sees it and
    spools behind it. (Two requests in flight at once have no order the producer could rely on: it has
    seen neither answer.) The relay marks a row published only after JetStream's PubAck, so "no
    unpublished row" means every spooled event is in COMMERCE. On PostgreSQL there is no marker.
    """

    def __init__(self, engine: AsyncEngine, marker: Path | None, recheck_s: float = 0.05) -> None:
        self.engine = engine
        self.marker = marker
        self.gate = handlers.Gate(MarkerFile(marker) if marker is not None else None, recheck_s)

    @classmethod
    async def open(cls, url: str, recheck_s: float = 0.05) -> Spool:
        engine = create_engine(url, durable_commits=True)
        await migrate(engine, SPOOL_COMPONENT, [lambda conn: create_outbox_schema(conn, spool_table)])
        spool = cls(engine, _marker_path(url), recheck_s)
        if spool.gate.flag is not None:
            spool.gate.flag.set()
        return spool

    def unit_of_work(self) -> SqlUnitOfWork:
        """A fresh transaction on the spool."""
        return SqlUnitOfWork(self.engine)

    async def write(self, event: InboundWebhook) -> bytes | None:
        """Spool ``event``: :func:`.service_layer.handlers.spool` on this store."""
        message = OutboxMessage(event.subject, event.msg_id, event.body, event.headers())
        return await handlers.spool(self.unit_of_work(), self.gate, message, event.received_at.timestamp())

    async def holds_unpublished(self) -> bool:
        """:func:`.service_layer.handlers.must_spool` on this store."""
        return await handlers.must_spool(self.unit_of_work(), self.gate)

    async def published_after(self, after_id: int, limit: int) -> list[tuple[int, str, bytes]]:
        """Webhooks (not evidence) the relay has published, with ``id > after_id``, in id order."""
        c = spool_table.c
        query = (
            sa.select(c.id, c.msg_id, c.payload)
            .where(c.id > after_id, c.published_at.is_not(None), c.subject.startswith(f"{COMMERCE_PREFIX}."))
            .order_by(c.id)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            return [(int(r.id), str(r.msg_id), bytes(r.payload)) for r in await conn.execute(query)]

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


async def _unpublished(conn: AsyncConnection) -> bool:
    return bool((await conn.execute(_UNPUBLISHED)).scalar_one())
