"""The traditional design, for comparison: one synchronous webhook handler does everything inline.

It verifies the signature, applies the event to its stock table (SQLite, one transaction), then calls
every sales channel with httpx — signed, in parallel, with a timeout — and answers only when all calls
are done. A channel call that fails is logged and counted; nothing retries it (the usual trade-off of
doing it inline: retrying would hold the producer's request open even longer). An order event whose
order is not known yet (it arrived out of order) is answered 503, so the producer retries it.

The ledger rules are those of design §4 without parking or reservation expiry. It is served exactly
like the services (uvicorn, uvloop, httptools, one worker)::

    SYNC_DB=/tmp/sync.db SYNC_SECRET=... SYNC_CHANNELS='[{"name","url","secret","buffer"}]' \\
        python -m bench.flash_sale_sync <port>
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import sqlalchemy as sa
from litestar import Litestar, Request, Response, get, post
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from libs.signing import SignatureError, sign_standard_webhook, verify_commerce_engine
from libs.store import create_engine

__all__ = ["create_app"]

log = logging.getLogger("bench.sync")

_meta = sa.MetaData()
stock = sa.Table(
    "stock",
    _meta,
    sa.Column("sku", sa.String, primary_key=True),
    sa.Column("on_hand", sa.Integer, nullable=False, default=0),
    sa.Column("reserved", sa.Integer, nullable=False, default=0),
    sa.Column("committed", sa.Integer, nullable=False, default=0),
    sa.Column("version", sa.Integer, nullable=False, default=0),
    sa.Column("counted_at", sa.Float, nullable=True),
)
orders = sa.Table(
    "orders",
    _meta,
    sa.Column("order_id", sa.String, primary_key=True),
    sa.Column("state", sa.String, nullable=False),
    sa.Column("lines", sa.Text, nullable=False),
)
seen = sa.Table("seen", _meta, sa.Column("event_id", sa.String, primary_key=True))


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

    async def order(self, order_id: str) -> tuple[str, dict[str, int]]:
        row = (await self.conn.execute(sa.select(orders).where(orders.c.order_id == order_id))).first()
        if row is None:
            raise NotYet(f"order {order_id} not known yet")
        return row.state, json.loads(row.lines)

    async def set_state(self, order_id: str, state: str) -> None:
        await self.conn.execute(sa.update(orders).where(orders.c.order_id == order_id).values(state=state))

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


def _lines(data: dict[str, Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in data["lines"]:
        out[line["sku"]] = out.get(line["sku"], 0) + int(line["qty"])
    return out


async def apply(tx: Tx, kind: str, data: dict[str, Any]) -> str | None:
    """Apply one event; returns the order decision for ``order.created``."""
    if kind == "inventory.received":
        await tx.move(data["sku"], on_hand=int(data["qty"]))
    elif kind == "inventory.adjusted":
        level = await tx.level(data["sku"])
        if "delta" in data:
            await tx.move(data["sku"], on_hand=max(int(data["delta"]), -level.available))
        else:
            counted = dt.datetime.fromisoformat(data["counted_at"]).timestamp()
            if level.counted_at is None or counted >= level.counted_at:
                level.counted_at = counted
                target = max(int(data["on_hand"]), level.reserved + level.committed)
                await tx.move(data["sku"], on_hand=target - level.on_hand)
    elif kind == "order.created":
        lines = _lines(data)
        short = [sku for sku, qty in lines.items() if (await tx.level(sku)).available < qty]
        state = "rejected" if short else "reserved"
        if not short:
            for sku, qty in lines.items():
                await tx.move(sku, reserved=qty)
        await tx.conn.execute(sa.insert(orders).values(order_id=data["order_id"], state=state, lines=json.dumps(lines)))
        return state
    elif kind in ("payment.successful", "payment.captured"):
        state, lines = await tx.order(data["order_id"])
        if state == "reserved":
            for sku, qty in lines.items():
                await tx.move(sku, reserved=-qty, committed=qty)
            await tx.set_state(data["order_id"], "committed")
    elif kind in ("payment.failed", "order.cancelled"):
        state, lines = await tx.order(data["order_id"])
        if state in ("reserved", "committed"):
            for sku, qty in lines.items():
                await tx.move(sku, **{state: -qty})
            await tx.set_state(data["order_id"], "released")
    elif kind in ("shipment.shipped", "order.fulfilled"):
        state, lines = await tx.order(data["order_id"])
        if state == "reserved":
            raise NotYet("shipment before payment")
        if state == "committed":
            for sku, qty in lines.items():
                await tx.move(sku, on_hand=-qty, committed=-qty)
            await tx.set_state(data["order_id"], "shipped")
    elif kind == "return.received":
        state, _ = await tx.order(data["order_id"])
        if state in ("reserved", "committed"):
            raise NotYet("return before shipment")
        if state == "shipped":
            default = bool(data.get("restock", False))
            for line in data["lines"]:
                if line.get("restock", default):
                    await tx.move(line["sku"], on_hand=int(line["qty"]))
    return None


@dataclass
class Channels:
    """One connection pool per channel (as the channel-notifier has): a small pool per channel also keeps
    httpcore's per-request pool scan cheap."""

    targets: list[dict[str, Any]]
    clients: dict[str, httpx.AsyncClient]
    calls: int = 0
    failures: int = 0

    async def _call(self, target: dict[str, Any], level: Level, occurred_at: str) -> None:
        payload = {
            "type": "availability.changed",
            "sku": level.sku,
            "available": max(0, level.available - int(target.get("buffer", 0))),
            "version": level.version,
            "occurred_at": occurred_at,
        }
        body = json.dumps(payload).encode()
        headers = sign_standard_webhook(target["secret"], f"{level.sku}:{level.version}", body).as_dict()
        self.calls += 1
        try:
            response = await self.clients[target["name"]].post(
                target["url"], content=body, headers={**headers, "content-type": "application/json"}
            )
            if not response.is_success:
                raise httpx.HTTPStatusError("channel refused", request=response.request, response=response)
        except httpx.HTTPError as exc:
            self.failures += 1
            log.debug("channel %s: update of %s v%d lost: %s", target["name"], level.sku, level.version, exc)

    async def notify(self, levels: list[Level]) -> None:
        occurred_at = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
        await asyncio.gather(*(self._call(t, level, occurred_at) for level in levels for t in self.targets))


def create_app() -> Litestar:
    secret = os.environ["SYNC_SECRET"]
    targets = json.loads(os.environ.get("SYNC_CHANNELS", "[]"))
    timeout = float(os.environ.get("SYNC_CHANNEL_TIMEOUT_S", "2"))
    engine: AsyncEngine = create_engine(f"sqlite+aiosqlite:///{os.environ['SYNC_DB']}")
    lock = asyncio.Lock()  # one writer, as SQLite allows; BEGIN IMMEDIATE would serialise it anyway

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with engine.begin() as conn:
            await conn.run_sync(_meta.create_all)
        limits = httpx.Limits(max_connections=16, max_keepalive_connections=16, keepalive_expiry=4.0)
        clients = {t["name"]: httpx.AsyncClient(timeout=timeout, limits=limits) for t in targets}
        app.state.channels = Channels(targets, clients)
        try:
            yield
        finally:
            for client in clients.values():
                await client.aclose()
            await engine.dispose()

    @post("/webhooks/{source:str}")
    async def webhook(source: str, request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
        body = await request.body()
        try:
            verify_commerce_engine([secret], body, request.headers.get("x-webhook-signature"))
        except SignatureError as exc:
            return Response({"error": "invalid_signature", "detail": str(exc)}, status_code=401)
        try:
            document = json.loads(body)
            event_id, kind, data = str(document["id"]), str(document["event_type"]), document["data"]
        except (ValueError, KeyError, TypeError) as exc:
            return Response({"error": "malformed", "detail": str(exc)}, status_code=400)
        try:
            async with lock, engine.begin() as conn:
                if (await conn.execute(sa.select(seen).where(seen.c.event_id == event_id))).first():
                    return Response({"status": "duplicate"}, status_code=200)
                tx = Tx(conn)
                decision = await apply(tx, kind, data)
                changed = await tx.flush()
                await conn.execute(sa.insert(seen).values(event_id=event_id))
        except NotYet as exc:
            return Response({"error": "not_yet", "detail": str(exc)}, status_code=503, headers={"retry-after": "1"})
        await request.app.state.channels.notify(changed)
        answer: dict[str, Any] = {"status": "accepted"}
        if decision is not None:
            answer["decision"] = decision
        return Response(answer, status_code=200)

    @get("/skus/{sku:path}")
    async def sku_view(sku: str) -> Response[dict[str, Any]]:
        sku = sku.removeprefix("/")  # a SKU may hold '/': the whole rest of the path is the SKU
        async with engine.connect() as conn:
            row = (await conn.execute(sa.select(stock).where(stock.c.sku == sku))).first()
        if row is None:
            return Response({"error": "not_found", "detail": sku}, status_code=404)
        level = Level(sku, *row[1:])
        return Response(
            {
                **{k: getattr(level, k) for k in ("sku", "on_hand", "reserved", "committed", "version")},
                "available": level.available,
            }
        )

    @get("/stats")
    async def stats(request: Request[Any, Any, Any]) -> dict[str, int]:
        channels: Channels = request.app.state.channels
        return {"channel_calls": channels.calls, "channel_failures": channels.failures}

    @get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return Litestar([webhook, sku_view, stats, healthz], lifespan=[lifespan])


def main() -> None:
    from libs.server import serve

    serve(
        "bench.flash_sale_sync:create_app",
        host="127.0.0.1",
        port=int(sys.argv[1]),
        workers=1,
        data_dir=os.path.dirname(os.environ["SYNC_DB"]),
    )


if __name__ == "__main__":
    main()
