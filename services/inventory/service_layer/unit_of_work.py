"""The unit of work: one transaction over inventory's state, whatever stores it.

A transaction's body is a plain (synchronous) function of a :class:`Transaction`: it loads the slice of
state the use case touches into a :class:`~..domain.workspace.Workspace`, lets the domain change it and
writes the changes. :meth:`UnitOfWork.run` runs it in one step, committed when the body returns and
rolled back when it raises; the after-commit hook (the nudge that wakes the outbox relay) runs once the
commit is durable. The SQL unit of work runs a body in one hand-off to the store's writer thread
(SQLite) or one ``run_sync`` (PostgreSQL): a body that awaited each statement hopped to aiosqlite's
thread and back for every execute and fetch, measured under a flash sale at ~200 hops per batch
transaction and a third of the process's CPU samples in that thread.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol, TypeVar

from ..domain.workspace import Workspace

__all__ = ["CommitHook", "Scope", "StoreUnavailable", "Transaction", "UnitOfWork", "UnitOfWorkFactory"]

T = TypeVar("T")

CommitHook = Callable[[int], Awaitable[None]]
"""Called after a commit with the number of outbox rows it wrote."""


class StoreUnavailable(Exception):
    """The store cannot read or write at all (full disk, I/O error, lock timeout): no event is at fault.

    A unit of work raises it, chained to the driver's error, from :meth:`UnitOfWork.run` and from any
    operation of its transaction; the consumer then retries the whole batch as it is, spending no
    event's deliveries.
    """


@dataclass(frozen=True, slots=True)
class Scope:
    """What a transaction may touch: reservation keys (``order:…``, ``cart:…``), SKUs, the inbox ids of
    the events it applies, and the ids of events that name neither an order nor a SKU."""

    keys: Collection[str] = ()
    skus: Collection[str] = ()
    msg_ids: Collection[str] = ()
    keyless: Collection[str] = ()


class Transaction(Protocol):
    """The operations of one open transaction."""

    def load(self, scope: Scope, *, now: float, expire: bool) -> tuple[Workspace, list[str]]:
        """Lock (where the store needs it) and read what ``scope`` can touch.

        With ``expire``, reservations whose TTL passed by ``now`` (epoch seconds) are loaded too, up to
        the store's batch; returns the workspace and the keys of the loaded reservations that are overdue.
        """
        ...

    def savepoint(self) -> AbstractContextManager[None]:
        """A nested transaction: an exception inside undoes only what was done inside."""
        ...

    def write(self, ws: Workspace, *, now: float) -> int:
        """Write what ``ws`` changed (ledger, projection, reservations, inbox, parked events, outbox);
        returns the outbox rows added."""
        ...


class UnitOfWork(Protocol):
    """Runs transactions."""

    async def run(self, work: Callable[[Transaction], T]) -> T:
        """Run ``work`` in one transaction: committed when it returns (then the after-commit hook runs),
        rolled back when it raises (its exception propagates). Raises :class:`StoreUnavailable` when
        the store cannot begin or commit it."""
        ...


UnitOfWorkFactory = Callable[[], UnitOfWork]
"""A fresh unit of work per transaction (entry points hold one of these, not a unit of work)."""
