"""Two inventory processes on one PostgreSQL store, consuming the same durable consumer."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa
from nats.js import JetStreamContext

from libs.natsserver import NatsServer
from libs.store import create_engine
from tests.support import eventually
from tests.unit.inventory.histories import MemoryInventory, envelope

from .conftest import InventoryProcess, drained, order_stream, publish_all

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


async def test_two_replicas_never_oversell_and_apply_every_event_once(
    js: JetStreamContext, nats_server: NatsServer, data_dir: Path, tmp_path: Path, postgres_url: str, processes: list
) -> None:
    replicas = [
        InventoryProcess(
            nats_server.url, data_dir, tmp_path / f"replica-{i}.log", database_url=postgres_url, batch_size=16
        )
        for i in range(2)
    ]
    for replica in replicas:
        processes.append(replica.start())
    for replica in replicas:
        await eventually(replica.ready, timeout=30, what="replica ready")

    # The last unit, and fifty shoppers at once.
    await publish_all(js, [envelope("inventory.received", "last-unit", {"sku": "LAST", "qty": 1})])
    await eventually(lambda: drained(js), what="receipt applied")
    await publish_all(
        js,
        [
            envelope("order.created", f"race-{i}", {"order_id": f"race-{i}", "lines": [{"sku": "LAST", "qty": 1}]})
            for i in range(50)
        ],
    )
    # And a stream of order histories, shared out between the two. The stock is in place first: two
    # replicas give no order between a receipt and an order of different subjects consumed at the same
    # moment, so an order racing its own receipt could be rejected where one ordered delivery would not.
    events = order_stream(1500, seed=3)
    receipts = [e for e in events if e.subject.endswith(".inventory.received")]
    await publish_all(js, receipts)
    await eventually(lambda: drained(js), what="receipts applied")
    await publish_all(js, events[len(receipts) :])
    await eventually(lambda: drained(js), timeout=60, what="consumer drained")

    applied = [await replica.applied() for replica in replicas]
    assert all(count > 0 for count in applied), f"both replicas should have worked: {applied}"

    engine = create_engine(postgres_url)
    try:
        async with engine.connect() as conn:
            race = dict(
                (
                    await conn.execute(
                        sa.text(
                            "SELECT state, count(*) FROM reservations WHERE key LIKE 'order:ce:race-%' GROUP BY state"
                        )
                    )
                ).all()
            )
            last = (
                await conn.execute(sa.text("SELECT on_hand, reserved, committed FROM skus WHERE sku = 'LAST'"))
            ).one()
            inbox = (await conn.execute(sa.text("SELECT count(*), count(DISTINCT msg_id) FROM inbox"))).one()
            parked = (await conn.execute(sa.text("SELECT count(*) FROM parked"))).scalar_one()
            ledger = Counter(
                (await conn.execute(sa.text("SELECT source, sku, kind, qty FROM ledger WHERE sku <> 'LAST'"))).all()
            )
            skus = {
                row[0]: tuple(row[1:])
                for row in await conn.execute(
                    sa.text("SELECT sku, on_hand, reserved, committed FROM skus WHERE sku <> 'LAST'")
                )
            }
    finally:
        await engine.dispose()

    assert race == {"reserved": 1, "rejected": 49}
    assert tuple(last) == (1, 1, 0)
    assert tuple(inbox) == (1 + 50 + len(events), 1 + 50 + len(events))
    assert parked == 0
    expected = MemoryInventory()
    expected.deliver_all(events)
    assert ledger == Counter((e.source, e.sku, e.kind.value, e.qty) for e in expected.ledger)
    assert skus == expected.quantities()
