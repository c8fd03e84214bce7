"""The spool: ingress's own outbox table, written when JetStream cannot take an event.

Commits are fsynced (``synchronous=FULL`` on SQLite) because a 202 promises the event survives a
crash of this process and of the machine. The outbox-relay drains the table into COMMERCE.

Order. An event acknowledged earlier must reach COMMERCE earlier: once a 202 has gone out for a
spooled event, no later request may go straight to JetStream ahead of it. So while the spool holds
an unpublished row, new events are spooled too (behind it, in id order, which is the order the relay
publishes), and direct publishing resumes only once the relay has drained the spool — whatever the
order in which ingress, the relay and JetStream come back. See :meth:`Spool.holds_unpublished`.
"""

from __future__ import annotations

import time
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from libs.outbox import OutboxMessage, add_to_outbox, create_outbox_schema, outbox_table
from libs.store import create_engine, migrate

from .webhook import InboundWebhook

COMMERCE_PREFIX = "commerce"

__all__ = ["PENDING_MARKER_SUFFIX", "SPOOL_COMPONENT", "Spool", "spool_table"]

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


class Spool:
    """The spool table plus the gate that keeps acknowledged events in order.

    The gate, on SQLite (the default: one file shared by the uvicorn workers of one pod), is a marker
    file next to the database that exists whenever the spool *may* hold an unpublished row:

    - A worker that spools creates the marker inside its write transaction, before the commit and so
      before its 202.
    - Every request first looks at the marker (a ``stat``, no SQLite query). Absent: the spool is
      empty, publish directly. Present: ask the database; while it holds unpublished rows, spool.
    - A worker that finds no unpublished row deletes the marker, inside a write transaction too.

    Why no acknowledged event can be overtaken: every ``engine.begin()`` on SQLite is ``BEGIN
    IMMEDIATE`` (libs.store), so creating the marker with a row and deleting it after counting none are
    serialised by SQLite's single write lock. A delete that runs first is followed by the writer's
    create; a writer that runs first has committed its row before the counting transaction starts, so
    the row is counted and the marker stays. Hence once a 202 is out, the marker exists until the relay
    has published that row, and any request that *arrives* after the 202 sees it and spools behind
    it. (Two requests in flight at once have no order the producer could rely on: it has seen neither
    answer.) The relay marks a row published only after JetStream's PubAck, so "no unpublished row"
    means every spooled event is in COMMERCE. The marker may outlive the last row (it is only cleared
    by a request that looks): that costs one query, never an order.

    The marker file is not fsynced: after an OS crash it may be gone while fsynced rows remain, so
    :meth:`open` creates it at every start and the first request checks the database.

    While rows wait, a worker that has just seen some keeps spooling for ``recheck_s`` without asking
    again (spooling is always safe for order), so a drain costs one query per ``recheck_s``, not one
    per request. On PostgreSQL (several pods may share the table, a local file cannot speak for them)
    every request asks the database.
    """

    def __init__(self, engine: AsyncEngine, marker: Path | None, recheck_s: float = 0.05) -> None:
        self.engine = engine
        self.marker = marker
        self.recheck_s = recheck_s
        self._waiting_until = 0.0

    @classmethod
    async def open(cls, url: str, recheck_s: float = 0.05) -> Spool:
        engine = create_engine(url, durable_commits=True)
        await migrate(engine, SPOOL_COMPONENT, [lambda conn: create_outbox_schema(conn, spool_table)])
        spool = cls(engine, _marker_path(url), recheck_s)
        if spool.marker is not None:
            spool.marker.touch()
        return spool

    async def write(self, event: InboundWebhook) -> bytes | None:
        message = OutboxMessage(event.subject, event.msg_id, event.body, event.headers())
        return await self.add(message, now=event.received_at.timestamp())

    async def add(self, message: OutboxMessage, now: float) -> bytes | None:
        """Spool one message; returns None if it is new, else the payload already spooled under its id."""
        async with self.engine.begin() as conn:
            # Under the write lock and before the commit: see the class docstring.
            if self.marker is not None and not self.marker.exists():
                self.marker.touch()
            added = await add_to_outbox(conn, spool_table, [message], now=now)
            existing = None
            if not added:
                query = sa.select(spool_table.c.payload).where(spool_table.c.msg_id == message.msg_id)
                existing = (await conn.execute(query)).scalar_one_or_none()
        self._waiting_until = time.monotonic() + self.recheck_s
        return None if existing is None else bytes(existing)

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

    async def holds_unpublished(self) -> bool:
        """Whether a new event must be spooled (behind rows not yet in JetStream) rather than published.

        Raises what the database raises when the marker says rows may wait and the database cannot
        be read: the caller must then not publish directly.
        """
        if self.marker is None:
            async with self.engine.connect() as conn:
                return await _unpublished(conn)
        if not self.marker.exists():
            return False
        if time.monotonic() < self._waiting_until:
            return True
        async with self.engine.begin() as conn:
            waiting = await _unpublished(conn)
            if not waiting:
                # Under the write lock: no writer can add a row between the count and the delete.
                self.marker.unlink(missing_ok=True)
        if waiting:
            self._waiting_until = time.monotonic() + self.recheck_s
        return waiting

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
