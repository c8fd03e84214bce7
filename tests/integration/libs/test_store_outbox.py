"""Store set-up and the outbox table on SQLite and on the machine's PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from libs.outbox import OutboxMessage, add_to_outbox, create_outbox_schema, outbox_table
from libs.store import create_engine, database_url, migrate

metadata = sa.MetaData()
table = outbox_table(metadata, "outbox")


async def _exercise(url: str) -> None:
    engine = create_engine(url)
    try:
        steps = [lambda conn: create_outbox_schema(conn, table)]
        assert await migrate(engine, "test.outbox", steps) == 1
        assert await migrate(engine, "test.outbox", steps) == 1, "a migrated store is left as it is"
        first = OutboxMessage("inventory.reserved.A", "m-1", b"{}", {"Nats-Msg-Id": "m-1"})
        second = OutboxMessage("inventory.reserved.B", "m-2", b"{}", {})
        async with engine.begin() as conn:
            assert await add_to_outbox(conn, table, [first, second]) == 2
        async with engine.begin() as conn:
            assert await add_to_outbox(conn, table, [first]) == 0, "the same msg_id is kept once"
        async with engine.begin() as conn:
            await add_to_outbox(conn, table, [OutboxMessage("x", "m-3", b"", {})])
            await conn.rollback()
        async with engine.connect() as conn:
            rows = (await conn.execute(sa.select(table.c.id, table.c.msg_id).order_by(table.c.id))).all()
        assert [r.msg_id for r in rows] == ["m-1", "m-2"], "a rolled-back transaction leaves no row"
        assert rows[0].id < rows[1].id
        added = [*steps, lambda conn: conn.execute(sa.text("CREATE TABLE extra (x INTEGER)"))]
        assert await migrate(engine, "test.outbox", added) == 2, "only the new step runs"
    finally:
        await engine.dispose()


async def test_sqlite_store(data_dir: Path) -> None:
    url = database_url("", data_dir, "svc")
    assert url == f"sqlite+aiosqlite:///{data_dir / 'svc.db'}"
    await _exercise(url)
    engine = create_engine(url)
    async with engine.connect() as conn:
        assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
    await engine.dispose()


@pytest.mark.postgres
async def test_postgres_store(postgres_url: str) -> None:
    assert database_url(postgres_url.replace("+asyncpg", ""), ".", "x") == postgres_url
    await _exercise(postgres_url)
