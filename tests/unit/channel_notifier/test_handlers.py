"""The notifier's use cases over the in-memory unit of work: no broker, no database."""

from __future__ import annotations

import pytest

from services.channel_notifier.domain.channel import Channel, ChannelFilters
from services.channel_notifier.domain.pending import DeliveryStatus, FailurePlan
from services.channel_notifier.domain.records import (
    ATTEMPTS_KEPT,
    AttemptRecord,
    DeliveryRecord,
    DuplicateChannel,
    Settlement,
)
from services.channel_notifier.service_layer import handlers
from services.channel_notifier.service_layer.unit_of_work import NewChannel, Transaction

from .memory import MemoryUnitOfWork

SECRET = "whsec_" + "A" * 32


def doc(sku: str, version: int) -> bytes:
    return f'{{"sku": "{sku}", "version": {version}}}'.encode()


def newest(**versions: int) -> dict[str, tuple[int, bytes]]:
    return {sku: (version, doc(sku, version)) for sku, version in versions.items()}


async def channel(uow: MemoryUnitOfWork, name: str, *, kind: str = "webhook", skus: tuple[str, ...] = ()) -> Channel:
    url = "http://localhost/hook" if kind == "webhook" else None
    secrets = [SECRET] if kind == "webhook" else []
    new = NewChannel(name, kind, url, secrets, ChannelFilters(skus), 0, True)
    return await handlers.create_channel(uow, new, 0.0)


@pytest.fixture
def uow() -> MemoryUnitOfWork:
    return MemoryUnitOfWork()


async def test_a_batch_fans_out_to_each_webhook_channel_that_wants_the_sku_and_wakes_only_those(
    uow: MemoryUnitOfWork,
) -> None:
    every = await channel(uow, "every")
    reds = await channel(uow, "reds", skus=("*.red",))
    pulled = await channel(uow, "erp", kind="jetstream")
    woken: list[set[int]] = []
    uow.after_commit = woken.append
    count = await handlers.record_updates(uow, newest(**{"A.red": 3, "B": 1}), [every, reds, pulled], 10.0)
    assert count == 3
    assert sorted(uow.rows()) == sorted([(every.id, "A.red"), (every.id, "B"), (reds.id, "A.red")])
    assert woken == [{every.id, reds.id}]
    assert await handlers.record_updates(uow, newest(C=1), [reds, pulled], 11.0) == 0
    assert woken == [{every.id, reds.id}]  # nothing recorded, nobody woken


async def test_per_channel_and_sku_only_a_newer_version_replaces_the_row(uow: MemoryUnitOfWork) -> None:
    shop = await channel(uow, "shop")
    await handlers.record_updates(uow, newest(A=5), [shop], 1.0)
    await handlers.record_updates(uow, newest(A=3), [shop], 2.0)  # late or redelivered: ignored
    await handlers.record_updates(uow, newest(A=5), [shop], 3.0)
    row = uow.rows()[shop.id, "A"]
    assert (row.model.version, row.document, row.updated_at) == (5, doc("A", 5), 1.0)
    await handlers.record_updates(uow, newest(A=7), [shop], 4.0)
    (claimed,) = await handlers.claim_due(uow, shop.id, "me", 10, 5.0, 30.0)
    assert (claimed.version, claimed.document) == (7, doc("A", 7))  # coalesced: only the newest is sent


async def test_one_delivery_per_channel_and_sku_in_flight_until_its_lease_ends(uow: MemoryUnitOfWork) -> None:
    shop = await channel(uow, "shop")
    await handlers.record_updates(uow, newest(A=1, B=1), [shop], 0.0)
    assert [c.sku for c in await handlers.claim_due(uow, shop.id, "one", 1, 1.0, 5.0)] == ["A"]
    await handlers.record_updates(uow, newest(A=2), [shop], 2.0)  # a newer version while A is in flight
    assert [c.sku for c in await handlers.claim_due(uow, shop.id, "two", 10, 2.0, 5.0)] == ["B"]
    assert await handlers.claim_due(uow, shop.id, "two", 10, 3.0, 5.0) == []
    assert await handlers.next_due(uow, shop.id) == 6.0  # A's lease
    assert await handlers.claim_due(uow, shop.id, "two", 0, 9.0, 5.0) == []


async def test_a_success_delivers_unless_a_newer_version_arrived_meanwhile(uow: MemoryUnitOfWork) -> None:
    shop = await channel(uow, "shop")
    await handlers.record_updates(uow, newest(A=1, B=1), [shop], 0.0)
    a, b = await handlers.claim_due(uow, shop.id, "me", 10, 1.0, 5.0)
    await handlers.record_updates(uow, newest(B=2), [shop], 1.5)
    uow.woken.clear()
    await handlers.settle(
        uow,
        [
            (shop.id, Settlement.success(a.id, "me", 1, 200, 2.0)),
            (shop.id, Settlement.success(b.id, "me", 1, 200, 2.0)),
        ],
    )
    rows = uow.rows()
    assert rows[shop.id, "A"].model.status is DeliveryStatus.DELIVERED
    assert (rows[shop.id, "B"].model.status, rows[shop.id, "B"].model.delivered_version) == (DeliveryStatus.PENDING, 1)
    assert uow.woken == [{shop.id}]
    (again,) = await handlers.claim_due(uow, shop.id, "me", 10, 2.0, 5.0)
    assert (again.sku, again.version) == ("B", 2)


async def test_failures_back_off_then_give_up_and_a_retry_starts_afresh(uow: MemoryUnitOfWork) -> None:
    shop = await channel(uow, "shop")
    await handlers.record_updates(uow, newest(A=1), [shop], 0.0)
    (row,) = await handlers.claim_due(uow, shop.id, "me", 1, 1.0, 5.0)
    plan = FailurePlan(DeliveryStatus.PENDING, 1, 20.0)
    await handlers.settle(uow, [(shop.id, Settlement.failed(row.id, "me", plan, 503, "HTTP 503", 2.0))])
    assert await handlers.claim_due(uow, shop.id, "me", 1, 19.0, 5.0) == []
    # A newer version of a failing delivery keeps its backoff and its attempt count.
    await handlers.record_updates(uow, newest(A=2), [shop], 3.0)
    assert (uow.rows()[shop.id, "A"].model.attempts, await handlers.next_due(uow, shop.id)) == (1, 20.0)
    (row,) = await handlers.claim_due(uow, shop.id, "me", 1, 20.0, 5.0)
    gave_up = FailurePlan(DeliveryStatus.FAILED, 2, 21.0)
    await handlers.settle(uow, [(shop.id, Settlement.failed(row.id, "me", gave_up, None, "timeout", 21.0))])
    (record,) = await deliveries(uow, shop.id)
    assert (record.status, record.attempts, record.last_error) == ("failed", 2, "timeout")
    assert await handlers.next_due(uow, shop.id) is None
    retried = await handlers.retry(uow, record.id, 30.0)
    assert retried is not None and (retried.status, retried.attempts, retried.version) == ("pending", 0, 2)
    assert uow.woken[-1] == {shop.id}
    assert await handlers.retry(uow, 9999, 30.0) is None


async def test_a_release_is_no_attempt_and_a_drop_removes_the_row(uow: MemoryUnitOfWork) -> None:
    shop = await channel(uow, "shop")
    await handlers.record_updates(uow, newest(A=1, B=1), [shop], 0.0)
    a, b = await handlers.claim_due(uow, shop.id, "me", 10, 1.0, 5.0)
    await handlers.settle(
        uow,
        [
            (shop.id, Settlement.released(a.id, "me", 2.0, "retry-after", not_before=30.0)),
            (shop.id, Settlement.drop(b.id, "me", 2.0)),
        ],
    )
    assert list(uow.rows()) == [(shop.id, "A")]
    record = uow.rows()[shop.id, "A"]
    assert (record.model.attempts, record.model.next_attempt_at, record.last_error) == (0, 30.0, "retry-after")
    assert await handlers.claim_due(uow, shop.id, "me", 10, 29.0, 5.0) == []
    assert [c.sku for c in await handlers.claim_due(uow, shop.id, "me", 10, 30.0, 5.0)] == ["A"]


async def test_a_settlement_by_an_owner_whose_lease_lapsed_is_ignored(uow: MemoryUnitOfWork) -> None:
    shop = await channel(uow, "shop")
    await handlers.record_updates(uow, newest(A=1), [shop], 0.0)
    (first,) = await handlers.claim_due(uow, shop.id, "one", 1, 1.0, 5.0)
    (taken,) = await handlers.claim_due(uow, shop.id, "two", 1, 7.0, 5.0)
    await handlers.settle(uow, [(shop.id, Settlement.success(first.id, "one", 1, 200, 8.0))])
    assert uow.rows()[shop.id, "A"].model.status is DeliveryStatus.PENDING
    await handlers.settle(uow, [(shop.id, Settlement.success(taken.id, "two", 1, 200, 8.0))])
    assert uow.rows()[shop.id, "A"].model.status is DeliveryStatus.DELIVERED


async def test_replay_makes_rows_pending_again_but_never_older(uow: MemoryUnitOfWork) -> None:
    shop = await channel(uow, "shop", skus=("A", "B"))
    await handlers.record_updates(uow, newest(A=5), [shop], 0.0)
    (row,) = await handlers.claim_due(uow, shop.id, "me", 1, 1.0, 5.0)
    await handlers.settle(uow, [(shop.id, Settlement.success(row.id, "me", 5, 200, 2.0))])
    assert await handlers.replay(uow, shop, newest(A=3, B=1, C=9), 3.0) == 2  # C is not the channel's
    rows = uow.rows()
    assert {sku: r.model.version for (_, sku), r in rows.items()} == {"A": 5, "B": 1}
    assert all(r.model.status is DeliveryStatus.PENDING for r in rows.values())
    assert uow.woken[-1] == {shop.id}


async def test_new_filters_drop_the_rows_of_skus_left_out(uow: MemoryUnitOfWork) -> None:
    shop = await channel(uow, "shop")
    await handlers.record_updates(uow, newest(**{"A.red": 1, "B.blue": 1}), [shop], 0.0)
    changed = await handlers.change_channel(uow, shop, {"filters": ChannelFilters(("*.red",))}, 1.0)
    assert changed is not None and changed.filters.skus == ("*.red",) and changed.updated_at == 1.0
    assert await handlers.drop_unwanted(uow, changed) == 1
    assert list(uow.rows()) == [(shop.id, "A.red")]


async def test_a_new_buffer_makes_every_row_of_the_channel_pending_and_wakes_it(uow: MemoryUnitOfWork) -> None:
    shop, other = await channel(uow, "shop"), await channel(uow, "other")
    await handlers.record_updates(uow, newest(A=1, B=1), [shop, other], 0.0)
    for row in await handlers.claim_due(uow, shop.id, "me", 10, 1.0, 5.0):
        await handlers.settle(uow, [(shop.id, Settlement.success(row.id, "me", row.version, 200, 1.0))])
    assert await uow.run(lambda tx: tx.pending_counts()) == {other.id: 2}
    assert await handlers.resend_channel(uow, shop.id, 2.0) == 2
    assert await uow.run(lambda tx: tx.pending_counts()) == {shop.id: 2, other.id: 2}
    assert uow.woken[-1] == {shop.id}


async def test_a_failed_transaction_leaves_nothing_and_wakes_nobody(uow: MemoryUnitOfWork) -> None:
    shop = await channel(uow, "shop")
    with pytest.raises(DuplicateChannel):
        await channel(uow, "shop")

    def offer_then_fail(tx: Transaction) -> None:
        tx.offer([(shop.id, "A", 1, doc("A", 1))], 1.0)
        tx.wake({shop.id})
        raise RuntimeError("the store went away")

    with pytest.raises(RuntimeError):
        await uow.run(offer_then_fail)
    assert (uow.rows(), uow.woken) == ({}, [])
    assert [c.name for c in await uow.run(lambda tx: tx.channels())] == ["shop"]
    await handlers.delete_channel(uow, shop.id)
    assert await uow.run(lambda tx: tx.channel("shop")) is None


async def deliveries(uow: MemoryUnitOfWork, channel_id: int) -> list[DeliveryRecord]:
    return await uow.run(lambda tx: tx.deliveries(channel_id, None, 100))


def attempt(number: int, at: float, outcome: str = "http_error", code: int | None = 500) -> AttemptRecord:
    return AttemptRecord(number, at, 12.5, outcome, code, None if outcome == "delivered" else f"HTTP {code}")


async def test_each_attempt_is_kept_with_its_settlement_newest_first_and_none_for_what_was_not_sent(
    uow: MemoryUnitOfWork,
) -> None:
    shop = await channel(uow, "shop")
    await handlers.record_updates(uow, newest(A=1), [shop], 0.0)
    (row,) = await handlers.claim_due(uow, shop.id, "me", 1, 1.0, 5.0)
    plan = FailurePlan(DeliveryStatus.PENDING, 1, 2.0)
    commits = uow.commits
    await handlers.settle(
        uow, [(shop.id, Settlement.failed(row.id, "me", plan, 500, "HTTP 500", 1.5, attempt(1, 1.0)))]
    )
    assert uow.commits == commits + 1  # the attempt and the result: one transaction
    (row,) = await handlers.claim_due(uow, shop.id, "me", 1, 2.0, 5.0)
    await handlers.settle(uow, [(shop.id, Settlement.released(row.id, "me", 2.1))])  # nothing sent
    (row,) = await handlers.claim_due(uow, shop.id, "me", 1, 3.0, 5.0)
    success = Settlement.success(row.id, "me", 1, 200, 3.5, attempt(2, 3.0, "delivered", 200))
    await handlers.settle(uow, [(shop.id, success)])
    kept = await handlers.attempts_of(uow, shop.id, row.id, 10)
    assert kept is not None
    assert [(a.seq, a.record.attempt, a.record.status_code, a.record.outcome) for a in kept] == [
        (2, 2, 200, "delivered"),
        (1, 1, 500, "http_error"),
    ]
    assert [a.seq for a in await handlers.attempts_of(uow, shop.id, row.id, 1) or []] == [2]
    records, by_row = await handlers.deliveries_of(uow, shop.id, None, 10, 0, 5)
    assert [r.id for r in records] == [row.id] and [a.seq for a in by_row[row.id]] == [2, 1]
    assert (await handlers.deliveries_of(uow, shop.id, None, 10, 0, 0))[1] == {}
    other = await channel(uow, "other")
    assert await handlers.attempts_of(uow, other.id, row.id, 10) is None  # not that channel's
    assert await handlers.attempts_of(uow, shop.id, 9999, 10) is None


async def test_a_row_keeps_only_its_newest_attempts_and_a_lapsed_lease_records_none(uow: MemoryUnitOfWork) -> None:
    shop = await channel(uow, "shop")
    await handlers.record_updates(uow, newest(A=1), [shop], 0.0)
    now = 1.0
    for number in range(1, ATTEMPTS_KEPT + 4):
        (row,) = await handlers.claim_due(uow, shop.id, "me", 1, now, 5.0)
        plan = FailurePlan(DeliveryStatus.PENDING, number, now)
        await handlers.settle(
            uow, [(shop.id, Settlement.failed(row.id, "me", plan, 500, "x", now, attempt(number, now)))]
        )
        now += 1.0
    kept = await handlers.attempts_of(uow, shop.id, row.id, ATTEMPTS_KEPT + 10) or []
    assert [a.seq for a in kept] == list(range(ATTEMPTS_KEPT + 3, 3, -1))
    (row,) = await handlers.claim_due(uow, shop.id, "one", 1, now, 5.0)
    await handlers.claim_due(uow, shop.id, "two", 1, now + 6.0, 5.0)
    await handlers.settle(uow, [(shop.id, Settlement.success(row.id, "one", 1, 200, now + 7, attempt(1, now)))])
    assert len(await handlers.attempts_of(uow, shop.id, row.id, 100) or []) == ATTEMPTS_KEPT
    assert (await handlers.attempts_of(uow, shop.id, row.id, 1) or [])[0].seq == ATTEMPTS_KEPT + 3
