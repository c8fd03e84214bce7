"""The audit tools never write to what they audit: no file created, no schema migrated, a clear refusal."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from pathlib import Path

import asyncpg
import pytest

from libs.store import create_engine, migrate
from services.inventory.store import schema
from stockwire.cli import main as stockwire

CURRENT = len(schema.MIGRATIONS)
READ_ONLY_COMMANDS = [["ledger", "verify"], ["audit", "order", "o-1"], ["audit", "sku", "A"]]
EVERY_STORE_COMMAND = [*READ_ONLY_COMMANDS, ["ledger", "rebuild"]]


def _run(command: list[str], url: str) -> int:
    return stockwire([*command, "--database-url", url, *(["--nats-timeout", "0.1"] if command[0] == "audit" else [])])


async def _migrated(url: str) -> None:
    engine = create_engine(url)
    try:
        await migrate(engine, schema.COMPONENT, schema.MIGRATIONS)
    finally:
        await engine.dispose()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("command", EVERY_STORE_COMMAND, ids=" ".join)
def test_a_missing_sqlite_file_is_refused_and_not_created(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "not-yet" / "typo.db"
    assert _run(command, f"sqlite:///{missing}") == 2
    err = capsys.readouterr().err
    assert f"no database at {missing}" in err and "Traceback" not in err
    assert not missing.exists() and not missing.parent.exists()


@pytest.mark.parametrize("command", READ_ONLY_COMMANDS, ids=" ".join)
def test_the_default_store_under_an_absent_data_dir_is_not_created(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STOCKWIRE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("STOCKWIRE_NATS_URL", "nats://127.0.0.1:9")
    extra = ["--nats-timeout", "0.1"] if command[0] == "audit" else []
    assert stockwire([*command, *extra]) == 2
    assert "no database at" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("version", [None, 0, 99])
@pytest.mark.parametrize("command", EVERY_STORE_COMMAND, ids=" ".join)
def test_a_store_at_another_schema_version_is_refused_untouched(
    command: list[str], version: int | None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "inventory.db"
    asyncio.run(_migrated(f"sqlite+aiosqlite:///{db}"))
    with sqlite3.connect(db) as conn:
        if version is None:
            conn.execute("DELETE FROM stockwire_schema")
        else:
            conn.execute("UPDATE stockwire_schema SET version = ?", (version,))
    conn.close()
    before = _digest(db)
    assert _run(command, f"sqlite:///{db}") == 2
    err = capsys.readouterr().err
    if version is None:
        assert "holds no inventory schema" in err
    elif version == 0:
        assert f"inventory schema is at version 0, this stockwire reads version {CURRENT}" in err
        assert "start inventory (it migrates its own store)" in err
    else:
        assert f"version 99, newer than this stockwire knows ({CURRENT})" in err
    assert _digest(db) == before, "nothing was migrated or written"


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "notes.db"
    other.write_text("not a database at all\n" * 100)
    assert _run(["ledger", "verify"], f"sqlite:///{other}") == 2
    assert "cannot be read" in capsys.readouterr().err
    assert other.read_text() == "not a database at all\n" * 100


def test_an_empty_sqlite_database_is_refused_and_stays_empty(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "empty.db"
    sqlite3.connect(db).close()
    assert _run(["ledger", "verify"], f"sqlite:///{db}") == 2
    assert "no Stockwire schema" in capsys.readouterr().err
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT name FROM sqlite_master").fetchall() == []
    conn.close()


def test_verify_reads_a_current_store_without_changing_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "inventory.db"
    asyncio.run(_migrated(f"sqlite+aiosqlite:///{db}"))
    before = _digest(db)
    assert _run(["ledger", "verify"], f"sqlite:///{db}") == 0
    assert "OK" in capsys.readouterr().out
    assert _digest(db) == before
    assert _run(["ledger", "rebuild"], f"sqlite:///{db}") == 0, "rebuild still works on a current store"


async def _tables(url: str) -> list[str]:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        rows = await conn.fetch("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
        return sorted(r["table_name"] for r in rows)
    finally:
        await conn.close()


@pytest.mark.postgres
@pytest.mark.parametrize("command", EVERY_STORE_COMMAND, ids=" ".join)
async def test_an_empty_postgresql_database_is_refused_and_no_table_is_created(
    command: list[str], postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await asyncio.to_thread(_run, command, postgres_url) == 2
    assert "no Stockwire schema (an empty database" in capsys.readouterr().err
    assert await _tables(postgres_url) == []


@pytest.mark.postgres
async def test_an_older_postgresql_schema_is_refused_and_not_migrated(
    postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await _migrated(postgres_url)
    await asyncio.to_thread(_set_version, postgres_url, 0)
    assert await asyncio.to_thread(_run, ["ledger", "verify"], postgres_url) == 2
    assert "inventory schema is at version 0" in capsys.readouterr().err
    conn = await asyncpg.connect(postgres_url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        assert await conn.fetchval("SELECT version FROM stockwire_schema") == 0
    finally:
        await conn.close()
    # The current schema reads fine, in a session that cannot write.
    await asyncio.to_thread(_set_version, postgres_url, CURRENT)
    assert await asyncio.to_thread(_run, ["ledger", "verify"], postgres_url) == 0


def _set_version(url: str, version: int) -> None:
    async def update() -> None:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
        try:
            await conn.execute("UPDATE stockwire_schema SET version = $1", version)
        finally:
            await conn.close()

    asyncio.run(update())
