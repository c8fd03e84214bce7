"""Commerce Engine's own payloads through the ledger: the published order model, event by event.

The fixtures (``tests/fixtures/commerce_engine``) are webhook bodies built from the vendor's schema;
the ``ce`` source reads them with the ``commerce-engine`` profile, stock comes in through ``shop`` in
Stockwire's own dialect (Commerce Engine sends no stock events). Each step asserts the exact
projection (on hand, reserved, committed), the backordered units and the ledger rows it wrote.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from services.inventory.adapters.wire import Envelope
from services.inventory.domain.model import LedgerKind, ReservationState, order_key
from services.inventory.domain.workspace import Outcome

from .histories import MemoryInventory

FIXTURES = Path(__file__).parents[2] / "fixtures" / "commerce_engine"
A, B, C = "ORD-2026-000101", "ORD-2026-000102", "ORD-2026-000103"
TEE, MUG, BOOK, BOX, JACKET = (
    "TEE-ORG-BLK-M",
    "MUG-CER-350-WHT",
    "EBOOK-CARE-GUIDE",
    "BNDL-GIFT-BOX-01",
    "JKT-RAIN-NVY-L",
)
WHITE_TEE, CAP = "TEE-ORG-WHT-S", "CAP-CNV-OLV"
K, S = LedgerKind, ReservationState


def fixture(number: int, *, event_id: str | None = None, **data: Any) -> Envelope:
    """Fixture ``number`` as ingress writes it to COMMERCE for the ``ce`` source (its ``data`` changed
    by ``data``, under another event id if given)."""
    [path] = FIXTURES.glob(f"{number:02d}-*.json")
    document = json.loads(path.read_text())
    document["data"].update(data)
    if event_id is not None:
        document["id"] = event_id
    event_type, eid = document["event_type"], document["id"]
    headers = {
        "Nats-Msg-Id": f"ce:{eid}",
        "Stockwire-Source": "ce",
        "Stockwire-Event-Type": event_type,
        "Stockwire-Event-Id": eid,
    }
    return Envelope(f"commerce.ce.{event_type}", json.dumps(document).encode(), headers)


def receive(memory: MemoryInventory, sku: str, qty: int) -> None:
    """A receipt from the ``shop`` source (Stockwire's own dialect; Commerce Engine sends no stock events)."""
    event_id = f"recv-{sku}-{len(memory.ledger)}"
    body = json.dumps({"id": event_id, "event_type": "inventory.received", "data": {"sku": sku, "qty": qty}})
    headers = {
        "Nats-Msg-Id": f"shop:{event_id}",
        "Stockwire-Source": "shop",
        "Stockwire-Event-Type": "inventory.received",
    }
    result = memory.deliver(Envelope("commerce.shop.inventory.received", body.encode(), headers))
    assert result.outcome is Outcome.APPLIED


def levels(memory: MemoryInventory, *skus: str) -> dict[str, tuple[int, int, int, int]]:
    """(on hand, reserved, committed, backordered) per SKU."""
    out = {}
    for sku in skus:
        state = memory.ws.skus.get(sku)
        out[sku] = (state.on_hand, state.reserved, state.committed, state.backordered) if state else (0, 0, 0, 0)
    return out


def rows_of(memory: MemoryInventory, msg_id: str) -> list[tuple[str, str, int]]:
    return [(e.sku, e.kind.value, e.qty) for e in memory.ledger if e.source == msg_id]


@pytest.fixture
def stocked() -> MemoryInventory:
    memory = MemoryInventory.commerce_engine()
    for sku, qty in ((TEE, 10), (MUG, 5), (BOX, 2), (WHITE_TEE, 3), (CAP, 4)):
        receive(memory, sku, qty)
    return memory


def test_order_a_whole_life_free_digital_bundle_backorder_split_shipments_and_a_return(
    stocked: MemoryInventory,
) -> None:
    m = stocked
    skus = (TEE, MUG, BOX, JACKET)
    placed = m.deliver(fixture(1))
    assert placed.outcome is Outcome.APPLIED
    assert "JKT-RAIN-NVY-L: 1 backordered" in placed.detail and "1 digital line: no stock" in placed.detail
    # 2 + 1 free tees, a free mug, the bundle as its own SKU; the e-book takes nothing; the jacket waits.
    assert levels(m, *skus) == {TEE: (10, 3, 0, 0), MUG: (5, 1, 0, 0), BOX: (2, 1, 0, 0), JACKET: (0, 0, 0, 1)}
    assert BOOK not in m.ws.skus
    assert sorted(rows_of(m, "ce:evt_01JD60139415426")) == [
        (BOX, "reserved", 1), (JACKET, "backordered", 1), (MUG, "reserved", 1), (TEE, "reserved", 3),
    ]  # fmt: skip

    assert m.deliver(fixture(2)).outcome is Outcome.APPLIED  # payment.success commits
    assert levels(m, *skus) == {TEE: (10, 0, 3, 0), MUG: (5, 0, 1, 0), BOX: (2, 0, 1, 0), JACKET: (0, 0, 0, 1)}
    for again in (3, 4):  # the earlier name of the same payment; order.confirmed: already committed
        assert m.deliver(fixture(again)).outcome is Outcome.IGNORED

    # Shipment 1: scheduled and packed move nothing; shipped deducts its own items, once.
    for step in (5, 6):
        assert m.deliver(fixture(step)).outcome is Outcome.IGNORED
    assert m.deliver(fixture(7)).outcome is Outcome.APPLIED
    shipped = {TEE: (7, 0, 0, 0), MUG: (4, 0, 0, 0), BOX: (1, 0, 0, 0), JACKET: (0, 0, 0, 1)}
    assert levels(m, *skus) == shipped
    for later in (8, 9, 10):  # shipment.shipped (earlier name), in transit, delivered: nothing twice
        assert m.deliver(fixture(later)).outcome is Outcome.IGNORED
    assert levels(m, *skus) == shipped
    assert m.ws.reservations[order_key(A, "ce")].state is S.COMMITTED  # the jacket is still to ship

    # Shipment 2 carries the backordered jacket: it is out for delivery (its `shipped` update was never
    # sent) before the warehouse's receipt is recorded, so it waits for the stock.
    assert m.deliver(fixture(11)).outcome is Outcome.IGNORED
    assert m.deliver(fixture(12)).outcome is Outcome.PARKED
    receive(m, JACKET, 2)  # fills the backorder first, then releases the waiting shipment
    assert levels(m, JACKET) == {JACKET: (1, 0, 0, 0)}
    assert [e.kind for e in m.ledger if e.sku == JACKET] == [K.BACKORDERED, K.RECEIVED, K.FILLED, K.DEDUCTED]
    assert m.ws.reservations[order_key(A, "ce")].state is S.SHIPPED
    assert m.deliver(fixture(13)).outcome is Outcome.IGNORED

    # The return names a product and variant: created moves nothing, complete restocks one tee, once.
    assert m.deliver(fixture(14)).outcome is Outcome.IGNORED
    assert m.deliver(fixture(15)).outcome is Outcome.APPLIED
    assert levels(m, TEE) == {TEE: (8, 0, 0, 0)}
    assert m.deliver(fixture(15, event_id="evt-return-again")).outcome is Outcome.IGNORED
    for closing in (16, 17, 18):  # order.completed (all shipped), refund initiated and done
        assert m.deliver(fixture(closing)).outcome is Outcome.IGNORED
    assert levels(m, *skus) == {TEE: (8, 0, 0, 0), MUG: (4, 0, 0, 0), BOX: (1, 0, 0, 0), JACKET: (1, 0, 0, 0)}


def test_order_b_failed_payment_keeps_the_hold_a_retry_pays_a_cancelled_shipment_moves_nothing(
    stocked: MemoryInventory,
) -> None:
    m = stocked
    assert m.deliver(fixture(19)).outcome is Outcome.APPLIED
    assert levels(m, WHITE_TEE) == {WHITE_TEE: (3, 1, 0, 0)}
    failed = m.deliver(fixture(20))
    assert failed.outcome is Outcome.IGNORED and "hold stays" in failed.detail
    assert m.deliver(fixture(21)).outcome is Outcome.IGNORED  # payment.retried
    assert levels(m, WHITE_TEE) == {WHITE_TEE: (3, 1, 0, 0)}
    assert m.deliver(fixture(22)).outcome is Outcome.APPLIED
    assert levels(m, WHITE_TEE) == {WHITE_TEE: (3, 0, 1, 0)}
    for step in (23, 24):  # scheduled, then cancelled before it left
        assert m.deliver(fixture(step)).outcome is Outcome.IGNORED
    assert m.deliver(fixture(25)).outcome is Outcome.APPLIED
    assert levels(m, WHITE_TEE) == {WHITE_TEE: (3, 0, 0, 0)}
    assert m.deliver(fixture(26)).outcome is Outcome.IGNORED  # refund failed: no stock moves
    assert m.ws.reservations[order_key(B, "ce")].state is S.CANCELLED


def test_order_c_placed_confirmed_one_shipment_back_to_origin_one_lost(stocked: MemoryInventory) -> None:
    m = stocked
    assert m.deliver(fixture(27)).outcome is Outcome.APPLIED  # status confirmed: committed at once
    assert levels(m, CAP, WHITE_TEE) == {CAP: (4, 0, 2, 0), WHITE_TEE: (3, 0, 1, 0)}
    # Back to origin after it shipped (the shipped update is implied): deducted, then back on hand.
    assert m.deliver(fixture(28)).outcome is Outcome.APPLIED
    assert levels(m, CAP) == {CAP: (4, 0, 0, 0)}
    assert [(e.kind, e.on_hand_delta) for e in m.ledger if e.sku == CAP][-2:] == [(K.DEDUCTED, -2), (K.RETURNED, 2)]
    assert m.deliver(fixture(28, event_id="evt-rto-again")).outcome is Outcome.IGNORED
    # Lost: recorded, not restocked.
    assert m.deliver(fixture(29)).outcome is Outcome.APPLIED
    assert levels(m, WHITE_TEE) == {WHITE_TEE: (2, 0, 0, 0)}
    assert [e.kind for e in m.ledger if e.sku == WHITE_TEE][-2:] == [K.DEDUCTED, K.LOST]
    assert m.ws.reservations[order_key(C, "ce")].state is S.SHIPPED


def test_the_same_order_placed_again_under_a_new_event_id_reserves_nothing_twice(stocked: MemoryInventory) -> None:
    m = stocked
    m.deliver(fixture(19))
    again = m.deliver(fixture(19, event_id="evt-re-emitted"))
    assert again.outcome is Outcome.IGNORED and "already exists" in again.detail
    assert levels(m, WHITE_TEE) == {WHITE_TEE: (3, 1, 0, 0)}


@pytest.mark.parametrize("failure_stamp", ["2026-11-20T09:00:00Z", "2026-11-30T09:00:00Z"])
def test_a_late_payment_failed_after_payment_success_releases_nothing(
    stocked: MemoryInventory, failure_stamp: str
) -> None:
    m = stocked
    m.deliver(fixture(19))
    m.deliver(fixture(22))
    late = fixture(20)
    document = json.loads(late.body)
    document["created_at"] = failure_stamp
    late = Envelope(late.subject, json.dumps(document).encode(), late.headers)
    assert m.deliver(late).outcome is Outcome.IGNORED
    assert levels(m, WHITE_TEE) == {WHITE_TEE: (3, 0, 1, 0)}
    assert m.ws.reservations[order_key(B, "ce")].state is S.COMMITTED


def test_cancelling_after_a_partial_shipment_releases_only_the_unshipped_remainder(stocked: MemoryInventory) -> None:
    m = stocked
    m.deliver(fixture(1))
    m.deliver(fixture(2))
    m.deliver(fixture(7))  # shipment 1 left: tees, mug, bundle
    assert m.deliver(fixture(25, event_id="evt-cancel-a", order_number=A)).outcome is Outcome.APPLIED
    # Shipped units stay shipped; the backordered jacket is dropped, never filled later.
    assert levels(m, TEE, JACKET) == {TEE: (7, 0, 0, 0), JACKET: (0, 0, 0, 0)}
    receive(m, JACKET, 1)
    assert levels(m, JACKET) == {JACKET: (1, 0, 0, 0)}
    assert [e.kind for e in m.ledger if e.sku == JACKET] == [K.BACKORDERED, K.DROPPED, K.RECEIVED]


def test_a_shipment_reported_after_the_cancellation_still_took_its_units(stocked: MemoryInventory) -> None:
    clean, reordered = stocked, MemoryInventory.commerce_engine()
    for sku, qty in ((TEE, 10), (MUG, 5), (BOX, 2)):
        receive(reordered, sku, qty)
    cancel = fixture(25, event_id="evt-cancel-a", order_number=A)
    for memory, events in ((clean, [1, 2, 7, cancel]), (reordered, [1, 2, cancel, 7])):
        for item in events:
            memory.deliver(item if isinstance(item, Envelope) else fixture(item))
    assert levels(clean, TEE, MUG, BOX) == levels(reordered, TEE, MUG, BOX) == {
        TEE: (7, 0, 0, 0), MUG: (4, 0, 0, 0), BOX: (1, 0, 0, 0),
    }  # fmt: skip


def test_a_return_before_its_shipment_waits_and_never_restocks_more_than_shipped(stocked: MemoryInventory) -> None:
    m = stocked
    m.deliver(fixture(1))
    m.deliver(fixture(2))
    assert m.deliver(fixture(15)).outcome is Outcome.PARKED
    m.deliver(fixture(7))
    assert levels(m, TEE) == {TEE: (8, 0, 0, 0)}  # 3 shipped, 1 back
    too_many = fixture(15, event_id="evt-return-2", request_number="RET-000101-2")
    document = json.loads(too_many.body)
    document["data"]["items"][0]["quantity"] = 5
    result = m.deliver(Envelope(too_many.subject, json.dumps(document).encode(), too_many.headers))
    assert result.outcome is Outcome.APPLIED and "only 2 shipped and not yet returned" in result.detail
    assert levels(m, TEE) == {TEE: (10, 0, 0, 0)}


def test_backorders_are_filled_oldest_first_before_stock_becomes_available(stocked: MemoryInventory) -> None:
    m = stocked
    orders = []
    for n in range(3):
        number = f"ORD-BO-{n}"
        orders.append(number)
        item = {"product_id": "p", "variant_id": None, "sku": JACKET, "quantity": 2, "free_quantity": 0,
                "product_type": "physical", "backorder": True}  # fmt: skip
        m.deliver(fixture(19, event_id=f"evt-bo-{n}", order_number=number, order_items=[item]))
    assert levels(m, JACKET) == {JACKET: (0, 0, 0, 6)}
    receive(m, JACKET, 3)  # the first order gets 2, the second 1, nothing is available
    held = {n: m.ws.reservations[order_key(n, "ce")].backordered.get(JACKET, 0) for n in orders}
    assert held == {"ORD-BO-0": 0, "ORD-BO-1": 1, "ORD-BO-2": 2}
    assert levels(m, JACKET) == {JACKET: (3, 3, 0, 3)}
    assert m.ws.skus[JACKET].available == 0
    receive(m, JACKET, 5)
    assert levels(m, JACKET) == {JACKET: (8, 6, 0, 0)}
    assert m.ws.skus[JACKET].available == 2


def test_a_line_that_is_not_a_backorder_is_still_all_or_nothing(stocked: MemoryInventory) -> None:
    m = stocked
    item = {"product_id": "p", "variant_id": None, "sku": CAP, "quantity": 9, "free_quantity": 0,
            "product_type": "physical", "backorder": False}  # fmt: skip
    result = m.deliver(fixture(19, event_id="evt-too-many", order_number="ORD-X", order_items=[item]))
    assert result.outcome is Outcome.REJECTED
    assert levels(m, CAP) == {CAP: (4, 0, 0, 0)}
