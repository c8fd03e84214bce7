"""The ground truth for Commerce Engine histories made by hand (and its fixtures' story): what each
rule of the ledger leaves on the shelf, read through the ``commerce-engine`` profile."""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from stockwire.sim.ce_payloads import order_document, return_document, shipment_document, with_status
from stockwire.sim.model import Decision, GroundTruth, OrderState, StockLevels
from stockwire.sim.plan import Line, ProductType, Webhook

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "commerce_engine"
AT = "2026-11-27T09:00:00Z"
_ids = itertools.count()
ACCEPTED = Decision(True)


def hook(event_type: str, data: dict[str, Any]) -> Webhook:
    return Webhook(f"h{next(_ids)}", event_type, data, data["order_number"], source="store", dialect="commerce-engine")


def receipt(sku: str, qty: int) -> Webhook:
    return Webhook(f"s{next(_ids)}", "inventory.received", {"sku": sku, "qty": qty})


def line(sku: str, qty: int, free: int = 0, *, kind: ProductType = "physical", backorder: bool = False) -> Line:
    return Line(sku, qty, free, kind, backorder, f"prd_{sku.split('-')[0]}", f"var_{sku}")


class Store:
    """Writes webhooks as Commerce Engine would (the simulator's payload builders), order by order."""

    def __init__(self) -> None:
        self.orders: dict[str, dict[str, Any]] = {}

    def place(self, number: str, *lines: Line) -> Webhook:
        self.orders[number] = order_document(number, lines, {}, AT)
        return hook("order.created", self.orders[number])

    def say(self, event_type: str, number: str) -> Webhook:
        return hook(event_type, with_status(self.orders[number], "confirmed", "success", AT))

    def ship(self, number: str, reference: str, status: str, *lines: Line, kind: str = "shipment.updated") -> Webhook:
        return hook(kind, shipment_document(number, reference, status, lines, "1", AT))

    def back(
        self, number: str, request: str, status: str, *items: tuple[str, Line, int], received: bool = False
    ) -> Webhook:
        data = return_document(number, request, status, items, AT)
        if received:
            data["received_at"] = AT
        return hook("return.initiated", data)


def truth_of(webhooks: Iterable[Webhook]) -> GroundTruth:
    truth = GroundTruth()
    for webhook in webhooks:
        truth.record(webhook)
    return truth


def fixture(name: str) -> Webhook:
    document = json.loads((FIXTURES / name).read_text())
    data = document["data"]
    return Webhook(
        document["id"], document["event_type"], data, data["order_number"], source="store", dialect="commerce-engine"
    )


def test_the_fixtures_story_ends_where_the_rules_say_whatever_the_delivery_order() -> None:
    stock = [receipt(sku, n) for sku, n in (("TEE-ORG-BLK-M", 10), ("MUG-CER-350-WHT", 5), ("BNDL-GIFT-BOX-01", 3))]
    stock += [receipt(sku, n) for sku, n in (("JKT-RAIN-NVY-L", 2), ("TEE-ORG-WHT-S", 4), ("CAP-CNV-OLV", 5))]
    # Order C comes placed already confirmed: it commits at once, no payment follows.
    story = [fixture(path.name) for path in sorted(FIXTURES.glob("[0-2]*.json"))]
    decisions = {oid: ACCEPTED for oid in ("ORD-2026-000101", "ORD-2026-000102", "ORD-2026-000103")}
    for seed in range(4):
        shuffled = story[:]
        random.Random(seed).shuffle(shuffled)
        result = truth_of([*stock, *shuffled]).expected(decisions)
        assert not result.anomalies and not result.undecided
        assert result.states == {
            "ORD-2026-000101": OrderState.SHIPPED,  # completed
            "ORD-2026-000102": OrderState.RELEASED,  # its shipment cancelled, then the order
            "ORD-2026-000103": OrderState.COMMITTED,  # one shipment back to origin, one lost
        }
        assert {sku: level.on_hand for sku, level in result.levels.items()} == {
            "TEE-ORG-BLK-M": 10 - 3 + 1,  # 2 paid + 1 free shipped, one returned complete
            "MUG-CER-350-WHT": 5 - 1,  # the free gift
            "BNDL-GIFT-BOX-01": 3 - 1,
            "JKT-RAIN-NVY-L": 2 - 1,  # the backordered jacket, shipped without a `shipped` update
            "TEE-ORG-WHT-S": 4 - 1,  # B's unit released; C's unit lost
            "CAP-CNV-OLV": 5,  # back to origin
        }, "the e-book is digital: never a SKU of the ledger"
        assert all(level.reserved == level.committed == 0 for level in result.levels.values())


def test_free_units_count_digital_lines_hold_nothing_and_placing_again_changes_nothing() -> None:
    store = Store()
    placed = store.place("A", line("TEE-1", 2, 1), line("MUG-1", 0, 1), line("BOOK-1", 1, kind="digital"))
    again = Webhook("other-id", placed.event_type, placed.data, "A", source="store", dialect="commerce-engine")
    only_digital = store.place("D", line("BOOK-1", 2, kind="digital"))
    truth = truth_of([receipt("TEE-1", 9), receipt("MUG-1", 4), placed, again, only_digital])
    result = truth.expected({"A": ACCEPTED, "D": ACCEPTED})
    assert result.levels == {"TEE-1": StockLevels(9, 3, 0), "MUG-1": StockLevels(4, 1, 0)}
    assert result.states == {"A": OrderState.RESERVED, "D": OrderState.RESERVED}


def test_payment_or_confirmation_commits_and_nothing_else_moves_until_expiry_or_cancellation() -> None:
    store = Store()
    events = [receipt("S", 20), *(store.place(o, line("S", 2)) for o in "PCFLRX")]
    events += [store.say("payment.success", "P"), store.say("order.confirmed", "C")]
    events += [store.say(kind, "F") for kind in ("payment.failed", "payment.retried", "payment.failed")]
    events += [store.say("payment.successful", "L"), store.say("payment.failed", "L")]  # late: releases nothing
    events += [store.say(k, "R") for k in ("payment.success", "payment.refund.initiated", "payment.refund.success")]
    events += [store.say("order.cancelled", "X")]
    truth = truth_of(events)
    result = truth.expected({**{o: ACCEPTED for o in "PCFLRX"}})
    assert result.levels["S"] == StockLevels(20, 2, 8)  # F still holds; X released
    assert result.states["F"] is OrderState.RESERVED and result.states["X"] is OrderState.RELEASED
    expired = truth.expected({**{o: ACCEPTED for o in "PCLRX"}, "F": Decision(True, expired=True)})
    assert expired.levels["S"] == StockLevels(20, 0, 8) and expired.states["F"] is OrderState.EXPIRED


def test_a_shipment_leaves_stock_once_however_often_and_under_whatever_name_it_is_reported() -> None:
    store, tee, cap = Store(), line("TEE-1", 2, 1), line("CAP-1", 1)
    events = [receipt("TEE-1", 10), receipt("CAP-1", 5), store.place("A", tee, cap), store.say("payment.success", "A")]
    events += [store.ship("A", "S1", "scheduled", tee, kind="shipment.created"), store.ship("A", "S1", "packed", tee)]
    events += [store.ship("A", "S1", "shipped", tee), store.ship("A", "S1", "shipped", tee, kind="shipment.shipped")]
    events += [
        store.ship("A", "S1", "in_transit", tee),
        store.ship("A", "S1", "delivered", tee, kind="shipment.delivered"),
    ]
    # The second shipment's `shipped` update never comes: out for delivery is the first news of it.
    events += [store.ship("A", "S2", "packed", cap), store.ship("A", "S2", "out_for_delivery", cap)]
    result = truth_of(events).expected({"A": ACCEPTED})
    assert result.levels == {"TEE-1": StockLevels(7, 0, 0), "CAP-1": StockLevels(4, 0, 0)}


def test_scheduled_packed_and_cancelled_shipments_move_nothing_and_cancelling_releases_the_rest() -> None:
    store, tee, cap = Store(), line("TEE-1", 2), line("CAP-1", 1)
    events = [receipt("TEE-1", 10), receipt("CAP-1", 5), store.place("A", tee, cap), store.say("payment.success", "A")]
    events += [store.ship("A", "S1", "packed", tee), store.ship("A", "S1", "cancelled", tee, kind="shipment.cancelled")]
    truth = truth_of(events)
    assert truth.expected({"A": ACCEPTED}).levels["TEE-1"] == StockLevels(10, 0, 2)
    truth.record(store.ship("A", "S2", "in_transit", cap))
    truth.record(store.say("order.cancelled", "A"))
    result = truth.expected({"A": ACCEPTED})
    assert result.levels == {"TEE-1": StockLevels(10, 0, 0), "CAP-1": StockLevels(4, 0, 0)}


def test_back_to_origin_puts_units_on_hand_again_and_lost_ones_stay_gone() -> None:
    store, tee, cap = Store(), line("TEE-1", 2), line("CAP-1", 1)
    events = [receipt("TEE-1", 10), receipt("CAP-1", 5), store.place("A", tee, cap), store.say("order.confirmed", "A")]
    events += [store.ship("A", "S1", "in_transit", tee), store.ship("A", "S1", "return_to_origin", tee)]
    events += [store.ship("A", "S2", "shipped", cap), store.ship("A", "S2", "lost", cap)]
    result = truth_of(events).expected({"A": ACCEPTED})
    assert result.levels == {"TEE-1": StockLevels(10, 0, 0), "CAP-1": StockLevels(4, 0, 0)}


def test_returns_restock_once_complete_or_received_by_product_and_at_most_what_left() -> None:
    store, tee, cap = Store(), line("TEE-1", 3), line("CAP-1", 2)
    events = [receipt("TEE-1", 10), receipt("CAP-1", 5), store.place("A", tee, cap), store.say("payment.success", "A")]
    events += [store.ship("A", "S1", "delivered", tee), store.ship("A", "S2", "delivered", cap)]
    events += [store.back("A", "R1", "created", ("S1", tee, 2))]
    truth = truth_of(events)
    assert truth.expected({"A": ACCEPTED}).levels["TEE-1"].on_hand == 7, "a return only asked for moves nothing"
    truth.record(store.back("A", "R1", "complete", ("S1", tee, 2)))
    truth.record(store.back("A", "R1", "complete", ("S1", tee, 2)))  # reported again: once per request
    truth.record(store.back("A", "R2", "approved", ("S1", tee, 2), ("S2", cap, 1), received=True))
    truth.record(store.back("A", "R3", "rejected", ("S2", cap, 1)))
    result = truth.expected({"A": ACCEPTED})
    # R1 brought 2 tees back; R2 asked for 2 more of the 3 shipped: only 1 was still out.
    assert result.levels == {"TEE-1": StockLevels(10, 0, 0), "CAP-1": StockLevels(4, 0, 0)}
    assert not result.anomalies


def test_completion_takes_off_the_shelf_what_no_shipment_reported() -> None:
    store, tee, cap = Store(), line("TEE-1", 2), line("CAP-1", 1)
    events = [receipt("TEE-1", 10), receipt("CAP-1", 5), store.place("A", tee, cap), store.say("payment.success", "A")]
    events += [store.ship("A", "S1", "delivered", tee), store.say("order.completed", "A")]
    result = truth_of(events).expected({"A": ACCEPTED})
    assert result.levels == {"TEE-1": StockLevels(8, 0, 0), "CAP-1": StockLevels(4, 0, 0)}
    assert result.states == {"A": OrderState.SHIPPED}


def test_backorders_take_what_is_there_and_what_turns_up_oldest_order_first() -> None:
    store = Store()
    firm, waiting = line("CAP-1", 1), line("HOT-1", 3, backorder=True)
    events = [receipt("CAP-1", 9), receipt("HOT-1", 2)]
    events += [store.place("O1", firm, waiting), store.say("payment.success", "O1")]
    events += [store.place("O2", firm, line("HOT-1", 2, backorder=True)), store.say("payment.success", "O2")]
    events += [store.place("O3", firm, line("HOT-1", 5, backorder=True))]  # not paid: reserved
    decisions = {oid: ACCEPTED for oid in ("O1", "O2", "O3")}
    truth = truth_of(events)
    # 2 on hand: O1 takes both and waits for 1 more; nothing is available, however much is wanted.
    assert truth.expected(decisions).levels["HOT-1"] == StockLevels(2, 0, 2)
    truth.record(receipt("HOT-1", 4))  # O1's last unit, then O2's two, then one for O3
    assert truth.expected(decisions).levels["HOT-1"] == StockLevels(6, 1, 5)
    truth.record(store.say("order.cancelled", "O1"))  # its 3 go to O3, oldest still waiting
    assert truth.expected(decisions).levels["HOT-1"] == StockLevels(6, 4, 2)
    without_o3 = truth.expected({"O1": ACCEPTED, "O2": ACCEPTED, "O3": Decision(True, expired=True)})
    assert without_o3.levels["HOT-1"] == StockLevels(6, 0, 2)  # an expired order waits for nothing


def test_a_backordered_unit_shipped_while_the_sku_still_waits_for_stock_is_an_anomaly() -> None:
    store, waiting = Store(), line("HOT-1", 2, backorder=True)
    events = [receipt("CAP-1", 9), store.place("O1", line("CAP-1", 1), waiting), store.say("payment.success", "O1")]
    events += [store.ship("O1", "S1", "shipped", line("HOT-1", 1, backorder=True))]
    result = truth_of(events).expected({"O1": ACCEPTED})
    assert any("backordered units shipped" in anomaly for anomaly in result.anomalies)


def test_a_shipment_for_an_order_never_committed_is_an_anomaly() -> None:
    store, tee = Store(), line("TEE-1", 1)
    events = [receipt("TEE-1", 3), store.place("A", tee), store.ship("A", "S1", "shipped", tee)]
    result = truth_of(events).expected({"A": ACCEPTED})
    assert result.anomalies == ["A: shipments or returns delivered for an order inventory never committed"]
    assert result.levels["TEE-1"] == StockLevels(3, 1, 0)


def test_an_order_rejected_after_expiry_ignores_the_shipments_sent_before_that_was_known() -> None:
    store, tee = Store(), line("TEE-1", 1)
    events = [receipt("TEE-1", 3), store.place("A", tee), store.say("payment.success", "A")]
    events += [store.ship("A", "S1", "shipped", tee)]
    result = truth_of(events).expected({"A": Decision(True, expired=True, rejected_later=True)})
    assert result.anomalies == [] and result.states == {"A": OrderState.REJECTED}
    assert result.levels["TEE-1"] == StockLevels(3, 0, 0)
