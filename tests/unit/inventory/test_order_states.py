"""The per-order state machine never moves an order backwards (design §4, "Leaving committed").

A paid order (``committed``) gives its stock back only through a cancellation; a later fact (a
payment, a shipment) is never undone by an event that arrives after it, whatever its timestamp.
"""

from __future__ import annotations

import pytest

from libs.profiles.canonical import (
    OrderCancelled,
    OrderLine,
    OrderPlaced,
    OrderShipped,
    PaymentFailed,
    PaymentSucceeded,
    ReturnLine,
    ReturnReceived,
)
from services.inventory.domain.events import OrderEvent
from services.inventory.domain.model import LedgerKind, Reservation, ReservationState, order_key
from services.inventory.domain.rules import Step, order_step
from services.inventory.domain.workspace import Outcome

from .histories import MemoryInventory, envelope

S = ReservationState
K = LedgerKind
APPLY, PARK, IGN = Step.APPLY, Step.PARK, Step.IGNORE

# Stockwire's own dialect: a payment failure releases the hold (Commerce Engine's keeps it).
_EVENTS: tuple[OrderEvent, ...] = (
    OrderPlaced(order_key="o", lines=(OrderLine(sku="A", quantity=1),)),
    PaymentSucceeded(order_key="o"),
    PaymentFailed(order_key="o", release=True),
    OrderCancelled(order_key="o"),
    OrderShipped(order_key="o"),
    ReturnReceived(order_key="o", lines=(ReturnLine(sku="A", quantity=1),)),
)
# Columns: created, paid, payment failed, cancelled, shipped, returned.
_TABLE: dict[ReservationState | None, tuple[Step, ...]] = {
    None: (APPLY, PARK, PARK, PARK, PARK, PARK),
    S.RESERVED: (IGN, APPLY, APPLY, APPLY, PARK, PARK),
    S.COMMITTED: (IGN, IGN, IGN, APPLY, APPLY, PARK),
    S.SHIPPED: (IGN, IGN, IGN, IGN, IGN, APPLY),
    S.PAYMENT_FAILED: (IGN, APPLY, IGN, APPLY, PARK, PARK),
    S.EXPIRED: (IGN, APPLY, IGN, APPLY, PARK, PARK),
    S.REJECTED: (IGN, IGN, IGN, IGN, IGN, IGN),
    S.CANCELLED: (IGN, IGN, IGN, IGN, IGN, IGN),
}
_ORDER_STATES = set(ReservationState) - {S.RELEASED, S.CONVERTED}  # those two are checkout holds only


def test_the_table_covers_every_order_state() -> None:
    assert set(_TABLE) == _ORDER_STATES | {None}


@pytest.mark.parametrize("state", list(_TABLE), ids=lambda s: getattr(s, "value", "none"))
def test_every_transition_of_the_order_state_machine(state: ReservationState | None) -> None:
    order = None if state is None else Reservation(order_key("o"), state, {"A": 1}, 0.0, 0.0)
    if state is S.SHIPPED:
        assert order is not None
        order.shipped = {"A": 1}
    steps = tuple(order_step(order, event)[0] for event in _EVENTS)
    assert steps == _TABLE[state]


# --- scenarios on the in-memory inventory --------------------------------------------------------


def _event(event_type: str, order_id: str, event_id: str, ts: float, **data: object):
    return envelope(event_type, event_id, {"order_id": order_id, **data}, ts=ts)


def _created(order_id: str, qty: int = 1, *, event_id: str = "", ts: float = 1.0):
    data = {"lines": [{"sku": "A", "qty": qty}]}
    return _event("order.created", order_id, event_id or f"{order_id}-created", ts, **data)


def _stocked(qty: int) -> MemoryInventory:
    memory = MemoryInventory()
    memory.deliver(envelope("inventory.received", f"recv-{qty}", {"sku": "A", "qty": qty}))
    return memory


def _paid(memory: MemoryInventory, order_id: str = "o1") -> None:
    assert memory.deliver(_created(order_id)).outcome is Outcome.APPLIED
    assert memory.deliver(_event("payment.successful", order_id, f"{order_id}-paid", 3.0)).outcome is Outcome.APPLIED


def _state(memory: MemoryInventory, order_id: str) -> ReservationState:
    return memory.ws.reservations[order_key(order_id, "ce")].state


def _releases_of_committed(memory: MemoryInventory) -> list[str]:
    return [e.source for e in memory.ledger if e.committed_delta < 0 and e.kind is not K.DEDUCTED]


def test_a_late_payment_failure_does_not_release_a_paid_order_and_the_unit_is_not_sold_twice() -> None:
    memory = _stocked(1)
    _paid(memory)
    # Delivered late, stamped before the success.
    late = memory.deliver(_event("payment.failed", "o1", "o1-failed", 2.0))
    assert late.outcome is Outcome.IGNORED and "committed" in late.detail
    assert _state(memory, "o1") is S.COMMITTED
    assert memory.quantities() == {"A": (1, 0, 1)}
    assert memory.deliver(_created("o2", ts=4.0)).outcome is Outcome.REJECTED
    assert memory.deliver(_event("shipment.shipped", "o1", "o1-shipped", 5.0)).outcome is Outcome.APPLIED
    assert memory.quantities() == {"A": (0, 0, 0)}
    assert _releases_of_committed(memory) == []


@pytest.mark.parametrize("failed_at", [2.0, 3.0, 9.0], ids=["stamped-earlier", "same-time", "stamped-later"])
def test_a_payment_failure_after_the_success_is_ignored_whatever_its_timestamp(failed_at: float) -> None:
    memory = _stocked(2)
    _paid(memory)
    assert memory.deliver(_event("payment.failed", "o1", "o1-failed", failed_at)).outcome is Outcome.IGNORED
    assert (_state(memory, "o1"), memory.quantities()) == (S.COMMITTED, {"A": (2, 0, 1)})


@pytest.mark.parametrize("success_at", [2.0, 9.0], ids=["success-stamped-earlier", "success-stamped-later"])
def test_success_and_failure_parked_before_the_order_end_paid_in_either_timestamp_order(success_at: float) -> None:
    memory = _stocked(1)
    memory.deliver(_event("payment.successful", "o1", "o1-paid", success_at))
    memory.deliver(_event("payment.failed", "o1", "o1-failed", 5.0))
    assert memory.parked() == 2
    memory.deliver(_created("o1"))
    assert memory.parked() == 0
    assert (_state(memory, "o1"), memory.quantities()) == (S.COMMITTED, {"A": (1, 0, 1)})
    assert _releases_of_committed(memory) == []


def test_a_failed_payment_then_a_successful_retry_commits_again() -> None:
    memory = _stocked(1)
    memory.deliver(_created("o1"))
    memory.deliver(_event("payment.failed", "o1", "o1-failed", 2.0))
    assert memory.quantities() == {"A": (1, 0, 0)}
    assert memory.deliver(_event("payment.successful", "o1", "o1-paid", 3.0)).outcome is Outcome.APPLIED
    assert (_state(memory, "o1"), memory.quantities()) == (S.COMMITTED, {"A": (1, 0, 1)})


def test_a_cancellation_is_what_releases_a_paid_order() -> None:
    memory = _stocked(1)
    _paid(memory)
    memory.deliver(_event("payment.failed", "o1", "o1-failed", 2.0))
    assert memory.deliver(_event("order.cancelled", "o1", "o1-cancelled", 4.0)).outcome is Outcome.APPLIED
    assert (_state(memory, "o1"), memory.quantities()) == (S.CANCELLED, {"A": (1, 0, 0)})
    assert _releases_of_committed(memory) == ["ce:o1-cancelled"]
    # And nothing brings a cancelled order back.
    for event_type in ("payment.successful", "payment.failed", "shipment.shipped"):
        memory.deliver(_event(event_type, "o1", f"o1-{event_type}-again", 6.0))
    memory.deliver(_created("o1", event_id="o1-created-again", ts=6.0))
    assert (_state(memory, "o1"), memory.quantities()) == (S.CANCELLED, {"A": (1, 0, 0)})


def test_the_ttl_never_expires_a_paid_order() -> None:
    memory = _stocked(1)
    memory.ttl_s = 60.0
    _paid(memory)
    memory.now += 3600
    assert memory.expire_overdue() == 0
    assert (_state(memory, "o1"), memory.quantities()) == (S.COMMITTED, {"A": (1, 0, 1)})


@pytest.mark.parametrize("shipped", [False, True], ids=["after-payment", "after-shipment"])
def test_a_late_or_repeated_order_created_changes_nothing(shipped: bool) -> None:
    memory = _stocked(5)
    _paid(memory)
    if shipped:
        memory.deliver(_event("shipment.shipped", "o1", "o1-shipped", 4.0))
    before = (_state(memory, "o1"), memory.quantities(), len(memory.ledger))
    again = memory.deliver(_created("o1", 3, event_id="o1-created-resent", ts=0.5))
    assert again.outcome is Outcome.IGNORED
    assert (_state(memory, "o1"), memory.quantities(), len(memory.ledger)) == before


@pytest.mark.parametrize("event_type", ["payment.failed", "payment.successful", "order.cancelled", "order.created"])
def test_nothing_but_a_return_moves_a_shipped_order(event_type: str) -> None:
    memory = _stocked(2)
    _paid(memory)
    memory.deliver(_event("shipment.shipped", "o1", "o1-shipped", 4.0))
    extra = {"lines": [{"sku": "A", "qty": 1}]} if event_type == "order.created" else {}
    result = memory.deliver(_event(event_type, "o1", f"o1-late-{event_type}", 2.0, **extra))
    assert result.outcome is Outcome.IGNORED
    assert (_state(memory, "o1"), memory.quantities()) == (S.SHIPPED, {"A": (1, 0, 0)})
    returned = _event("return.received", "o1", "o1-return", 6.0, lines=[{"sku": "A", "qty": 1}], restock=True)
    assert memory.deliver(returned).outcome is Outcome.APPLIED
    assert (_state(memory, "o1"), memory.quantities()) == (S.SHIPPED, {"A": (2, 0, 0)})


def test_a_return_for_a_paid_order_waits_for_the_shipment_and_never_touches_committed() -> None:
    memory = _stocked(1)
    _paid(memory)
    returned = _event("return.received", "o1", "o1-return", 6.0, lines=[{"sku": "A", "qty": 1}], restock=True)
    assert memory.deliver(returned).outcome is Outcome.PARKED
    assert memory.quantities() == {"A": (1, 0, 1)}
    memory.deliver(_event("shipment.shipped", "o1", "o1-shipped", 4.0))
    assert memory.quantities() == {"A": (1, 0, 0)}
    assert _releases_of_committed(memory) == []


@pytest.mark.parametrize("known", ["shipment.shipped", "return.received"])
def test_a_reservation_whose_shipment_is_known_does_not_lapse_while_it_waits_for_the_payment(known: str) -> None:
    memory = _stocked(1)
    memory.ttl_s = 60.0
    memory.deliver(_created("o1"))
    extra = {"lines": [{"sku": "A", "qty": 1}], "restock": False} if known == "return.received" else {}
    assert memory.deliver(_event(known, "o1", f"o1-{known}", 4.0, **extra)).outcome is Outcome.PARKED
    memory.now += 3600
    assert memory.expire_overdue() == 0
    assert memory.deliver(_created("o2", ts=5.0)).outcome is Outcome.REJECTED
    if known == "return.received":
        memory.deliver(_event("shipment.shipped", "o1", "o1-shipped", 3.5))
    memory.deliver(_event("payment.successful", "o1", "o1-paid", 3.0))
    assert (_state(memory, "o1"), memory.quantities()) == (S.SHIPPED, {"A": (0, 0, 0)})


def test_a_shipment_parked_before_its_order_keeps_the_hold_once_the_order_arrives() -> None:
    memory = _stocked(1)
    memory.ttl_s = 60.0
    assert memory.deliver(_event("shipment.shipped", "o1", "o1-shipped", 4.0)).outcome is Outcome.PARKED
    memory.deliver(_created("o1"))
    memory.now += 3600
    assert memory.expire_overdue() == 0
    assert memory.quantities() == {"A": (1, 1, 0)}
