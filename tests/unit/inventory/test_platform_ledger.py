"""Shopify, WooCommerce and Stripe webhooks through the ledger, as inventory reads them.

Each fixture (``tests/fixtures/{shopify,woocommerce,stripe}``) becomes the COMMERCE message ingress writes
for it (its body, and ``Stockwire-Source`` / ``-Event-Type`` / ``-Event-Id`` / ``Nats-Msg-Id`` where the
source's scheme puts them), read with the source's real profile by the in-memory inventory of
``histories.py``. Stock comes in through ``shop`` in Stockwire's own dialect. Each step asserts the exact
(on hand, reserved, committed, available) per SKU and the order's state.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from libs.config import SourceSettings
from libs.profiles import SourceProfiles
from libs.schemes import SCHEMES
from libs.subjects import commerce_subject
from services.inventory.adapters.wire import Envelope
from services.inventory.domain.model import LedgerKind, ReservationState, order_key
from services.inventory.domain.workspace import Outcome

from .histories import MemoryInventory, check_invariants

FIXTURES = Path(__file__).parents[2] / "fixtures"
TEE, BLUE_TEE, MUG, CAP = "TEE-RED-M", "TEE-BLU-L", "MUG-BLK", "CAP-GRY"
# Shopify orders A, B, C, E (numeric ids, read as their decimal text).
A, B, C, E = "5735370481727", "5735371530303", "5735374250559", "5735382007871"
S, K = ReservationState, LedgerKind
Levels = dict[str, tuple[int, int, int, int]]

SOURCES = {
    "shopify": SourceSettings(scheme="shopify", profile="shopify"),
    "woo": SourceSettings(scheme="woocommerce", profile="woocommerce"),
    # Stripe takes the payments of the Shopify store's orders.
    "stripe": SourceSettings(scheme="stripe", profile="stripe", orders_source="shopify"),
    "shop": SourceSettings(profile="stockwire"),
}
PLATFORM = {"shopify": "shopify", "woo": "woocommerce", "stripe": "stripe"}


def _document(platform: str, number: int) -> dict[str, Any]:
    [path] = (FIXTURES / platform).glob(f"{number:02d}-*.json")
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return document


def _message(source: str, event_type: str, event_id: str, body: bytes) -> Envelope:
    scheme = SOURCES[source].scheme
    levels = SCHEMES[scheme].levels(event_type)
    assert levels is not None
    headers = {
        "Nats-Msg-Id": f"{source}:{event_id}",
        "Stockwire-Source": source,
        "Stockwire-Event-Type": event_type,
        "Stockwire-Event-Id": event_id,
    }
    return Envelope(commerce_subject(source, levels), body, headers)


def delivery(
    source: str,
    number: int,
    *,
    change: Callable[[dict[str, Any]], None] | None = None,
    delivery_id: str | None = None,
) -> Envelope:
    """Fixture ``number`` of the source's platform as ingress writes it to COMMERCE (its body changed by
    ``change``, sent under another delivery id if given)."""
    document = _document(PLATFORM[source], number)
    headers, body = document["headers"], copy.deepcopy(document["body"])
    if change is not None:
        change(body)
    raw = json.dumps(body).encode()
    if source == "shopify":
        event_type, event_id = headers["X-Shopify-Topic"], delivery_id or headers["X-Shopify-Webhook-Id"]
    elif source == "woo":
        # Ingress's WooCommerce id: the delivery id and the first 16 hex digits of the body's SHA-256.
        delivered = delivery_id or headers["X-WC-Webhook-Delivery-ID"]
        event_type, event_id = headers["X-WC-Webhook-Topic"], f"{delivered}.{hashlib.sha256(raw).hexdigest()[:16]}"
    else:
        event_type, event_id = body["type"], delivery_id or body["id"]
    return _message(source, event_type, event_id, raw)


def stockwire(source: str, event_type: str, event_id: str, data: dict[str, Any]) -> Envelope:
    """An event in Stockwire's own dialect from ``source``."""
    body = json.dumps({"id": event_id, "event_type": event_type, "data": data}).encode()
    return _message(source, event_type, event_id, body)


def receive(memory: MemoryInventory, sku: str, qty: int) -> None:
    event_id = f"recv-{sku}-{len(memory.ledger)}"
    result = memory.deliver(stockwire("shop", "inventory.received", event_id, {"sku": sku, "qty": qty}))
    assert result.outcome is Outcome.APPLIED


def levels(memory: MemoryInventory, *skus: str) -> Levels:
    """(on hand, reserved, committed, available) per SKU."""
    out = {}
    for sku in skus:
        state = memory.ws.skus.get(sku)
        out[sku] = (state.on_hand, state.reserved, state.committed, state.available) if state else (0, 0, 0, 0)
    return out


def state(memory: MemoryInventory, order: str, source: str) -> ReservationState:
    return memory.ws.reservations[order_key(order, source)].state


def rows_of(memory: MemoryInventory, envelope: Envelope) -> list[tuple[str, str, int]]:
    return sorted((e.sku, e.kind.value, e.qty) for e in memory.ledger if e.source == envelope.msg_id)


def consistent(memory: MemoryInventory) -> None:
    """available >= 0, on hand as the ledger says, and every order's hold as its ledger rows say."""
    holds = [(r.key, r.state, r.held()) for r in memory.ws.reservations.values()]
    check_invariants(memory.quantities(), memory.ledger, memory.received, holds)


def no_backorders(memory: MemoryInventory, *skus: str) -> None:
    for sku in skus:
        state = memory.ws.skus.get(sku)
        assert state is None or state.backordered == 0


@pytest.fixture
def stocked() -> MemoryInventory:
    memory = MemoryInventory(profiles=SourceProfiles(SOURCES))
    for sku, qty in ((TEE, 10), (MUG, 5), (CAP, 4), (BLUE_TEE, 4)):
        receive(memory, sku, qty)
    return memory


# --- Shopify --------------------------------------------------------------------------------------


def test_shopify_order_a_placed_paid_fulfilled_twice_refunded_and_cancelled_in_part(stocked: MemoryInventory) -> None:
    m = stocked
    skus = (TEE, MUG, CAP)
    assert levels(m, *skus) == {TEE: (10, 0, 0, 10), MUG: (5, 0, 0, 5), CAP: (4, 0, 0, 4)}

    placed = delivery("shopify", 1)
    assert m.deliver(placed).outcome is Outcome.APPLIED  # pending: held; the gift card is no stock
    assert levels(m, *skus) == {TEE: (10, 3, 0, 7), MUG: (5, 1, 0, 4), CAP: (4, 2, 0, 2)}
    assert rows_of(m, placed) == [(CAP, "reserved", 2), (MUG, "reserved", 1), (TEE, "reserved", 3)]
    assert state(m, A, "shopify") is S.RESERVED

    assert m.deliver(delivery("shopify", 2)).outcome is Outcome.APPLIED  # orders/paid commits
    assert levels(m, *skus) == {TEE: (10, 0, 3, 7), MUG: (5, 0, 1, 4), CAP: (4, 0, 2, 2)}
    assert state(m, A, "shopify") is S.COMMITTED

    # Fulfilment 1 (2 tees + the mug): success, shipment_status null → shipped; deducted once.
    first = delivery("shopify", 3)
    assert m.deliver(first).outcome is Outcome.APPLIED
    after_first = {TEE: (8, 0, 1, 7), MUG: (4, 0, 0, 4), CAP: (4, 0, 2, 2)}
    assert levels(m, *skus) == after_first
    assert rows_of(m, first) == [(MUG, "deducted", 1), (TEE, "deducted", 2)]
    assert state(m, A, "shopify") is S.COMMITTED
    assert m.deliver(delivery("shopify", 3)).outcome is Outcome.DUPLICATE
    for update in (4, 5):  # in transit, delivered: the same fulfilment, nothing twice
        assert m.deliver(delivery("shopify", update)).outcome is Outcome.IGNORED
    assert levels(m, *skus) == after_first

    # Fulfilment 2: the last tee. The caps are still held.
    assert m.deliver(delivery("shopify", 6)).outcome is Outcome.APPLIED
    assert levels(m, *skus) == {TEE: (7, 0, 0, 7), MUG: (4, 0, 0, 4), CAP: (4, 0, 2, 2)}
    assert state(m, A, "shopify") is S.COMMITTED

    # Refund 1: one tee back on the shelf (return); the mug refunded without restocking.
    refund = delivery("shopify", 7)
    assert m.deliver(refund).outcome is Outcome.APPLIED
    assert levels(m, *skus) == {TEE: (8, 0, 0, 8), MUG: (4, 0, 0, 4), CAP: (4, 0, 2, 2)}
    assert rows_of(m, refund) == [(TEE, "returned", 1)]
    order = m.ws.reservations[order_key(A, "shopify")]
    assert order.returned == {TEE: 1, MUG: 1}
    assert m.deliver(delivery("shopify", 7, delivery_id="refund-1-again")).outcome is Outcome.IGNORED

    # Refund 2: the two caps never shipped are cancelled: the hold goes back, and nothing is left to ship.
    cancel = delivery("shopify", 8)
    assert m.deliver(cancel).outcome is Outcome.APPLIED
    assert levels(m, *skus) == {TEE: (8, 0, 0, 8), MUG: (4, 0, 0, 4), CAP: (4, 0, 0, 4)}
    assert rows_of(m, cancel) == [(CAP, "released", 2)]
    assert state(m, A, "shopify") is S.SHIPPED

    # orders/updated and inventory_levels/update are unmapped: recorded, nothing moves.
    for unmapped in (9, 17):
        assert m.deliver(delivery("shopify", unmapped)).outcome is Outcome.IGNORED
    assert levels(m, *skus) == {TEE: (8, 0, 0, 8), MUG: (4, 0, 0, 4), CAP: (4, 0, 0, 4)}
    no_backorders(m, *skus)
    consistent(m)


@pytest.mark.parametrize("order", [(10, 11, 12), (10, 12, 11)], ids=["cancel-then-refund", "refund-then-cancel"])
def test_shopify_order_b_paid_then_cancelled_releases_its_units_once(
    stocked: MemoryInventory, order: tuple[int, ...]
) -> None:
    m = stocked
    placed, *rest = order
    assert m.deliver(delivery("shopify", placed)).outcome is Outcome.APPLIED  # paid at checkout: committed
    assert levels(m, BLUE_TEE) == {BLUE_TEE: (4, 0, 2, 2)}
    assert state(m, B, "shopify") is S.COMMITTED
    for number in rest:
        assert m.deliver(delivery("shopify", number)).outcome is Outcome.APPLIED
        assert levels(m, BLUE_TEE) == {BLUE_TEE: (4, 0, 0, 4)}
    assert state(m, B, "shopify") is S.CANCELLED
    # One release of the two units, whichever of the cancellation and its refund came first.
    releases = [(e.kind, e.qty, e.committed_delta) for e in m.ledger if e.sku == BLUE_TEE and e.kind is K.RELEASED]
    assert releases == [(K.RELEASED, 2, -2)]
    # Delivered again under new ids, neither moves anything.
    assert m.deliver(delivery("shopify", 11, delivery_id="cancel-again")).outcome is Outcome.IGNORED
    assert m.deliver(delivery("shopify", 12, delivery_id="refund-again")).outcome is Outcome.IGNORED
    assert levels(m, BLUE_TEE) == {BLUE_TEE: (4, 0, 0, 4)}


def test_shopify_order_c_fulfilled_whole_unpaid_commits_and_ships(stocked: MemoryInventory) -> None:
    m = stocked
    assert m.deliver(delivery("shopify", 13)).outcome is Outcome.APPLIED  # pending (cash on delivery)
    assert levels(m, MUG) == {MUG: (5, 1, 0, 4)}
    assert state(m, C, "shopify") is S.RESERVED
    # orders/fulfilled, still unpaid: every unit left all the same.
    shipped = delivery("shopify", 14)
    assert m.deliver(shipped).outcome is Outcome.APPLIED
    assert levels(m, MUG) == {MUG: (4, 0, 0, 4)}
    assert rows_of(m, shipped) == [(MUG, "committed", 1), (MUG, "deducted", 1)]
    assert state(m, C, "shopify") is S.SHIPPED
    # Paid later (orders/paid for C): nothing left to move.

    def paid_c(body: dict[str, Any]) -> None:
        body.update(id=int(C), name="#1043")

    assert m.deliver(delivery("shopify", 2, change=paid_c, delivery_id="c-paid")).outcome is Outcome.IGNORED
    assert levels(m, MUG) == {MUG: (4, 0, 0, 4)}
    assert m.deliver(delivery("shopify", 14, delivery_id="fulfilled-again")).outcome is Outcome.IGNORED
    assert levels(m, MUG) == {MUG: (4, 0, 0, 4)}
    consistent(m)


def test_shopify_order_c_first_seen_fulfilled_is_placed_and_shipped_at_once(stocked: MemoryInventory) -> None:
    m = stocked
    assert m.deliver(delivery("shopify", 14)).outcome is Outcome.APPLIED
    assert levels(m, MUG) == {MUG: (4, 0, 0, 4)}
    assert state(m, C, "shopify") is S.SHIPPED
    assert m.deliver(delivery("shopify", 13)).outcome is Outcome.IGNORED  # orders/create, late
    assert levels(m, MUG) == {MUG: (4, 0, 0, 4)}


def test_shopify_order_c_fulfilled_whole_after_payment_deducts_at_once(stocked: MemoryInventory) -> None:
    m = stocked

    def paid(body: dict[str, Any]) -> None:
        body["financial_status"] = "paid"

    assert m.deliver(delivery("shopify", 13, change=paid)).outcome is Outcome.APPLIED
    assert levels(m, MUG) == {MUG: (5, 0, 1, 4)}
    shipped = delivery("shopify", 14)
    assert m.deliver(shipped).outcome is Outcome.APPLIED
    assert levels(m, MUG) == {MUG: (4, 0, 0, 4)}
    assert rows_of(m, shipped) == [(MUG, "deducted", 1)]
    assert state(m, C, "shopify") is S.SHIPPED


def test_a_shopify_order_placed_fulfilled_is_committed_and_shipped_at_once(stocked: MemoryInventory) -> None:
    m = stocked

    def point_of_sale(body: dict[str, Any]) -> None:
        body.update(financial_status="paid", fulfillment_status="fulfilled")

    assert m.deliver(delivery("shopify", 13, change=point_of_sale)).outcome is Outcome.APPLIED
    assert levels(m, MUG) == {MUG: (4, 0, 0, 4)}
    assert state(m, C, "shopify") is S.SHIPPED


def test_shopify_order_d_never_placed_leaves_stock_alone(stocked: MemoryInventory) -> None:
    m = stocked
    assert m.deliver(delivery("shopify", 15)).outcome is Outcome.IGNORED  # orders/partially_fulfilled: unmapped
    assert levels(m, TEE, CAP) == {TEE: (10, 0, 0, 10), CAP: (4, 0, 0, 4)}


def test_shopify_order_e_paid_through_stripe(stocked: MemoryInventory) -> None:
    m = stocked
    assert m.deliver(delivery("shopify", 16)).outcome is Outcome.APPLIED
    assert levels(m, TEE) == {TEE: (10, 1, 0, 9)}
    assert state(m, E, "shopify") is S.RESERVED

    assert m.deliver(delivery("stripe", 1)).outcome is Outcome.IGNORED  # payment_intent.created: unmapped
    # The first card is declined: Stripe retries the intent, so the hold stays.
    assert m.deliver(delivery("stripe", 2)).outcome is Outcome.IGNORED
    assert levels(m, TEE) == {TEE: (10, 1, 0, 9)}
    assert state(m, E, "shopify") is S.RESERVED

    # The retry succeeds: Stripe names the order by the Shopify id, in the shopify source's orders.
    assert m.deliver(delivery("stripe", 3)).outcome is Outcome.APPLIED
    assert levels(m, TEE) == {TEE: (10, 0, 1, 9)}
    assert state(m, E, "shopify") is S.COMMITTED
    assert order_key(E, "stripe") not in m.ws.reservations

    # The charge refunded moves money only.
    assert m.deliver(delivery("stripe", 4)).outcome is Outcome.IGNORED
    assert levels(m, TEE) == {TEE: (10, 0, 1, 9)}
    assert state(m, E, "shopify") is S.COMMITTED


def test_a_stripe_payment_without_an_order_is_dead_lettered_naming_the_field(stocked: MemoryInventory) -> None:
    result = stocked.deliver(delivery("stripe", 5))
    assert result.outcome is Outcome.DEAD_LETTERED
    assert "data.object.metadata.order_id" in result.detail
    assert levels(stocked, TEE) == {TEE: (10, 0, 0, 10)}


def test_a_stripe_source_reads_the_order_under_its_order_metadata_key() -> None:
    sources = {
        **SOURCES,
        "stripe": SourceSettings(scheme="stripe", orders_source="shopify", order_metadata_key="shop_order"),
    }
    m = MemoryInventory(profiles=SourceProfiles(sources))
    receive(m, TEE, 2)
    assert m.deliver(delivery("shopify", 16)).outcome is Outcome.APPLIED
    assert m.deliver(delivery("stripe", 6)).outcome is Outcome.APPLIED
    assert levels(m, TEE) == {TEE: (2, 0, 1, 1)}
    assert state(m, E, "shopify") is S.COMMITTED


# --- WooCommerce ----------------------------------------------------------------------------------


def test_woocommerce_order_1001_pending_on_hold_processing_completed_refunded(stocked: MemoryInventory) -> None:
    m = stocked
    skus = (TEE, MUG)
    assert m.deliver(delivery("woo", 1)).outcome is Outcome.APPLIED  # pending: held
    assert levels(m, *skus) == {TEE: (10, 3, 0, 7), MUG: (5, 1, 0, 4)}
    assert state(m, "1001", "woo") is S.RESERVED

    assert m.deliver(delivery("woo", 2)).outcome is Outcome.APPLIED  # on-hold: committed
    assert levels(m, *skus) == {TEE: (10, 0, 3, 7), MUG: (5, 0, 1, 4)}
    assert state(m, "1001", "woo") is S.COMMITTED

    assert m.deliver(delivery("woo", 3)).outcome is Outcome.IGNORED  # processing: already committed
    assert levels(m, *skus) == {TEE: (10, 0, 3, 7), MUG: (5, 0, 1, 4)}

    completed = delivery("woo", 4)
    assert m.deliver(completed).outcome is Outcome.APPLIED  # completed: every unit left
    assert levels(m, *skus) == {TEE: (7, 0, 0, 7), MUG: (4, 0, 0, 4)}
    assert rows_of(m, completed) == [(MUG, "deducted", 1), (TEE, "deducted", 3)]
    assert state(m, "1001", "woo") is S.SHIPPED

    refunded = delivery("woo", 5)
    assert m.deliver(refunded).outcome is Outcome.APPLIED  # refunded, restocked 3 tees and the mug
    assert levels(m, *skus) == {TEE: (10, 0, 0, 10), MUG: (5, 0, 0, 5)}
    assert rows_of(m, refunded) == [(MUG, "returned", 1), (TEE, "returned", 3)]
    assert state(m, "1001", "woo") is S.SHIPPED

    # The same snapshot again (another delivery): the running totals are already applied.
    assert m.deliver(delivery("woo", 5, delivery_id="resent-refunded")).outcome is Outcome.IGNORED
    assert levels(m, *skus) == {TEE: (10, 0, 0, 10), MUG: (5, 0, 0, 5)}
    no_backorders(m, *skus)
    consistent(m)


def _restocked(tees: int | None, mugs: int | None) -> Callable[[dict[str, Any]], None]:
    def change(body: dict[str, Any]) -> None:
        for line, total in zip(body["line_items"][:2], (tees, mugs), strict=True):
            meta = [m for m in line["meta_data"] if m["key"] != "_restock_refunded_items"]
            if total is not None:
                meta.append({"id": 1, "key": "_restock_refunded_items", "value": str(total)})
            line["meta_data"] = meta

    return change


def test_woocommerce_restocked_totals_move_only_what_is_new(stocked: MemoryInventory) -> None:
    m = stocked
    for number in (1, 2, 4):
        assert m.deliver(delivery("woo", number)).outcome is Outcome.APPLIED
    assert levels(m, TEE, MUG) == {TEE: (7, 0, 0, 7), MUG: (4, 0, 0, 4)}
    # A first partial refund puts one tee back; the snapshot's status is still `completed`.
    partial = delivery("woo", 4, change=_restocked(1, None), delivery_id="partial-refund")
    assert m.deliver(partial).outcome is Outcome.APPLIED
    assert rows_of(m, partial) == [(TEE, "returned", 1)]
    assert levels(m, TEE, MUG) == {TEE: (8, 0, 0, 8), MUG: (4, 0, 0, 4)}
    # The full refund's totals (3 and 1): 2 more tees and the mug.
    full = delivery("woo", 5)
    assert m.deliver(full).outcome is Outcome.APPLIED
    assert rows_of(m, full) == [(MUG, "returned", 1), (TEE, "returned", 2)]
    assert levels(m, TEE, MUG) == {TEE: (10, 0, 0, 10), MUG: (5, 0, 0, 5)}
    # An older snapshot (a lower total) delivered late moves nothing back.
    late = delivery("woo", 4, change=_restocked(1, None), delivery_id="late-partial")
    assert m.deliver(late).outcome is Outcome.IGNORED
    assert levels(m, TEE, MUG) == {TEE: (10, 0, 0, 10), MUG: (5, 0, 0, 5)}


def _woo_1001(m: MemoryInventory, numbers: tuple[int, ...]) -> tuple[Levels, ReservationState]:
    for number in numbers:
        assert m.deliver(delivery("woo", number)).outcome in (Outcome.APPLIED, Outcome.IGNORED)
    return levels(m, TEE, MUG), state(m, "1001", "woo")


def test_woocommerce_refunded_before_completed_ends_as_in_order(stocked: MemoryInventory) -> None:
    in_order = MemoryInventory(profiles=SourceProfiles(SOURCES))
    for sku, qty in ((TEE, 10), (MUG, 5)):
        receive(in_order, sku, qty)
    expected = _woo_1001(in_order, (1, 2, 3, 4, 5))
    assert expected == ({TEE: (10, 0, 0, 10), MUG: (5, 0, 0, 5)}, S.SHIPPED)

    m = stocked
    for number in (1, 2, 3):
        m.deliver(delivery("woo", number))
    # The refunded snapshot first: the units it restocks had not shipped as far as the ledger knows.
    assert m.deliver(delivery("woo", 5)).outcome is Outcome.APPLIED
    assert levels(m, TEE, MUG) == {TEE: (10, 0, 0, 10), MUG: (5, 0, 0, 5)}
    assert m.deliver(delivery("woo", 4)).outcome in (Outcome.APPLIED, Outcome.IGNORED)
    assert (levels(m, TEE, MUG), state(m, "1001", "woo")) == expected
    # Nothing held anywhere, and the refunded snapshot again moves nothing.
    assert m.deliver(delivery("woo", 5, delivery_id="again")).outcome is Outcome.IGNORED
    assert (levels(m, TEE, MUG), state(m, "1001", "woo")) == expected


def test_woocommerce_order_1002_paid_at_checkout_then_cancelled(stocked: MemoryInventory) -> None:
    m = stocked
    assert m.deliver(delivery("woo", 6)).outcome is Outcome.APPLIED  # processing at creation: committed
    assert levels(m, BLUE_TEE) == {BLUE_TEE: (4, 0, 2, 2)}
    assert state(m, "1002", "woo") is S.COMMITTED
    cancelled = delivery("woo", 7)
    assert m.deliver(cancelled).outcome is Outcome.APPLIED
    assert levels(m, BLUE_TEE) == {BLUE_TEE: (4, 0, 0, 4)}
    assert rows_of(m, cancelled) == [(BLUE_TEE, "released", 2)]
    assert state(m, "1002", "woo") is S.CANCELLED
    assert m.deliver(delivery("woo", 7, delivery_id="cancelled-again")).outcome is Outcome.IGNORED
    assert levels(m, BLUE_TEE) == {BLUE_TEE: (4, 0, 0, 4)}


def _processing(body: dict[str, Any]) -> None:
    body["status"] = "processing"


def test_woocommerce_order_1003_failed_then_paid_later(stocked: MemoryInventory) -> None:
    m = stocked
    assert m.deliver(delivery("woo", 8)).outcome is Outcome.APPLIED  # pending: held
    assert levels(m, CAP) == {CAP: (4, 1, 0, 3)}
    failed = delivery("woo", 9)
    assert m.deliver(failed).outcome is Outcome.APPLIED  # failed: the hold goes back
    assert levels(m, CAP) == {CAP: (4, 0, 0, 4)}
    assert rows_of(m, failed) == [(CAP, "released", 1)]
    assert state(m, "1003", "woo") is S.PAYMENT_FAILED
    # A later snapshot says processing (paid with another card): committed again.
    paid = delivery("woo", 9, change=_processing, delivery_id="paid-later")
    assert m.deliver(paid).outcome is Outcome.APPLIED
    assert levels(m, CAP) == {CAP: (4, 0, 1, 3)}
    assert state(m, "1003", "woo") is S.COMMITTED


def test_woocommerce_order_1003_paid_after_its_stock_was_sold_is_rejected(stocked: MemoryInventory) -> None:
    m = stocked
    assert m.deliver(delivery("woo", 8)).outcome is Outcome.APPLIED
    assert m.deliver(delivery("woo", 9)).outcome is Outcome.APPLIED
    taken = stockwire("shop", "order.created", "other", {"order_id": "o-9", "lines": [{"sku": CAP, "qty": 4}]})
    assert m.deliver(taken).outcome is Outcome.APPLIED
    assert levels(m, CAP) == {CAP: (4, 4, 0, 0)}
    paid = m.deliver(delivery("woo", 9, change=_processing, delivery_id="paid-too-late"))
    assert paid.outcome is Outcome.REJECTED
    assert levels(m, CAP) == {CAP: (4, 4, 0, 0)}
    assert state(m, "1003", "woo") is S.REJECTED


def test_woocommerce_checkout_drafts_are_unmapped(stocked: MemoryInventory) -> None:
    m = stocked
    for number in (10, 11):
        assert m.deliver(delivery("woo", number)).outcome is Outcome.IGNORED
    assert levels(m, MUG) == {MUG: (5, 0, 0, 5)}
    assert order_key("1004", "woo") not in m.ws.reservations


def test_the_same_order_number_from_two_sources_is_two_orders(stocked: MemoryInventory) -> None:
    m = stocked
    assert m.deliver(delivery("woo", 1)).outcome is Outcome.APPLIED  # WooCommerce order 1001: 3 tees + a mug
    own = stockwire("shop", "order.created", "shop-1001", {"order_id": "1001", "lines": [{"sku": TEE, "qty": 2}]})
    assert m.deliver(own).outcome is Outcome.APPLIED  # the shop's own order 1001: 2 tees
    assert levels(m, TEE, MUG) == {TEE: (10, 5, 0, 5), MUG: (5, 1, 0, 4)}
    assert state(m, "1001", "woo") is S.RESERVED
    assert state(m, "1001", "shop") is S.RESERVED
    assert m.ws.reservations[order_key("1001", "woo")].lines == {TEE: 3, MUG: 1}
    assert m.ws.reservations[order_key("1001", "shop")].lines == {TEE: 2}

    # Paying one commits it alone; cancelling the other releases it alone.
    assert m.deliver(delivery("woo", 2)).outcome is Outcome.APPLIED
    assert levels(m, TEE, MUG) == {TEE: (10, 2, 3, 5), MUG: (5, 0, 1, 4)}
    cancel = stockwire("shop", "order.cancelled", "shop-1001-x", {"order_id": "1001"})
    assert m.deliver(cancel).outcome is Outcome.APPLIED
    assert levels(m, TEE, MUG) == {TEE: (10, 0, 3, 7), MUG: (5, 0, 1, 4)}
    assert state(m, "1001", "shop") is S.CANCELLED
    assert state(m, "1001", "woo") is S.COMMITTED


# --- out of order ----------------------------------------------------------------------------------

A_STORY = (1, 2, 3, 4, 5, 6, 7, 8, 9)
A_END = {TEE: (8, 0, 0, 8), MUG: (4, 0, 0, 4), CAP: (4, 0, 0, 4)}


@pytest.mark.parametrize(
    "order",
    [
        A_STORY,
        tuple(reversed(A_STORY)),
        (1, 8, 7, 2, 6, 3, 5, 4, 9),  # both refunds before any fulfilment, the cancel even before the payment
        (3, 4, 5, 6, 7, 8, 9, 2, 1),  # everything before orders/create
        (1, 2, 7, 3, 8, 4, 6, 5, 9),
    ],
    ids=["in-order", "reversed", "refunds-first", "created-last", "interleaved"],
)
def test_shopify_order_a_ends_the_same_in_any_delivery_order(stocked: MemoryInventory, order: tuple[int, ...]) -> None:
    m = stocked
    for number in order:
        assert m.deliver(delivery("shopify", number)).outcome is not Outcome.DEAD_LETTERED
        consistent(m)
    assert levels(m, TEE, MUG, CAP) == A_END
    assert state(m, A, "shopify") is S.SHIPPED
    assert m.parked() == 0
    no_backorders(m, TEE, MUG, CAP)


def test_a_stripe_payment_before_the_shopify_order_waits_for_it(stocked: MemoryInventory) -> None:
    m = stocked
    assert m.deliver(delivery("stripe", 2)).outcome is Outcome.IGNORED  # a failure moves nothing anyway
    assert m.deliver(delivery("stripe", 3)).outcome is Outcome.PARKED
    assert levels(m, TEE) == {TEE: (10, 0, 0, 10)}
    assert m.deliver(delivery("shopify", 16)).outcome is Outcome.APPLIED
    assert levels(m, TEE) == {TEE: (10, 0, 1, 9)}
    assert state(m, E, "shopify") is S.COMMITTED
    assert m.parked() == 0


def test_a_woocommerce_pending_order_that_lapsed_is_taken_again_when_on_hold(stocked: MemoryInventory) -> None:
    m = stocked
    assert m.deliver(delivery("woo", 1)).outcome is Outcome.APPLIED
    m.now += m.ttl_s + 1
    assert m.expire_overdue() == 1
    assert levels(m, TEE, MUG) == {TEE: (10, 0, 0, 10), MUG: (5, 0, 0, 5)}
    assert state(m, "1001", "woo") is S.EXPIRED
    assert m.deliver(delivery("woo", 2)).outcome is Outcome.APPLIED  # on-hold: WooCommerce reduced stock
    assert levels(m, TEE, MUG) == {TEE: (10, 0, 3, 7), MUG: (5, 0, 1, 4)}
    assert state(m, "1001", "woo") is S.COMMITTED


def test_a_woocommerce_order_completed_straight_from_pending_commits_and_ships(stocked: MemoryInventory) -> None:
    m = stocked
    assert m.deliver(delivery("woo", 1)).outcome is Outcome.APPLIED
    assert m.deliver(delivery("woo", 4)).outcome is Outcome.APPLIED
    assert levels(m, TEE, MUG) == {TEE: (7, 0, 0, 7), MUG: (4, 0, 0, 4)}
    assert state(m, "1001", "woo") is S.SHIPPED
    assert m.deliver(delivery("woo", 2)).outcome is Outcome.IGNORED  # a late on-hold snapshot
    assert levels(m, TEE, MUG) == {TEE: (7, 0, 0, 7), MUG: (4, 0, 0, 4)}


def test_a_woocommerce_order_first_seen_completed_is_placed_committed_and_shipped(stocked: MemoryInventory) -> None:
    m = stocked

    def created(body: dict[str, Any]) -> None:
        body["status"] = "completed"

    assert m.deliver(delivery("woo", 6, change=created)).outcome is Outcome.APPLIED
    assert levels(m, BLUE_TEE) == {BLUE_TEE: (2, 0, 0, 2)}
    assert state(m, "1002", "woo") is S.SHIPPED


def test_a_woocommerce_refund_of_a_cancelled_order_releases_nothing_twice(stocked: MemoryInventory) -> None:
    m = stocked
    assert m.deliver(delivery("woo", 6)).outcome is Outcome.APPLIED
    assert m.deliver(delivery("woo", 7)).outcome is Outcome.APPLIED
    assert levels(m, BLUE_TEE) == {BLUE_TEE: (4, 0, 0, 4)}

    def refunded(body: dict[str, Any]) -> None:
        body["status"] = "refunded"
        body["line_items"][0]["meta_data"] = [{"id": 1, "key": "_restock_refunded_items", "value": "2"}]

    m.deliver(delivery("woo", 7, change=refunded, delivery_id="refunded-after-cancel"))
    assert levels(m, BLUE_TEE) == {BLUE_TEE: (4, 0, 0, 4)}
    assert state(m, "1002", "woo") is S.CANCELLED
    assert [(e.kind, e.qty) for e in m.ledger if e.sku == BLUE_TEE and e.kind is K.RELEASED] == [(K.RELEASED, 2)]
