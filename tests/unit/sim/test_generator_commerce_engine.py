"""The Commerce Engine dialect: bodies its profile reads, the schema's shape, both vocabularies, and
stories a store really tells (free units, gifts, digital goods, backorders, retried payments, split
shipments, returns by product)."""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from functools import cache

import msgspec
import pytest

from libs.profiles import load_profile
from libs.profiles.canonical import StockAdjusted
from stockwire.sim.config import DIALECTS, Dialect, SimConfig
from stockwire.sim.generator import generate_plan
from stockwire.sim.plan import Fate, SalePlan, Webhook, envelope
from tests.unit.libs.test_commerce_engine_fixtures import DATA_SCHEMA, ENUMS, REQUIRED, objects

NOW = dt.datetime(2026, 11, 27, 9, 0, tzinfo=dt.UTC)
STEPS = ("scheduled", "packed", "shipped", "in_transit", "out_for_delivery", "delivered")


@cache
def plan(orders: int = 3000, seed: int = 5, dialect: Dialect = "commerce-engine") -> SalePlan:
    return generate_plan(SimConfig(orders=orders, seed=seed, run_id="ce", dialect=dialect), NOW)


def stories(sale: SalePlan) -> dict[str, list[Webhook]]:
    """Every order's webhooks: the sale's in planned order, then its follow-ups."""
    out: dict[str, list[Webhook]] = defaultdict(list)
    for webhook in sale.sale:
        if webhook.order_id:
            out[webhook.order_id].append(webhook)
    for oid, steps in sale.follow_ups.items():
        out[oid] += steps
    return out


def shipments(story: list[Webhook]) -> dict[str, list[Webhook]]:
    out: dict[str, list[Webhook]] = defaultdict(list)
    for webhook in story:
        if webhook.event_type.startswith("shipment."):
            out[webhook.data["reference_number"]].append(webhook)
    return out


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_webhook_maps_under_its_profile_to_the_event_it_carries(dialect: Dialect, seed: int) -> None:
    profiles = {name: load_profile(name) for name in DIALECTS}
    for webhook in plan(1000, seed, dialect).webhooks():
        mapped = profiles[webhook.dialect].map_body(envelope(webhook, "2026-11-27T10:00:00Z")).event
        if isinstance(mapped, StockAdjusted) and mapped.delta is not None:
            mapped = msgspec.structs.replace(mapped, counted_at=None)  # a delta's time is the envelope's
        assert mapped == webhook.event, webhook


def test_every_object_carries_the_fields_the_schema_requires_and_allowed_values() -> None:
    missing, wrong = Counter[str](), Counter[str]()
    for webhook in plan().webhooks():
        if webhook.dialect != "commerce-engine":
            continue
        schema = DATA_SCHEMA[webhook.event_type.split(".")[0]]
        for kind, where, value in objects(schema, dict(webhook.data), "data"):
            missing.update(f"{where}.{field} ({kind})" for field in REQUIRED[kind] if field not in value)
            wrong.update(
                f"{where}.{field}={value[field]!r}"
                for (owner, field), allowed in ENUMS.items()
                if owner == kind and field in value and value[field] not in allowed
            )
    assert not missing and not wrong


def test_both_vocabularies_and_every_status_are_spoken() -> None:
    webhooks = list(plan().webhooks())
    types = Counter(w.event_type for w in webhooks)
    current = {"payment.success", "shipment.updated", "shipment.delivered", "order.confirmed", "order.completed"}
    current |= {"payment.retried", "payment.refund.initiated", "payment.refund.success", "payment.refund.failed"}
    earlier = {"payment.successful", "shipment.shipped", "return.initiated"}
    both = {"order.created", "order.cancelled", "payment.failed", "shipment.created", "shipment.cancelled"}
    assert current | earlier | both <= set(types), sorted(current | earlier | both - set(types))
    statuses = {w.data["status"] for w in webhooks if w.event_type.startswith("shipment.")}
    assert set(STEPS) | {"return_to_origin", "lost", "cancelled"} <= statuses
    returns = [w.data for w in webhooks if w.event_type == "return.initiated"]
    assert {"created", "approved", "complete", "rejected"} <= {r["status"] for r in returns}
    assert all(("received_at" in r) == (r["status"] == "complete") for r in returns)


def test_orders_go_to_the_commerce_engine_source_and_stock_to_shop() -> None:
    routes = {(w.event_type.split(".")[0], w.source, w.dialect) for w in plan().webhooks()}
    assert {source for _, source, _ in routes} == {"shop", "store"}
    for kind, source, dialect in routes:
        if kind == "inventory":
            assert (source, dialect) == ("shop", "stockwire")
        else:
            assert (source, dialect) == ("store", "commerce-engine")


def test_order_items_hold_free_units_gifts_bundles_digital_goods_and_backorders() -> None:
    sale = plan()
    stocked = {spec.sku for spec in sale.catalogue}
    items = [item for oid in sale.orders for item in _placed(sale, oid)]
    assert any(i["quantity"] > 0 and i["free_quantity"] > 0 for i in items)
    gifts = [i for i in items if i["is_free_item"]]
    assert gifts and all((i["quantity"], i["free_quantity"]) == (0, 1) for i in gifts)
    assert any(i["product_type"] == "bundle" for i in items) and any(i["backorder"] for i in items)
    digital = {i["sku"] for i in items if i["product_type"] == "digital"}
    assert digital and not digital & stocked, "digital goods have SKUs of their own, never stocked"
    for oid in sale.orders:
        own = _placed(sale, oid)
        assert len({i["sku"] for i in own}) == len(own)
        # A stocked line that is not a backorder: inventory's decision on every order shows on the stream.
        assert any(i["product_type"] != "digital" and not i["backorder"] for i in own)


def _placed(sale: SalePlan, oid: str) -> list[dict[str, object]]:
    created = next(w for w in sale.sale if w.order_id == oid and w.event_type == "order.created")
    return list(created.data["order_items"])


def test_an_order_with_a_backorder_is_paid_never_completed_and_its_backorder_never_leaves() -> None:
    sale = plan()
    with_backorder = [oid for oid in sale.orders if any(i["backorder"] for i in _placed(sale, oid))]
    assert len(with_backorder) > 20
    for oid in with_backorder:
        assert sale.orders[oid].fate in (Fate.PAID, Fate.SHIPPED, Fate.RETURNED)
        story = stories(sale)[oid]
        assert "order.completed" not in {w.event_type for w in story}
        waiting = {i["sku"] for i in _placed(sale, oid) if i["backorder"]}
        for reports in shipments(story).values():
            if waiting & {item["sku"] for item in reports[0].data["shipment_items"]}:
                assert [w.data["status"] for w in reports] == ["scheduled"]


def test_payments_succeed_are_retried_or_fail_for_good() -> None:
    sale = plan()
    seen = Counter[str]()
    for oid, story in stories(sale).items():
        payments = [w.event_type for w in story if w.event_type.startswith("payment.") and "refund" not in w.event_type]
        succeeded = [p for p in payments if p in ("payment.success", "payment.successful")]
        fate = sale.orders[oid].fate
        if fate in (Fate.ABANDONED, Fate.CANCELLED_UNPAID):
            assert payments == []
        elif fate is Fate.PAYMENT_FAILED:
            assert payments in (["payment.failed"], ["payment.failed", "payment.retried", "payment.failed"])
        elif story[0].data["payment_status"] == "success":  # paid at checkout
            assert succeeded == [] and story[0].data["status"] == "confirmed"
            seen["paid at checkout"] += 1
        else:
            assert len(succeeded) == 1
            before = payments[: payments.index(succeeded[0])]
            assert before in ([], ["payment.failed", "payment.retried"])
            seen["retried" if before else "first time"] += 1
            seen["late failure"] += payments[-1] == "payment.failed"
    assert seen["retried"] > 50 and seen["first time"] > 1000 and seen["late failure"] > 5
    assert seen["paid at checkout"] > 30


def test_shipments_split_an_order_and_report_each_status_once_in_order() -> None:
    sale = plan()
    sizes = Counter[int]()
    missing_shipped = 0
    for oid, story in stories(sale).items():
        if sale.orders[oid].fate not in (Fate.SHIPPED, Fate.RETURNED):
            continue
        own = [i for i in _placed(sale, oid) if i["product_type"] != "digital" and not i["backorder"]]
        moving = {ref: reports for ref, reports in shipments(story).items() if not ref.endswith("-B")}
        sizes[len(moving)] += 1
        carried = Counter(item["sku"] for reports in moving.values() for item in reports[0].data["shipment_items"])
        assert carried == Counter(i["sku"] for i in own), "every stocked line in exactly one shipment"
        for reports in moving.values():
            statuses = [w.data["status"] for w in reports]
            assert statuses[0] == "scheduled" and reports[0].event_type == "shipment.created"
            ranks = [STEPS.index(s) for s in statuses if s in STEPS]
            assert ranks == sorted(ranks)
            missing_shipped += "shipped" not in statuses
            if statuses[-1] in ("return_to_origin", "lost"):
                assert statuses[-2] == "in_transit"
        completed = any(w.event_type == "order.completed" for w in story)
        if completed:
            assert all(reports[-1].data["status"] == "delivered" for reports in moving.values())
    assert set(sizes) == {1, 2, 3} and missing_shipped > 50


def test_a_cancelled_shipment_is_followed_by_the_cancelled_order_and_a_refund() -> None:
    sale = plan()
    cancelled = 0
    for story in stories(sale).values():
        types = [w.event_type for w in story]
        if "shipment.cancelled" in types:
            cancelled += 1
            after = types[types.index("shipment.cancelled") + 1 :]
            assert after[:2] == ["order.cancelled", "payment.refund.initiated"]
            assert not any(w.data.get("status") in STEPS[2:] for w in story if w.event_type.startswith("shipment."))
    assert cancelled > 20


def test_returns_name_products_of_delivered_shipments_within_what_they_carried() -> None:
    sale = plan()
    returns = 0
    for story in stories(sale).values():
        delivered = {
            ref: {
                (i["product_id"], i["variant_id"]): i["quantity"] + i["free_quantity"]
                for i in r[-1].data["shipment_items"]
            }
            for ref, r in shipments(story).items()
            if r[-1].data["status"] == "delivered"
        }
        for webhook in story:
            if webhook.event_type != "return.initiated":
                continue
            returns += 1
            for item in webhook.data["items"]:
                assert "sku" not in item
                assert (
                    1
                    <= item["quantity"]
                    <= delivered[item["shipment_number"]][(item["product_id"], item["variant_id"])]
                )
    assert returns > 100


def test_an_order_placed_again_keeps_its_number_under_a_new_event_id() -> None:
    again = [story for story in stories(plan()).values() if [w.event_type for w in story].count("order.created") == 2]
    assert again
    for story in again:
        first, second = (w for w in story if w.event_type == "order.created")
        assert first.event_id != second.event_id and first.data == second.data
