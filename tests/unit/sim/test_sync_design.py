"""The benchmark's synchronous design applies a sale event by event, as it arrives; the ground truth
reads the same sale as a set. Both must end on the same stock, in either dialect."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from bench.sync_ledger import Tx, apply, metadata, stock
from libs.store import create_engine
from stockwire.sim.config import DIALECTS, Dialect, SimConfig
from stockwire.sim.generator import generate_plan
from stockwire.sim.model import Decision, GroundTruth, StockLevels, compare_levels
from stockwire.sim.plan import Webhook


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_the_synchronous_design_ends_where_the_ground_truth_says(dialect: Dialect) -> None:
    config = SimConfig(orders=500, seed=4, run_id="s", dialect=dialect)
    plan = generate_plan(config, dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    engine = create_engine("sqlite+aiosqlite:///:memory:")
    truth, decisions = GroundTruth(), dict[str, Decision]()

    async def send(webhook: Webhook) -> None:
        assert webhook.event is not None
        async with engine.begin() as conn:
            tx = Tx(conn)
            decision = await apply(tx, webhook.event)
            await tx.flush()
        truth.record(webhook)
        if decision is not None and webhook.order_id is not None:
            decisions.setdefault(webhook.order_id, Decision(decision == "reserved"))

    try:
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        for webhook in (*plan.stocktake, *plan.receipts, *plan.write_offs, *plan.sale):
            await send(webhook)
        for oid, steps in plan.follow_ups.items():
            if decisions[oid].accepted:
                for webhook in steps:
                    await send(webhook)
        async with engine.connect() as conn:
            rows = (await conn.execute(sa.select(stock))).all()
    finally:
        await engine.dispose()
    expectation = truth.expected(decisions)
    actual = {row.sku: StockLevels(row.on_hand, row.reserved, row.committed) for row in rows}
    assert compare_levels(expectation.levels, actual) == [] and expectation.anomalies == []
    assert 0 < sum(d.accepted for d in decisions.values()) < len(decisions)
