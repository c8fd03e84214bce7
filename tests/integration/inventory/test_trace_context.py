"""With tracing on, the outbox rows written in an apply transaction carry the trace context of the event
that caused them (docs/architecture.md, "Traces"); without it, they carry none."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from libs import tracing
from libs.config import TracingSettings
from libs.logs import JsonFormatter
from libs.profiles import SourceProfiles
from services.inventory.adapters.wire import Envelope
from services.inventory.consumer import incoming
from services.inventory.service_layer import handlers
from services.inventory.store import schema
from services.inventory.store.repository import InventoryStore
from services.inventory.store.unit_of_work import SqlUnitOfWork
from tests.unit.inventory.histories import envelope

PROFILES = SourceProfiles({})
RECEIVED = "00-11111111111111111111111111111111-1111111111111111-01"
ORDER = "00-22222222222222222222222222222222-2222222222222222-01"
PAYMENT = "00-33333333333333333333333333333333-3333333333333333-01"


async def _rows(store: InventoryStore) -> dict[str, dict[str, str]]:
    async with store.engine.connect() as conn:
        rows = (await conn.execute(sa.select(schema.outbox.c.msg_id, schema.outbox.c.headers))).all()
    return {row.msg_id: json.loads(row.headers) for row in rows}


async def test_outbox_rows_carry_the_context_of_the_event_that_caused_them(tmp_path: Path) -> None:
    store = await InventoryStore.open(f"sqlite+aiosqlite:///{tmp_path}/inventory.db", durable_commits=False)
    try:
        received = envelope("inventory.received", "recv-A", {"sku": "A", "qty": 5}, seq=1)
        # A payment before its order is parked, with the context ingress published it with.
        paid = envelope("payment.successful", "o1-paid", {"order_id": "o1"}, ts=2.0, seq=2)
        paid = Envelope(paid.subject, paid.body, {**paid.headers, "traceparent": PAYMENT}, 2)
        first = await handlers.apply_batch(
            SqlUnitOfWork(store),
            [incoming(received, PROFILES), incoming(paid, PROFILES)],
            now=time.time(),
            ttl_s=900,
            trace={"ce:recv-A": {"traceparent": RECEIVED}, "ce:o1-paid": {"traceparent": "00-ignored"}},
        )
        assert [r.outcome.value for r in first.results] == ["applied", "parked"]
        assert first.kinds == {"ce:recv-A": {"received"}}
        order = envelope("order.created", "o1", {"order_id": "o1", "lines": [{"sku": "A", "qty": 2}]}, ts=1.0, seq=3)
        second = await handlers.apply_batch(
            SqlUnitOfWork(store),
            [incoming(order, PROFILES)],
            now=time.time(),
            ttl_s=900,
            trace={"ce:o1": {"traceparent": ORDER}},
        )
        assert second.kinds == {"ce:o1": {"reserved"}, "ce:o1-paid": {"committed"}}
        rows = await _rows(store)
        context = {msg_id: headers.get("traceparent") for msg_id, headers in rows.items()}
        assert context == {
            "inventory:A:1": RECEIVED,
            "availability:A:1": RECEIVED,
            "inventory:A:2": ORDER,
            # The parked payment, settled by the order, with the context it was published with; the
            # SKU's snapshot follows its last row.
            "inventory:A:3": PAYMENT,
            "availability:A:3": PAYMENT,
        }
        assert all(headers["Content-Type"] == "application/json" for headers in rows.values())

        # Tracing off: no context anywhere.
        plain = envelope("inventory.received", "recv-B", {"sku": "B", "qty": 1}, seq=4)
        plain = Envelope(plain.subject, plain.body, {**plain.headers, "traceparent": RECEIVED}, 4)
        third = await handlers.apply_batch(
            SqlUnitOfWork(store), [incoming(plain, PROFILES)], now=time.time(), ttl_s=900
        )
        assert third.kinds == {}
        rows = await _rows(store)
        assert rows["inventory:B:1"] == {"Content-Type": "application/json"}
    finally:
        await store.close()


async def test_the_log_line_of_an_event_that_fails_in_its_batch_carries_its_trace_id(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert tracing.setup_tracing(TracingSettings(exporter="file", path=str(tmp_path / "spans.jsonl")), "inventory")
    store = await InventoryStore.open(f"sqlite+aiosqlite:///{tmp_path}/inventory.db", durable_commits=False)
    try:
        # A real failure for one event only: a trigger refuses its ledger rows.
        async with store.engine.begin() as conn:
            await conn.exec_driver_sql(
                "CREATE TRIGGER poison BEFORE INSERT ON ledger WHEN NEW.sku = 'POISON' "
                "BEGIN SELECT RAISE(ABORT, 'poisoned row'); END"
            )
        poison = envelope("inventory.received", "recv-P", {"sku": "POISON", "qty": 1}, seq=1)
        fine = envelope("inventory.received", "recv-F", {"sku": "FINE", "qty": 1}, seq=2)
        with caplog.at_level(logging.WARNING, logger="stockwire.inventory"):
            result = await handlers.apply_batch(
                SqlUnitOfWork(store),
                [incoming(poison, PROFILES), incoming(fine, PROFILES)],
                now=time.time(),
                ttl_s=900,
                trace={"ce:recv-P": {"traceparent": PAYMENT}, "ce:recv-F": {"traceparent": RECEIVED}},
            )
        assert [r.outcome.value for r in result.results] == ["failed", "applied"]
        [failed] = [r for r in caplog.records if r.getMessage().startswith("event ce:recv-P")]
        line = json.loads(JsonFormatter().format(failed))
        assert (line["trace_id"], line["span_id"]) == ("3" * 32, "3" * 16)
    finally:
        await store.close()
        tracing.shutdown_tracing()
