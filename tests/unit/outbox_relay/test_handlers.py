"""The relay's use cases over the in-memory unit of work: no broker, no database."""

from __future__ import annotations

from services.outbox_relay.cursor import ScanCursor
from services.outbox_relay.service_layer import handlers
from services.outbox_relay.service_layer.handlers import NotYet

from .memory import MemoryOutbox


def outbox(ids: range, *, commit_ordered: bool = True) -> MemoryOutbox:
    memory = MemoryOutbox(commit_ordered=commit_ordered)
    for i in ids:
        memory.add(i, created_at=float(i))
    return memory


async def test_rows_come_in_id_order_a_batch_at_a_time_until_caught_up() -> None:
    uow = outbox(range(1, 6))
    cursor = ScanCursor(commit_ordered=True, limit=2)
    batches = [await handlers.next_rows(uow, cursor) for _ in range(4)]
    assert [[r.id for r in b] for b in batches if isinstance(b, list)] == [[1, 2], [3, 4], [5], []]
    assert cursor.caught_up


async def test_without_commit_order_rows_wait_for_the_horizon_of_their_bound() -> None:
    uow = outbox(range(1, 4), commit_ordered=False)
    uow.open_below = {50}  # a transaction older than the bound's is still running
    cursor = ScanCursor(commit_ordered=False, limit=10)
    assert await handlers.next_rows(uow, cursor) is NotYet.AGAIN  # the bound is taken
    assert await handlers.next_rows(uow, cursor) is NotYet.HORIZON_OPEN
    uow.open_below = set()
    assert await handlers.next_rows(uow, cursor) is NotYet.AGAIN  # the horizon passed
    rows = await handlers.next_rows(uow, cursor)
    assert isinstance(rows, list) and [r.id for r in rows] == [1, 2, 3]
    assert await handlers.next_rows(uow, cursor) == [], "nothing drawn beyond the bound"


async def test_marking_nothing_is_no_transaction() -> None:
    uow = outbox(range(1, 3))
    await handlers.mark_published(uow, [], 5.0)
    await handlers.mark_published(uow, [1, 2], 5.0)
    assert uow.marks == [[1, 2]]


async def test_clean_up_deletes_chunk_by_chunk_and_keeps_the_newest_row() -> None:
    uow = outbox(range(1, 8))
    await handlers.mark_published(uow, list(range(1, 8)), 10.0)
    assert await handlers.clean_up(uow, before=20.0, chunk=2) == 6
    assert uow.deletes == [2, 2, 2, 0]
    assert list(uow.rows) == [7]


async def test_clean_up_stops_at_the_first_short_chunk() -> None:
    uow = outbox(range(1, 5))
    await handlers.mark_published(uow, [1, 2, 3, 4], 10.0)
    assert await handlers.clean_up(uow, before=20.0, chunk=5) == 3
    assert uow.deletes == [3]


async def test_the_backlog_is_its_count_and_the_age_of_its_oldest_row() -> None:
    uow = outbox(range(1, 4))
    await handlers.mark_published(uow, [1], 10.0)
    assert await handlers.backlog(uow, now=12.0) == (2, 10.0)
    await handlers.mark_published(uow, [2, 3], 10.0)
    assert await handlers.backlog(uow, now=12.0) == (0, 0.0)
