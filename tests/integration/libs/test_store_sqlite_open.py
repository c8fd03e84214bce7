"""Processes that open one new SQLite file together all start: the owner's switch to WAL meets another
process's connection (a second owner, or the relay reading an outbox) without "database is locked"."""

from __future__ import annotations

import multiprocessing
import multiprocessing.synchronize
import sqlite3
from multiprocessing.queues import Queue
from pathlib import Path

import sqlalchemy as sa

from libs.store import SQLITE_BUSY_TIMEOUT_S, sqlite_transactions

FILES = 40
TIMEOUT_S = 120.0


def _open_each(
    paths: list[str], reads_only: bool, barrier: multiprocessing.synchronize.Barrier, errors: Queue[str | None]
) -> None:
    for path in paths:
        barrier.wait(TIMEOUT_S)
        engine = sqlite_transactions(
            sa.create_engine(f"sqlite:///{path}", connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S}),
            reads_only=reads_only,
        )
        try:
            with engine.begin() as conn:
                if reads_only:
                    conn.exec_driver_sql("SELECT name FROM sqlite_master").fetchall()
                else:
                    conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY)")
        except sa.exc.OperationalError as exc:
            errors.put(f"{Path(path).name} ({'reader' if reads_only else 'owner'}): {exc.orig}")
        finally:
            engine.dispose()
    errors.put(None)


def test_two_owners_and_a_reader_opening_new_files_together_all_start(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    paths = [str(tmp_path / f"store-{n}.db") for n in range(FILES)]
    roles = [False, False, True]  # two owners (two replicas, or a CLI beside the service) and a reader
    barrier = context.Barrier(len(roles))
    errors: Queue[str | None] = context.Queue()
    processes = [context.Process(target=_open_each, args=(paths, role, barrier, errors)) for role in roles]
    for process in processes:
        process.start()
    problems: list[str] = []
    finished = 0
    while finished < len(processes):
        item = errors.get(timeout=TIMEOUT_S)
        if item is None:
            finished += 1
        else:
            problems.append(item)
    for process in processes:
        process.join(TIMEOUT_S)
        assert process.exitcode == 0
    assert problems == []
    for path in paths:
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal", path
