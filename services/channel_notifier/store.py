"""The notifier's own store: the channel registry and one delivery row per (channel, SKU).

SQLite by default, PostgreSQL for several replicas. Every write that sits on the hot path is one
statement over many rows (a fetched batch of updates, a batch of claims, a batch of results), because
a transaction per delivery would cap the notifier at a few hundred deliveries a second on SQLite.
The transitions are those of :class:`.domain.pending.PendingDelivery`.

Each transaction is a plain function of a SQLAlchemy ``Connection``, run in one step by
:class:`libs.store.Transactions`: on SQLite in the store's own writer thread (one hand-off per
transaction rather than one per statement, which under a busy event loop cost ~10 ms per transaction;
the single thread is also SQLite's single writer), on PostgreSQL through ``AsyncConnection.run_sync``.
The service layer gets them through :class:`SqlUnitOfWork`: one ``run`` is one such transaction, its
body a function of a :class:`SqlTransaction` (the statements of :mod:`.transactions` in the notifier's
terms).
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.statements import execute_many
from libs.store import Transactions, WriteHealth, create_engine, is_postgres, migrate

from .domain.channel import Channel
from .domain.pending import Offer
from .schema import (
    COMPONENT,
    MIGRATIONS,
    PENDING,
    ClaimedDelivery,
    DeliveryAttempt,
    DeliveryRecord,
    DuplicateChannel,
    Settlement,
    deliveries_table,
)
from .service_layer.unit_of_work import AfterCommit, NewChannel, Transaction
from .transactions import (
    TRACE_CONTEXT,
    attempt_statement,
    attempts,
    claim,
    delete_channel,
    delivery_row,
    get_channel,
    insert_channel,
    json_list,
    list_channels,
    next_due,
    record_statement,
    records,
    replay_statement,
    resend,
    settle,
    update_channel,
)

__all__ = [
    "ClaimedDelivery",
    "DeliveryRecord",
    "DuplicateChannel",
    "NotifierStore",
    "Settlement",
    "SqlTransaction",
    "SqlUnitOfWork",
]

T = TypeVar("T")
log = logging.getLogger("stockwire.channel_notifier.store")
_D = deliveries_table.c


async def _exclusive(path: Path) -> IO[bytes]:
    """Hold an exclusive lock on ``path`` for the life of the process (the kernel drops it when we die).

    A SQLite store serves one notifier; a second one started on the same file waits here until the
    first is gone, rather than sending the same deliveries out of order beside it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("ab")
    warned = False
    while True:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except BlockingIOError:
            if not warned:
                log.warning("another channel-notifier holds %s; waiting for it to stop", path)
                warned = True
            await asyncio.sleep(0.5)


class NotifierStore:
    def __init__(self, engine: AsyncEngine, *, writer_thread: bool = False) -> None:
        self.engine = engine
        self.transactions = Transactions(engine, thread="notifier-sqlite" if writer_thread else None)
        self.write_health = WriteHealth().watch(engine)
        if self._sync is not None:
            self.write_health.watch(self._sync)
        self._lock_file: IO[bytes] | None = None
        insert = postgresql.insert if is_postgres(engine) else sqlite.insert
        self.record_upsert = record_statement(insert)
        self.replay_upsert = replay_statement(insert)
        self.attempt_upsert = attempt_statement(insert)

    @property
    def _sync(self) -> Engine | None:
        """The synchronous engine of the SQLite writer thread (None on PostgreSQL)."""
        return self.transactions.sync_engine

    @classmethod
    async def open(cls, url: str) -> NotifierStore:
        engine = create_engine(url)
        if is_postgres(engine):
            await migrate(engine, COMPONENT, MIGRATIONS)
            return cls(engine)
        lock = await _exclusive(Path(engine.url.database or "notifier.db").with_suffix(".lock"))
        await migrate(engine, COMPONENT, MIGRATIONS)
        store = cls(engine, writer_thread=True)
        store._lock_file = lock
        # This process is the only notifier on this file: leases left by a previous one (killed before
        # it could hand them back) belong to nobody, so its deliveries resume at once.
        await store.run(
            lambda conn: conn.execute(sa.update(deliveries_table).values(lease_owner=None, lease_until=None))
        )
        return store

    async def close(self) -> None:
        await self.transactions.close()
        if self._lock_file is not None:
            self._lock_file.close()  # releases the flock
            self._lock_file = None

    async def run(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in one transaction (committed when it returns, rolled back when it raises)."""
        return await self.transactions.run(work)

    async def writable(self) -> bool:
        """After a failed write (a full disk, say): false until a write commits; this check writes one
        once no write has failed for a while."""
        if self.write_health.probe_due:
            await self.run(self.write_health.probe)
        else:
            await self.run(lambda conn: conn.execute(sa.text("SELECT 1")))
        return self.write_health.ok

    def unit_of_work(self, after_commit: AfterCommit | None = None) -> SqlUnitOfWork:
        """Transactions on this store; ``after_commit`` gets the channels each one woke."""
        return SqlUnitOfWork(self, after_commit)


class SqlUnitOfWork:
    """The unit of work on a :class:`NotifierStore`: each ``run`` is one :meth:`NotifierStore.run`."""

    def __init__(self, store: NotifierStore, after_commit: AfterCommit | None = None) -> None:
        self.store = store
        self.after_commit = after_commit

    async def run(self, work: Callable[[Transaction], T]) -> T:
        woken: set[int] = set()
        result = await self.store.run(lambda conn: work(SqlTransaction(self.store, conn, woken)))
        if woken and self.after_commit is not None:
            self.after_commit(woken)
        return result


class SqlTransaction:
    """One open transaction on the store: the statements of :mod:`.transactions` in the notifier's terms."""

    __slots__ = ("_conn", "_store", "_woken")

    def __init__(self, store: NotifierStore, conn: Connection, woken: set[int]) -> None:
        self._store = store
        self._conn = conn
        self._woken = woken

    def wake(self, channel_ids: Iterable[int]) -> None:
        self._woken.update(channel_ids)

    # -- channels ---------------------------------------------------------------------------------

    def channels(self) -> list[Channel]:
        return list_channels(self._conn)

    def channel(self, name: str) -> Channel | None:
        return get_channel(self._conn, name)

    def add_channel(self, new: NewChannel, now: float) -> Channel:
        values = {
            "name": new.name,
            "kind": new.kind,
            "url": new.url,
            "secrets": json_list(new.secrets),
            "filters": json.dumps(new.filters.as_dict()),
            "buffer": new.buffer,
            "enabled": new.enabled,
            "disabled_reason": None,
            "created_at": now,
            "updated_at": now,
        }
        return insert_channel(self._conn, values)

    def change_channel(self, channel_id: int, values: dict[str, Any], now: float) -> Channel | None:
        row: dict[str, Any] = {}
        for key, value in values.items():
            if key == "secrets":
                row["secrets"] = json_list(value)
            elif key == "filters":
                row["filters"] = json.dumps(value.as_dict())
            else:
                row[key] = value
        row.setdefault("updated_at", now)
        return update_channel(self._conn, channel_id, row)

    def remove_channel(self, channel_id: int) -> None:
        delete_channel(self._conn, channel_id)

    # -- deliveries: the hot path -----------------------------------------------------------------

    def offer(self, offers: Sequence[Offer], now: float) -> None:
        if offers:
            params = [delivery_row(channel_id, sku, version, doc, now) for channel_id, sku, version, doc in offers]
            execute_many(self._conn, self._store.record_upsert, params)

    def set_trace_context(self, contexts: Sequence[tuple[int, str, int, str]]) -> None:
        if contexts:
            params = [
                {"t_channel": channel_id, "t_sku": sku, "t_version": version, "t_context": context}
                for channel_id, sku, version, context in contexts
            ]
            execute_many(self._conn, TRACE_CONTEXT, params)

    def claim(self, channel_id: int, owner: str, limit: int, now: float, lease_s: float) -> list[ClaimedDelivery]:
        if limit <= 0:
            return []
        rows = claim(self._conn, channel_id=channel_id, owner=owner, limit=limit, now=now, lease_s=lease_s)
        claimed = [
            ClaimedDelivery(
                int(r.id),
                int(r.channel_id),
                r.sku,
                int(r.version),
                bytes(r.document),
                int(r.attempts),
                float(r.pending_since if r.pending_since is not None else now),
                r.trace_context,
            )
            for r in rows
        ]
        claimed.sort(key=lambda c: c.id)
        return claimed

    def next_due(self, channel_id: int) -> float | None:
        return next_due(self._conn, channel_id)

    def settle(self, settlements: Sequence[Settlement]) -> None:
        if settlements:
            settle(self._conn, settlements, self._store.attempt_upsert)

    def release_leases(self, owner: str) -> None:
        self._conn.execute(
            sa.update(deliveries_table).where(_D.lease_owner == owner).values(lease_owner=None, lease_until=None)
        )

    # -- deliveries: admin ------------------------------------------------------------------------

    def deliveries(self, channel_id: int, status: str | None, limit: int, after_id: int = 0) -> list[DeliveryRecord]:
        where = [_D.channel_id == channel_id, _D.id > after_id]
        if status:
            where.append(_D.status == status)
        return records(self._conn, *where, limit=limit)

    def attempts(self, delivery_ids: Sequence[int], per_delivery: int) -> dict[int, list[DeliveryAttempt]]:
        return attempts(self._conn, delivery_ids, per_delivery) if delivery_ids and per_delivery > 0 else {}

    def resend(self, delivery_id: int, now: float) -> DeliveryRecord | None:
        resend(self._conn, _D.id == delivery_id, now)
        found = records(self._conn, _D.id == delivery_id, limit=1)
        return found[0] if found else None

    def resend_channel(self, channel_id: int, now: float) -> int:
        return resend(self._conn, _D.channel_id == channel_id, now)

    def replay(self, channel_id: int, offers: Sequence[tuple[str, int, bytes]], now: float) -> None:
        params = [delivery_row(channel_id, sku, version, doc, now) for sku, version, doc in offers]
        if params:
            execute_many(self._conn, self._store.replay_upsert, params)

    def channel_skus(self, channel_id: int) -> list[tuple[int, str]]:
        rows = self._conn.execute(sa.select(_D.id, _D.sku).where(_D.channel_id == channel_id)).all()
        return [(int(r.id), r.sku) for r in rows]

    def delete_deliveries(self, ids: Sequence[int]) -> None:
        for start in range(0, len(ids), 500):
            self._conn.execute(sa.delete(deliveries_table).where(_D.id.in_(ids[start : start + 500])))

    def pending_counts(self) -> dict[int, int]:
        rows = self._conn.execute(_PENDING_COUNTS).all()
        return {int(channel_id): int(count) for channel_id, count in rows}


_PENDING_COUNTS = sa.select(_D.channel_id, sa.func.count()).where(_D.status == PENDING).group_by(_D.channel_id)
