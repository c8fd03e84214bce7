"""Write health on a real SQLite file: a failed write makes a store unhealthy until a write commits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from libs.store import WriteHealth, create_engine, migrate

_rows = sa.Table("rows", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True), sa.Column("blob", sa.Text))


async def test_a_full_store_is_unhealthy_until_a_write_commits_and_an_idle_one_recovers_by_probe(
    tmp_path: Path,
) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    await migrate(engine, "test", [lambda conn: _rows.create(conn)])
    health = WriteHealth(probe_after_s=0.0).watch(engine)
    cap: dict[str, int | None] = {"pages": None}

    # SQLite's max_page_count gives the error of a full disk (SQLITE_FULL) on a real file.
    @event.listens_for(engine.sync_engine, "connect")
    def _cap(dbapi_connection: Any, _record: Any) -> None:
        if cap["pages"] is not None:
            dbapi_connection.execute(f"PRAGMA max_page_count = {cap['pages']}")

    try:
        async with engine.begin() as conn:
            await conn.execute(sa.insert(_rows).values(blob="x"))
            cap["pages"] = (await conn.execute(sa.text("PRAGMA page_count"))).scalar_one()
        assert health.ok
        await engine.dispose()

        with pytest.raises(sa.exc.OperationalError, match="full"):
            async with engine.begin() as conn:
                await conn.execute(sa.insert(_rows), [{"blob": "y" * 4000} for _ in range(50)])
        assert not health.ok and "full" in (health.error or "")
        # Reading does not make it healthy; a commit that wrote nothing neither.
        async with engine.begin() as conn:
            await conn.execute(sa.select(_rows))
        assert not health.ok

        cap["pages"] = None
        await engine.dispose()
        assert health.probe_due
        async with engine.begin() as conn:
            await conn.run_sync(health.probe)
        assert health.ok
    finally:
        await engine.dispose()
