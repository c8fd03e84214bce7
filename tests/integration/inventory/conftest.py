from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from nats.js import JetStreamContext
from prometheus_client.parser import text_string_to_metric_families

from libs.config import NatsSettings, SourceSettings, StockwireSettings, TopologySettings
from libs.natsserver import NatsServer
from services.inventory.app import build_app
from services.inventory.settings import InventorySettings
from tests.support import eventually

ADMIN_TOKEN = "inventory-test-admin-token"
AUTH = {"authorization": f"Bearer {ADMIN_TOKEN}"}

ClientFactory = Callable[..., AbstractAsyncContextManager[AsyncTestClient]]


# `store` speaks Commerce Engine's own payloads; `ce` and every other source nobody configured are
# read as Stockwire's own dialect.
SOURCES = {"store": SourceSettings(profile="commerce-engine")}


def shared_settings(
    nats_url: str,
    data_dir: Path,
    topology: TopologySettings | None = None,
    sources: dict[str, SourceSettings] | None = None,
) -> StockwireSettings:
    return StockwireSettings(
        data_dir=str(data_dir),
        admin_token=ADMIN_TOKEN,
        nats=NatsSettings(servers=[nats_url], reconnect_wait_s=0.05, reconnect_wait_max_s=0.2),
        topology=topology or TopologySettings(),
        sources=dict(SOURCES if sources is None else sources),
    )


@pytest.fixture
def inventory_factory(data_dir: Path) -> ClientFactory:
    @asynccontextmanager
    async def make(
        nats_url: str,
        *,
        topology: TopologySettings | None = None,
        wait_bound: bool = True,
        sources: dict[str, SourceSettings] | None = None,
        **overrides: Any,
    ) -> AsyncIterator[AsyncTestClient]:
        settings = InventorySettings(**{"fetch_timeout_s": 0.2, "sweep_interval_s": 3600.0, **overrides})
        app = build_app(shared_settings(nats_url, data_dir, topology, sources), settings)
        async with AsyncTestClient(app=app) as client:
            if wait_bound and settings.consume:
                await eventually(lambda: _bound(app), what="inventory consumer bound")
            yield client

    return make


async def _bound(app: Litestar) -> bool:
    consumer = app.state.consumer
    return consumer is not None and consumer.bound


@pytest.fixture
async def inventory(
    js: JetStreamContext, nats_server: NatsServer, inventory_factory: ClientFactory
) -> AsyncIterator[AsyncTestClient]:
    async with inventory_factory(nats_server.url) as client:
        yield client


async def publish(
    js: JetStreamContext,
    event_type: str,
    event_id: str,
    data: dict[str, Any],
    *,
    source: str = "ce",
    created_at: object = "2026-11-28T10:00:00Z",
) -> int:
    """Publish a webhook to COMMERCE exactly as ingress does; returns its stream sequence."""
    body = json.dumps({"id": event_id, "event_type": event_type, "created_at": created_at, "data": data})
    headers = {
        "Nats-Msg-Id": f"{source}:{event_id}",
        "Stockwire-Event-Type": event_type,
        "Stockwire-Event-Id": event_id,
        "Stockwire-Source": source,
    }
    ack = await js.publish(f"commerce.{source}.{event_type}", body.encode(), headers=headers)
    return ack.seq


async def drained(js: JetStreamContext) -> bool:
    """Every message in COMMERCE is acknowledged by the inventory consumer (the pending count can lag
    a publish; the stream's last sequence cannot)."""
    last = (await js.stream_info("COMMERCE")).state.last_seq
    info = await js.consumer_info("COMMERCE", "inventory")
    return info.ack_floor.stream_seq >= last and info.num_ack_pending == 0


async def sku(client: AsyncTestClient, name: str) -> dict[str, Any] | None:
    from urllib.parse import quote

    response = await client.get(f"/skus/{quote(name, safe='')}")
    return response.json() if response.status_code == 200 else None


def metric(text: str, name: str, **labels: str) -> float:
    """One sample of the Prometheus exposition text (0 when absent); ``labels`` in any order (the
    multiprocess collector writes them sorted, the plain registry in declaration order)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0
