"""The SQL unit of work: one database transaction on inventory's store (SQLite or PostgreSQL)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Self

import sqlalchemy as sa

from libs.store import Transaction

from ..domain.workspace import Workspace
from ..service_layer.unit_of_work import CommitHook, Scope, StoreUnavailable
from .repository import InventoryStore
from .writes import write_changes

__all__ = ["SqlUnitOfWork"]


class SqlUnitOfWork(Transaction):
    """A transaction on ``store``'s engine (:class:`libs.store.Transaction`); ``after_commit`` gets the
    outbox rows written, once committed.

    Operational errors of the driver (SQLite "database or disk is full", "disk I/O error", a lock
    timeout; a PostgreSQL server that went away) are raised as :class:`StoreUnavailable`.
    """

    def __init__(self, store: InventoryStore, after_commit: CommitHook | None = None) -> None:
        super().__init__(store.engine)
        self.store = store
        self.after_commit = after_commit
        self._outbox_rows = 0

    async def __aenter__(self) -> Self:
        try:
            await super().__aenter__()
        except sa.exc.OperationalError as exc:
            raise StoreUnavailable(str(exc)) from exc
        self._outbox_rows = 0
        if self.after_commit is not None:
            self.on_commit(self._committed)
        return self

    async def _committed(self) -> None:
        rows, self._outbox_rows = self._outbox_rows, 0
        assert self.after_commit is not None
        await self.after_commit(rows)

    async def load(self, scope: Scope, *, now: float, expire: bool) -> tuple[Workspace, list[str]]:
        try:
            return await self.store.load(
                self.conn,
                keys=scope.keys,
                skus=scope.skus,
                msg_ids=scope.msg_ids,
                keyless=scope.keyless,
                now=now,
                expire=expire,
            )
        except sa.exc.OperationalError as exc:
            raise StoreUnavailable(str(exc)) from exc

    @contextlib.asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        async with self.conn.begin_nested():
            yield

    async def write(self, ws: Workspace, *, now: float) -> int:
        try:
            rows = await write_changes(self.conn, ws, now)
        except sa.exc.OperationalError as exc:
            raise StoreUnavailable(str(exc)) from exc
        self._outbox_rows += rows
        return rows

    async def commit(self) -> None:
        try:
            await super().commit()
        except sa.exc.OperationalError as exc:
            raise StoreUnavailable(str(exc)) from exc
