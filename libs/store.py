"""Store set-up: one database per service, SQLite (WAL) by default, PostgreSQL by URL.

Schemas are versioned per component in ``stockwire_schema``; :func:`migrate` runs the steps a
database has not had yet, in order, inside one transaction each.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

__all__ = ["Migration", "create_engine", "database_url", "is_postgres", "migrate"]

log = logging.getLogger("stockwire.store")

Migration = Callable[[Connection], None]

_schema = sa.Table(
    "stockwire_schema",
    sa.MetaData(),
    sa.Column("component", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
)


def database_url(configured: str | None, data_dir: str | Path, service: str) -> str:
    """The URL a service uses: the configured one, or ``<data_dir>/<service>.db``."""
    if configured:
        url = configured
        for prefix in ("postgres://", "postgresql://"):
            if url.startswith(prefix):
                return "postgresql+asyncpg://" + url[len(prefix) :]
        if url.startswith("sqlite:///"):
            return "sqlite+aiosqlite:///" + url[len("sqlite:///") :]
        return url
    path = Path(data_dir) / f"{service}.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite+aiosqlite:///{path}"


def is_postgres(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "postgresql"


def create_engine(url: str, *, durable_commits: bool = False, pool_size: int = 10) -> AsyncEngine:
    """An async engine. On SQLite: WAL, a busy timeout for several writer processes, and
    ``synchronous=FULL`` where a commit must be on disk before we answer (``durable_commits``)."""
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30})
        synchronous = "FULL" if durable_commits else "NORMAL"

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        # pysqlite opens its own transactions lazily and never for BEGIN; take over so that
        # every transaction starts with BEGIN IMMEDIATE and writers queue instead of failing.
        @event.listens_for(engine.sync_engine, "connect")
        def _no_implicit_begin(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            dbapi_connection.isolation_level = None

        @event.listens_for(engine.sync_engine, "begin")
        def _begin_immediate(conn) -> None:  # type: ignore[no-untyped-def]
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_async_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)


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
