"""The relay's side of an outbox table: read in id order, mark published, clean up, count the backlog.

One class per kind of database, with the same methods; :func:`open_store` picks one from the URL.
The relay never creates the table (its writer does, at its own start-up): until it exists
:meth:`OutboxStore.exists` answers ``False`` and the relay waits.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import asyncpg
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from libs.outbox import outbox_notify_channel, outbox_table
from libs.store import SQLITE_BUSY_TIMEOUT_S, configure_sqlite, create_engine

from .rows import OutboxRow

__all__ = ["OutboxStore", "PostgresOutboxStore", "SqliteOutboxStore", "open_store"]

log = logging.getLogger("stockwire.outbox_relay")

# SQLite allows 32766 bound parameters per statement; stay well below for the IN lists.
_SQLITE_CHUNK = 500

T = TypeVar("T")

# The sessions of the relay's hot path run only its own few statements, so they can be told how:
# - No sorting. Without fresh statistics (a backlog written during an outage, before autovacuum has
#   looked) the planner estimates a handful of unpublished rows and sorts all of them on every read,
#   milliseconds per read per 10,000 rows waiting; the batch read must walk the index and stop at its
#   limit, whatever the estimate.
# - No waiting for the WAL flush on commit: a mark lost in a database crash only means its rows are
#   published again and JetStream answers duplicate. Set per session, a mark is one statement.
_HOT_PATH_SETTINGS = {"enable_sort": "off", "synchronous_commit": "off"}


class OutboxStore:
    """The queries off the hot path (SQLAlchemy); subclasses add reading and marking, which run on
    the plain driver of their database."""

    commit_ordered: bool = True

    def __init__(self, url: str, table_name: str, reader: AsyncEngine, writer: AsyncEngine) -> None:
        self.url = url
        self.table = outbox_table(sa.MetaData(), table_name)
        self.reader = reader
        self.writer = writer

    async def exists(self) -> bool:
        raise NotImplementedError

    async def read(self, after_id: int, up_to: int | None, limit: int) -> list[OutboxRow]:
        """Unpublished rows with ``after_id < id`` (and ``id <= up_to``), in id order, at most ``limit``."""
        raise NotImplementedError

    async def mark_published(self, ids: Sequence[int], at: float) -> None:
        raise NotImplementedError

    async def backlog(self) -> tuple[int, float | None]:
        """Unpublished rows and the ``created_at`` of the oldest."""
        c = self.table.c
        query = sa.select(sa.func.count(), sa.func.min(c.created_at)).where(c.published_at.is_(None))
        async with self.reader.connect() as conn:
            count, oldest = (await conn.execute(query)).one()
        return int(count), (float(oldest) if oldest is not None else None)

    async def delete_published(self, before: float, limit: int) -> int:
        """Delete up to ``limit`` rows published before ``before``. The newest row always stays, so an
        id is never handed out twice (SQLite tables created without AUTOINCREMENT reuse the top id)."""
        c = self.table.c
        newest = sa.select(sa.func.max(c.id)).scalar_subquery()
        victims = (
            sa.select(c.id)
            .where(c.published_at.is_not(None), c.published_at < before, c.id < newest)
            .order_by(c.id)
            .limit(limit)
        )
        async with self.writer.begin() as conn:
            result = await conn.execute(sa.delete(self.table).where(c.id.in_(victims)))
        return max(result.rowcount or 0, 0)

    async def close(self) -> None:
        await self.reader.dispose()
        if self.writer is not self.reader:
            await self.writer.dispose()


class _SqliteThread:
    """One plain sqlite3 connection used from one thread of its own.

    The hot path (reading batches, marking them) runs here rather than through SQLAlchemy: the whole
    query, the row fetch and the conversion run off the event loop, and sqlite releases the GIL while
    it works, which measured several times faster than the async ORM layer on this path.
    """

    def __init__(self, path: Path, name: str) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._conn: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(
                self.path, timeout=SQLITE_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            configure_sqlite(conn)
            self._conn = conn
        return self._conn

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            conn = self._connection()
            try:
                return work(conn)
            except sqlite3.Error:
                # A broken connection is not reused; the next call opens a fresh one.
                self._close()
                raise

        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def _close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._close)
        self._executor.shutdown(wait=False)


class SqliteOutboxStore(OutboxStore):
    """One writer at a time: ids are committed in id order (see :mod:`.cursor`)."""

    commit_ordered = True

    def __init__(self, url: str, table_name: str) -> None:
        self.path = Path(make_url(url).database or "")
        # Reads take no lock (WAL snapshots); libs.store's engine starts every transaction with
        # BEGIN IMMEDIATE, which is right for writes but would make each read queue behind writers.
        reader = create_async_engine(url, connect_args={"timeout": 30})
        super().__init__(url, table_name, reader, create_engine(url))
        self._watch: sqlite3.Connection | None = None
        self._read_thread = _SqliteThread(self.path, f"outbox-read-{table_name}")
        self._mark_thread = _SqliteThread(self.path, f"outbox-mark-{table_name}")
        quoted = f'"{table_name}"'  # validated as a plain identifier by the settings
        columns = f"SELECT id, subject, msg_id, headers, payload FROM {quoted} WHERE published_at IS NULL AND id > ?"
        self._sql_read = f"{columns} ORDER BY id LIMIT ?"
        self._sql_read_bounded = f"{columns} AND id <= ? ORDER BY id LIMIT ?"
        self._sql_mark = f"UPDATE {quoted} SET published_at = ? WHERE id IN "

    async def exists(self) -> bool:
        # Never create the file: it belongs to the writer.
        if not self.path.is_file():
            return False
        query = sa.text("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = :name")
        async with self.reader.connect() as conn:
            return (await conn.execute(query, {"name": self.table.name})).first() is not None

    async def read(self, after_id: int, up_to: int | None, limit: int) -> list[OutboxRow]:
        params: tuple[int, ...]
        if up_to is None:
            sql, params = self._sql_read, (after_id, limit)
        else:
            sql, params = self._sql_read_bounded, (after_id, up_to, limit)

        def work(conn: sqlite3.Connection) -> list[OutboxRow]:
            rows = conn.execute(sql, params).fetchall()
            return [OutboxRow(r[0], r[1], r[2], r[3], bytes(r[4])) for r in rows]

        return await self._read_thread.run(work)

    async def mark_published(self, ids: Sequence[int], at: float) -> None:
        sql, chunks = self._sql_mark, [list(ids[i : i + _SQLITE_CHUNK]) for i in range(0, len(ids), _SQLITE_CHUNK)]

        def work(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for chunk in chunks:
                    conn.execute(sql + "(" + ",".join("?" * len(chunk)) + ")", (at, *chunk))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

        await self._mark_thread.run(work)

    def data_version(self) -> int | None:
        """Changes whenever another connection commits to the file; microseconds, no lock taken.
        Called on the event loop: it only reads the WAL index."""
        try:
            if self._watch is None:
                self._watch = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=0.05)
            return int(self._watch.execute("PRAGMA data_version").fetchone()[0])
        except sqlite3.Error:
            self._close_watch()
            return None

    def _close_watch(self) -> None:
        if self._watch is not None:
            try:
                self._watch.close()
            finally:
                self._watch = None

    async def close(self) -> None:
        self._close_watch()
        await self._read_thread.close()
        await self._mark_thread.close()
        await super().close()


class PostgresOutboxStore(OutboxStore):
    """Ids are drawn before commit: reads stay below a bound every open transaction has passed.

    The hot path uses a small asyncpg pool of its own (plain SQL, no result processing layer).
    """

    commit_ordered = False

    def __init__(self, url: str, table_name: str) -> None:
        engine = create_engine(url, pool_size=2)
        super().__init__(url, table_name, engine, engine)
        self.notify_channel = outbox_notify_channel(table_name)
        self._pool: asyncpg.Pool | None = None
        self._pool_lock = asyncio.Lock()
        quoted = f'"{table_name}"'  # validated as a plain identifier by the settings
        columns = f"SELECT id, subject, msg_id, headers, payload FROM {quoted} WHERE published_at IS NULL AND id > $1"
        # Ordered as the unpublished index is (published_at is NULL throughout, so this is id order), so
        # that walking the index answers it; see _HOT_PATH_SETTINGS.
        self._sql_read = f"{columns} ORDER BY published_at, id LIMIT $2"
        self._sql_read_bounded = f"{columns} AND id <= $3 ORDER BY published_at, id LIMIT $2"
        self._sql_mark = f"UPDATE {quoted} SET published_at = $1 WHERE id = ANY($2::bigint[])"
        self._sql_max_id = f"SELECT max(id) FROM {quoted}"

    @property
    def listen_dsn(self) -> str:
        """A plain ``postgresql://`` DSN for asyncpg's own connections."""
        return make_url(self.url).set(drivername="postgresql").render_as_string(hide_password=False)

    async def _connections(self) -> asyncpg.Pool:
        async with self._pool_lock:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    self.listen_dsn, min_size=1, max_size=3, server_settings=_HOT_PATH_SETTINGS
                )
        return self._pool

    async def exists(self) -> bool:
        async with self.reader.connect() as conn:
            found = await conn.execute(sa.text("SELECT to_regclass(:name) IS NOT NULL"), {"name": self.table.name})
            if not found.scalar_one():
                return False
            await self._check_sequence(conn)
        return True

    async def _check_sequence(self, conn: AsyncConnection) -> None:
        query = sa.text(
            "SELECT s.cache_size FROM pg_sequences s WHERE format('%I.%I', s.schemaname, s.sequencename)::regclass"
            " = pg_get_serial_sequence(:t, 'id')::regclass"
        )
        cache = (await conn.execute(query, {"t": self.table.name})).scalar()
        if cache is not None and cache > 1:
            log.error(
                "outbox %s: its id sequence caches %d values per session, so ids are not drawn in order; "
                "rows may be published late (never lost). ALTER SEQUENCE ... CACHE 1 restores strict order",
                self.table.name,
                cache,
            )

    async def read(self, after_id: int, up_to: int | None, limit: int) -> list[OutboxRow]:
        pool = await self._connections()
        if up_to is None:
            records = await pool.fetch(self._sql_read, after_id, limit)
        else:
            records = await pool.fetch(self._sql_read_bounded, after_id, limit, up_to)
        return [OutboxRow(r[0], r[1], r[2], r[3], r[4]) for r in records]

    async def take_bound(self, after_id: int) -> tuple[int | None, int | None]:
        """``max(id)``, then (only if it is above ``after_id``) a transaction id assigned after that read.

        The id is taken in a transaction that is rolled back at once: it costs one transaction id per
        bound, none while there is nothing new.
        """
        pool = await self._connections()
        async with pool.acquire() as conn:
            max_id = await conn.fetchval(self._sql_max_id)
            if max_id is None or max_id <= after_id:
                return max_id, None
            transaction = conn.transaction()
            await transaction.start()
            try:
                xid = await conn.fetchval("SELECT pg_current_xact_id()::text::bigint")
            finally:
                await transaction.rollback()
        return int(max_id), int(xid)

    async def horizon_passed(self, xid: int) -> bool:
        pool = await self._connections()
        return bool(await pool.fetchval("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint >= $1", xid))

    async def mark_published(self, ids: Sequence[int], at: float) -> None:
        pool = await self._connections()
        await pool.execute(self._sql_mark, at, list(ids))

    async def close(self) -> None:
        if self._pool is not None:
            try:
                await asyncio.wait_for(self._pool.close(), 5.0)
            except TimeoutError:
                self._pool.terminate()
            self._pool = None
        await super().close()


def open_store(url: str, table_name: str) -> OutboxStore:
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        return SqliteOutboxStore(url, table_name)
    if backend == "postgresql":
        return PostgresOutboxStore(url, table_name)
    raise ValueError(f"outbox database must be SQLite or PostgreSQL, not {backend!r}")
