"""One id, one body: an id reused with different content is a visible conflict, inside or after the
dedup window, and the first body stays the one in COMMERCE.

COMMERCE runs here with a one-second duplicate window, so "after the window" comes quickly.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sqlite3
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from libs.config import TopologySettings
from libs.natsserver import NatsServer
from libs.topology import COMMERCE, DEADLETTER, KV_EVENT_IDS
from services.ingress.identity import id_key
from services.ingress.webhook import InboundWebhook
from tests.support import ce_body, ce_headers, eventually

from .conftest import CE_SECRET, ClientFactory

WINDOW_S = 1.0


@pytest.fixture
def topology_settings() -> TopologySettings:
    return TopologySettings(duplicate_window_s=WINDOW_S)


def _order(units: int, event_id: str = "dup-1") -> bytes:
    return ce_body("order.created", event_id, order_id="o-dup", lines=[{"sku": "SKU-D", "qty": units}])


async def _post(client: AsyncTestClient, body: bytes) -> tuple[int, dict[str, object]]:
    response = await client.post("/webhooks/ce", content=body, headers=ce_headers(CE_SECRET, body))
    return response.status_code, response.json()


async def _messages(js: JetStreamContext, stream: str) -> list[tuple[str, bytes, dict[str, str]]]:
    info = await js.stream_info(stream)
    out = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1) if info.state.messages else ():
        msg = await js.get_msg(stream, seq, direct=True)
        out.append((msg.subject, msg.data or b"", dict(msg.headers or {})))
    return out


async def _events(js: JetStreamContext) -> list[bytes]:
    return [data for subject, data, _ in await _messages(js, COMMERCE) if subject.startswith("commerce.ce.")]


async def _window_passed(js: JetStreamContext) -> None:
    """Wait, on a condition, until JetStream has forgotten ids published before this call: a probe id
    published now is answered duplicate until the window has run out for it (and for all before it)."""
    headers = {"Nats-Msg-Id": "probe:window"}
    await js.publish("commerce.probe.window", b"", headers=headers)

    async def forgotten() -> bool:
        return not (await js.publish("commerce.probe.window", b"", headers=headers)).duplicate

    await eventually(forgotten, timeout=WINDOW_S * 10, interval=0.1, what="dedup window passed")


def _sha(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _conflicts(metrics: str) -> float:
    for line in metrics.splitlines():
        if line.startswith('ingress_webhook_conflicts_total{source="ce"} '):
            return float(line.split()[-1])
    return 0.0


async def _assert_conflict(client: AsyncTestClient, body: bytes, first: bytes) -> None:
    status, answer = await _post(client, body)
    assert status == 409, answer
    assert answer["error"] == "conflict" and "first" in str(answer["detail"])
    assert answer["first_body_sha256"] == _sha(first)


async def _assert_evidence(js: JetStreamContext, bodies: list[bytes], first: bytes) -> None:
    kept = await _messages(js, DEADLETTER)
    assert [data for _, data, _ in kept] == bodies, "each conflicting body kept once, byte for byte"
    for subject, data, headers in kept:
        assert subject == "deadletter.ingress.commerce.ce.order.created"
        assert headers["Stockwire-Event-Msg-Id"] == "ce:dup-1"
        assert headers["Stockwire-First-Body-Digest"] == _sha(first)
        assert headers["Stockwire-Body-Digest"] == _sha(data)


async def test_an_id_reused_inside_the_window_is_a_conflict_and_the_first_body_stays(
    ingress: AsyncTestClient, js: JetStreamContext
) -> None:
    first, second = _order(1), _order(7)
    assert (await _post(ingress, first))[1]["status"] == "accepted"
    await _assert_conflict(ingress, second, first)
    await _assert_conflict(ingress, second, first)
    status, answer = await _post(ingress, first)
    assert (status, answer) == (200, {"status": "duplicate"}), "the same body again stays a duplicate"
    assert await _events(js) == [first]
    await _assert_evidence(js, [second], first)
    assert _conflicts((await ingress.get("/metrics")).text) >= 2


async def test_an_id_reused_after_the_window_is_a_conflict_and_the_first_body_stays(
    ingress: AsyncTestClient, js: JetStreamContext
) -> None:
    first, second, third = _order(1), _order(7), _order(3)
    before = _conflicts((await ingress.get("/metrics")).text)
    assert (await _post(ingress, first))[1]["status"] == "accepted"
    await _window_passed(js)
    await _assert_conflict(ingress, second, first)
    await _assert_conflict(ingress, third, first)
    status, answer = await _post(ingress, first)
    assert (status, answer) == (200, {"status": "duplicate"}), "the same body after the window: still a duplicate"
    assert await _events(js) == [first], "nothing stored again"
    await _assert_evidence(js, [second, third], first)
    assert _conflicts((await ingress.get("/metrics")).text) - before == 2


async def test_a_conflict_with_a_spooled_event_is_seen_while_jetstream_is_away(
    own_nats_server: NatsServer, data_dir: Path, ingress_factory: ClientFactory
) -> None:
    first, second = _order(1), _order(7)
    async with ingress_factory(own_nats_server.url) as client:
        own_nats_server.kill()
        await eventually(lambda: _disconnected(client), what="ingress noticed NATS is gone")
        assert await _post(client, first) == (202, {"status": "spooled"})
        await _assert_conflict(client, second, first)
        assert await _post(client, first) == (202, {"status": "spooled"})
    with sqlite3.connect(data_dir / "ingress.db") as db:
        rows = db.execute("SELECT subject, payload, headers FROM outbox ORDER BY id").fetchall()
    assert [(subject, bytes(payload)) for subject, payload, _ in rows] == [
        ("commerce.ce.order.created", first),
        ("deadletter.ingress.commerce.ce.order.created", second),
    ], "the evidence waits in the spool for the relay, the conflicting body never goes to COMMERCE"
    assert json.loads(rows[1][2])["Stockwire-First-Body-Digest"] == _sha(first)


async def test_a_relayed_event_is_remembered_so_a_later_reuse_is_seen(
    js: JetStreamContext, nats_server: NatsServer, data_dir: Path, ingress_factory: ClientFactory
) -> None:
    # What the relay does with a spooled row: publish it and mark it published.
    first, second = _order(1), _order(7)
    async with ingress_factory(nats_server.url, spool_depth_interval_s=0.05) as client:
        await client.app.state.writer.spool.write(_inbound(first))
        await js.publish("commerce.ce.order.created", first, headers={"Nats-Msg-Id": "ce:dup-1"})
        with sqlite3.connect(data_dir / "ingress.db") as db:
            db.execute("UPDATE outbox SET published_at = 1")
        kv = await js.key_value(KV_EVENT_IDS)
        await eventually(lambda: _known(kv), what="ingress recorded the relayed event's digest")
        await _window_passed(js)
        await _assert_conflict(client, second, first)
    assert await _events(js) == [first]


def _inbound(body: bytes) -> InboundWebhook:
    return InboundWebhook("ce", "dup-1", "order.created", body, dt.datetime.now(dt.UTC))


async def _known(kv: KeyValue) -> bool:
    try:
        await kv.get(id_key("ce:dup-1"))
    except KeyNotFoundError:
        return False
    return True


async def _disconnected(client: AsyncTestClient) -> bool:
    return not client.app.state.writer.bus_connected


async def test_a_body_spooled_against_an_id_known_before_the_outage_is_reported_once_relayed(
    js: JetStreamContext, nats_server: NatsServer, data_dir: Path, ingress_factory: ClientFactory
) -> None:
    first, second = _order(1), _order(7)
    async with ingress_factory(nats_server.url, spool_depth_interval_s=0.05) as client:
        assert (await _post(client, first))[1]["status"] == "accepted"
        kv = await js.key_value(KV_EVENT_IDS)
        await eventually(lambda: _known(kv), what="the first body recorded")
        before = _conflicts((await client.get("/metrics")).text)
        # Spooled while JetStream was away (the spool held no row for the id), then relayed.
        await client.app.state.writer.spool.write(_inbound(second))
        with sqlite3.connect(data_dir / "ingress.db") as db:
            db.execute("UPDATE outbox SET published_at = 1")

        async def reported() -> bool:
            return _conflicts((await client.get("/metrics")).text) == before + 1

        await eventually(reported, what="the late conflict counted")
    assert await _events(js) == [first]
