"""The unit of work: the relay's operations on one outbox table, whatever stores it.

Each operation is one transaction (a mark, a clean-up) or one snapshot read (a batch, the backlog):
the relay never holds a transaction open across a publish. What the relay must know of the database
is whether ids are committed in id order (:attr:`UnitOfWork.commit_ordered`); when they are not
(PostgreSQL) it reads below a bound that :meth:`UnitOfWork.take_bound` and
:meth:`UnitOfWork.horizon_passed` fix (see :mod:`..cursor`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ..rows import OutboxRow

__all__ = ["UnitOfWork"]


class UnitOfWork(Protocol):
    """One outbox table. The store's errors propagate from every operation."""

    @property
    def commit_ordered(self) -> bool:
        """Ids become visible in id order (SQLite: one writer at a time)."""
        ...

    async def exists(self) -> bool:
        """The table is there (its writer creates it; the relay never does)."""
        ...

    async def read(self, after_id: int, up_to: int | None, limit: int) -> list[OutboxRow]:
        """Unpublished rows with ``after_id < id`` (and ``id <= up_to``), in id order, at most ``limit``."""
        ...

    async def take_bound(self, after_id: int) -> tuple[int | None, int | None]:
        """``max(id)``, then (only if it is above ``after_id``) a transaction id assigned after that read.
        Asked only when ids are not committed in order."""
        ...

    async def horizon_passed(self, xid: int) -> bool:
        """Every transaction older than ``xid`` has ended. Asked only when ids are not committed in order."""
        ...

    async def mark_published(self, ids: Sequence[int], at: float) -> None:
        """Set ``published_at`` (epoch seconds) on these rows, in one transaction."""
        ...

    async def delete_published(self, before: float, limit: int) -> int:
        """Delete up to ``limit`` rows published before ``before``, never the newest row; returns how many."""
        ...

    async def backlog(self) -> tuple[int, float | None]:
        """Unpublished rows and the ``created_at`` of the oldest (epoch seconds)."""
        ...
