from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re

from stockwire.demo.html import render_html
from stockwire.demo.report import Observation, SettleStep, build_report
from stockwire.sim.config import CatalogueConfig, Dialect, OrderMix, SimConfig
from stockwire.sim.generator import generate_plan
from stockwire.sim.model import Decision, GroundTruth, StockLevels
from stockwire.sim.producer import DeliveryStats
from stockwire.sim.runner import SimResult

T0 = 1_800_000_000.0


def observation(dialect: Dialect = "commerce-engine", **changes: object) -> Observation:
    """A small sale that went perfectly: every event delivered, every order reserved and paid."""
    config = SimConfig(
        orders=20,
        run_id="r",
        dialect=dialect,
        catalogue=CatalogueConfig(
            skus=3,
            hot_skus=1,
            stocktakes=0,
            damaged=0,
            hot_stock_ratio=5,
            cold_stock_ratio=5,
            gift_skus=0,
            bundle_skus=0,
        ),
        mix=OrderMix(
            abandon=0,
            payment_failed=0,
            cancel_unpaid=0,
            cancel_paid=0,
            ship=0,
            mid_sale_adjustments=0,
            mid_sale_receipts=0,
        ),
    )
    plan = generate_plan(config, dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    truth = GroundTruth()
    delivered_at = {}
    for n, webhook in enumerate(plan.webhooks()):
        truth.record(webhook)
        delivered_at[webhook.event_id] = T0 + n * 0.01
    decisions = {oid: Decision(True) for oid in plan.orders}
    expectation = truth.expected(decisions)
    stats = DeliveryStats(requests=len(delivered_at), deliveries=len(delivered_at), accepted=len(delivered_at))
    result = SimResult(plan, truth, stats, delivered_at, T0, T0 + 1, T0 + 2, T0 + 3)
    # Each SKU changed once, by its first event, and every channel saw it 50 ms later.
    sources, snapshots, arrivals = {}, {}, {"storefront": [], "marketplace": []}
    for n, (sku, level) in enumerate(expectation.levels.items()):
        event_id = next(iter(delivered_at))
        sources[(sku, n + 1)] = event_id
        snapshots[(sku, n + 1)] = delivered_at[event_id] + 0.01
        arrivals["storefront"].append((sku, n + 1, level.available, delivered_at[event_id] + 0.05))
        arrivals["marketplace"].append((sku, n + 1, max(0, level.available - 2), delivered_at[event_id] + 0.05))
    latest = {sku: (level.available, n + 1) for n, (sku, level) in enumerate(expectation.levels.items())}
    base = Observation(
        config=config,
        result=result,
        decisions=decisions,
        expectation=expectation,
        actual=dict(expectation.levels),
        versions={sku: v for sku, (_, v) in latest.items()},
        worst_oversold=0,
        inventory_kinds={"reserved": 30, "committed": 30},
        inventory_messages=60,
        sources=sources,
        snapshots=snapshots,
        latest_snapshot=latest,
        decision_times=[T0 + 1.5] * len(decisions),
        caches={
            "storefront": {sku: (a, v) for sku, (a, v) in latest.items()},
            "marketplace": {sku: (max(0, a - 2), v) for sku, (a, v) in latest.items()},
        },
        arrivals=arrivals,
        sink_counts={"storefront": {"received": 3}, "marketplace": {"received": 3}},
        buffers={"storefront": 0, "marketplace": 2},
        timeseries=[
            {
                "t": 0.0,
                "delivered": 0,
                "orders_decided": 0,
                "inventory_events": 0,
                "channel_updates": 0,
                "inventory_lag": 0,
                "notifier_lag": 0,
            },
            {
                "t": 1.0,
                "delivered": 40,
                "orders_decided": 20,
                "inventory_events": 60,
                "channel_updates": 6,
                "inventory_lag": 3,
                "notifier_lag": 1,
            },
        ],
        deadletters=[],
        ledger_verify={"ran": True, "ok": True, "output": "ledger verified: 3 SKUs"},
        settle=[SettleStep("every order decided by inventory", True, 0.1)],
    )
    return dataclasses.replace(base, **changes)


def failing(report: dict) -> list[str]:
    return [i["name"] for i in report["invariants"] if not i["ok"]]


def test_a_clean_sale_passes_every_invariant() -> None:
    report = build_report(observation())
    assert report["ok"], failing(report)
    assert report["orders"]["reserved"] == 20 and report["orders"]["rejected"] == 0
    assert report["latency"]["webhook_to_all_channels"]["count"] == 3
    assert report["latency"]["webhook_to_all_channels"]["p99_ms"] == 50.0
    assert report["dialect"]["profile"] == "commerce-engine"
    assert report["dialect"]["sources"] == {"orders, payments, shipments, returns": "store", "stock": "shop"}
    json.dumps(report)  # the report is JSON as it stands


def test_the_report_says_which_dialect_the_sale_was_written_in() -> None:
    assert "Commerce Engine webhooks" in render_html(build_report(observation()))
    report = build_report(observation("stockwire"))
    assert report["ok"], failing(report)
    assert report["dialect"] == {
        "name": "Stockwire's own dialect",
        "profile": "stockwire",
        "sources": {"everything": "shop"},
    }
    assert "Stockwire&#x27;s own dialect" in render_html(report)


def test_each_broken_invariant_is_named() -> None:
    clean = observation()
    sku = next(iter(clean.actual))
    level = clean.actual[sku]
    assert level is not None
    cases = {
        "zero oversell": {"worst_oversold": 2},
        "ledger equals the ground truth": {
            "actual": {**clean.actual, sku: StockLevels(level.on_hand + 1, level.reserved, level.committed)}
        },
        "channel caches converged": {"caches": {**clean.caches, "storefront": {}}},
        "nothing unexpected in DEADLETTER": {"deadletters": [{"subject": "deadletter.inventory.x", "error": "boom"}]},
        "ledger verify": {"ledger_verify": {"ran": True, "ok": False, "output": "chain broken at row 7"}},
        "settled: drained": {"settle": [SettleStep("drained", False, 60.0, "lag 12")]},
    }
    for name, change in cases.items():
        report = build_report(observation(**change))
        assert not report["ok"]
        assert name in failing(report), (name, failing(report))


def test_dead_letters_the_scenario_put_there_are_allowed() -> None:
    report = build_report(observation(deadletters=[{"subject": "s", "error": "e"}], deadletter_allowed=1))
    assert report["ok"], failing(report)


def test_the_html_page_is_self_contained() -> None:
    page = render_html(build_report(observation()))
    assert page.count("<svg") == 3
    assert "all invariants hold" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<script" not in page
