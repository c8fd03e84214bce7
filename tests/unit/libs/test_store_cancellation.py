"""A transaction whose task is cancelled ends the task cancelled, whatever the driver raised on the way out.

Cancelling a task in the middle of an asyncpg transaction can come out of SQLAlchemy as
``PendingRollbackError`` (the rollback of the connection the cancellation invalidated): a loop that
logs and retries on ``Exception`` then ran on past its cancellation, and the channel-notifier's
shutdown, awaiting that loop, waited for ever on PostgreSQL. Here the body raises another exception
after its task has been asked to cancel, as the driver does.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.util import await_only

from libs.store import Transactions, cancellation_pending, create_engine, database_url


async def test_a_cancelled_transaction_ends_its_task_cancelled_even_when_the_driver_raises_otherwise(
    tmp_path: Path,
) -> None:
    engine = create_engine(database_url("", tmp_path, "cancel"))
    transactions = Transactions(engine)  # no thread: the run_sync path PostgreSQL takes
    inside = asyncio.Event()
    loops = 0

    def body(conn: Connection) -> None:
        conn.execute(sa.text("SELECT 1"))
        inside.set()
        try:
            await_only(asyncio.sleep(60))  # the statement the shutdown cancels
        except asyncio.CancelledError:
            # What the driver does: the cancellation comes out as another exception.
            raise sa.exc.PendingRollbackError("Can't reconnect until invalid transaction is rolled back") from None

    async def loop() -> None:
        nonlocal loops
        while loops < 3:
            loops += 1
            inside.clear()
            try:
                await transactions.run(body)
            except Exception:
                await asyncio.sleep(0)  # logged and retried: the cancellation would be lost here

    task = asyncio.create_task(loop())
    await asyncio.wait_for(inside.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)
    assert task.cancelled() and loops == 1
    await engine.dispose()


async def test_no_cancellation_is_pending_outside_a_cancelled_task() -> None:
    assert not cancellation_pending()
    started = asyncio.Event()

    async def waits() -> bool:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            return cancellation_pending()
        return False

    task = asyncio.create_task(waits())
    await started.wait()
    task.cancel()
    assert await task is True
