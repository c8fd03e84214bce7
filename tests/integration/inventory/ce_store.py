"""A real inventory store (SQLite file or PostgreSQL database) fed as the consumer feeds it, with each
source read through its profile: ``ce`` as Commerce Engine, ``shop`` in Stockwire's own dialect."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.config import SourceSettings
from libs.contracts import HEADER_ORIGINAL_MSG_ID, HEADER_REPLAY_OF, deadletter_headers
from libs.profiles import SourceProfiles
from libs.store import create_engine, migrate
from libs.topology import COMMERCE, INVENTORY_CONSUMER
from services.inventory.adapters.wire import Envelope, read_event
from services.inventory.consumer import incoming
from services.inventory.service_layer import handlers
from services.inventory.service_layer.handlers import BatchResult
from services.inventory.store import schema
from services.inventory.store.repository import InventoryStore
from services.inventory.store.unit_of_work import SqlUnitOfWork

__all__ = [
    "CONFIGURED",
    "TTL_S",
    "apply",
    "open_store",
    "replayed",
    "select",
    "sku_rows",
    "v1_engine",
]

TTL_S = 900.0
CONFIGURED = SourceProfiles(
    {"ce": SourceSettings(profile="commerce-engine"), "shop": SourceSettings(profile="stockwire")}
)


async def open_store(url: str, profiles: SourceProfiles = CONFIGURED) -> InventoryStore:
    """Opened as the service opens it (migrations run), parked events read back with ``profiles``."""
    return await InventoryStore.open(url, durable_commits=False, reader=lambda e: read_event(e, profiles))


async def v1_engine(url: str) -> AsyncEngine:
    """An engine on a store migrated to version 1 only."""
    engine = create_engine(url)
    assert await migrate(engine, schema.COMPONENT, schema.MIGRATIONS[:1]) == 1
    return engine


async def apply(
    store: InventoryStore, envelopes: Sequence[Envelope], *, now: float, profiles: SourceProfiles = CONFIGURED
) -> BatchResult:
    """One fetched batch through the consumer's use case: one SQL transaction."""
    items = [incoming(e, profiles) for e in envelopes]
    return await handlers.apply_batch(SqlUnitOfWork(store), items, now=now, ttl_s=TTL_S)


async def select(store: InventoryStore, query: sa.Executable) -> list[tuple[Any, ...]]:
    async with store.engine.connect() as conn:
        return [tuple(row) for row in await conn.execute(query)]


async def sku_rows(store: InventoryStore, skus: Iterable[str]) -> dict[str, tuple[int, int, int, int]]:
    """(on_hand, reserved, committed, backordered) per SKU, as the ``skus`` table holds them."""
    t = schema.skus
    query = sa.select(t.c.sku, t.c.on_hand, t.c.reserved, t.c.committed, t.c.backordered).where(t.c.sku.in_(skus))
    return {sku: tuple(rest) for sku, *rest in await select(store, query)}


def replayed(
    original: Envelope, *, reason: str, deadletter_seq: int, seq: int, original_msg_id: bool = True
) -> Envelope:
    """``original`` as DEADLETTER kept it (its ``Nats-Msg-Id`` moved to ``Stockwire-Original-Msg-Id``;
    ``original_msg_id`` false: a dead letter of an earlier release, without it), republished to
    COMMERCE from dead letter ``deadletter_seq``, arriving there as ``seq``."""
    headers = deadletter_headers(
        original.headers,
        consumer=INVENTORY_CONSUMER,
        reason=reason,
        subject=original.subject,
        stream=COMMERCE,
        stream_seq=original.stream_seq,
        delivery_count=1,
    )
    headers[HEADER_REPLAY_OF] = str(deadletter_seq)
    if not original_msg_id:
        del headers[HEADER_ORIGINAL_MSG_ID]
    return Envelope(original.subject, original.body, headers, seq)
