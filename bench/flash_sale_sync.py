"""The traditional design, for comparison: one synchronous webhook handler does everything inline.

It verifies the signature, reads the body through its source's profile (as inventory does), applies
the event to its stock table (SQLite, one transaction; :mod:`bench.sync_ledger`), then calls every
sales channel with httpx — signed, in parallel, with a timeout — and answers only when all calls are
done. A channel call that fails is logged and counted; nothing retries it (the usual trade-off of
doing it inline: retrying would hold the producer's request open even longer). An order event whose
order is not known yet (it arrived out of order) is answered 503, so the producer retries it.

The ledger rules are inventory's without parking or reservation expiry. It is served exactly like the
services (uvicorn, uvloop, httptools, one worker)::

    SYNC_DB=/tmp/sync.db SYNC_SECRET=... SYNC_CHANNELS='[{"name","url","secret","buffer"}]' \\
        [SYNC_SOURCES='{"shop": "stockwire", "store": "commerce-engine"}'] python -m bench.flash_sale_sync <port>
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
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.profiles import MappingError, load_profile
from libs.signing import SignatureError, sign_standard_webhook, verify_commerce_engine
from libs.store import create_engine
from stockwire.dev_sources import DEV_SOURCES

from .sync_ledger import Level, NotYet, Tx, apply, metadata, seen, stock

__all__ = ["create_app"]

log = logging.getLogger("bench.sync")


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
            await conn.run_sync(metadata.create_all)
        limits = httpx.Limits(max_connections=16, max_keepalive_connections=16, keepalive_expiry=4.0)
        clients = {t["name"]: httpx.AsyncClient(timeout=timeout, limits=limits) for t in targets}
        app.state.channels = Channels(targets, clients)
        try:
            yield
        finally:
            for client in clients.values():
                await client.aclose()
            await engine.dispose()

    dialects = json.loads(os.environ.get("SYNC_SOURCES", "null")) or dict(DEV_SOURCES)
    profiles = {source: load_profile(name) for source, name in dialects.items()}

    @post("/webhooks/{source:str}")
    async def webhook(source: str, request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
        body = await request.body()
        if source not in profiles:
            return Response({"error": "unknown_source", "detail": source}, status_code=404)
        try:
            verify_commerce_engine([secret], body, request.headers.get("x-webhook-signature"))
        except SignatureError as exc:
            return Response({"error": "invalid_signature", "detail": str(exc)}, status_code=401)
        try:
            mapped = profiles[source].map_body(body)
        except MappingError as exc:
            return Response({"error": "malformed", "detail": str(exc)}, status_code=400)
        if mapped.event_id is None:
            return Response({"error": "malformed", "detail": "no event id"}, status_code=400)
        event_id = f"{source}:{mapped.event_id}"
        try:
            async with lock, engine.begin() as conn:
                if (await conn.execute(sa.select(seen).where(seen.c.event_id == event_id))).first():
                    return Response({"status": "duplicate"}, status_code=200)
                tx = Tx(conn)
                decision = await apply(tx, mapped.event)
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
