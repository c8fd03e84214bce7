from __future__ import annotations

import datetime as dt
import json
from collections import Counter

import pytest

from stockwire.sim.config import DIALECTS, CatalogueConfig, Dialect, OrderMix, SimConfig
from stockwire.sim.generator import generate_plan, sku_names
from stockwire.sim.model import GroundTruth
from stockwire.sim.plan import Fate, SalePlan, envelope

NOW = dt.datetime(2026, 11, 27, 9, 0, tzinfo=dt.UTC)
both_dialects = pytest.mark.parametrize("dialect", DIALECTS)


def plan_for(**overrides: object) -> SalePlan:
    return generate_plan(SimConfig(**{"orders": 600, "seed": 7, "run_id": "t", **overrides}), NOW)  # type: ignore[arg-type]


@both_dialects
def test_the_same_seed_gives_the_same_plan_and_another_seed_does_not(dialect: Dialect) -> None:
    first, again, other = plan_for(dialect=dialect), plan_for(dialect=dialect), plan_for(dialect=dialect, seed=8)
    bodies = lambda plan: [envelope(w, "x") for w in plan.webhooks()]  # noqa: E731
    assert bodies(first) == bodies(again)
    assert bodies(first) != bodies(other)


def test_commerce_engine_is_the_default_dialect() -> None:
    assert SimConfig().dialect == "commerce-engine"
    assert {w.source for w in plan_for().sale if w.order_id} == {"store"}


def test_order_numbers_follow_the_dialect() -> None:
    assert next(iter(plan_for(dialect="commerce-engine").orders)) == "ORD-t-000000"
    assert next(iter(plan_for(dialect="stockwire").orders)) == "t-o000000"


@both_dialects
def test_event_ids_are_unique_and_carry_the_run_id(dialect: Dialect) -> None:
    plan = plan_for(dialect=dialect)
    ids = [w.event_id for w in plan.webhooks()]
    assert len(ids) == len(set(ids))
    assert all(i.startswith("t-e") for i in ids)
    assert len(plan.orders) == 600
    assert all(oid.startswith(SimConfig(run_id="t", dialect=dialect).order_prefix) for oid in plan.orders)


@both_dialects
def test_hot_skus_get_most_of_the_demand_and_less_stock_than_demand(dialect: Dialect) -> None:
    plan = plan_for(orders=2000, dialect=dialect)
    hot = [spec for spec in plan.catalogue if spec.hot]
    cold = [spec for spec in plan.catalogue if not spec.hot]
    assert len(hot) == CatalogueConfig().hot_skus
    hot_demand, cold_demand = sum(s.demand for s in hot), sum(s.demand for s in cold)
    assert hot_demand / (hot_demand + cold_demand) > 0.7
    assert all(s.stock < s.demand for s in hot)
    assert sum(s.stock for s in plan.catalogue) < hot_demand + cold_demand


def test_stockwire_orders_have_one_to_three_distinct_lines() -> None:
    plan = plan_for(dialect="stockwire")
    sizes = Counter(len(order.lines) for order in plan.orders.values())
    assert set(sizes) == {1, 2, 3}
    for order in plan.orders.values():
        assert len({line.sku for line in order.lines}) == len(order.lines)
        assert all(1 <= line.qty <= CatalogueConfig().max_qty for line in order.lines)


@both_dialects
def test_fates_follow_the_mix(dialect: Dialect) -> None:
    plan = plan_for(orders=5000, dialect=dialect)
    fates = Counter(order.fate for order in plan.orders.values())
    mix = OrderMix()
    assert fates[Fate.ABANDONED] / 5000 == pytest.approx(mix.abandon, abs=0.015)
    assert fates[Fate.PAYMENT_FAILED] / 5000 == pytest.approx(mix.payment_failed, abs=0.015)
    assert fates[Fate.RETURNED] > 0 and fates[Fate.PAID] > 0 and fates[Fate.CANCELLED_PAID] > 0


def test_every_stockwire_order_webhook_matches_its_fate() -> None:
    plan = plan_for(dialect="stockwire")
    by_order: dict[str, list[str]] = {}
    for webhook in plan.sale:
        if webhook.order_id:
            by_order.setdefault(webhook.order_id, []).append(webhook.event_type)
    for oid, order in plan.orders.items():
        types = by_order[oid]
        assert types[0] == "order.created"
        follow = [w.event_type for w in plan.follow_ups.get(oid, ())]
        if order.fate is Fate.ABANDONED:
            assert types == ["order.created"] and not follow
        elif order.fate is Fate.PAYMENT_FAILED:
            assert types == ["order.created", "payment.failed"]
        elif order.fate is Fate.CANCELLED_UNPAID:
            assert types == ["order.created", "order.cancelled"]
        elif order.fate is Fate.CANCELLED_PAID:
            assert types[2] == "order.cancelled" and types[1] in ("payment.successful", "payment.captured")
        elif order.fate is Fate.RETURNED:
            assert follow[0] in ("shipment.shipped", "order.fulfilled") and follow[1] == "return.received"
        assert all(w.after_acceptance for w in plan.follow_ups.get(oid, ()))
    assert {w.source for w in plan.webhooks()} == {"shop"}


@both_dialects
def test_supply_before_the_sale_adds_up_to_the_planned_stock(dialect: Dialect) -> None:
    plan = plan_for(dialect=dialect)
    truth = GroundTruth()
    for webhook in (*plan.stocktake, *plan.receipts, *plan.write_offs):
        truth.record(webhook)
    levels = truth.expected({}).levels
    assert {sku: level.on_hand for sku, level in levels.items()} == {s.sku: s.stock for s in plan.catalogue}


def test_the_older_count_of_each_stocktake_comes_after_the_newer_one() -> None:
    plan = plan_for()
    counts = [w for w in plan.stocktake if "on_hand" in w.data]
    seen: dict[str, str] = {}
    for webhook in counts:
        sku = webhook.data["sku"]
        if sku in seen:
            assert webhook.data["counted_at"] < seen[sku]
        seen[sku] = webhook.data["counted_at"]
    assert len(counts) == 2 * CatalogueConfig().stocktakes


def test_bodies_are_commerce_engine_envelopes() -> None:
    webhook = plan_for().sale[0]
    document = json.loads(envelope(webhook, "2026-11-28T10:00:00Z"))
    assert set(document) == {"id", "event_type", "created_at", "data"}
    assert document["id"] == webhook.event_id


def test_sku_names_are_distinct_and_include_one_a_subject_cannot_hold() -> None:
    names = sku_names(CatalogueConfig(skus=60, hot_skus=8), "X-")
    assert len(set(names)) == 60
    assert any("." in n and " " in n for n in names)
    assert all(n.startswith("X-") for n in names)


def test_an_impossible_mix_is_refused() -> None:
    with pytest.raises(ValueError, match="must not exceed 1"):
        generate_plan(SimConfig(mix=OrderMix(abandon=0.6, payment_failed=0.6)))
