"""The read cursor never lets a row fall behind it, on either kind of database."""

from __future__ import annotations

import pytest

from services.outbox_relay.cursor import AwaitHorizon, ReadRows, ScanCursor, TakeBound


def test_sqlite_reads_onward_in_batches_and_rewinds_to_sweep() -> None:
    cursor = ScanCursor(commit_ordered=True, limit=3)
    assert cursor.next_step() == ReadRows(0, None, 3)
    cursor.rows_read([1, 2, 3])
    assert not cursor.caught_up
    assert cursor.next_step() == ReadRows(3, None, 3)
    cursor.rows_read([4])
    assert cursor.caught_up
    assert cursor.next_step() == ReadRows(4, None, 3), "a short read keeps its place"
    cursor.rewind()
    assert cursor.next_step() == ReadRows(0, None, 3), "a rewind sweeps from the oldest unpublished row"


def test_rows_must_come_ascending_after_the_cursor() -> None:
    cursor = ScanCursor(commit_ordered=True, limit=5)
    cursor.rows_read([5, 6])
    with pytest.raises(ValueError):
        cursor.rows_read([6, 7])
    with pytest.raises(ValueError):
        cursor.rows_read([8, 8])


def test_postgres_reads_only_below_a_bound_every_open_transaction_has_passed() -> None:
    cursor = ScanCursor(commit_ordered=False, limit=2)
    assert cursor.next_step() == TakeBound(0)
    cursor.bound_taken(max_id=5, next_xid=900)
    assert cursor.next_step() == AwaitHorizon(900)
    cursor.horizon_checked(False)
    assert cursor.next_step() == AwaitHorizon(900), "an open transaction may still commit an id <= 5"
    cursor.horizon_checked(True)
    assert cursor.next_step() == ReadRows(0, 5, 2)
    cursor.rows_read([1, 2])
    assert cursor.next_step() == ReadRows(2, 5, 2)
    cursor.rows_read([4])  # 3 rolled back, or was published before
    assert cursor.caught_up
    assert cursor.after_id == 5, "everything up to the bound is settled"
    assert cursor.next_step() == TakeBound(5)
    cursor.bound_taken(max_id=5, next_xid=None)
    assert cursor.caught_up and cursor.next_step() == TakeBound(5), "nothing new drawn: nothing to wait for"


def test_postgres_late_commit_below_a_row_already_seen_is_not_skipped() -> None:
    """Id 6 commits while id 5's transaction is open: 6 is not read until 5 is settled."""
    cursor = ScanCursor(commit_ordered=False, limit=10)
    cursor.bound_taken(max_id=6, next_xid=101)  # tx 100 holds id 5, still open
    cursor.horizon_checked(False)
    assert isinstance(cursor.next_step(), AwaitHorizon), "no read while tx 100 is open"
    cursor.horizon_checked(True)  # tx 100 committed
    assert cursor.next_step() == ReadRows(0, 6, 10)
    cursor.rows_read([5, 6])
    assert cursor.after_id == 6


def test_rewind_forgets_a_pending_bound() -> None:
    cursor = ScanCursor(commit_ordered=False, limit=10)
    cursor.bound_taken(max_id=9, next_xid=10)
    cursor.rewind()
    assert cursor.next_step() == TakeBound(0)
    assert cursor.bound is None and cursor.after_id == 0


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError):
        ScanCursor(commit_ordered=True, limit=0)
