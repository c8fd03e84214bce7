"""The write side's reads: load, inside a transaction, what it can touch; and the parked-event chores.

A transaction's rows are locked (PostgreSQL, see :mod:`.locks`) and read with a handful of ``IN (…)``
queries into a :class:`~..domain.workspace.Workspace`; the service layer lets the domain decide, and
:mod:`.writes` writes the changes with one multi-row statement per table (inbox, ledger, projection,
reservations, parked events, outbox). A handful of statements per batch instead of several per event
is what makes this fast on SQLite and PostgreSQL alike. Both are synchronous: a transaction's whole
body runs in one hand-off (see :mod:`.unit_of_work`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.statements import fetch_all
from libs.store import Transactions, WriteHealth, create_engine, is_postgres, migrate

from ..adapters.wire import Envelope, MalformedEvent, parse_event
from ..domain.events import CommerceEvent
from ..domain.model import Backorder, Reservation, SkuState
from ..domain.workspace import Outcome, ParkedEvent, Workspace
from . import schema
from .locks import lock_keys, try_lock_keys
from .rows import backorder_from_row, reservation_from_row, sku_from_row

__all__ = ["InventoryStore", "ParkedRow"]

log = logging.getLogger("stockwire.inventory.store")


# What a transaction loads, built once: libs.statements caches their SQL per length of the key lists.
_RESERVATIONS = sa.select(schema.reservations).where(
    schema.reservations.c.key.in_(sa.bindparam("keys", expanding=True))
)
_SKUS = sa.select(schema.skus).where(schema.skus.c.sku.in_(sa.bindparam("skus", expanding=True)))
_INBOX_OUTCOMES = sa.select(schema.inbox.c.msg_id, schema.inbox.c.outcome).where(
    schema.inbox.c.msg_id.in_(sa.bindparam("ids", expanding=True))
)
_PARKED_OF = sa.select(schema.parked).where(
    schema.parked.c.order_key.in_(sa.bindparam("keys", expanding=True)), schema.parked.c.dead_lettering.is_(False)
)
_BACKORDERS_OF = (
    sa.select(schema.backorders)
    .where(schema.backorders.c.sku.in_(sa.bindparam("skus", expanding=True)))
    .order_by(
        schema.backorders.c.sku, schema.backorders.c.since, schema.backorders.c.seq, schema.backorders.c.order_key
    )
)


@dataclass(frozen=True, slots=True)
class ParkedRow:
    msg_id: str
    order_key: str
    subject: str
    stream_seq: int
    headers: dict[str, str]
    body: bytes
    reason: str
    parked_at: float


class InventoryStore:
    """Inventory's store. Its writing transactions run through :attr:`transactions`, each in one hand-off
    (on SQLite to the store's writer thread); the reads of the API and the tools use :attr:`engine`."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        durable_commits: bool = True,
        expire_batch: int = 200,
        reader: Callable[[Envelope], CommerceEvent] = parse_event,
    ) -> None:
        self.engine = engine
        self.reader = reader
        """Reads a parked message back into its event (with its source's profile)."""
        self.expire_batch = expire_batch
        self.postgres = is_postgres(engine)
        self.transactions = Transactions(engine, thread="inventory-sqlite", durable_commits=durable_commits)
        self.write_health = WriteHealth().watch(engine)
        if self.transactions.sync_engine is not None:
            self.write_health.watch(self.transactions.sync_engine)

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        durable_commits: bool = True,
        pool_size: int = 10,
        expire_batch: int = 200,
        reader: Callable[[Envelope], CommerceEvent] = parse_event,
    ) -> InventoryStore:
        engine = create_engine(url, durable_commits=durable_commits, pool_size=pool_size)
        await migrate(engine, schema.COMPONENT, schema.MIGRATIONS)
        return cls(engine, durable_commits=durable_commits, expire_batch=expire_batch, reader=reader)

    async def close(self) -> None:
        await self.transactions.close()

    # --- what a transaction touches ------------------------------------------------------------------
    def load(
        self,
        conn: Connection,
        *,
        keys: Collection[str],
        skus: Collection[str],
        msg_ids: Collection[str] = (),
        keyless: Collection[str] = (),
        now: float,
        expire: bool,
    ) -> tuple[Workspace, list[str]]:
        """Lock (PostgreSQL) and read everything a transaction over these keys can touch.

        Returns the workspace and the keys of the loaded reservations whose TTL has passed.
        """
        if self.postgres:
            lock_keys(conn, "r", keys)
            lock_keys(conn, "e", keyless)
        reservations = self._reservations(conn, keys)
        parked = self._parked(conn, [k for k in keys if k.startswith("order:")])
        if expire:
            candidates = self._overdue_keys(conn, now, exclude=keys)
            if self.postgres and candidates:
                candidates = try_lock_keys(conn, "r", candidates)
            reservations.update(self._reservations(conn, candidates))
        overdue = sorted(key for key, r in reservations.items() if r.overdue(now))
        sku_set = set(skus)
        for reservation in reservations.values():
            sku_set.update(reservation.lines)
        for events in parked.values():
            for p in events.values():
                sku_set |= p.event.skus
        if self.postgres:
            lock_keys(conn, "s", sku_set)
        sku_states = {s.sku: s for s in self._skus(conn, sku_set)}
        backorders = self._backorders(conn, [sku for sku, s in sku_states.items() if s.backordered > 0])
        waiting = sorted({b.order for queue in backorders.values() for b in queue} - set(reservations))
        if waiting:
            self._load_waiting(conn, waiting, reservations, parked, sku_states, sku_set)
        ws = Workspace(
            skus=sku_states,
            reservations=reservations,
            parked=parked,
            inbox=self._inbox(conn, msg_ids),
            strict=True,
            backorders=backorders,
        )
        ws.loaded_skus = sku_set
        return ws, overdue

    def _load_waiting(
        self,
        conn: Connection,
        waiting: list[str],
        reservations: dict[str, Reservation],
        parked: dict[str, dict[str, ParkedEvent]],
        sku_states: dict[str, SkuState],
        sku_set: set[str],
    ) -> None:
        """The orders waiting for a loaded SKU's stock, with their parked events and SKUs, so a fill can
        release what waited for it (a shipment of the backordered units).

        Locked after the SKUs, so never waited for: an order (or one of its SKUs) another replica
        holds right now is left out, and filling stops at it — the oldest keeps its turn.
        """
        if self.postgres:
            waiting = try_lock_keys(conn, "r", waiting)
        found = self._reservations(conn, waiting)
        their_parked = self._parked(conn, [k for k in found if k.startswith("order:")])
        needs = {
            key: set(order.lines) | {sku for p in their_parked.get(key, {}).values() for sku in p.event.skus}
            for key, order in found.items()
        }
        extra = sorted(set().union(*needs.values()) - sku_set)
        locked = set(try_lock_keys(conn, "s", extra)) if self.postgres else set(extra)
        for state in self._skus(conn, locked):
            sku_states[state.sku] = state
        sku_set |= locked
        for key, order in found.items():
            if needs[key] <= sku_set:
                reservations[key] = order
                if key in their_parked:
                    parked[key] = their_parked[key]

    def _backorders(self, conn: Connection, skus: Collection[str]) -> dict[str, list[Backorder]]:
        if not skus:
            return {}
        out: dict[str, list[Backorder]] = {}
        for row in fetch_all(conn, _BACKORDERS_OF, {"skus": sorted(skus)}):
            out.setdefault(row.sku, []).append(backorder_from_row(row))
        return out

    def _reservations(self, conn: Connection, keys: Collection[str]) -> dict[str, Reservation]:
        if not keys:
            return {}
        return {row.key: reservation_from_row(row) for row in fetch_all(conn, _RESERVATIONS, {"keys": sorted(keys)})}

    def _parked(self, conn: Connection, order_keys: Collection[str]) -> dict[str, dict[str, ParkedEvent]]:
        if not order_keys:
            return {}
        out: dict[str, dict[str, ParkedEvent]] = {}
        for row in fetch_all(conn, _PARKED_OF, {"keys": sorted(order_keys)}):
            envelope = Envelope(row.subject, row.body, msgspec.json.decode(row.headers), row.stream_seq)
            try:
                event = self.reader(envelope)
            except MalformedEvent:  # it parsed when it was parked; never expected
                log.error("parked event %s no longer parses; leaving it to the sweeper", row.msg_id)
                continue
            out.setdefault(row.order_key, {})[row.msg_id] = ParkedEvent(event, row.parked_at, row.reason)
        return out

    def _overdue_keys(self, conn: Connection, now: float, *, exclude: Collection[str]) -> list[str]:
        t = schema.reservations
        query = sa.select(t.c.key).where(t.c.expires_at <= now).order_by(t.c.expires_at).limit(self.expire_batch)
        return [key for (key,) in conn.execute(query) if key not in exclude]

    def _skus(self, conn: Connection, names: Collection[str]) -> list[SkuState]:
        if not names:
            return []
        return [sku_from_row(row) for row in fetch_all(conn, _SKUS, {"skus": sorted(names)})]

    def _inbox(self, conn: Connection, msg_ids: Collection[str]) -> dict[str, Outcome]:
        if not msg_ids:
            return {}
        rows = fetch_all(conn, _INBOX_OUTCOMES, {"ids": sorted(set(msg_ids))})
        return {msg_id: Outcome(outcome) for msg_id, outcome in rows}

    # --- parked too long -----------------------------------------------------------------------------
    async def claim_stale_parked(self, *, older_than: float, limit: int = 100) -> int:
        """Mark events parked before ``older_than`` as given up (never applied from now on).

        Returns how many were marked; :meth:`dead_lettering` lists them for publishing.
        """
        return await self.transactions.run(lambda conn: self._claim_stale_parked(conn, older_than, limit))

    def _claim_stale_parked(self, conn: Connection, older_than: float, limit: int) -> int:
        t = schema.parked
        query = sa.select(t.c.order_key).where(t.c.parked_at <= older_than, t.c.dead_lettering.is_(False))
        keys = sorted({key for (key,) in conn.execute(query.limit(limit))})
        if not keys:
            return 0
        if self.postgres:
            lock_keys(conn, "r", keys)  # an order being applied right now finishes first
        rows = conn.execute(
            sa.select(t.c.msg_id, t.c.reason, t.c.parked_at).where(
                t.c.order_key.in_(keys), t.c.parked_at <= older_than, t.c.dead_lettering.is_(False)
            )
        ).all()
        if not rows:
            return 0
        now = time.time()
        conn.execute(sa.update(t).where(t.c.msg_id.in_([r.msg_id for r in rows])).values(dead_lettering=True))
        i = schema.inbox
        conn.execute(
            sa.update(i)
            .where(i.c.msg_id == sa.bindparam("b_msg_id"))
            .values(outcome=Outcome.DEAD_LETTERED.value, detail=sa.bindparam("b_detail"), settled_at=now),
            [
                {"b_msg_id": r.msg_id, "b_detail": f"parked for {now - r.parked_at:.0f}s ({r.reason}); gave up"}
                for r in rows
            ],
        )
        return len(rows)

    async def dead_lettering(self, limit: int = 100) -> list[ParkedRow]:
        t = schema.parked
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(t).where(t.c.dead_lettering.is_(True)).order_by(t.c.parked_at).limit(limit)
            )
            return [
                ParkedRow(
                    r.msg_id, r.order_key, r.subject, r.stream_seq, json.loads(r.headers), r.body, r.reason, r.parked_at
                )
                for r in rows
            ]

    async def forget_parked(self, msg_ids: Iterable[str]) -> None:
        ids = sorted(msg_ids)
        if ids:
            t = schema.parked
            await self.transactions.run(
                lambda conn: conn.execute(sa.delete(t).where(t.c.msg_id.in_(ids), t.c.dead_lettering.is_(True)))
            )

    async def parked_count(self) -> int:
        t = schema.parked
        async with self.engine.connect() as conn:
            return int((await conn.execute(sa.select(sa.func.count()).select_from(t))).scalar_one())

    async def writable(self) -> bool:
        """SQLite: the transaction takes the write lock (BEGIN IMMEDIATE). PostgreSQL: not read-only.
        After a failed write (a full disk, say): false until a write commits; this check writes one
        once no write has failed for a while."""
        return await self.transactions.run(self._writable) and self.write_health.ok

    def _writable(self, conn: Connection) -> bool:
        if self.postgres and conn.execute(sa.text("SHOW transaction_read_only")).scalar_one() != "off":
            return False
        conn.execute(sa.select(sa.func.count()).select_from(schema.skus).where(sa.false()))
        if self.write_health.probe_due:
            self.write_health.probe(conn)
        return True
