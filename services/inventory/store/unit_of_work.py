"""The SQL unit of work: one database transaction on inventory's store (SQLite or PostgreSQL), its body
run in one hand-off by the store's :class:`libs.store.Transactions`."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..domain.workspace import Workspace
from ..service_layer.unit_of_work import CommitHook, Scope, StoreUnavailable, Transaction
from .repository import InventoryStore
from .writes import write_changes

__all__ = ["SqlTransaction", "SqlUnitOfWork"]

T = TypeVar("T")


@contextlib.contextmanager
def _unavailable() -> Iterator[None]:
    """Operational errors of the driver (SQLite "database or disk is full", "disk I/O error", a lock
    timeout; a PostgreSQL server that went away) as :class:`StoreUnavailable`."""
    try:
        yield
    except sa.exc.OperationalError as exc:
        raise StoreUnavailable(str(exc)) from exc


class SqlUnitOfWork:
    """Transactions on ``store``; ``after_commit`` gets the outbox rows each one wrote, once committed."""

    def __init__(self, store: InventoryStore, after_commit: CommitHook | None = None) -> None:
        self.store = store
        self.after_commit = after_commit

    async def run(self, work: Callable[[Transaction], T]) -> T:
        transactions: list[SqlTransaction] = []

        def body(conn: Connection) -> T:
            tx = SqlTransaction(self.store, conn)
            transactions.append(tx)
            return work(tx)

        with _unavailable():
            result = await self.store.transactions.run(body)
        if self.after_commit is not None:
            await self.after_commit(sum(tx.outbox_rows for tx in transactions))
        return result


class SqlTransaction:
    """One open transaction on the store (a synchronous ``Connection``)."""

    __slots__ = ("conn", "outbox_rows", "store")

    def __init__(self, store: InventoryStore, conn: Connection) -> None:
        self.store = store
        self.conn = conn
        self.outbox_rows = 0

    def load(self, scope: Scope, *, now: float, expire: bool) -> tuple[Workspace, list[str]]:
        with _unavailable():
            return self.store.load(
                self.conn,
                keys=scope.keys,
                skus=scope.skus,
                msg_ids=scope.msg_ids,
                keyless=scope.keyless,
                now=now,
                expire=expire,
            )

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[None]:
        with self.conn.begin_nested():
            yield

    def write(self, ws: Workspace, *, now: float) -> int:
        with _unavailable():
            rows = write_changes(self.conn, ws, now)
        self.outbox_rows += rows
        return rows
