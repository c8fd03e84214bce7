"""The unit of work: one write transaction on the spool table, whatever stores it.

A handler opens it (``async with uow``: on SQLite that takes the write lock), reads or adds rows and
commits; what is not committed is rolled back when the block ends. Work registered with
:meth:`UnitOfWork.on_commit` runs once the commit is durable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, Self

from libs.outbox import OutboxMessage

__all__ = ["CommitHook", "PendingFlag", "UnitOfWork", "UnitOfWorkFactory"]

CommitHook = Callable[[], None]


class PendingFlag(Protocol):
    """What says, without asking the database, that the spool *may* hold an unpublished row (on SQLite a
    marker file next to the database, shared by the workers of one pod). Set and cleared only inside a
    write transaction; see :mod:`.handlers`."""

    def is_set(self) -> bool: ...

    def set(self) -> None: ...

    def clear(self) -> None: ...


class UnitOfWork(Protocol):
    """One write transaction. ``async with uow:`` begins it and rolls back whatever was not committed."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc: object) -> None: ...

    async def add(self, message: OutboxMessage, now: float) -> bytes | None:
        """Add ``message`` (``now``: epoch seconds); None when it is new, else the payload already
        spooled under its ``msg_id`` (the row is kept as it is)."""
        ...

    async def holds_unpublished(self) -> bool:
        """Some row is not published yet."""
        ...

    def on_commit(self, hook: CommitHook) -> None:
        """Run ``hook`` once this transaction has committed (not if it rolls back)."""
        ...

    async def commit(self) -> None:
        """Commit, then run the after-commit hooks."""
        ...


UnitOfWorkFactory = Callable[[], UnitOfWork]
"""A fresh unit of work per transaction."""
