"""The read side: what the HTTP API, ``stockwire ledger`` and ``stockwire audit`` show.

Reads take no locks. A reservation past its TTL is shown as released even before the sweeper has
written its ``expired`` rows.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..domain.model import (
    LedgerEntry,
    LedgerKind,
    Reservation,
    ReservationKind,
    SkuState,
    cart_key,
    order_key,
    order_ref,
    split_key,
)
from . import schema
from .rows import reservation_from_row, sku_from_row

__all__ = [
    "AmbiguousOrder",
    "InventoryReader",
    "SkuView",
    "entry_from_row",
]


@dataclass(frozen=True, slots=True)
class SkuView:
    sku: str
    on_hand: int
    reserved: int
    committed: int
    available: int
    version: int
    lapsed: int
    """Units held by reservations past their TTL, already counted as released here."""
    backordered: int = 0
    """Units orders accepted without stock and wait for (never part of ``available``)."""


def entry_from_row(row: sa.Row[Any]) -> LedgerEntry:
    return LedgerEntry(
        row.sku,
        row.version,
        LedgerKind(row.kind),
        row.qty,
        row.on_hand_delta,
        row.reserved_delta,
        row.committed_delta,
        row.reservation,
        row.source,
        row.occurred_at,
        row.reason,
        row.prev_hash,
        row.hash,
    )


class AmbiguousOrder(LookupError):
    """Several sources have an order of that number: the caller must name the source."""

    def __init__(self, order_id: str, sources: list[str]) -> None:
        super().__init__(f"order {order_id!r} exists in several sources ({', '.join(sources)}): name the source")
        self.sources = sources


def _like_escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def reservation_json(reservation: Reservation, now: float) -> dict[str, Any]:
    state = "expired" if reservation.overdue(now) else reservation.state.value
    return {
        "state": state,
        "lines": [{"sku": sku, "qty": qty} for sku, qty in reservation.lines.items()],
        "expires_at": None if state == "expired" else reservation.expires_at,
        "created_at": reservation.created_at,
        "updated_at": reservation.updated_at,
        "returned": reservation.returned,
        "backordered": reservation.backordered,
        "shipped": reservation.shipped,
        "shipments": {ref: record.as_json() for ref, record in sorted(reservation.shipments.items())},
        "returns": reservation.returns,
    }


class InventoryReader:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def _lapsed(self, conn: AsyncConnection, now: float, sku: str) -> list[Reservation]:
        """Reservations past their TTL that hold ``sku``. The lines are JSON text written by msgspec: the
        SKU as a key is its JSON string and a colon, which the database finds without decoding a row, so a
        read of one SKU does not decode every lapsed reservation during a sale."""
        t = schema.reservations
        key = "%" + _like_escaped(msgspec.json.encode(sku).decode()) + ":%"
        rows = await conn.execute(sa.select(t).where(t.c.expires_at <= now, t.c.lines.like(key, escape="\\")))
        return [reservation_from_row(r) for r in rows]

    async def sku(self, sku: str, now: float) -> SkuView | None:
        t = schema.skus
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(t).where(t.c.sku == sku))).first()
            if row is None:
                return None
            state = sku_from_row(row)
            # Lapsed holds are part of what is reserved: with nothing reserved there is none to look for.
            lapsed = (
                sum(r.reserved_qty().get(sku, 0) for r in await self._lapsed(conn, now, sku) if r.overdue(now))
                if state.reserved > 0
                else 0
            )
        reserved = state.reserved - lapsed
        return SkuView(
            sku,
            state.on_hand,
            reserved,
            state.committed,
            state.on_hand - reserved - state.committed,
            state.version,
            lapsed,
            state.backordered,
        )

    async def ledger_page(self, sku: str, *, after: int = 0, limit: int = 100) -> list[LedgerEntry]:
        t = schema.ledger
        query = sa.select(t).where(t.c.sku == sku, t.c.version > after).order_by(t.c.version).limit(limit)
        async with self.engine.connect() as conn:
            return [entry_from_row(r) for r in await conn.execute(query)]

    async def reservation(self, key: str) -> Reservation | None:
        t = schema.reservations
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(t).where(t.c.key == key))).first()
        return reservation_from_row(row) if row is not None else None

    async def cart(self, reservation_id: str) -> Reservation | None:
        return await self.reservation(cart_key(reservation_id))

    async def order_sources(self, order_id: str) -> list[str]:
        """The sources that have an order numbered ``order_id`` (a reservation, or events in the inbox)."""
        r, i = schema.reservations, schema.inbox
        pattern = "order:%:" + _like_escaped(order_id)
        async with self.engine.connect() as conn:
            keys = [k for (k,) in await conn.execute(sa.select(r.c.key).where(r.c.key.like(pattern, escape="\\")))]
            refs = [
                ref
                for (ref,) in await conn.execute(
                    sa.select(i.c.order_id)
                    .distinct()
                    .where(i.c.order_id.like("%:" + _like_escaped(order_id), escape="\\"))
                )
            ]
        found = {order_ref(key.removeprefix("order:")) for key in keys} | {order_ref(ref) for ref in refs}
        return sorted(source for source, number in found if source is not None and number == order_id)

    async def order_source(self, order_id: str, source: str | None = None) -> str | None:
        """The source of order ``order_id``: ``source`` when given, else the one source that has such an
        order (None: none has). Raises :class:`AmbiguousOrder` when several have."""
        if source is not None:
            return source
        sources = await self.order_sources(order_id)
        if len(sources) > 1:
            raise AmbiguousOrder(order_id, sources)
        return sources[0] if sources else None

    async def order(
        self, order_id: str, source: str
    ) -> tuple[Reservation | None, list[dict[str, Any]], list[dict[str, Any]]]:
        """Order ``order_id`` of ``source``: its reservation, the events applied to it (inbox), and those
        still parked."""
        i, p = schema.inbox, schema.parked
        key = order_key(order_id, source)
        async with self.engine.connect() as conn:
            events = [
                {
                    "msg_id": r.msg_id,
                    "event_type": r.event_type,
                    "stream_seq": r.stream_seq,
                    "outcome": r.outcome,
                    "detail": r.detail,
                    "settled_at": r.settled_at,
                }
                for r in await conn.execute(
                    sa.select(i).where(i.c.order_id == f"{source}:{order_id}").order_by(i.c.stream_seq)
                )
            ]
            waiting = [
                {"msg_id": r.msg_id, "stream_seq": r.stream_seq, "reason": r.reason, "parked_at": r.parked_at}
                for r in await conn.execute(sa.select(p).where(p.c.order_key == key).order_by(p.c.stream_seq))
            ]
        return await self.reservation(key), events, waiting

    # --- for verify and audit ------------------------------------------------------------------------
    async def stream_ledger(self, sku: str | None = None) -> AsyncIterator[tuple[int, LedgerEntry]]:
        t = schema.ledger
        query = sa.select(t).order_by(t.c.sku, t.c.version)
        if sku is not None:
            query = query.where(t.c.sku == sku)
        async with self.engine.connect() as conn:
            result = await conn.stream(query.execution_options(yield_per=2000))
            async for row in result:
                yield row.id, entry_from_row(row)

    async def projection(self) -> list[SkuState]:
        async with self.engine.connect() as conn:
            return [sku_from_row(r) for r in await conn.execute(sa.select(schema.skus))]

    async def open_reservations(self) -> list[Reservation]:
        t = schema.reservations
        query = sa.select(t).where(t.c.state.in_(["reserved", "committed"]))
        async with self.engine.connect() as conn:
            return [reservation_from_row(r) for r in await conn.execute(query)]

    async def ledger_for_reservation(self, key: str) -> list[LedgerEntry]:
        """The ledger rows of a reservation; an order's include those written before orders were keyed by
        source (``order:<id>``: a ledger row keeps the key it was hashed with)."""
        t = schema.ledger
        keys = [key]
        kind, ref = split_key(key)
        if kind is ReservationKind.ORDER:
            source, order_id = order_ref(ref)
            if source is not None:
                keys.append(order_key(order_id))
        async with self.engine.connect() as conn:
            rows = await conn.execute(sa.select(t).where(t.c.reservation.in_(keys)).order_by(t.c.id))
            return [entry_from_row(r) for r in rows]

    async def inbox_rows(self, *, order_id: str | None = None, msg_ids: Collection[str] = ()) -> list[dict[str, Any]]:
        t = schema.inbox
        query = sa.select(t).order_by(t.c.stream_seq)
        if order_id is not None:
            query = query.where(t.c.order_id == order_id)
        else:
            query = query.where(t.c.msg_id.in_(sorted(set(msg_ids))))
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(query)]

    async def outbox_rows(self, msg_ids: Collection[str] = (), *, like: str | None = None) -> list[dict[str, Any]]:
        t = schema.outbox
        query = sa.select(t).order_by(t.c.id)
        if like is not None:
            query = query.where(t.c.msg_id.like(like))
        else:
            query = query.where(t.c.msg_id.in_(sorted(set(msg_ids))))
        async with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in await conn.execute(query)]
        for row in rows:
            row["headers"] = json.loads(row["headers"])
        return rows
