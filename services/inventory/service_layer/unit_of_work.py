"""The unit of work: one transaction over inventory's state, whatever stores it.

A handler opens it (``async with uow``), loads the slice of state the use case touches into a
:class:`~..domain.workspace.Workspace`, lets the domain change it, writes the changes and commits. What
is not committed is rolled back when the block ends. Work registered with :meth:`UnitOfWork.after_commit`
runs once the commit is durable (the nudge that wakes the outbox relay).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol, Self

from ..domain.workspace import Workspace

__all__ = ["CommitHook", "Scope", "StoreUnavailable", "UnitOfWork", "UnitOfWorkFactory"]

CommitHook = Callable[[int], Awaitable[None]]
"""Called after a commit with the number of outbox rows it wrote."""


class StoreUnavailable(Exception):
    """The store cannot read or write at all (full disk, I/O error, lock timeout): no event is at fault.

    A unit of work raises it, chained to the driver's error, from any of its operations; the consumer
    then retries the whole batch as it is, spending no event's deliveries.
    """


@dataclass(frozen=True, slots=True)
class Scope:
    """What a transaction may touch: reservation keys (``order:…``, ``cart:…``), SKUs, the inbox ids of
    the events it applies, and the ids of events that name neither an order nor a SKU."""

    keys: Collection[str] = ()
    skus: Collection[str] = ()
    msg_ids: Collection[str] = ()
    keyless: Collection[str] = ()


class UnitOfWork(Protocol):
    """One transaction. ``async with uow:`` begins it and rolls back whatever was not committed."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc: object) -> None: ...

    async def load(self, scope: Scope, *, now: float, expire: bool) -> tuple[Workspace, list[str]]:
        """Lock (where the store needs it) and read what ``scope`` can touch.

        With ``expire``, reservations whose TTL passed by ``now`` (epoch seconds) are loaded too, up to
        the store's batch; returns the workspace and the keys of the loaded reservations that are overdue.
        """
        ...

    def savepoint(self) -> AbstractAsyncContextManager[None]:
        """A nested transaction: an exception inside undoes only what was done inside."""
        ...

    async def write(self, ws: Workspace, *, now: float) -> int:
        """Write what ``ws`` changed (ledger, projection, reservations, inbox, parked events, outbox);
        returns the outbox rows added."""
        ...

    async def commit(self) -> None:
        """Commit, then run the after-commit hooks."""
        ...


UnitOfWorkFactory = Callable[[], UnitOfWork]
"""A fresh unit of work per transaction (entry points hold one of these, not a unit of work)."""
