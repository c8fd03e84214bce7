"""The relay's HTTP surface: health, readiness and metrics only."""

from __future__ import annotations

import uuid
from pathlib import Path

from litestar.testing import AsyncTestClient

from libs.config import NatsSettings, StockwireSettings
from libs.natsserver import NatsServer, free_port
from services.outbox_relay.app import build_app
from services.outbox_relay.settings import OutboxRelaySettings, OutboxSpec
from tests.support import eventually

from .support import Outbox, message, metric_value


async def test_health_readiness_and_metrics_while_nats_is_unreachable(data_dir: Path) -> None:
    name = f"t{uuid.uuid4().hex[:8]}"
    url = f"sqlite+aiosqlite:///{data_dir / 'inventory.db'}"
    outbox = await Outbox.create(url)
    await outbox.write([message(1)])
    nowhere = f"nats://127.0.0.1:{free_port()}"
    shared = StockwireSettings(data_dir=str(data_dir), nats=NatsSettings(servers=[nowhere], reconnect_wait_max_s=0.2))
    app = build_app(shared, OutboxRelaySettings(outboxes=[OutboxSpec(name, url)], stats_interval_s=0.1))
    try:
        async with AsyncTestClient(app=app) as client:
            assert (await client.get("/healthz")).json() == {"status": "ok"}
            ready = await client.get("/readyz")
            # A sidecar must not take its ingress pod out of rotation because JetStream is away.
            assert ready.status_code == 200 and ready.json()["checks"] == {"relaying": True}

            async def backlog() -> bool:
                text = (await client.get("/metrics")).text
                return metric_value(text, "outbox_relay_backlog_rows", name) == 1

            await eventually(backlog, what="backlog gauge of the unpublished row")
            text = (await client.get("/metrics")).text
            assert metric_value(text, "outbox_relay_leader", name) == 0, "no lease without NATS"
            assert f'outbox_relay_published_total{{outbox="{name}"}} 0.0' in text
    finally:
        await outbox.close()


async def test_the_app_relays(nats_server: NatsServer, js, data_dir: Path) -> None:  # type: ignore[no-untyped-def]
    name = f"t{uuid.uuid4().hex[:8]}"
    url = f"sqlite+aiosqlite:///{data_dir / 'inventory.db'}"
    outbox = await Outbox.create(url)
    await outbox.write([message(n) for n in range(3)])
    shared = StockwireSettings(data_dir=str(data_dir), nats=NatsSettings(servers=[nats_server.url]))
    app = build_app(shared, OutboxRelaySettings(outboxes=[OutboxSpec(name, url)]))
    try:
        async with AsyncTestClient(app=app) as client:

            async def published() -> bool:
                return metric_value((await client.get("/metrics")).text, "outbox_relay_published_total", name) == 3

            await eventually(published, what="three rows published")
        assert await outbox.unpublished() == 0
    finally:
        await outbox.close()
