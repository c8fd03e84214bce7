"""The SQL unit of work: one database transaction on inventory's store (SQLite or PostgreSQL)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Self

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncTransaction

from ..domain.workspace import Workspace
from ..service_layer.unit_of_work import CommitHook, Scope, StoreUnavailable
from .repository import InventoryStore
from .writes import write_changes

__all__ = ["SqlUnitOfWork"]


class SqlUnitOfWork:
    """A transaction on ``store``'s engine; ``after_commit`` gets the outbox rows written, once committed.

    Operational errors of the driver (SQLite "database or disk is full", "disk I/O error", a lock
    timeout; a PostgreSQL server that went away) are raised as :class:`StoreUnavailable`.
    """

    def __init__(self, store: InventoryStore, after_commit: CommitHook | None = None) -> None:
        self.store = store
        self.after_commit = after_commit
        self._conn: AsyncConnection | None = None
        self._tx: AsyncTransaction | None = None
        self._outbox_rows = 0

    async def __aenter__(self) -> Self:
        try:
            self._conn = await self.store.engine.connect()
            self._tx = await self._conn.begin()
        except sa.exc.OperationalError as exc:
            await self._close()
            raise StoreUnavailable(str(exc)) from exc
        self._outbox_rows = 0
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._close()

    async def _close(self) -> None:
        conn, tx = self._conn, self._tx
        self._conn = self._tx = None
        try:
            if tx is not None and tx.is_active:
                await tx.rollback()
        finally:
            if conn is not None:
                await conn.close()

    @property
    def conn(self) -> AsyncConnection:
        if self._conn is None:
            raise RuntimeError("the unit of work is not open: use `async with uow:`")
        return self._conn

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
        if self._tx is None:
            raise RuntimeError("the unit of work is not open: use `async with uow:`")
        try:
            await self._tx.commit()
        except sa.exc.OperationalError as exc:
            raise StoreUnavailable(str(exc)) from exc
        rows, self._outbox_rows = self._outbox_rows, 0
        if self.after_commit is not None:
            await self.after_commit(rows)
