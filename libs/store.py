"""Store set-up: one database per service, SQLite (WAL) by default, PostgreSQL by URL.

Every store runs its transactions one of two ways, both here: a body that awaits (the spool's unit of
work, the relay's housekeeping) in a :class:`Transaction`, and a synchronous body in one hand-off with
:meth:`Transactions.run` (the channel-notifier's and inventory's; on SQLite on a writer thread).

Schemas are versioned per component in ``stockwire_schema``; :func:`migrate` runs the steps a
database has not had yet, in order, inside one transaction each. Tools that only read (audits,
verification) use :func:`open_read_only` and :func:`check_schema` instead: they never create a
database, a table or a row, and never migrate.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import sqlite3
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Self, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncTransaction, create_async_engine

__all__ = [
    "SQLITE_BUSY_TIMEOUT_S",
    "ConsumerFloors",
    "Migration",
    "SchemaError",
    "Transaction",
    "Transactions",
    "WriteHealth",
    "cancellation_pending",
    "check_schema",
    "configure_sqlite",
    "create_engine",
    "database_url",
    "is_postgres",
    "migrate",
    "open_read_only",
    "sqlite_transactions",
]

log = logging.getLogger("stockwire.store")

T = TypeVar("T")

Migration = Callable[[Connection], None]

_schema = sa.Table(
    "stockwire_schema",
    sa.MetaData(),
    sa.Column("component", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
)


class SchemaError(RuntimeError):
    """A database a read-only tool was pointed at cannot be read as it is: missing, empty, not a
    Stockwire store, or at a schema version other than the one this code knows. The message says which."""


def database_url(configured: str | None, data_dir: str | Path, service: str, *, create_dir: bool = True) -> str:
    """The URL a service uses: the configured one, or ``<data_dir>/<service>.db`` (the directory is
    created unless ``create_dir`` is false, as read-only tools ask)."""
    if configured:
        url = configured
        for prefix in ("postgres://", "postgresql://"):
            if url.startswith(prefix):
                return "postgresql+asyncpg://" + url[len(prefix) :]
        if url.startswith("sqlite:///"):
            return "sqlite+aiosqlite:///" + url[len("sqlite:///") :]
        return url
    path = Path(data_dir) / f"{service}.db"
    if create_dir:
        path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite+aiosqlite:///{path}"


def is_postgres(engine: AsyncEngine) -> bool:
    """The engine talks to PostgreSQL (else SQLite)."""
    return engine.dialect.name == "postgresql"


SQLITE_BUSY_TIMEOUT_S = 30.0


def configure_sqlite(connection: Any, *, durable_commits: bool = False, owner: bool = True) -> None:
    """The settings every Stockwire SQLite connection runs with (``connection``: a DB-API connection).

    WAL (readers never block the writer), ``synchronous=FULL`` where a commit must be on disk before
    anyone is answered (``durable_commits``) and NORMAL otherwise, a 30 s busy timeout so several
    writer processes queue rather than fail, and foreign keys enforced. SQLite documents each pragma
    at https://sqlite.org/pragma.html.

    Only the file's ``owner`` (the service whose store it is) switches it to WAL; a connection of
    another process that reads it (the relay reading an outbox) takes the file as it finds it. Raises
    ``sqlite3.OperationalError`` when the switch stays locked for the whole busy timeout.
    """
    cursor = connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
    if owner:
        _switch_to_wal(cursor)
    cursor.execute(f"PRAGMA synchronous={'FULL' if durable_commits else 'NORMAL'}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _switch_to_wal(cursor: Any) -> None:
    # SQLite answers a switch to WAL that meets another connection's switch (two processes opening a
    # new file together) with "database is locked" at once, without consulting the busy handler:
    # measured, 23 of 100 new files opened by a writer and a reader process that both switched. A file
    # already in WAL needs no switch (and takes no write lock), so the retry only runs on a new file.
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    delay_s = 0.001
    while True:
        try:
            cursor.execute("PRAGMA journal_mode")
            if cursor.fetchone()[0] != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(delay_s)
        delay_s = min(2 * delay_s, 0.05)


def sqlite_transactions(engine: Engine, *, durable_commits: bool = False, reads_only: bool = False) -> Engine:
    """Make ``engine`` (a synchronous SQLAlchemy engine on SQLite) run :func:`configure_sqlite` on every
    new connection and start every transaction with ``BEGIN IMMEDIATE``; returns it.

    pysqlite opens its own transactions lazily and never for a read; taking over means a transaction
    holds the write lock from its start, so writers queue behind each other instead of failing on
    upgrade with "database is locked". With ``reads_only`` no transaction is begun at all: each
    statement reads its own WAL snapshot and never waits for a writer (for an engine that only reads),
    and the connection leaves the journal mode to the file's owner (see :func:`configure_sqlite`).
    """

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_connection.isolation_level = None
        configure_sqlite(dbapi_connection, durable_commits=durable_commits, owner=not reads_only)

    if not reads_only:

        @event.listens_for(engine, "begin")
        def _begin_immediate(conn) -> None:  # type: ignore[no-untyped-def]
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def create_engine(url: str, *, durable_commits: bool = False, pool_size: int = 10) -> AsyncEngine:
    """An async engine on ``url`` (``sqlite+aiosqlite://`` or ``postgresql+asyncpg://``).

    SQLite: the settings of :func:`sqlite_transactions`. PostgreSQL: a pool of ``pool_size`` (and as many
    again on overflow), connections checked before use.
    """
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
        sqlite_transactions(engine.sync_engine, durable_commits=durable_commits)
        return engine
    return create_async_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)


def _nothing() -> None:
    """Handed to a store's thread to wait for what was handed to it before."""


CommitHook = Callable[[], Awaitable[None] | None]
"""Work to do once a transaction has committed: a function or a coroutine function of nothing."""


class Transaction:
    """One transaction on ``engine`` for a body that awaits between statements.

    ``async with`` begins it (on SQLite ``BEGIN IMMEDIATE``, see :func:`create_engine`); :meth:`commit`
    commits it and then runs, in order, the hooks given to :meth:`on_commit`; whatever was not
    committed is rolled back when the block ends, and its hooks are dropped. Savepoints are
    ``conn.begin_nested()``. Every method raises what the driver raises (as SQLAlchemy's
    ``DBAPIError`` subclasses); a hook's exception propagates from :meth:`commit`, after the commit.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._conn: AsyncConnection | None = None
        self._tx: AsyncTransaction | None = None
        self._hooks: list[CommitHook] = []

    async def __aenter__(self) -> Self:
        conn = await self.engine.connect()
        try:
            self._tx = await conn.begin()
        except BaseException:
            await conn.close()
            raise
        self._conn, self._hooks = conn, []
        return self

    async def __aexit__(self, *exc: object) -> None:
        conn, tx = self._conn, self._tx
        self._conn = self._tx = None
        self._hooks = []
        try:
            if tx is not None and tx.is_active:
                await tx.rollback()
        finally:
            if conn is not None:
                await conn.close()

    @property
    def conn(self) -> AsyncConnection:
        """The open connection. Raises ``RuntimeError`` outside ``async with``."""
        if self._conn is None:
            raise RuntimeError("the transaction is not open: use `async with`")
        return self._conn

    def on_commit(self, hook: CommitHook) -> None:
        """Run ``hook`` once this transaction has committed (never if it rolls back)."""
        self._hooks.append(hook)

    async def commit(self) -> None:
        """Commit, then run the hooks. Raises ``RuntimeError`` outside ``async with``."""
        if self._tx is None:
            raise RuntimeError("the transaction is not open: use `async with`")
        await self._tx.commit()
        hooks, self._hooks = self._hooks, []
        for hook in hooks:
            result = hook()
            if inspect.isawaitable(result):
                await result


def cancellation_pending() -> bool:
    """Whether the running task has been asked to cancel (``Task.cancelling()``; False outside a task).

    A driver can turn the ``CancelledError`` it received into another exception on its way out: the
    rollback of an asyncpg connection that the cancellation invalidated raises SQLAlchemy's
    ``PendingRollbackError`` ("Can't reconnect until invalid transaction is rolled back"). A loop that
    logs and retries on ``Exception`` would then run on past its own cancellation, and whoever awaits
    the cancelled task (a service's shutdown) would wait for ever. :meth:`Transactions.run` raises
    ``CancelledError`` in its place when this is true, so no caller's loop sees the other exception."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class Transactions:
    """How a store runs synchronous transaction bodies: ``run(work)`` is one transaction in one hand-off.

    With ``thread`` (the thread's name) on SQLite, ``work`` runs on one thread of the store's own, on
    a synchronous engine on the same file (:func:`sqlite_transactions`, ``durable_commits`` and
    ``reads_only`` as there): one hand-off per transaction rather than one per statement, which under
    a busy event loop saved ~10 ms per transaction in the channel-notifier, and in inventory ~200
    thread hops per batch transaction; the single thread is SQLite's single writer, and the whole
    query, its rows and their conversion run off the event loop.
    Otherwise (PostgreSQL, or no thread asked for) ``work`` runs through ``AsyncConnection.run_sync``.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        thread: str | None = None,
        durable_commits: bool = False,
        reads_only: bool = False,
    ) -> None:
        self.engine = engine
        self.sync_engine: Engine | None = None
        self._thread: concurrent.futures.ThreadPoolExecutor | None = None
        if thread is not None and not is_postgres(engine):
            url = engine.url.set(drivername="sqlite")
            connect_args = {"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False}
            sync_engine = sa.create_engine(url, connect_args=connect_args)
            self.sync_engine = sqlite_transactions(sync_engine, durable_commits=durable_commits, reads_only=reads_only)
            self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=thread)

    def begin(self) -> Transaction:
        """A :class:`Transaction` on the engine, for a body that awaits."""
        return Transaction(self.engine)

    async def run(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in one transaction: committed when it returns, rolled back when it raises (and
        its exception propagates, as do the driver's)."""
        if self._thread is not None:
            return await asyncio.get_running_loop().run_in_executor(self._thread, self._in_transaction, work)
        try:
            async with self.engine.begin() as conn:
                return await conn.run_sync(work)
        except Exception as exc:
            if cancellation_pending():
                raise asyncio.CancelledError from exc
            raise

    def _in_transaction(self, work: Callable[[Connection], T]) -> T:
        assert self.sync_engine is not None
        with self.sync_engine.begin() as conn:
            return work(conn)

    async def close(self) -> None:
        """Let the transactions already handed over finish (awaited, the event loop goes on), then close
        the thread and both engines."""
        if self._thread is not None:
            await asyncio.get_running_loop().run_in_executor(self._thread, _nothing)
            self._thread.shutdown(wait=False)
        if self.sync_engine is not None:
            self.sync_engine.dispose()
        await self.engine.dispose()


async def migrate(engine: AsyncEngine, component: str, steps: Sequence[Migration]) -> int:
    """Apply the steps of ``component`` the database has not seen; returns the version now in place."""
    async with engine.begin() as conn:
        if is_postgres(engine):
            # Replicas starting together would otherwise race to create the version table itself.
            await conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('stockwire_schema'))"))
        await conn.run_sync(lambda c: _schema.create(c, checkfirst=True))
    async with engine.begin() as conn:
        if is_postgres(engine):
            # Two replicas starting together must not both run the same step.
            await conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:c))"), {"c": component})
        row = (await conn.execute(sa.select(_schema.c.version).where(_schema.c.component == component))).first()
        current = row[0] if row else 0
        for version, step in enumerate(steps[current:], start=current + 1):
            await conn.run_sync(step)
            log.info("schema %s: migrated to version %d", component, version)
        if len(steps) > current:
            if row:
                await conn.execute(
                    sa.update(_schema).where(_schema.c.component == component).values(version=len(steps))
                )
            else:
                await conn.execute(sa.insert(_schema).values(component=component, version=len(steps)))
        return max(current, len(steps))


def open_read_only(url: str) -> AsyncEngine:
    """An engine that cannot write, for tools that inspect a store another process owns.

    SQLite: the file is opened with ``mode=ro`` (a URI filename), so it is never created, and every
    connection sets ``query_only``; a transaction is a plain deferred ``BEGIN``, a consistent WAL
    snapshot that never blocks the writer. PostgreSQL: every session starts with
    ``default_transaction_read_only``. Raises :class:`SchemaError` when the SQLite file does not exist.
    Call :func:`check_schema` before reading."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_async_engine(
            url, pool_size=2, connect_args={"server_settings": {"default_transaction_read_only": "on"}}
        )
    path = Path(parsed.database or "")
    if not parsed.database or parsed.database == ":memory:" or not path.is_file():
        raise SchemaError(f"no database at {path}: nothing to read (a read-only tool never creates one)")
    # A URI filename: SQLAlchemy passes the query's mode on to SQLite when uri=true.
    uri = f"file:{urllib.parse.quote(str(path.resolve()))}"
    engine = create_async_engine(
        parsed.set(database=uri, query={**parsed.query, "mode": "ro", "uri": "true"}),
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S},
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _read_only(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA query_only=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn) -> None:  # type: ignore[no-untyped-def]
        conn.exec_driver_sql("BEGIN")

    return engine


async def check_schema(engine: AsyncEngine, component: str, steps: Sequence[Migration]) -> int:
    """The schema version of ``component`` in place, read without migrating; it must be ``len(steps)``.

    Raises :class:`SchemaError` naming the database when it cannot be opened, has no
    ``stockwire_schema`` table (empty, or not a Stockwire store), has no row for ``component``, or holds
    an older version (start the service, which migrates its own store) or a newer one (this code is
    older than the store)."""
    where = engine.url.render_as_string(hide_password=True)
    expected = len(steps)
    try:
        async with engine.connect() as conn:
            if not await conn.run_sync(lambda c: sa.inspect(c).has_table(_schema.name)):
                raise SchemaError(f"{where}: no Stockwire schema (an empty database, or not a Stockwire store)")
            query = sa.select(_schema.c.version).where(_schema.c.component == component)
            row = (await conn.execute(query)).first()
    except (sa.exc.DBAPIError, OSError) as exc:
        cause = getattr(exc, "orig", None) or exc
        raise SchemaError(f"{where}: cannot be read: {cause}") from exc
    if row is None:
        raise SchemaError(f"{where}: holds no {component} schema")
    version = int(row[0])
    if version < expected:
        raise SchemaError(
            f"{where}: {component} schema is at version {version}, this stockwire reads version {expected}; "
            f"start {component} (it migrates its own store) and try again"
        )
    if version > expected:
        raise SchemaError(
            f"{where}: {component} schema is at version {version}, newer than this stockwire knows ({expected}); "
            "use the stockwire release that runs the service"
        )
    return version


_WROTE = "stockwire_wrote"
_COMMITTING = "stockwire_committing"
_WRITES = frozenset({"INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "DROP", "ALTER"})


class WriteHealth:
    """Whether a store's writes commit, for readiness.

    Watches engines through SQLAlchemy events: a transaction that wrote and failed to commit, or any
    ``OperationalError`` (SQLite "database or disk is full", "disk I/O error"; a PostgreSQL server
    that is gone or read-only), makes :attr:`error` the reason; the next write that commits clears it.
    A store that nothing writes to would stay unhealthy, so readiness checks write a :meth:`probe` once
    no failure has been seen for ``probe_after_s`` seconds (a small write can succeed on a full disk
    while a batch cannot: probing sooner would make readiness flap).
    """

    def __init__(self, probe_after_s: float = 10.0) -> None:
        self.error: str | None = None
        self.probe_after_s = probe_after_s
        self._failed_at = 0.0

    @property
    def ok(self) -> bool:
        """No write has failed since the last one that committed."""
        return self.error is None

    @property
    def probe_due(self) -> bool:
        """Unhealthy, and no write has failed for ``probe_after_s``."""
        return self.error is not None and time.monotonic() - self._failed_at >= self.probe_after_s

    def watch(self, engine: Engine | AsyncEngine) -> WriteHealth:
        """Follow the transactions of ``engine`` (its sync engine for an async one); returns self."""
        sync = engine.sync_engine if isinstance(engine, AsyncEngine) else engine
        event.listen(sync, "after_cursor_execute", self._executed)
        event.listen(sync, "commit", self._committing)
        event.listen(sync, "rollback", self._rolled_back)
        event.listen(sync.pool, "checkin", self._checked_in)
        event.listen(sync, "handle_error", self._failed)
        return self

    @staticmethod
    def probe(conn: Connection) -> None:
        """Write something harmless in ``conn``'s transaction, so that a store that recovered while
        idle shows it on its next commit (async: ``await conn.run_sync(health.probe)``). Raises what
        the write raises."""
        conn.execute(sa.update(_schema).values(version=_schema.c.version))

    @staticmethod
    def _executed(conn: Connection, _cursor: object, statement: str, *_args: object) -> None:
        if statement.lstrip()[:7].split(" ", 1)[0].upper() in _WRITES:
            conn.info[_WROTE] = True

    @staticmethod
    def _committing(conn: Connection) -> None:
        # The commit may still fail (SQLite writes the WAL then): success is known at check-in.
        if conn.info.pop(_WROTE, False):
            conn.info[_COMMITTING] = True

    @staticmethod
    def _rolled_back(conn: Connection) -> None:
        conn.info.pop(_WROTE, None)
        conn.info.pop(_COMMITTING, None)

    def _checked_in(self, _dbapi_connection: object, record: object) -> None:
        info = getattr(record, "info", None)
        if info is not None and info.pop(_COMMITTING, False) and self.error is not None:
            log.info("store: a write committed again (after: %s)", self.error)
            self.error = None

    def _failed(self, context: sa.engine.ExceptionContext) -> None:
        if context.is_pre_ping:
            return  # a stale pooled connection, replaced before anything is written
        conn = context.connection
        committing = conn is not None and conn.info.pop(_COMMITTING, False)
        if committing or isinstance(context.sqlalchemy_exception, sa.exc.OperationalError):
            reason = f"{type(context.original_exception).__name__}: {context.original_exception}"
            if self.error is None:
                log.error("store: a write failed; not ready until one commits (%s)", reason)
            self.error = reason
            self._failed_at = time.monotonic()


_floors = sa.Table(
    "stockwire_consumer_floors",
    sa.MetaData(),
    sa.Column("consumer", sa.String(300), primary_key=True),
    sa.Column("stream_created", sa.String(64), nullable=False),
    sa.Column("stream_seq", sa.BigInteger, nullable=False),
)


class ConsumerFloors:
    """The ack floors of a service's durable consumers, kept in its own store so that a consumer lost
    while the service was down is still re-created where it was, not at the start of its stream.

    A floor is recorded with the creation time of its stream (ISO 8601): a floor of a stream that was
    since deleted and re-created does not apply. The table is created on first use.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._ready = False

    async def _ensure(self) -> None:
        if not self._ready:
            async with self.engine.begin() as conn:
                await conn.run_sync(lambda c: _floors.create(c, checkfirst=True))
            self._ready = True

    async def load(self, consumer: str, stream_created: str) -> int:
        """The floor recorded for ``consumer`` on the stream created at ``stream_created``; 0 if none."""
        await self._ensure()
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(_floors).where(_floors.c.consumer == consumer))).first()
        return int(row.stream_seq) if row is not None and row.stream_created == stream_created else 0

    async def save(self, consumer: str, stream_created: str, stream_seq: int) -> None:
        """Record the floor of ``consumer`` (a stream sequence) on the stream created at ``stream_created``."""
        await self._ensure()
        values = {"stream_created": stream_created, "stream_seq": stream_seq}
        async with self.engine.begin() as conn:
            updated = await conn.execute(sa.update(_floors).where(_floors.c.consumer == consumer).values(values))
            if not updated.rowcount:
                await conn.execute(sa.insert(_floors).values(consumer=consumer, **values))
