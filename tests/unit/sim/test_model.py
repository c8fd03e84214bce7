from __future__ import annotations

import datetime as dt
import random

import pytest

from stockwire.sim.config import DIALECTS, Dialect, SimConfig
from stockwire.sim.generator import generate_plan
from stockwire.sim.model import Decision, GroundTruth, Mismatch, OrderState, StockLevels, compare_levels, oversold_units
from stockwire.sim.plan import Fate, Webhook

_ids = iter(range(10**6))


def ev(kind: str, **data: object) -> Webhook:
    return Webhook(f"e{next(_ids)}", kind, data, str(data.get("order_id")) if "order_id" in data else None)


def truth_of(*webhooks: Webhook, baseline: dict[str, StockLevels] | None = None) -> GroundTruth:
    truth = GroundTruth(baseline)
    for webhook in webhooks:
        truth.record(webhook)
    return truth


def order(oid: str, *lines: tuple[str, int]) -> Webhook:
    return ev("order.created", order_id=oid, lines=[{"sku": s, "qty": q} for s, q in lines])


def test_receipts_and_adjustments_move_on_hand() -> None:
    truth = truth_of(ev("inventory.received", sku="A", qty=10), ev("inventory.adjusted", sku="A", delta=-2))
    assert truth.expected({}).levels["A"] == StockLevels(8, 0, 0)


def test_the_newest_count_wins_whatever_the_delivery_order() -> None:
    newer = ev("inventory.adjusted", sku="A", on_hand=5, counted_at="2026-11-27T09:00:00+00:00")
    older = ev("inventory.adjusted", sku="A", on_hand=50, counted_at="2026-11-27T07:00:00+00:00")
    receipt = ev("inventory.received", sku="A", qty=3)
    for sequence in ([newer, older, receipt], [older, newer, receipt]):
        assert truth_of(*sequence).expected({}).levels["A"].on_hand == 8


def test_a_duplicate_event_counts_once() -> None:
    receipt = ev("inventory.received", sku="A", qty=4)
    truth = GroundTruth()
    assert truth.record(receipt) and not truth.record(receipt)
    assert truth.expected({}).levels["A"].on_hand == 4


def test_order_lifecycles_end_where_the_rules_say() -> None:
    events = [
        ev("inventory.received", sku="A", qty=100),
        order("reserved", ("A", 1)),
        order("paid", ("A", 2)),
        ev("payment.successful", order_id="paid"),
        order("captured", ("A", 3), ("A", 1)),
        ev("payment.captured", order_id="captured"),
        order("failed", ("A", 4)),
        ev("payment.failed", order_id="failed"),
        order("cancelled", ("A", 5)),
        ev("payment.successful", order_id="cancelled"),
        ev("order.cancelled", order_id="cancelled"),
        order("shipped", ("A", 6)),
        ev("payment.successful", order_id="shipped"),
        ev("order.fulfilled", order_id="shipped"),
        order("returned", ("A", 7)),
        ev("payment.successful", order_id="returned"),
        ev("shipment.shipped", order_id="returned"),
        ev("return.received", order_id="returned", lines=[{"sku": "A", "qty": 3}], restock=True),
        order("kept", ("A", 8)),
        ev("payment.successful", order_id="kept"),
        ev("shipment.shipped", order_id="kept"),
        ev("return.received", order_id="kept", lines=[{"sku": "A", "qty": 2}], restock=False),
        order("abandoned", ("A", 9)),
        order("rejected", ("A", 10)),
        ev("payment.successful", order_id="rejected"),
    ]
    decisions = {
        oid: Decision(True)
        for oid in ("reserved", "paid", "captured", "failed", "cancelled", "shipped", "returned", "kept")
    }
    decisions["abandoned"] = Decision(True, expired=True)
    decisions["rejected"] = Decision(False)
    result = truth_of(*events).expected(decisions)
    assert result.states == {
        "reserved": OrderState.RESERVED,
        "paid": OrderState.COMMITTED,
        "captured": OrderState.COMMITTED,
        "failed": OrderState.RELEASED,
        "cancelled": OrderState.RELEASED,
        "shipped": OrderState.SHIPPED,
        "returned": OrderState.SHIPPED,
        "kept": OrderState.SHIPPED,
        "abandoned": OrderState.EXPIRED,
        "rejected": OrderState.REJECTED,
    }
    # on_hand: 100 - 6 - 7 - 8 + 3 (restocked); reserved 1; committed 2 + 4
    assert result.levels["A"] == StockLevels(82, 1, 6)
    assert not result.undecided and not result.anomalies


def test_a_payment_failure_never_releases_a_paid_order_in_either_order() -> None:
    for oid, follow_ups in (
        ("late-failure", ("payment.successful", "payment.failed")),
        ("retried", ("payment.failed", "payment.successful")),
    ):
        events = [ev("inventory.received", sku="A", qty=5), order(oid, ("A", 2))]
        events += [ev(kind, order_id=oid) for kind in follow_ups]
        result = truth_of(*events).expected({oid: Decision(True)})
        assert result.states == {oid: OrderState.COMMITTED}
        assert result.levels["A"] == StockLevels(5, 0, 2)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_the_result_does_not_depend_on_delivery_order(dialect: Dialect) -> None:
    config = SimConfig(orders=300, seed=3, run_id="m", dialect=dialect)
    plan = generate_plan(config, dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    sale = [*plan.sale, *(w for steps in plan.follow_ups.values() for w in steps)]
    rng = random.Random(9)
    decisions = {oid: Decision(rng.random() < 0.8, expired=o.fate is Fate.ABANDONED) for oid, o in plan.orders.items()}
    results = []
    for seed in range(3):
        shuffled = sale[:]
        random.Random(seed).shuffle(shuffled)
        truth = truth_of(*plan.stocktake, *plan.receipts, *plan.write_offs, *shuffled)
        results.append(truth.expected(decisions).levels)
    assert results[0] == results[1] == results[2]


def test_orders_without_a_decision_are_reported_not_guessed() -> None:
    truth = truth_of(order("o1", ("A", 1)), ev("payment.successful", order_id="o2"))
    result = truth.expected({})
    assert result.undecided == ["o1"]
    assert result.anomalies == ["o2: follow-up events delivered but order.created never was"]


def test_baseline_levels_are_the_starting_point() -> None:
    truth = truth_of(order("o1", ("A", 2)), baseline={"A": StockLevels(10, 1, 3)})
    assert truth.expected({"o1": Decision(True)}).levels["A"] == StockLevels(10, 3, 3)


def test_compare_names_every_differing_field() -> None:
    expected = {"A": StockLevels(5, 1, 1), "B": StockLevels(2, 0, 0)}
    actual = {"A": StockLevels(5, 0, 1), "B": None}
    assert compare_levels(expected, actual) == [
        Mismatch("A", "reserved", 1, 0),
        Mismatch("A", "available", 3, 4),
        Mismatch("B", "on_hand", 2, None),
        Mismatch("B", "reserved", 0, None),
        Mismatch("B", "committed", 0, None),
        Mismatch("B", "available", 2, None),
    ]
    assert compare_levels(expected, {"A": StockLevels(5, 1, 1), "B": StockLevels(2, 0, 0)}) == []


def test_oversold_counts_promises_beyond_on_hand() -> None:
    assert oversold_units([StockLevels(5, 3, 2), StockLevels(5, 4, 3), StockLevels(0, 1, 0)]) == 3
    assert StockLevels(5, 4, 3).available == 0


def test_a_payment_after_expiry_takes_the_stock_again_unless_it_is_gone() -> None:
    events = [
        ev("inventory.received", sku="A", qty=10),
        order("revived", ("A", 2)),
        ev("payment.successful", order_id="revived"),
        order("too-late", ("A", 3)),
        ev("payment.captured", order_id="too-late"),
        order("cancelled-late", ("A", 4)),
        ev("order.cancelled", order_id="cancelled-late"),
    ]
    result = truth_of(*events).expected(
        {
            "revived": Decision(True, expired=True),
            "too-late": Decision(True, expired=True, rejected_later=True),
            "cancelled-late": Decision(True, expired=True),
        }
    )
    assert result.states == {
        "revived": OrderState.COMMITTED,
        "too-late": OrderState.REJECTED,
        "cancelled-late": OrderState.EXPIRED,
    }
    assert result.levels["A"] == StockLevels(10, 0, 2)


def test_restock_can_be_decided_per_line() -> None:
    events = [
        ev("inventory.received", sku="A", qty=10),
        ev("inventory.received", sku="B", qty=10),
        order("o", ("A", 2), ("B", 2)),
        ev("payment.successful", order_id="o"),
        ev("shipment.shipped", order_id="o"),
        ev(
            "return.received",
            order_id="o",
            restock=True,
            lines=[{"sku": "A", "qty": 1}, {"sku": "B", "qty": 2, "restock": False}],
        ),
    ]
    levels = truth_of(*events).expected({"o": Decision(True)}).levels
    assert levels["A"].on_hand == 9 and levels["B"].on_hand == 8
