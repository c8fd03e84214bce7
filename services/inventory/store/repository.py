"""The write side: load what a transaction touches, let the domain decide, write back what changed.

A fetched batch is applied in one transaction: the rows every event of the batch can touch are
locked (PostgreSQL, see :mod:`.locks`) and read with a handful of ``IN (…)`` queries, the pure domain
applies the events in stream order, and the changes are written with one multi-row statement per
table (inbox, ledger, projection, reservations, parked events, outbox). A handful of statements per
batch instead of several per event is what makes this fast on SQLite and PostgreSQL alike.

If that transaction fails, the batch is applied again in one transaction with a savepoint per
event, so that one bad event is retried (and dead-lettered after ``max_deliver``) while the rest of
the batch is committed.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from libs.store import WriteHealth, create_engine, is_postgres, migrate

from ..domain.events import CommerceEvent, Envelope, MalformedEvent, Unhandled, parse_event
from ..domain.ledger import CartResult, Inventory, Result
from ..domain.model import Reservation, SkuState, cart_key, order_key
from ..domain.workspace import Outcome, ParkedEvent, Workspace
from . import schema
from .locks import lock_keys, try_lock_keys
from .rows import reservation_from_row, sku_from_row
from .writes import write_changes

__all__ = ["BatchResult", "InventoryStore", "ParkedRow"]

log = logging.getLogger("stockwire.inventory.store")


@dataclass(frozen=True, slots=True)
class _Item:
    event: CommerceEvent
    malformed: str | None = None


@dataclass
class BatchResult:
    results: list[Result]
    settled: list[tuple[str, Outcome]] = field(default_factory=list)
    """Formerly parked events settled by this batch: (event_type, outcome)."""
    outbox_rows: int = 0
    oversell_rejections: int = 0
    expired: int = 0


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


def _item(envelope: Envelope) -> _Item:
    try:
        return _Item(parse_event(envelope))
    except MalformedEvent as exc:
        event = CommerceEvent(envelope.msg_id, envelope.event_type, Unhandled(), envelope.stream_seq, 0.0, envelope)
        return _Item(event, str(exc))


class InventoryStore:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        reservation_ttl_s: float = 900.0,
        expire_batch: int = 200,
    ) -> None:
        self.engine = engine
        self.reservation_ttl_s = reservation_ttl_s
        self.expire_batch = expire_batch
        self.postgres = is_postgres(engine)
        self.write_health = WriteHealth().watch(engine)

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        durable_commits: bool = True,
        pool_size: int = 10,
        reservation_ttl_s: float = 900.0,
        expire_batch: int = 200,
    ) -> InventoryStore:
        engine = create_engine(url, durable_commits=durable_commits, pool_size=pool_size)
        await migrate(engine, schema.COMPONENT, schema.MIGRATIONS)
        return cls(engine, reservation_ttl_s=reservation_ttl_s, expire_batch=expire_batch)

    async def close(self) -> None:
        await self.engine.dispose()

    # --- events from COMMERCE ----------------------------------------------------------------------
    async def apply_events(self, envelopes: Sequence[Envelope], *, now: float | None = None) -> BatchResult:
        """Apply a batch in stream order; one result per envelope, in the same order."""
        now = time.time() if now is None else now
        items = [_item(e) for e in envelopes]
        try:
            async with self.engine.begin() as conn:
                return await self._apply(conn, items, now, isolate=False)
        except Exception as exc:
            log.warning(
                "batch of %d failed as a whole (%s: %s); applying event by event", len(items), type(exc).__name__, exc
            )
        async with self.engine.begin() as conn:
            return await self._apply(conn, items, now, isolate=True)

    async def _apply(self, conn: AsyncConnection, items: list[_Item], now: float, *, isolate: bool) -> BatchResult:
        ws, overdue = await self._workspace(conn, items, now=now, expire=not isolate)
        if not isolate:
            book = Inventory(ws, now=now, reservation_ttl_s=self.reservation_ttl_s)
            expired = sum(book.expire(key) for key in overdue)
            results = [self._apply_one(book, item) for item in items]
            settled = [(p.event.event_type, o) for p, o in self._settled(ws)]
            rows = await write_changes(conn, ws, now)
            return BatchResult(results, settled, rows, book.oversell_rejections, expired)
        # Isolated: every lock the batch needs is already held; one savepoint per event.
        batch = BatchResult([])
        for item in items:
            try:
                async with conn.begin_nested():
                    ws, _ = await self._workspace(conn, [item], now=now, expire=False)
                    book = Inventory(ws, now=now, reservation_ttl_s=self.reservation_ttl_s)
                    result = self._apply_one(book, item)
                    settled = [(p.event.event_type, o) for p, o in self._settled(ws)]
                    batch.outbox_rows += await write_changes(conn, ws, now)
            except sa.exc.OperationalError:
                # The store cannot write (full disk, I/O error, lock timeout): no event is at fault, so
                # the batch fails as a whole and is retried in place, spending no event's deliveries.
                raise
            except Exception as exc:
                log.exception("event %s (%s) failed; it will be retried", item.event.msg_id, item.event.event_type)
                batch.results.append(Result(Outcome.FAILED, f"{type(exc).__name__}: {exc}"))
                continue
            batch.results.append(result)
            batch.settled += settled
            batch.oversell_rejections += book.oversell_rejections
        return batch

    @staticmethod
    def _apply_one(book: Inventory, item: _Item) -> Result:
        if item.malformed is not None:
            return book.dead_letter(item.event, item.malformed)
        return book.apply(item.event)

    @staticmethod
    def _settled(ws: Workspace) -> list[tuple[ParkedEvent, Outcome]]:
        return list(ws.settled_events)

    async def _workspace(
        self, conn: AsyncConnection, items: Sequence[_Item], *, now: float, expire: bool
    ) -> tuple[Workspace, list[str]]:
        keys: set[str] = set()
        skus: set[str] = set()
        keyless: list[str] = []
        for item in items:
            event = item.event
            order_id = event.order_id
            if order_id is not None:
                keys.add(order_key(order_id))
                reservation_id = getattr(event.payload, "reservation_id", None)
                if reservation_id is not None:
                    keys.add(cart_key(reservation_id))
            skus |= event.skus
            if order_id is None and not event.skus:
                keyless.append(event.msg_id)
        return await self.load(
            conn, keys=keys, skus=skus, msg_ids=[i.event.msg_id for i in items], keyless=keyless, now=now, expire=expire
        )

    async def load(
        self,
        conn: AsyncConnection,
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
            await lock_keys(conn, "r", keys)
            await lock_keys(conn, "e", keyless)
        reservations = await self._reservations(conn, keys)
        parked = await self._parked(conn, [k for k in keys if k.startswith("order:")])
        if expire:
            candidates = await self._overdue_keys(conn, now, exclude=keys)
            if self.postgres and candidates:
                candidates = await try_lock_keys(conn, "r", candidates)
            reservations.update(await self._reservations(conn, candidates))
        overdue = sorted(key for key, r in reservations.items() if r.overdue(now))
        sku_set = set(skus)
        for reservation in reservations.values():
            sku_set.update(reservation.lines)
        for events in parked.values():
            for p in events.values():
                sku_set |= p.event.skus
        if self.postgres:
            await lock_keys(conn, "s", sku_set)
        ws = Workspace(
            skus={s.sku: s for s in await self._skus(conn, sku_set)},
            reservations=reservations,
            parked=parked,
            inbox=await self._inbox(conn, msg_ids),
            strict=True,
        )
        ws.loaded_skus = sku_set
        return ws, overdue

    async def _reservations(self, conn: AsyncConnection, keys: Collection[str]) -> dict[str, Reservation]:
        if not keys:
            return {}
        t = schema.reservations
        rows = await conn.execute(sa.select(t).where(t.c.key.in_(sorted(keys))))
        return {row.key: reservation_from_row(row) for row in rows}

    async def _parked(self, conn: AsyncConnection, order_keys: Collection[str]) -> dict[str, dict[str, ParkedEvent]]:
        if not order_keys:
            return {}
        t = schema.parked
        query = sa.select(t).where(t.c.order_key.in_(sorted(order_keys)), t.c.dead_lettering.is_(False))
        out: dict[str, dict[str, ParkedEvent]] = {}
        for row in await conn.execute(query):
            envelope = Envelope(row.subject, row.body, json.loads(row.headers), row.stream_seq)
            try:
                event = parse_event(envelope)
            except MalformedEvent:  # it parsed when it was parked; never expected
                log.error("parked event %s no longer parses; leaving it to the sweeper", row.msg_id)
                continue
            out.setdefault(row.order_key, {})[row.msg_id] = ParkedEvent(event, row.parked_at, row.reason)
        return out

    async def _overdue_keys(self, conn: AsyncConnection, now: float, *, exclude: Collection[str]) -> list[str]:
        t = schema.reservations
        query = sa.select(t.c.key).where(t.c.expires_at <= now).order_by(t.c.expires_at).limit(self.expire_batch)
        return [key for (key,) in await conn.execute(query) if key not in exclude]

    async def _skus(self, conn: AsyncConnection, names: Collection[str]) -> list[SkuState]:
        if not names:
            return []
        t = schema.skus
        rows = await conn.execute(sa.select(t).where(t.c.sku.in_(sorted(names))))
        return [sku_from_row(row) for row in rows]

    async def _inbox(self, conn: AsyncConnection, msg_ids: Collection[str]) -> dict[str, Outcome]:
        if not msg_ids:
            return {}
        t = schema.inbox
        rows = await conn.execute(sa.select(t.c.msg_id, t.c.outcome).where(t.c.msg_id.in_(list(set(msg_ids)))))
        return {msg_id: Outcome(outcome) for msg_id, outcome in rows}

    # --- checkout reservations and TTLs ------------------------------------------------------------
    async def reserve(
        self, reservation_id: str, lines: Mapping[str, int], ttl_s: float, *, now: float | None = None
    ) -> tuple[CartResult, int]:
        """Returns the answer and how many outbox rows it wrote."""
        now = time.time() if now is None else now
        async with self.engine.begin() as conn:
            ws, overdue = await self.load(conn, keys=[cart_key(reservation_id)], skus=set(lines), now=now, expire=True)
            book = Inventory(ws, now=now, reservation_ttl_s=self.reservation_ttl_s)
            for key in overdue:
                book.expire(key)
            result = book.reserve(reservation_id, lines, ttl_s)
            return result, await write_changes(conn, ws, now)

    async def release(self, reservation_id: str, *, now: float | None = None) -> tuple[CartResult, int]:
        now = time.time() if now is None else now
        async with self.engine.begin() as conn:
            ws, _ = await self.load(conn, keys=[cart_key(reservation_id)], skus=(), now=now, expire=False)
            book = Inventory(ws, now=now, reservation_ttl_s=self.reservation_ttl_s)
            result = book.release(reservation_id)
            return result, await write_changes(conn, ws, now)

    async def expire_overdue(self, *, now: float | None = None) -> tuple[int, int]:
        """One sweep step: expire up to ``expire_batch`` lapsed reservations; returns (expired, outbox rows)."""
        now = time.time() if now is None else now
        async with self.engine.begin() as conn:
            ws, overdue = await self.load(conn, keys=(), skus=(), now=now, expire=True)
            book = Inventory(ws, now=now, reservation_ttl_s=self.reservation_ttl_s)
            expired = sum(book.expire(key) for key in overdue)
            return expired, await write_changes(conn, ws, now)

    # --- parked too long -----------------------------------------------------------------------------
    async def claim_stale_parked(self, *, older_than: float, limit: int = 100) -> int:
        """Mark events parked before ``older_than`` as given up (never applied from now on).

        Returns how many were marked; :meth:`dead_lettering` lists them for publishing.
        """
        t = schema.parked
        async with self.engine.begin() as conn:
            query = sa.select(t.c.order_key).where(t.c.parked_at <= older_than, t.c.dead_lettering.is_(False))
            keys = sorted({key for (key,) in await conn.execute(query.limit(limit))})
            if not keys:
                return 0
            if self.postgres:
                await lock_keys(conn, "r", keys)  # an order being applied right now finishes first
            rows = (
                await conn.execute(
                    sa.select(t.c.msg_id, t.c.reason, t.c.parked_at).where(
                        t.c.order_key.in_(keys), t.c.parked_at <= older_than, t.c.dead_lettering.is_(False)
                    )
                )
            ).all()
            if not rows:
                return 0
            now = time.time()
            await conn.execute(sa.update(t).where(t.c.msg_id.in_([r.msg_id for r in rows])).values(dead_lettering=True))
            i = schema.inbox
            await conn.execute(
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
            async with self.engine.begin() as conn:
                await conn.execute(sa.delete(t).where(t.c.msg_id.in_(ids), t.c.dead_lettering.is_(True)))

    async def parked_count(self) -> int:
        t = schema.parked
        async with self.engine.connect() as conn:
            return int((await conn.execute(sa.select(sa.func.count()).select_from(t))).scalar_one())

    async def writable(self) -> bool:
        """SQLite: the transaction takes the write lock (BEGIN IMMEDIATE). PostgreSQL: not read-only.
        After a failed write (a full disk, say): false until a write commits; this check writes one
        once no write has failed for a while."""
        async with self.engine.begin() as conn:
            if self.postgres and (await conn.execute(sa.text("SHOW transaction_read_only"))).scalar_one() != "off":
                return False
            await conn.execute(sa.select(sa.func.count()).select_from(schema.skus).where(sa.false()))
            if self.write_health.probe_due:
                await conn.run_sync(self.write_health.probe)
        return self.write_health.ok
