"""The outbox-relay's use cases, each a function of a unit of work.

:func:`next_rows` is the read side of a publishing epoch: it takes the cursor's next step (read a
batch; on PostgreSQL fix a bound first and wait for the transactions below it) and tells the cursor
what it found. Marking is one transaction per settled batch group. :func:`clean_up` and
:func:`backlog` are the housekeeping the leader and every standby run on a timer.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

from ..cursor import AwaitHorizon, ReadRows, ScanCursor, TakeBound
from ..rows import OutboxRow
from .unit_of_work import UnitOfWork

__all__ = ["NotYet", "backlog", "clean_up", "mark_published", "next_rows"]


class NotYet(enum.Enum):
    """No batch this step (PostgreSQL): look again."""

    AGAIN = "again"
    """A bound was fixed, or its horizon passed: the next step goes on at once."""
    HORIZON_OPEN = "horizon open"
    """A transaction that may still commit an id below the bound is open; they are short, look again soon."""


async def next_rows(uow: UnitOfWork, cursor: ScanCursor) -> list[OutboxRow] | NotYet:
    """The next batch to publish in id order, ``[]`` when caught up, or why there is none yet."""
    step = cursor.next_step()
    if isinstance(step, ReadRows):
        rows = await uow.read(step.after_id, step.up_to, step.limit)
        cursor.rows_read([row.id for row in rows])
        return rows
    if isinstance(step, TakeBound):
        max_id, next_xid = await uow.take_bound(step.after_id)
        cursor.bound_taken(max_id, next_xid)
        return [] if cursor.caught_up else NotYet.AGAIN
    assert isinstance(step, AwaitHorizon)
    passed = await uow.horizon_passed(step.xid)
    cursor.horizon_checked(passed)
    return NotYet.AGAIN if passed else NotYet.HORIZON_OPEN


async def mark_published(uow: UnitOfWork, ids: Sequence[int], at: float) -> None:
    """Mark rows whose PubAcks came back as published at ``at`` (epoch seconds); nothing to do for none."""
    if ids:
        await uow.mark_published(ids, at)


async def clean_up(uow: UnitOfWork, before: float, chunk: int) -> int:
    """Delete rows published before ``before`` (epoch seconds), ``chunk`` per transaction, until a
    transaction deletes fewer; returns how many went. The newest row always stays."""
    total = 0
    while (deleted := await uow.delete_published(before, chunk)) > 0:
        total += deleted
        if deleted < chunk:
            break
    return total


async def backlog(uow: UnitOfWork, now: float) -> tuple[int, float]:
    """Unpublished rows and the age in seconds of the oldest at ``now`` (epoch seconds; 0 when none)."""
    count, oldest = await uow.backlog()
    return count, (max(0.0, now - oldest) if oldest is not None else 0.0)
