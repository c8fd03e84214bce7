"""The synchronous design's ledger: one SQLite transaction per webhook, applying the canonical event its
source's profile reads from it, by the same rules as inventory (design §4 and, for Commerce Engine's
payloads, free units, digital lines, backorders, shipments by reference, returns by product and
completion), without parking or reservation expiry. An event whose order is not known yet, or not yet
in the state it needs, raises :class:`NotYet`: the handler answers 503 and the producer retries.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.profiles.canonical import (
    CanonicalEvent,
    OrderCancelled,
    OrderCompleted,
    OrderConfirmed,
    OrderPlaced,
    OrderShipped,
    PaymentFailed,
    PaymentSucceeded,
    Return,
    ReturnReceived,
    Shipment,
    StockAdjusted,
    StockReceived,
)
from stockwire.sim.order_rules import SHIPPED_STATUSES

__all__ = ["Level", "NotYet", "Tx", "apply", "metadata", "seen", "stock"]

metadata = sa.MetaData()
stock = sa.Table(
    "stock",
    metadata,
    sa.Column("sku", sa.String, primary_key=True),
    sa.Column("on_hand", sa.Integer, nullable=False, default=0),
    sa.Column("reserved", sa.Integer, nullable=False, default=0),
    sa.Column("committed", sa.Integer, nullable=False, default=0),
    sa.Column("version", sa.Integer, nullable=False, default=0),
    sa.Column("counted_at", sa.Float, nullable=True),
)
orders = sa.Table(
    "orders",
    metadata,
    sa.Column("order_id", sa.String, primary_key=True),
    sa.Column("state", sa.String, nullable=False),
    sa.Column("book", sa.Text, nullable=False),
)
backorders = sa.Table(
    "backorders",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("order_id", sa.String, nullable=False, index=True),
    sa.Column("sku", sa.String, nullable=False, index=True),
    sa.Column("qty", sa.Integer, nullable=False),
)
shipments = sa.Table(
    "shipments",
    metadata,
    sa.Column("reference", sa.String, primary_key=True),
    sa.Column("left", sa.Boolean, nullable=False),
    sa.Column("back", sa.Boolean, nullable=False),
)
returns = sa.Table("returns", metadata, sa.Column("request_number", sa.String, primary_key=True))
seen = sa.Table("seen", metadata, sa.Column("event_id", sa.String, primary_key=True))


class NotYet(Exception):
    """The event's order is not known (or not in the state it needs) yet: the producer should retry."""


@dataclass
class Level:
    sku: str
    on_hand: int = 0
    reserved: int = 0
    committed: int = 0
    version: int = 0
    counted_at: float | None = None
    dirty: bool = False

    @property
    def available(self) -> int:
        return max(0, self.on_hand - self.reserved - self.committed)


@dataclass
class _Order:
    order_id: str
    state: str
    book: dict[str, Any]
    """``lines`` [[sku, units, backorder, product_id, variant_id]], ``held``, ``out`` (shipped, not back),
    ``returned``: units per SKU."""

    def counter(self, name: str) -> Counter[str]:
        return Counter(self.book.get(name, {}))


class Tx:
    """One event's work inside one transaction."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self.levels: dict[str, Level] = {}

    async def level(self, sku: str) -> Level:
        if sku not in self.levels:
            row = (await self.conn.execute(sa.select(stock).where(stock.c.sku == sku))).first()
            self.levels[sku] = Level(sku, *row[1:]) if row else Level(sku)
        return self.levels[sku]

    async def move(self, sku: str, on_hand: int = 0, reserved: int = 0, committed: int = 0) -> None:
        level = await self.level(sku)
        level.on_hand += on_hand
        level.reserved += reserved
        level.committed += committed
        level.version += 1
        level.dirty = True

    async def hold(self, order: _Order, sku: str, units: int) -> None:
        """Move ``units`` of ``sku`` into the order's holding (reserved or committed, by its state)."""
        field = "reserved" if order.state == "reserved" else "committed"
        await self.move(sku, **{field: units})
        held = order.counter("held")
        held[sku] += units
        order.book["held"] = dict(held)

    async def order(self, order_id: str) -> _Order | None:
        row = (await self.conn.execute(sa.select(orders).where(orders.c.order_id == order_id))).first()
        return None if row is None else _Order(row.order_id, row.state, json.loads(row.book))

    async def known(self, order_id: str) -> _Order:
        order = await self.order(order_id)
        if order is None:
            raise NotYet(f"order {order_id} not known yet")
        return order

    async def save(self, order: _Order, new: bool = False) -> None:
        values = {"state": order.state, "book": json.dumps(order.book)}
        if new:
            await self.conn.execute(sa.insert(orders).values(order_id=order.order_id, **values))
        else:
            await self.conn.execute(sa.update(orders).where(orders.c.order_id == order.order_id).values(**values))

    async def flush(self) -> list[Level]:
        changed = [level for level in self.levels.values() if level.dirty]
        for level in changed:
            values = {
                "on_hand": level.on_hand,
                "reserved": level.reserved,
                "committed": level.committed,
                "version": level.version,
                "counted_at": level.counted_at,
            }
            updated = await self.conn.execute(sa.update(stock).where(stock.c.sku == level.sku).values(**values))
            if updated.rowcount == 0:
                await self.conn.execute(sa.insert(stock).values(sku=level.sku, **values))
        return changed


async def apply(tx: Tx, event: CanonicalEvent) -> str | None:
    """Apply one event, then give units that turned up to backorders; returns the decision on an order."""
    decision = await _apply(tx, event)
    await _fill(tx)
    return decision


async def _apply(tx: Tx, event: CanonicalEvent) -> str | None:
    if isinstance(event, StockReceived):
        await tx.move(event.sku, on_hand=event.quantity)
    elif isinstance(event, StockAdjusted):
        await _adjust(tx, event)
    elif isinstance(event, OrderPlaced):
        return await _place(tx, event)
    elif isinstance(event, PaymentSucceeded | OrderConfirmed):
        await _commit(tx, await tx.known(event.order_key))
    elif isinstance(event, OrderCancelled):
        await _release(tx, await tx.known(event.order_key), ("reserved", "committed"))
    elif isinstance(event, PaymentFailed) and event.release:
        # A payment outlives a failure: a failure only gives back what is not committed yet.
        await _release(tx, await tx.known(event.order_key), ("reserved",))
    elif isinstance(event, OrderShipped):
        await _ship_whole(tx, await tx.known(event.order_key))
    elif isinstance(event, ReturnReceived):
        await _restock(tx, await tx.known(event.order_key), event)
    elif isinstance(event, Shipment):
        await _shipment(tx, await _committed(tx, event.order_key), event)
    elif isinstance(event, Return):
        await _return(tx, await tx.known(event.order_key), event)
    elif isinstance(event, OrderCompleted):
        await _complete(tx, await _committed(tx, event.order_key))
    # Retried and failed payments (Commerce Engine), refunds, unmapped types: nothing moves.
    return None


async def _adjust(tx: Tx, event: StockAdjusted) -> None:
    level = await tx.level(event.sku)
    if event.delta is not None:
        await tx.move(event.sku, on_hand=max(event.delta, -level.available))
        return
    assert event.on_hand is not None
    counted = event.counted_at or 0.0
    if level.counted_at is None or counted >= level.counted_at:
        level.counted_at = counted
        target = max(event.on_hand, level.reserved + level.committed)
        await tx.move(event.sku, on_hand=target - level.on_hand)


async def _place(tx: Tx, event: OrderPlaced) -> str:
    existing = await tx.order(event.order_key)
    if existing is not None:  # the same order placed again under a new event id
        return "rejected" if existing.state == "rejected" else "reserved"
    firm, waiting = Counter[str](), Counter[str]()
    for line in event.lines:
        if line.product_type != "digital":
            (waiting if line.backorder else firm)[line.sku] += line.quantity
    short = [sku for sku, units in firm.items() if (await tx.level(sku)).available < units]
    lines = [[line.sku, line.quantity, line.backorder, line.product_id, line.variant_id] for line in event.lines]
    order = _Order(event.order_key, "rejected" if short else "reserved", {"lines": lines, "held": {}})
    if not short:
        for sku, units in firm.items():
            await tx.hold(order, sku, units)
        for sku, units in waiting.items():
            take = min(units, (await tx.level(sku)).available)
            if take:
                await tx.hold(order, sku, take)
            if units > take:
                await tx.conn.execute(sa.insert(backorders).values(order_id=order.order_id, sku=sku, qty=units - take))
    await tx.save(order, new=True)
    decision = order.state
    if event.confirmed and decision == "reserved":
        await _commit(tx, order)
    return decision


async def _committed(tx: Tx, order_id: str) -> _Order:
    order = await tx.known(order_id)
    if order.state == "reserved":
        raise NotYet(f"order {order_id} is not committed yet")
    return order


async def _commit(tx: Tx, order: _Order) -> None:
    if order.state == "reserved":
        for sku, units in order.counter("held").items():
            await tx.move(sku, reserved=-units, committed=units)
        order.state = "committed"
        await tx.save(order)


async def _release(tx: Tx, order: _Order, states: tuple[str, ...]) -> None:
    if order.state in states:
        for sku, units in order.counter("held").items():
            await tx.move(sku, **{order.state: -units})
        order.state, order.book["held"] = "released", {}
        await tx.conn.execute(sa.delete(backorders).where(backorders.c.order_id == order.order_id))
        await tx.save(order)


async def _ship_whole(tx: Tx, order: _Order) -> None:
    if order.state == "reserved":
        raise NotYet("shipment before payment")
    if order.state == "committed":
        for sku, units in order.counter("held").items():
            await tx.move(sku, on_hand=-units, committed=-units)
        order.state, order.book["held"] = "shipped", {}
        await tx.save(order)


async def _restock(tx: Tx, order: _Order, event: ReturnReceived) -> None:
    if order.state in ("reserved", "committed"):
        raise NotYet("return before shipment")
    if order.state == "shipped":
        for line in event.lines:
            if event.restocks(line):
                await tx.move(line.sku, on_hand=line.quantity)


async def _shipment(tx: Tx, order: _Order, event: Shipment) -> None:
    row = (await tx.conn.execute(sa.select(shipments).where(shipments.c.reference == event.reference))).first()
    left, back = (bool(row.left), bool(row.back)) if row else (False, False)
    leaves = not left and event.status in SHIPPED_STATUSES
    comes_back = not back and event.status == "return_to_origin"
    if not (leaves or comes_back) or order.state == "rejected":
        return
    held, out = order.counter("held"), order.counter("out")
    for item in event.items:
        if leaves:
            taken = min(item.units, held[item.sku]) if order.state == "committed" else 0
            held[item.sku] -= taken
            out[item.sku] += item.units
            await tx.move(item.sku, on_hand=-item.units, committed=-taken)
        if comes_back:
            out[item.sku] -= item.units
            await tx.move(item.sku, on_hand=item.units)
    order.book["held"], order.book["out"] = dict(held), dict(out)
    await tx.save(order)
    values = {"left": left or leaves, "back": back or comes_back}
    if row is None:
        await tx.conn.execute(sa.insert(shipments).values(reference=event.reference, **values))
    else:
        await tx.conn.execute(sa.update(shipments).where(shipments.c.reference == event.reference).values(**values))


async def _return(tx: Tx, order: _Order, event: Return) -> None:
    if event.status != "complete" and event.received_at is None:
        return
    if (await tx.conn.execute(sa.select(returns).where(returns.c.request_number == event.request_number))).first():
        return
    await tx.conn.execute(sa.insert(returns).values(request_number=event.request_number))
    by_product = {(product, variant): sku for sku, _, _, product, variant in order.book["lines"]}
    out, returned = order.counter("out"), order.counter("returned")
    for item in event.items:
        sku = by_product.get((item.product_id, item.variant_id))
        units = min(item.quantity, out[sku] - returned[sku]) if sku else 0
        if sku and units > 0:
            returned[sku] += units
            await tx.move(sku, on_hand=units)
    order.book["returned"] = dict(returned)
    await tx.save(order)


async def _complete(tx: Tx, order: _Order) -> None:
    if order.state == "committed":
        for sku, units in order.counter("held").items():
            await tx.move(sku, on_hand=-units, committed=-units)
        order.state, order.book["held"] = "completed", {}
        await tx.conn.execute(sa.delete(backorders).where(backorders.c.order_id == order.order_id))
        await tx.save(order)


async def _fill(tx: Tx) -> None:
    """Units available where orders wait for them go to those orders, oldest first."""
    for level in [level for level in tx.levels.values() if level.dirty and level.available > 0]:
        query = sa.select(backorders).where(backorders.c.sku == level.sku).order_by(backorders.c.seq)
        for row in (await tx.conn.execute(query)).all():
            take = min(row.qty, level.available)
            if take <= 0:
                break
            order = await tx.known(row.order_id)
            await tx.hold(order, level.sku, take)
            await tx.save(order)
            if take == row.qty:
                await tx.conn.execute(sa.delete(backorders).where(backorders.c.seq == row.seq))
            else:
                await tx.conn.execute(
                    sa.update(backorders).where(backorders.c.seq == row.seq).values(qty=row.qty - take)
                )
