"""Webhooks ingress spooled while NATS was down reach COMMERCE once it is back, each exactly once,
even when the producer re-sent one of them straight to JetStream meanwhile.

Ingress runs for real, in-process (Litestar's AsyncTestClient), as in tests/integration/ingress; the
relay runs with no outboxes configured, that is with the defaults `stockwire up` relies on: the
ingress spool and the inventory outbox under the data dir.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import nats
from litestar.testing import AsyncTestClient
from prometheus_client import generate_latest

from libs.config import NatsSettings, SourceSettings, StockwireSettings, TopologySettings
from libs.natsserver import NatsServer
from libs.topology import COMMERCE, apply_topology
from services.ingress.app import build_app
from services.ingress.settings import IngressSettings
from tests.support import ce_body, ce_headers, eventually

from .support import metric_value, running_relay, sqlite_unpublished, stream_messages

SECRET = "relay-test-secret"


@contextlib.asynccontextmanager
async def ingress(nats_url: str, data_dir: Path) -> AsyncIterator[AsyncTestClient]:
    shared = StockwireSettings(
        data_dir=str(data_dir),
        nats=NatsSettings(servers=[nats_url], reconnect_wait_s=0.05, reconnect_wait_max_s=0.2),
        sources={"ce": SourceSettings(scheme="commerce-engine", secrets=[SECRET])},
    )
    app = build_app(shared, IngressSettings(publish_timeout_s=1.0))
    async with AsyncTestClient(app=app) as client:
        yield client


async def _post(client: AsyncTestClient, body: bytes) -> tuple[int, str]:
    response = await client.post("/webhooks/ce", content=body, headers=ce_headers(SECRET, body))
    return response.status_code, response.json().get("status", "")


async def test_spooled_webhooks_reach_commerce_once_deduplicated_against_a_resent_copy(
    own_nats_server: NatsServer, data_dir: Path
) -> None:
    nc = await nats.connect(own_nats_server.url)
    await apply_topology(nc.jetstream(), TopologySettings())
    await nc.close()
    duplicates_before = metric_value(generate_latest().decode(), "outbox_relay_duplicates_total", "ingress")
    bodies = [ce_body("order.created", f"evt-{n}", order_id=f"o-{n}") for n in range(3)]

    async with ingress(own_nats_server.url, data_dir) as client:
        await eventually(lambda: _connected(client), what="ingress connected")
        own_nats_server.kill()
        await eventually(lambda: _disconnected(client), what="ingress noticed NATS is gone")
        for body in bodies:
            assert await _post(client, body) == (202, "spooled")
        assert sqlite_unpublished(data_dir / "ingress.db") == 3

        async with running_relay(own_nats_server.url, data_dir, []) as relay:
            assert [r.name for r in relay.relays] == ["ingress", "inventory"]
            own_nats_server.start()
            await eventually(lambda: _connected(client), timeout=15, what="ingress reconnected")
            # The producer did not trust the 202 and sends evt-1 again.
            status, outcome = await _post(client, bodies[1])
            assert status == 200 and outcome in ("accepted", "duplicate")
            await eventually(lambda: _spool_drained(data_dir), timeout=15, what="spool drained into COMMERCE")
            duplicates = metric_value(generate_latest().decode(), "outbox_relay_duplicates_total", "ingress")
            assert not (data_dir / "inventory.db").exists(), "an absent outbox is waited for, not created"

    nc = await nats.connect(own_nats_server.url)
    try:
        stored = await stream_messages(nc.jetstream(), COMMERCE)
    finally:
        await nc.close()
    assert sorted(m.msg_id for m in stored) == ["ce:evt-0", "ce:evt-1", "ce:evt-2"], "each event exactly once"
    assert {m.data for m in stored} == set(bodies), "the raw bodies, byte for byte"
    # Exactly one of the two copies of evt-1 was answered as a duplicate: the relay's or ingress's.
    relay_dups = duplicates - duplicates_before
    assert relay_dups + (outcome == "duplicate") == 1


async def _connected(client: AsyncTestClient) -> bool:
    return bool(client.app.state.writer.bus_connected)


async def _disconnected(client: AsyncTestClient) -> bool:
    return not client.app.state.writer.bus_connected


async def _spool_drained(data_dir: Path) -> bool:
    return sqlite_unpublished(data_dir / "ingress.db") == 0
