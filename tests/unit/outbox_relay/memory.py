"""The outbox-relay's in-memory unit of work: an outbox table as a dict, for the handlers' unit tests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from services.outbox_relay.rows import OutboxRow


@dataclass
class Stored:
    row: OutboxRow
    created_at: float
    published_at: float | None = None


@dataclass
class MemoryOutbox:
    """One outbox table in memory. ``commit_ordered=False`` plays PostgreSQL: ``open_below`` holds the
    transaction ids still running, and a bound's transaction id is the next of ``xids``."""

    commit_ordered: bool = True
    rows: dict[int, Stored] = field(default_factory=dict)
    open_below: set[int] = field(default_factory=set)
    next_xid: int = 100
    marks: list[list[int]] = field(default_factory=list)
    deletes: list[int] = field(default_factory=list)

    def add(self, row_id: int, created_at: float = 0.0) -> None:
        self.rows[row_id] = Stored(OutboxRow(row_id, "inventory.x", f"m:{row_id}", "{}", b"{}"), created_at)

    async def exists(self) -> bool:
        return True

    async def read(self, after_id: int, up_to: int | None, limit: int) -> list[OutboxRow]:
        ids = sorted(
            i for i, s in self.rows.items() if s.published_at is None and i > after_id and (up_to is None or i <= up_to)
        )
        return [self.rows[i].row for i in ids[:limit]]

    async def take_bound(self, after_id: int) -> tuple[int | None, int | None]:
        max_id = max(self.rows, default=None)
        if max_id is None or max_id <= after_id:
            return max_id, None
        self.next_xid += 1
        return max_id, self.next_xid

    async def horizon_passed(self, xid: int) -> bool:
        return all(running >= xid for running in self.open_below)

    async def mark_published(self, ids: Sequence[int], at: float) -> None:
        self.marks.append(list(ids))
        for i in ids:
            self.rows[i].published_at = at

    async def delete_published(self, before: float, limit: int) -> int:
        newest = max(self.rows, default=0)
        victims = sorted(
            i for i, s in self.rows.items() if s.published_at is not None and s.published_at < before and i < newest
        )[:limit]
        for i in victims:
            del self.rows[i]
        self.deletes.append(len(victims))
        return len(victims)

    async def backlog(self) -> tuple[int, float | None]:
        waiting = [s.created_at for s in self.rows.values() if s.published_at is None]
        return len(waiting), min(waiting, default=None)
