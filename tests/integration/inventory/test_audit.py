"""``stockwire audit order|sku``: raw webhooks read back from COMMERCE, ledger rows, events emitted."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient
from nats.js import JetStreamContext

from libs.natsserver import NatsServer
from stockwire.cli import main as stockwire
from tests.support import eventually

from .conftest import drained, publish


async def _history(js: JetStreamContext) -> None:
    await publish(js, "inventory.received", "r1", {"sku": "MUG", "qty": 3})
    await publish(js, "payment.successful", "p1", {"order_id": "o-77"})
    await publish(js, "order.created", "c1", {"order_id": "o-77", "lines": [{"sku": "MUG", "qty": 2}]})
    await publish(js, "shipment.shipped", "s1", {"order_id": "o-77"})
    await publish(js, "order.created", "c2", {"order_id": "o-78", "lines": [{"sku": "MUG", "qty": 5}]})
    await eventually(lambda: drained(js), what="history applied")


@pytest.fixture
async def audited(
    inventory: AsyncTestClient,
    js: JetStreamContext,
    nats_server: NatsServer,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The history applied by the running service, and the CLI pointed at its NATS and data."""
    await _history(js)
    monkeypatch.setenv("STOCKWIRE_NATS_URL", nats_server.url)
    monkeypatch.setenv("STOCKWIRE_DATA_DIR", str(data_dir))


async def test_audit_order_prints_webhooks_ledger_and_events(audited: None, capsys: pytest.CaptureFixture[str]) -> None:

    assert await asyncio.to_thread(stockwire, ["audit", "order", "o-77", "--json"]) == 0
    trail = json.loads(capsys.readouterr().out)
    assert trail["reservation"]["state"] == "shipped"
    assert [(w["stream_seq"], w["event_type"], w["outcome"]) for w in trail["webhooks"]] == [
        (2, "payment.successful", "applied"),
        (3, "order.created", "applied"),
        (4, "shipment.shipped", "applied"),
    ]
    raw = json.loads(trail["webhooks"][1]["raw"])
    assert raw["id"] == "c1" and raw["data"]["order_id"] == "o-77"
    assert trail["webhooks"][1]["headers"]["Nats-Msg-Id"] == "ce:c1"
    assert [(e["kind"], e["qty"], e["source"]) for e in trail["ledger"]] == [
        ("reserved", 2, "ce:c1"),
        ("committed", 2, "ce:p1"),
        ("deducted", 2, "ce:s1"),
    ]
    emitted = {m["subject"] for m in trail["emitted"]}
    assert {"inventory.reserved.MUG", "inventory.committed.MUG", "inventory.deducted.MUG"} <= emitted
    assert all(m["status"] == "pending in the outbox" for m in trail["emitted"])

    assert await asyncio.to_thread(stockwire, ["audit", "order", "o-78"]) == 0
    text = capsys.readouterr().out
    assert "Order o-78 (ce): rejected" in text
    assert "insufficient stock: MUG (requested 5, available 1)" in text
    assert "inventory.rejected.MUG  rejected:ce:o-78:MUG" in text

    assert await asyncio.to_thread(stockwire, ["audit", "order", "nobody"]) == 1


async def test_audit_sku_prints_every_movement_with_its_webhook(
    audited: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await asyncio.to_thread(stockwire, ["audit", "sku", "MUG", "--json"]) == 0
    trail = json.loads(capsys.readouterr().out)
    assert [e["kind"] for e in trail["ledger"]] == ["received", "reserved", "committed", "deducted"]
    assert [w["msg_id"] for w in trail["webhooks"]] == ["ce:r1", "ce:p1", "ce:c1", "ce:s1"]
    assert all(w["raw"] for w in trail["webhooks"])
    subjects = [m["subject"] for m in trail["emitted"]]
    assert "inventory.availability.MUG" in subjects
    assert "inventory.rejected.MUG" in subjects


FIXTURES = Path(__file__).parents[2] / "fixtures" / "commerce_engine"


async def _publish_fixture(js: JetStreamContext, number: int) -> None:
    [path] = FIXTURES.glob(f"{number:02d}-*.json")
    document = json.loads(path.read_text())
    await publish(js, document["event_type"], document["id"], document["data"], source="store")


async def test_audit_of_a_commerce_engine_order_shows_its_shipments_and_returns(
    audited: None, js: JetStreamContext, capsys: pytest.CaptureFixture[str]
) -> None:
    for sku, qty in (("TEE-ORG-BLK-M", 5), ("MUG-CER-350-WHT", 5), ("BNDL-GIFT-BOX-01", 5)):
        await publish(js, "inventory.received", f"r-{sku}", {"sku": sku, "qty": qty})
    for number in (1, 2, 7, 11, 12):  # placed, paid, shipment 1 shipped; shipment 2 waits for the jacket
        await _publish_fixture(js, number)
    await publish(js, "inventory.received", "r-jacket", {"sku": "JKT-RAIN-NVY-L", "qty": 1})
    await _publish_fixture(js, 15)  # the return, complete
    await eventually(lambda: drained(js), what="the order applied")

    assert await asyncio.to_thread(stockwire, ["audit", "order", "ORD-2026-000101"]) == 0
    text = capsys.readouterr().out
    assert "Order ORD-2026-000101 (store): shipped" in text
    assert "  shipment SHP-000101-1: shipped, took BNDL-GIFT-BOX-01 x1, MUG-CER-350-WHT x1, TEE-ORG-BLK-M x3" in text
    assert "  shipment SHP-000101-2: out_for_delivery, took JKT-RAIN-NVY-L x1" in text
    assert "  returned: TEE-ORG-BLK-M x1" in text
    assert "  returns restocked: RET-000101-1" in text
    assert await asyncio.to_thread(stockwire, ["audit", "order", "ORD-2026-000101", "--json"]) == 0
    trail = json.loads(capsys.readouterr().out)
    kinds = [(e["sku"], e["kind"]) for e in trail["ledger"] if e["sku"] == "JKT-RAIN-NVY-L"]
    assert kinds == [("JKT-RAIN-NVY-L", "backordered"), ("JKT-RAIN-NVY-L", "filled"), ("JKT-RAIN-NVY-L", "deducted")]
    assert trail["reservation"]["shipments"]["SHP-000101-2"]["deducted"] == {"JKT-RAIN-NVY-L": 1}
