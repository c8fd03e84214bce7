"""The ledger rules of design §4 on the pure domain, one scenario at a time."""

from __future__ import annotations

import json

from libs.config import SourceSettings
from libs.profiles import SourceProfiles
from services.inventory.adapters.wire import Envelope
from services.inventory.domain.ledger import CartAnswer
from services.inventory.domain.model import GENESIS_HASH, LedgerKind, ReservationState, cart_key, order_key
from services.inventory.domain.verify import LedgerVerifier
from services.inventory.domain.workspace import Outcome, Workspace

from .histories import MemoryInventory, envelope

S = ReservationState
K = LedgerKind


def _receive(memory: MemoryInventory, sku: str, qty: int, event_id: str | None = None) -> None:
    memory.deliver(
        envelope("inventory.received", event_id or f"recv-{sku}-{qty}-{len(memory.ledger)}", {"sku": sku, "qty": qty})
    )


def _order(order_id: str, *lines: tuple[str, int], reservation_id: str | None = None, ts: float = 0.0):
    data: dict = {"order_id": order_id, "lines": [{"sku": s, "qty": q} for s, q in lines]}
    if reservation_id:
        data["reservation_id"] = reservation_id
    return envelope("order.created", f"{order_id}-created", data, ts=ts or 1.0)


def _order_event(event_type: str, order_id: str, suffix: str = "", ts: float = 2.0, **data: object):
    return envelope(event_type, f"{order_id}-{event_type}{suffix}", {"order_id": order_id, **data}, ts=ts)


def test_receipt_then_order_reserves_and_payment_commits_and_shipment_deducts() -> None:
    memory = MemoryInventory()
    _receive(memory, "A", 5)
    assert memory.deliver(_order("o1", ("A", 2))).outcome is Outcome.APPLIED
    assert memory.quantities() == {"A": (5, 2, 0)}
    assert memory.deliver(_order_event("payment.successful", "o1")).outcome is Outcome.APPLIED
    assert memory.quantities() == {"A": (5, 0, 2)}
    assert memory.deliver(_order_event("shipment.shipped", "o1", ts=3.0)).outcome is Outcome.APPLIED
    assert memory.quantities() == {"A": (3, 0, 0)}
    assert [e.kind for e in memory.ledger] == [K.RECEIVED, K.RESERVED, K.COMMITTED, K.DEDUCTED]
    assert [e.version for e in memory.ledger] == [1, 2, 3, 4]


def test_a_duplicate_changes_nothing() -> None:
    memory = MemoryInventory()
    event = envelope("inventory.received", "r-1", {"sku": "A", "qty": 3})
    assert memory.deliver(event).outcome is Outcome.APPLIED
    again = memory.deliver(event)
    assert again.outcome is Outcome.DUPLICATE
    assert memory.quantities() == {"A": (3, 0, 0)}
    assert len(memory.ledger) == 1


def test_an_order_short_on_one_line_reserves_nothing() -> None:
    memory = MemoryInventory()
    _receive(memory, "A", 5)
    _receive(memory, "B", 1)
    result = memory.deliver(_order("o1", ("A", 2), ("B", 2)))
    assert result.outcome is Outcome.REJECTED
    assert "B (requested 2, available 1)" in result.detail
    assert memory.quantities() == {"A": (5, 0, 0), "B": (1, 0, 0)}
    assert memory.ws.reservations[order_key("o1", "ce")].state is S.REJECTED


def test_lines_naming_the_same_sku_twice_are_checked_on_their_sum() -> None:
    memory = MemoryInventory()
    _receive(memory, "A", 3)
    result = memory.deliver(_order("o1", ("A", 2), ("A", 2)))
    assert result.outcome is Outcome.REJECTED
    assert "A (requested 4, available 3)" in result.detail
    assert memory.quantities() == {"A": (3, 0, 0)}
    assert memory.deliver(_order("o2", ("A", 1), ("A", 2))).outcome is Outcome.APPLIED
    assert memory.quantities() == {"A": (3, 3, 0)}
    assert [(e.kind, e.qty) for e in memory.ledger[-1:]] == [(K.RESERVED, 3)]


def test_payment_before_the_order_is_parked_then_applied() -> None:
    memory = MemoryInventory()
    _receive(memory, "A", 2)
    parked = memory.deliver(_order_event("payment.successful", "o1"))
    assert parked.outcome is Outcome.PARKED and "order.created" in parked.detail
    assert memory.parked() == 1
    assert memory.quantities() == {"A": (2, 0, 0)}
    assert memory.deliver(_order("o1", ("A", 2))).outcome is Outcome.APPLIED
    assert memory.parked() == 0
    assert memory.quantities() == {"A": (2, 0, 2)}
    assert memory.outcomes["ce:o1-payment.successful"] is Outcome.APPLIED


def test_cancel_before_the_order_leaves_nothing_reserved() -> None:
    memory = MemoryInventory()
    _receive(memory, "A", 2)
    assert memory.deliver(_order_event("order.cancelled", "o1")).outcome is Outcome.PARKED
    memory.deliver(_order("o1", ("A", 2)))
    assert memory.quantities() == {"A": (2, 0, 0)}
    assert memory.ws.reservations[order_key("o1", "ce")].state is S.CANCELLED
    assert memory.parked() == 0


def test_shipment_before_payment_waits_for_the_payment() -> None:
    memory = MemoryInventory()
    _receive(memory, "A", 2)
    memory.deliver(_order("o1", ("A", 1)))
    assert memory.deliver(_order_event("shipment.shipped", "o1", ts=3.0)).outcome is Outcome.PARKED
    assert memory.quantities() == {"A": (2, 1, 0)}
    memory.deliver(_order_event("payment.captured", "o1"))
    assert memory.quantities() == {"A": (1, 0, 0)}
    assert memory.ws.reservations[order_key("o1", "ce")].state is S.SHIPPED


def test_parked_events_are_applied_in_the_producer_order() -> None:
    memory = MemoryInventory()
    _receive(memory, "A", 2)
    # Arrive backwards: return, shipment, payment, then the order.
    memory.deliver(_order_event("return.received", "o1", ts=4.0, lines=[{"sku": "A", "qty": 1}], restock=True))
    memory.deliver(_order_event("shipment.shipped", "o1", ts=3.0))
    memory.deliver(_order_event("payment.successful", "o1", ts=2.0))
    assert memory.parked() == 3
    memory.deliver(_order("o1", ("A", 2)))
    assert memory.parked() == 0
    assert [e.kind for e in memory.ledger[1:]] == [K.RESERVED, K.COMMITTED, K.DEDUCTED, K.RETURNED]
    assert memory.quantities() == {"A": (1, 0, 0)}


def test_events_for_a_finished_order_are_ignored_not_parked() -> None:
    memory = MemoryInventory()
    _receive(memory, "A", 2)
    memory.deliver(_order("o1", ("A", 1)))
    memory.deliver(_order_event("order.cancelled", "o1"))
    result = memory.deliver(_order_event("payment.successful", "o1"))
    assert result.outcome is Outcome.IGNORED and "cancelled" in result.detail
    assert memory.deliver(_order_event("shipment.shipped", "o1")).outcome is Outcome.IGNORED
    assert memory.quantities() == {"A": (2, 0, 0)}


def test_cancel_after_payment_releases_the_committed_stock_but_not_after_shipment() -> None:
    memory = MemoryInventory()
    _receive(memory, "A", 3)
    memory.deliver(_order("o1", ("A", 1)))
    memory.deliver(_order_event("payment.successful", "o1"))
    memory.deliver(_order_event("order.cancelled", "o1"))
    assert memory.quantities() == {"A": (3, 0, 0)}
    memory.deliver(_order("o2", ("A", 1)))
    memory.deliver(_order_event("payment.successful", "o2"))
    memory.deliver(_order_event("shipment.shipped", "o2"))
    assert memory.deliver(_order_event("order.cancelled", "o2")).outcome is Outcome.IGNORED
    assert memory.quantities() == {"A": (2, 0, 0)}


def test_returns_restock_only_what_was_shipped_and_marked_restock() -> None:
    memory = MemoryInventory()
    _receive(memory, "A", 3)
    memory.deliver(_order("o1", ("A", 2)))
    memory.deliver(_order_event("payment.successful", "o1"))
    memory.deliver(_order_event("shipment.shipped", "o1"))
    assert memory.quantities() == {"A": (1, 0, 0)}
    memory.deliver(_order_event("return.received", "o1", "-1", lines=[{"sku": "A", "qty": 1}], restock=False))
    assert memory.quantities() == {"A": (1, 0, 0)}
    result = memory.deliver(
        _order_event("return.received", "o1", "-2", lines=[{"sku": "A", "qty": 5, "restock": True}])
    )
    assert "only 1 shipped and not yet returned" in result.detail
    assert memory.quantities() == {"A": (2, 0, 0)}


def test_negative_adjustment_never_takes_held_stock() -> None:
    memory = MemoryInventory()
    _receive(memory, "A", 5)
    memory.deliver(_order("o1", ("A", 4)))
    result = memory.deliver(envelope("inventory.adjusted", "adj-1", {"sku": "A", "delta": -3}))
    assert result.outcome is Outcome.APPLIED and "applied -1" in result.detail
    assert memory.quantities() == {"A": (4, 4, 0)}


def test_an_absolute_count_older_than_the_last_is_recorded_not_applied() -> None:
    memory = MemoryInventory()
    _receive(memory, "A", 5)
    memory.deliver(
        envelope("inventory.adjusted", "c-2", {"sku": "A", "on_hand": 7, "counted_at": "2026-11-28T10:00:00Z"})
    )
    assert memory.quantities() == {"A": (7, 0, 0)}
    stale = memory.deliver(
        envelope("inventory.adjusted", "c-1", {"sku": "A", "on_hand": 1, "counted_at": "2026-11-28T09:00:00Z"})
    )
    assert "recorded, not applied" in stale.detail
    assert memory.quantities() == {"A": (7, 0, 0)}
    assert (memory.ledger[-1].kind, memory.ledger[-1].qty) == (K.ADJUSTED, 0)


def test_expired_reservation_is_released_and_a_late_payment_takes_stock_again_if_there() -> None:
    memory = MemoryInventory(ttl_s=60)
    _receive(memory, "A", 1)
    memory.deliver(_order("o1", ("A", 1)))
    memory.now += 61
    assert memory.expire_overdue() == 1
    assert memory.quantities() == {"A": (1, 0, 0)}
    assert memory.ledger[-1].kind is K.EXPIRED
    result = memory.deliver(_order_event("payment.successful", "o1"))
    assert result.outcome is Outcome.APPLIED
    assert memory.quantities() == {"A": (1, 0, 1)}


def test_late_payment_after_expiry_is_rejected_when_the_stock_went_elsewhere() -> None:
    memory = MemoryInventory(ttl_s=60)
    _receive(memory, "A", 1)
    memory.deliver(_order("o1", ("A", 1)))
    memory.now += 61
    memory.expire_overdue()
    memory.deliver(_order("o2", ("A", 1)))
    result = memory.deliver(_order_event("payment.successful", "o1"))
    assert result.outcome is Outcome.REJECTED
    assert memory.quantities() == {"A": (1, 1, 0)}


def test_checkout_reservations_all_or_nothing_idempotent_and_released() -> None:
    memory = MemoryInventory()
    _receive(memory, "A", 1)
    assert memory.reserve("r1", {"A": 1}, 300).answer == CartAnswer.CREATED
    assert memory.reserve("r1", {"A": 1}, 300).answer == CartAnswer.EXISTS
    short = memory.reserve("r2", {"A": 1}, 300)
    assert short.answer == CartAnswer.SHORT and short.shortages[0].available == 0
    assert memory.reserve("r1", {"A": 2}, 300).answer == CartAnswer.CONFLICT
    assert memory.release("r1").answer == CartAnswer.RELEASED
    assert memory.release("r1").answer == CartAnswer.UNCHANGED
    assert memory.release("nope").answer == CartAnswer.UNKNOWN
    assert memory.quantities() == {"A": (1, 0, 0)}


def test_an_order_takes_over_its_checkout_reservation() -> None:
    memory = MemoryInventory()
    _receive(memory, "A", 1)
    assert memory.reserve("cart-9", {"A": 1}, 300).answer == CartAnswer.CREATED
    result = memory.deliver(_order("o1", ("A", 1), reservation_id="cart-9"))
    assert result.outcome is Outcome.APPLIED
    assert memory.quantities() == {"A": (1, 1, 0)}
    assert memory.ws.reservations[cart_key("cart-9")].state is S.CONVERTED
    assert memory.ws.reservations[order_key("o1", "ce")].state is S.RESERVED


def test_unknown_event_types_are_ignored_and_bad_ones_dead_lettered() -> None:
    memory = MemoryInventory()
    assert memory.deliver(envelope("customer.created", "x1", {"id": 1})).outcome is Outcome.IGNORED
    bad = memory.deliver(envelope("inventory.received", "x2", {"sku": "A", "qty": -1}))
    assert bad.outcome is Outcome.DEAD_LETTERED and "qty" in bad.detail


def test_the_ledger_verifies_and_an_edited_row_is_caught() -> None:
    memory = MemoryInventory()
    _receive(memory, "A", 4)
    memory.deliver(_order("o1", ("A", 3)))
    memory.deliver(_order_event("payment.successful", "o1"))
    verifier = LedgerVerifier()
    for entry in memory.ledger:
        verifier.feed(entry)
    reservations = list(memory.ws.reservations.values())
    assert verifier.compare(memory.ws.skus.values(), reservations) == []
    assert memory.ledger[0].prev_hash == GENESIS_HASH

    from dataclasses import replace

    tampered = LedgerVerifier()
    for i, entry in enumerate(memory.ledger):
        tampered.feed(replace(entry, qty=40, on_hand_delta=40) if i == 0 else entry)
    problems = [str(p) for p in tampered.compare(memory.ws.skus.values(), reservations)]
    assert any("the row was edited" in p for p in problems)
    assert any("projection holds on_hand=4" in p for p in problems)


def test_strict_workspace_refuses_a_sku_it_did_not_load() -> None:
    import pytest

    from services.inventory.domain.workspace import NotLoaded

    with pytest.raises(NotLoaded):
        Workspace().sku("A")


def _two_sources(**orders_source: str) -> MemoryInventory:
    settings = {name: SourceSettings(profile="stockwire", orders_source=orders_source.get(name)) for name in ("a", "b")}
    return MemoryInventory(profiles=SourceProfiles(settings))


def _from(source: str, event_type: str, event_id: str, data: dict) -> Envelope:
    body = json.dumps({"id": event_id, "event_type": event_type, "data": data}).encode()
    headers = {"Nats-Msg-Id": f"{source}:{event_id}", "Stockwire-Source": source, "Stockwire-Event-Type": event_type}
    return Envelope(f"commerce.{source}.{event_type}", body, headers)


def test_the_same_order_number_from_two_sources_is_two_orders() -> None:
    memory = _two_sources()
    memory.deliver(_from("a", "inventory.received", "r1", {"sku": "A", "qty": 5}))
    order = {"order_id": "1001", "lines": [{"sku": "A", "qty": 2}]}
    assert memory.deliver(_from("a", "order.created", "c1", order)).outcome is Outcome.APPLIED
    assert memory.deliver(_from("b", "order.created", "c1", order)).outcome is Outcome.APPLIED
    assert memory.quantities() == {"A": (5, 4, 0)}
    assert memory.deliver(_from("b", "order.cancelled", "x1", {"order_id": "1001"})).outcome is Outcome.APPLIED
    assert memory.ws.reservations[order_key("1001", "a")].state is S.RESERVED
    assert memory.ws.reservations[order_key("1001", "b")].state is S.CANCELLED
    assert memory.quantities() == {"A": (5, 2, 0)}


def test_a_source_whose_events_name_another_sources_orders_moves_those_orders() -> None:
    memory = _two_sources(b="a")  # b (a payment provider) reports payments of a's orders
    memory.deliver(_from("a", "inventory.received", "r1", {"sku": "A", "qty": 5}))
    memory.deliver(_from("a", "order.created", "c1", {"order_id": "1001", "lines": [{"sku": "A", "qty": 2}]}))
    assert memory.deliver(_from("b", "payment.successful", "p1", {"order_id": "1001"})).outcome is Outcome.APPLIED
    assert memory.ws.reservations[order_key("1001", "a")].state is S.COMMITTED
    assert order_key("1001", "b") not in memory.ws.reservations
