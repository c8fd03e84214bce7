"""Property tests over random histories, on the pure domain (the store runs the same ones, fewer)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from services.inventory.domain.model import ReservationState
from services.inventory.domain.workspace import Outcome

from .histories import History, MemoryInventory, any_interleaving, check_invariants, histories, shuffled_per_order


def _reservations(memory: MemoryInventory) -> list:
    return [(r.key, r.state, r.lines) for r in memory.ws.reservations.values()]


@settings(max_examples=300, deadline=None)
@given(histories(), st.randoms(use_true_random=False), st.floats(0.0, 0.5))
def test_duplicates_and_per_order_shuffles_end_where_a_clean_delivery_ends(
    history: History, rng: random.Random, duplicate_p: float
) -> None:
    clean = MemoryInventory()
    clean.deliver_all(history.in_order())
    messy = MemoryInventory()
    messy.deliver_all(shuffled_per_order(history, rng, duplicate_p))

    # Quantities, not versions: a cancel that overtakes a payment releases in one row instead of two.
    assert messy.quantities() == clean.quantities()
    assert {k: r.state for k, r in messy.ws.reservations.items()} == {
        k: r.state for k, r in clean.ws.reservations.items()
    }
    assert messy.parked() == clean.parked() == 0
    assert set(messy.outcomes) == set(clean.outcomes) == {e.msg_id for e in history.in_order()}
    assert Outcome.PARKED not in messy.outcomes.values()
    for memory in (clean, messy):
        check_invariants(
            memory.quantities(), memory.ledger, memory.received, _reservations(memory), history.event_types()
        )


@settings(max_examples=300, deadline=None)
@given(histories(), st.randoms(use_true_random=False), st.floats(0.0, 0.3))
def test_invariants_hold_at_every_step_of_any_interleaving(
    history: History, rng: random.Random, duplicate_p: float
) -> None:
    memory = MemoryInventory()
    for envelope in any_interleaving(history, rng, duplicate_p):
        result = memory.deliver(envelope)
        assert result.outcome is not Outcome.DEAD_LETTERED, result.detail
        check_invariants(
            memory.quantities(), memory.ledger, memory.received, _reservations(memory), history.event_types()
        )
    # Everything delivered is accounted for: applied, parked (predecessor never came), ignored or rejected.
    assert set(memory.outcomes) == {e.msg_id for e in history.in_order()}


@settings(max_examples=100, deadline=None)
@given(histories(), st.randoms(use_true_random=False), st.integers(0, 2000))
def test_invariants_hold_when_reservations_expire_midway(history: History, rng: random.Random, at: int) -> None:
    memory = MemoryInventory(ttl_s=60.0)
    events = any_interleaving(history, rng, 0.1)
    for i, envelope in enumerate(events):
        memory.now += 7.0
        memory.deliver(envelope)
        if i % 5 == 0 or memory.now > memory.ttl_s + at:
            memory.expire_overdue()
        check_invariants(
            memory.quantities(), memory.ledger, memory.received, _reservations(memory), history.event_types()
        )


_AFTER_PAYMENT = {ReservationState.COMMITTED, ReservationState.SHIPPED, ReservationState.CANCELLED}


@settings(max_examples=200, deadline=None)
@given(histories(), st.randoms(use_true_random=False), st.floats(0.0, 0.3))
def test_a_paid_order_never_moves_backwards(history: History, rng: random.Random, duplicate_p: float) -> None:
    """Once committed, an order stays committed until it ships or is cancelled, in any interleaving and
    with reservation TTLs passing midway; its committed stock leaves only through those two."""
    memory = MemoryInventory(ttl_s=30.0)
    paid: set[str] = set()
    for envelope in any_interleaving(history, rng, duplicate_p):
        memory.now += 7.0
        memory.deliver(envelope)
        memory.expire_overdue()
        for key, reservation in memory.ws.reservations.items():
            if key in paid:
                assert reservation.state in _AFTER_PAYMENT, f"{key}: paid, now {reservation.state.value}"
            elif reservation.state is ReservationState.COMMITTED:
                paid.add(key)
    types = history.event_types()
    for entry in memory.ledger:
        if entry.committed_delta < 0:
            assert types[entry.source] in ("order.cancelled", "shipment.shipped", "order.fulfilled"), entry
