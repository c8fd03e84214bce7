"""The relay's queries on a real SQLite file and on the machine's PostgreSQL."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from libs.outbox import add_to_outbox
from services.outbox_relay.store import OutboxStore, PostgresOutboxStore, open_store

from .support import Outbox, message


async def _exercise(url: str) -> OutboxStore:
    store = open_store(url, "outbox")
    assert not await store.exists(), "no table yet"
    outbox = await Outbox.create(url)
    try:
        assert await store.exists()
        await outbox.write([message(n) for n in range(6)])
        ids = [row.id for row in await outbox.rows()]
        rows = await store.read(0, None, 4)
        assert [r.id for r in rows] == ids[:4]
        assert rows[0].msg_id == "m-000000" and rows[0].payload == b'{"n": 0}' and isinstance(rows[0].payload, bytes)
        assert '"Test-N":"0"' in rows[0].headers
        assert [r.id for r in await store.read(ids[1], ids[3], 10)] == ids[2:4]
        await store.mark_published(ids[:3], time.time())
        assert [r.id for r in await store.read(0, None, 10)] == ids[3:], "published rows are not read again"
        count, oldest = await store.backlog()
        assert count == 3 and oldest is not None and oldest <= time.time()
        assert await store.delete_published(time.time() + 1, 100) == 3
        await store.mark_published(ids[3:], time.time())
        assert await store.delete_published(time.time() + 1, 100) == 2, "the newest row stays"
        assert [r.id for r in await outbox.rows()] == ids[-1:]
        assert await store.backlog() == (0, None)
        return store
    finally:
        await outbox.close()
        await store.close()


async def test_sqlite_store(data_dir: Path) -> None:
    path = data_dir / "svc.db"
    store = open_store(f"sqlite+aiosqlite:///{path}", "outbox")
    assert not await store.exists()
    assert not path.exists(), "asking never creates the writer's file"
    await store.close()
    await _exercise(f"sqlite+aiosqlite:///{path}")


@pytest.mark.postgres
async def test_postgres_store_and_its_commit_horizon(postgres_url: str) -> None:
    await _exercise(postgres_url)
    store = open_store(postgres_url, "outbox")
    assert isinstance(store, PostgresOutboxStore)
    outbox = await Outbox.create(postgres_url)
    try:
        async with outbox.engine.connect() as open_conn:
            tx = await open_conn.begin()
            await add_to_outbox(open_conn, outbox.table, [message(100)])
            max_id, next_xid = await store.take_bound(0)
            assert max_id is not None and next_xid is not None
            assert not await store.horizon_passed(next_xid), "a writer below the bound is still open"
            await tx.commit()
        assert await store.horizon_passed(next_xid)
        assert max_id < 7, "the open writer's id was not visible yet"
        assert await store.take_bound(7) == (7, None), "nothing new: no transaction id taken"
    finally:
        await store.close()
        await outbox.close()


@pytest.mark.postgres
async def test_postgres_reads_walk_the_index_instead_of_sorting_the_backlog(postgres_url: str) -> None:
    """A read costs its batch, not the backlog: after an outage the backlog can be millions of rows."""
    store = open_store(postgres_url, "outbox")
    assert isinstance(store, PostgresOutboxStore)
    outbox = await Outbox.create(postgres_url)
    try:
        # Freshly written and not analysed yet, as after an outage (autovacuum runs later, or is off).
        await outbox.write([message(n) for n in range(100_000)])
        pool = await store._connections()
        async with pool.acquire() as conn:
            plans = []
            # The relay's statements are prepared once and run many times: both kinds of plan.
            for mode in ("force_custom_plan", "force_generic_plan"):
                await conn.execute(f"SET plan_cache_mode = {mode}")
                plans.append(await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {store._sql_read}", 0, 100))
                plans.append(
                    await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {store._sql_read_bounded}", 0, 100, 90_000)
                )
            await conn.execute("RESET plan_cache_mode")
        for plan in plans:
            text = str(plan)
            assert "'Sort'" not in text and '"Sort"' not in text, plan
            scan = json.loads(plan)[0]["Plan"]["Plans"][0]
            assert scan["Actual Rows"] == 100, f"the scan stops at the batch: {scan}"
        assert [r.id for r in await store.read(0, None, 100)] == [r.id for r in (await outbox.rows())[:100]]
    finally:
        await store.close()
        await outbox.close()
