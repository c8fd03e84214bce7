"""Ordering and coalescing, on the reference model of one (channel, SKU) delivery row."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from libs.contracts import AvailabilityChanged
from services.channel_notifier.domain.pending import (
    DeliveryStatus,
    FailurePlan,
    PendingDelivery,
    newest_per_sku,
)


def change(sku: str, version: int) -> AvailabilityChanged:
    return AvailabilityChanged(
        sku=sku, version=version, available=version, on_hand=version, reserved=0, committed=0, occurred_at="x"
    )


def test_newest_per_sku_keeps_the_highest_version() -> None:
    batch = [change("A", 3), change("B", 1), change("A", 5), change("A", 4), change("B", 1)]
    newest = newest_per_sku(batch)
    assert {sku: u.version for sku, u in newest.items()} == {"A": 5, "B": 1}


def test_older_or_equal_offers_change_nothing() -> None:
    row = PendingDelivery.first(5, now=0)
    assert not row.offer(4, now=1)
    assert not row.offer(5, now=1)
    assert row.version == 5


def test_updates_coalesce_while_a_delivery_is_in_flight() -> None:
    row = PendingDelivery.first(1, now=0)
    sent = row.claim(now=0, lease_s=10)
    for version in (2, 3, 4):
        row.offer(version, now=1)
    assert not row.claimable(now=2)  # one delivery in flight per (channel, SKU)
    row.succeeded(sent, now=2)
    assert row.status is DeliveryStatus.PENDING and row.delivered_version == 1
    assert row.claim(now=2, lease_s=10) == 4  # versions 2 and 3 are never sent
    row.succeeded(4, now=3)
    assert row.status is DeliveryStatus.DELIVERED


def test_failing_delivery_keeps_its_backoff_for_a_newer_version() -> None:
    row = PendingDelivery.first(1, now=0)
    row.claim(now=0, lease_s=10)
    row.failed(FailurePlan(DeliveryStatus.PENDING, attempts=3, next_attempt_at=50))
    row.offer(2, now=10)
    assert (row.attempts, row.next_attempt_at) == (3, 50)
    assert not row.claimable(now=49) and row.claimable(now=50)


def test_given_up_row_is_revived_by_a_newer_version_and_by_resend() -> None:
    row = PendingDelivery.first(1, now=0)
    row.claim(now=0, lease_s=1)
    row.failed(FailurePlan(DeliveryStatus.FAILED, attempts=5, next_attempt_at=0))
    assert not row.claimable(now=100)
    row.resend(now=100)
    assert row.claimable(now=100) and row.attempts == 0
    row.claim(now=100, lease_s=1)
    row.failed(FailurePlan(DeliveryStatus.FAILED, attempts=5, next_attempt_at=0))
    row.offer(2, now=200)
    assert row.claimable(now=200) and row.version == 2


def test_expired_lease_can_be_claimed_again() -> None:
    row = PendingDelivery.first(1, now=0)
    row.claim(now=0, lease_s=5)
    assert not row.claimable(now=4.9)
    assert row.claimable(now=5.1)


operations = st.lists(
    st.one_of(
        st.tuples(st.just("offer"), st.integers(min_value=1, max_value=30)),
        st.tuples(st.just("claim"), st.just(0)),
        st.tuples(st.just("ok"), st.just(0)),
        st.tuples(st.just("fail"), st.just(0)),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=1, max_value=30), operations)
def test_sent_versions_never_go_backwards_and_the_newest_is_delivered(first: int, ops: list[tuple[str, int]]) -> None:
    now = 0.0
    row = PendingDelivery.first(first, now)
    highest_offered = first
    in_flight: int | None = None
    sent: list[int] = []
    for op, value in ops:
        now += 1
        if op == "offer":
            row.offer(value, now)
            highest_offered = max(highest_offered, value)
        elif op == "claim" and in_flight is None and row.claimable(now):
            in_flight = row.claim(now, lease_s=100)
            sent.append(in_flight)
        elif op == "ok" and in_flight is not None:
            row.succeeded(in_flight, now)
            in_flight = None
        elif op == "fail" and in_flight is not None:
            row.failed(FailurePlan(DeliveryStatus.PENDING, row.attempts + 1, now))
            in_flight = None
    assert sent == sorted(sent)
    assert row.version == highest_offered
    # Drain: a working channel ends up with exactly the newest version.
    if in_flight is not None:
        row.succeeded(in_flight, now)
    while row.claimable(now + 1000):
        version = row.claim(now + 1000, lease_s=1)
        sent.append(version)
        row.succeeded(version, now + 1000)
    assert sent == sorted(sent)
    assert row.delivered_version == highest_offered
    assert row.status is DeliveryStatus.DELIVERED
