"""The delivery rows in SQL follow the reference model, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Callable
from operator import methodcaller
from pathlib import Path
from typing import TypeVar

import pytest
import sqlalchemy as sa

from libs.store import create_engine, database_url, migrate
from services.channel_notifier.domain.channel import ChannelFilters
from services.channel_notifier.domain.pending import DeliveryStatus, FailurePlan, PendingDelivery
from services.channel_notifier.domain.records import ATTEMPTS_KEPT, AttemptRecord
from services.channel_notifier.schema import COMPONENT, MIGRATIONS, attempts_table
from services.channel_notifier.service_layer.unit_of_work import NewChannel, Transaction
from services.channel_notifier.store import NotifierStore, Settlement
from services.channel_notifier.transactions import _CLAIM

T = TypeVar("T")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, data_dir: Path) -> str:
    if request.param == "sqlite":
        return database_url("", data_dir, "channel-notifier")
    return request.getfixturevalue("postgres_url")  # type: ignore[no-any-return]


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[NotifierStore]:
    opened = await NotifierStore.open(store_url)
    try:
        yield opened
    finally:
        await opened.close()


async def run(store: NotifierStore, work: Callable[[Transaction], T]) -> T:
    """``work`` in one transaction of the store's unit of work."""
    return await store.unit_of_work().run(work)


async def _channel(store: NotifierStore, name: str = "c") -> int:
    new = NewChannel(name, "webhook", "http://localhost/x", ["s"], ChannelFilters(), 0, True)
    channel = await run(store, lambda tx: tx.add_channel(new, 0.0))
    return channel.id


def _doc(version: int) -> bytes:
    return f'{{"version": {version}}}'.encode()


async def test_random_histories_match_the_reference_model(store: NotifierStore) -> None:
    channel_id = await _channel(store)
    rng = random.Random(11)
    skus = [f"S{n}" for n in range(6)]
    models: dict[str, PendingDelivery] = {}
    in_flight: dict[str, tuple[int, int]] = {}  # sku -> (row id, version sent)
    now = 1000.0
    for _ in range(400):
        now += 1
        action = rng.choice(["offer", "offer", "claim", "ok", "fail", "giveup", "resend"])
        if action == "offer":
            batch = {sku: rng.randint(1, 40) for sku in rng.sample(skus, 3)}
            await run(store, methodcaller("offer", [(channel_id, s, v, _doc(v)) for s, v in batch.items()], now))
            for sku, version in batch.items():
                if sku in models:
                    models[sku].offer(version, now)
                else:
                    models[sku] = PendingDelivery.first(version, now)
        elif action == "claim":
            claimed = await run(store, methodcaller("claim", channel_id, "me", 3, now, lease_s=50))
            expected = [s for s, m in sorted(models.items()) if m.claimable(now)]
            assert len(claimed) == min(3, len(expected))
            for row in claimed:
                assert row.version == models[row.sku].claim(now, 50)
                assert row.document == _doc(row.version)
                in_flight[row.sku] = (row.id, row.version)
        elif in_flight and action in ("ok", "fail", "giveup"):
            sku = rng.choice(sorted(in_flight))
            row_id, sent = in_flight.pop(sku)
            if action == "ok":
                await run(store, methodcaller("settle", [Settlement.success(row_id, "me", sent, 200, now)]))
                models[sku].succeeded(sent, now)
            else:
                status = DeliveryStatus.PENDING if action == "fail" else DeliveryStatus.FAILED
                plan = FailurePlan(status, models[sku].attempts + 1, now + rng.choice([0, 5]))
                await run(store, methodcaller("settle", [Settlement.failed(row_id, "me", plan, 500, "HTTP 500", now)]))
                models[sku].failed(plan)
        elif action == "resend" and models:
            sku = rng.choice(sorted(models))
            if sku not in in_flight:
                record = next(
                    r for r in await run(store, lambda tx: tx.deliveries(channel_id, None, 100)) if r.sku == sku
                )
                await run(store, methodcaller("resend", record.id, now))
                models[sku].resend(now)
        rows = {r.sku: r for r in await run(store, lambda tx: tx.deliveries(channel_id, None, 100))}
        for sku, model in models.items():
            row = rows[sku]
            assert (row.version, row.delivered_version, row.status, row.attempts) == (
                model.version,
                model.delivered_version,
                model.status.value,
                model.attempts,
            ), (sku, action)


async def test_a_row_is_claimed_once_until_its_lease_expires(store: NotifierStore) -> None:
    channel_id = await _channel(store)
    await run(store, lambda tx: tx.offer([(channel_id, "A", 1, _doc(1))], 0.0))
    assert [r.sku for r in await run(store, lambda tx: tx.claim(channel_id, "one", 10, 1.0, lease_s=5))] == ["A"]
    assert await run(store, lambda tx: tx.claim(channel_id, "two", 10, 2.0, lease_s=5)) == []
    assert await run(store, lambda tx: tx.next_due(channel_id)) == 6.0
    taken = await run(store, lambda tx: tx.claim(channel_id, "two", 10, 6.5, lease_s=5))
    assert [r.sku for r in taken] == ["A"]
    # The first owner's late result does not clobber the row the second owner holds now.
    await run(store, lambda tx: tx.settle([Settlement.success(taken[0].id, "one", 1, 200, 7.0)]))
    assert (await run(store, lambda tx: tx.deliveries(channel_id, "delivered", 10))) == []
    await run(store, lambda tx: tx.settle([Settlement.success(taken[0].id, "two", 1, 200, 7.0)]))
    assert [r.sku for r in await run(store, lambda tx: tx.deliveries(channel_id, "delivered", 10))] == ["A"]


async def test_release_keeps_the_row_due_without_counting_an_attempt(store: NotifierStore) -> None:
    channel_id = await _channel(store)
    await run(store, lambda tx: tx.offer([(channel_id, "A", 1, _doc(1))], 0.0))
    (row,) = await run(store, lambda tx: tx.claim(channel_id, "me", 1, 1.0, lease_s=5))
    await run(store, lambda tx: tx.settle([Settlement.released(row.id, "me", 2.0, "circuit open")]))
    (record,) = await run(store, lambda tx: tx.deliveries(channel_id, "pending", 10))
    assert (record.attempts, record.last_error) == (0, "circuit open")
    assert [r.sku for r in await run(store, lambda tx: tx.claim(channel_id, "me", 1, 2.0, lease_s=5))] == ["A"]


async def test_replay_makes_rows_pending_again_but_never_older(store: NotifierStore) -> None:
    channel_id = await _channel(store)
    await run(store, lambda tx: tx.offer([(channel_id, "A", 5, _doc(5))], 0.0))
    (row,) = await run(store, lambda tx: tx.claim(channel_id, "me", 1, 1.0, lease_s=5))
    await run(store, lambda tx: tx.settle([Settlement.success(row.id, "me", 5, 200, 2.0)]))
    await run(store, lambda tx: tx.replay(channel_id, [("A", 3, _doc(3)), ("B", 1, _doc(1))], 3.0))
    rows = {r.sku: r for r in await run(store, lambda tx: tx.deliveries(channel_id, "pending", 10))}
    assert (rows["A"].version, rows["B"].version) == (5, 1)
    claimed = {r.sku: r for r in await run(store, lambda tx: tx.claim(channel_id, "me", 10, 3.0, lease_s=5))}
    assert claimed["A"].document == _doc(5)


async def test_pending_counts_and_resend_channel(store: NotifierStore) -> None:
    first, second = await _channel(store, "first"), await _channel(store, "second")
    await run(
        store, lambda tx: tx.offer([(first, "A", 1, _doc(1)), (first, "B", 1, _doc(1)), (second, "A", 1, _doc(1))], 0.0)
    )
    assert await run(store, lambda tx: tx.pending_counts()) == {first: 2, second: 1}
    for row in await run(store, lambda tx: tx.claim(first, "me", 10, 1.0, lease_s=5)):
        await run(store, methodcaller("settle", [Settlement.success(row.id, "me", row.version, 200, 1.0)]))
    assert await run(store, lambda tx: tx.pending_counts()) == {second: 1}
    assert await run(store, lambda tx: tx.resend_channel(first, 2.0)) == 2
    assert await run(store, lambda tx: tx.pending_counts()) == {first: 2, second: 1}


@pytest.mark.postgres
async def test_concurrent_claims_on_postgres_never_share_a_row(postgres_url: str) -> None:
    stores = [await NotifierStore.open(postgres_url) for _ in range(3)]
    try:
        channel_id = await _channel(stores[0])
        await run(stores[0], lambda tx: tx.offer([(channel_id, f"S{n}", 1, _doc(1)) for n in range(200)], 0.0))

        async def claimer(store: NotifierStore, name: str) -> list[str]:
            got: list[str] = []
            while True:
                rows = await run(store, lambda tx: tx.claim(channel_id, name, 7, 1.0, lease_s=60))
                if not rows:
                    return got
                got.extend(r.sku for r in rows)

        results = await asyncio.gather(*(claimer(s, f"replica-{i}") for i, s in enumerate(stores)))
        claimed = [sku for got in results for sku in got]
        assert len(claimed) == len(set(claimed)) == 200
        assert all(results)  # every replica got a share
    finally:
        for store in stores:
            await store.close()


async def test_release_not_before_and_drop(store: NotifierStore) -> None:
    channel_id = await _channel(store)
    await run(store, lambda tx: tx.offer([(channel_id, "A", 1, _doc(1)), (channel_id, "B", 1, _doc(1))], 0.0))
    rows = {r.sku: r for r in await run(store, lambda tx: tx.claim(channel_id, "me", 2, 1.0, lease_s=5))}
    await run(
        store,
        lambda tx: tx.settle(
            [
                Settlement.released(rows["A"].id, "me", 2.0, "retry-after", not_before=30.0),
                Settlement.drop(rows["B"].id, "me", 2.0),
            ]
        ),
    )
    (record,) = await run(store, lambda tx: tx.deliveries(channel_id, None, 10))
    assert (record.sku, record.next_attempt_at, record.attempts) == ("A", 30.0, 0)
    assert await run(store, lambda tx: tx.claim(channel_id, "me", 2, 29.0, lease_s=5)) == []
    assert [r.sku for r in await run(store, lambda tx: tx.claim(channel_id, "me", 2, 30.0, lease_s=5))] == ["A"]


async def test_one_notifier_per_sqlite_file_and_a_dead_ones_leases_are_freed(data_dir: Path) -> None:
    url = database_url("", data_dir, "channel-notifier")
    first = await NotifierStore.open(url)
    channel_id = await _channel(first)
    await run(first, lambda tx: tx.offer([(channel_id, "A", 1, _doc(1))], 0.0))
    assert len(await run(first, lambda tx: tx.claim(channel_id, "first", 1, 1.0, lease_s=3600))) == 1
    second = asyncio.create_task(NotifierStore.open(url))
    done, _ = await asyncio.wait({second}, timeout=0.3)
    assert not done  # waits while the first holds the file
    await first.close()  # the first goes away without handing its lease back
    store = await asyncio.wait_for(second, 10)
    try:
        assert [r.sku for r in await run(store, lambda tx: tx.claim(channel_id, "second", 1, 2.0, lease_s=5))] == ["A"]
    finally:
        await store.close()


async def test_an_older_store_gets_the_claim_ordered_index(store_url: str) -> None:
    engine = create_engine(store_url)
    try:
        await migrate(engine, COMPONENT, MIGRATIONS[:1])
        async with engine.begin() as conn:  # as the first release left it
            await conn.execute(sa.text("DROP INDEX ix_channel_deliveries_due_order"))
            old = "CREATE INDEX ix_channel_deliveries_due ON channel_deliveries (channel_id, status, next_attempt_at)"
            await conn.execute(sa.text(old))
        assert await migrate(engine, COMPONENT, MIGRATIONS) == len(MIGRATIONS)
        async with engine.connect() as conn:
            indexes = await conn.run_sync(lambda c: sa.inspect(c).get_indexes("channel_deliveries"))
        by_name = {index["name"]: index["column_names"] for index in indexes}
        assert "ix_channel_deliveries_due" not in by_name
        assert by_name["ix_channel_deliveries_due_order"] == ["channel_id", "status", "next_attempt_at", "id"]
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_a_claim_walks_the_due_index_instead_of_sorting_the_channel_backlog(postgres_url: str) -> None:
    """A catalogue-wide change recorded before autovacuum has analysed the table: claims stay cheap."""
    store = await NotifierStore.open(postgres_url)
    try:
        channel_id = await _channel(store)
        await run(store, lambda tx: tx.offer([(channel_id, f"S{n}", 1, _doc(1)) for n in range(30_000)], 0.0))
        params = {"c_channel": channel_id, "c_now": 1.0, "c_limit": 64, "c_owner": "x", "c_until": 61.0}
        async with store.engine.connect() as conn:
            claim = _CLAIM.compile(dialect=conn.dialect)
            driver = (await conn.get_raw_connection()).driver_connection
            assert driver is not None and claim.positiontup is not None
            # As a prepared statement, as the store runs it: generic and custom plans alike.
            bound = claim.construct_params(params)
            plan = await driver.fetchval(f"EXPLAIN (FORMAT JSON) {claim}", *(bound[n] for n in claim.positiontup))
        assert '"Sort"' not in json.dumps(plan), plan
    finally:
        await store.close()


async def test_the_unit_of_work_wakes_channels_only_after_a_commit(store: NotifierStore) -> None:
    channel_id = await _channel(store)
    woken: list[set[int]] = []
    uow = store.unit_of_work(woken.append)

    def offer_then_fail(tx: Transaction) -> None:
        tx.offer([(channel_id, "A", 1, _doc(1))], 0.0)
        tx.wake({channel_id})
        raise RuntimeError("the batch handler failed after writing")

    with pytest.raises(RuntimeError):
        await uow.run(offer_then_fail)
    assert woken == [] and await run(store, lambda tx: tx.deliveries(channel_id, None, 10)) == []

    def offer(tx: Transaction) -> None:
        tx.offer([(channel_id, "A", 1, _doc(1))], 0.0)
        tx.wake({channel_id})

    await uow.run(offer)
    assert woken == [{channel_id}]
    assert [r.sku for r in await run(store, lambda tx: tx.deliveries(channel_id, None, 10))] == ["A"]


async def test_a_row_keeps_the_trace_context_of_the_version_it_holds(store: NotifierStore) -> None:
    channel_id = await _channel(store)
    context = '{"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}'
    await run(store, methodcaller("offer", [(channel_id, "A", 2, _doc(2)), (channel_id, "B", 1, _doc(1))], 1.0))
    # An older version's context never lands on a row holding a newer one.
    await run(store, methodcaller("set_trace_context", [(channel_id, "A", 2, context), (channel_id, "B", 0, "{}")]))
    claimed = await run(store, methodcaller("claim", channel_id, "me", 5, 2.0, lease_s=50))
    assert {row.sku: row.trace_context for row in claimed} == {"A": context, "B": None}
    # A newer version replaces the row's context with its own (here none).
    await run(store, methodcaller("offer", [(channel_id, "A", 3, _doc(3))], 3.0))
    await run(store, methodcaller("release_leases", "me"))
    claimed = await run(store, methodcaller("claim", channel_id, "me", 5, 100.0, lease_s=50))
    assert {row.sku: (row.version, row.trace_context) for row in claimed}["A"] == (3, None)


async def test_an_older_store_gets_the_trace_context_column(store_url: str) -> None:
    engine = create_engine(store_url)
    try:
        await migrate(engine, COMPONENT, MIGRATIONS[:1])
        async with engine.begin() as conn:  # as the releases before tracing left it
            await conn.execute(sa.text("ALTER TABLE channel_deliveries DROP COLUMN trace_context"))
        assert await migrate(engine, COMPONENT, MIGRATIONS) == len(MIGRATIONS)
        async with engine.connect() as conn:
            columns = await conn.run_sync(lambda c: sa.inspect(c).get_columns("channel_deliveries"))
        assert "trace_context" in {column["name"] for column in columns}
    finally:
        await engine.dispose()


def _attempt(number: int, at: float, code: int | None = 500, error: str | None = "HTTP 500") -> AttemptRecord:
    outcome = "delivered" if code == 200 else "http_error"
    return AttemptRecord(number, at, 4.25, outcome, code, error)


async def _kept(store: NotifierStore, delivery_id: int, per: int = ATTEMPTS_KEPT) -> list[tuple[int, int, int | None]]:
    found = await run(store, methodcaller("attempts", [delivery_id], per))
    return [(a.seq, a.record.attempt, a.record.status_code) for a in found.get(delivery_id, [])]


async def test_each_attempt_is_written_with_its_result_and_only_the_newest_are_kept(store: NotifierStore) -> None:
    channel_id = await _channel(store)
    await run(store, methodcaller("offer", [(channel_id, "A", 1, _doc(1))], 0.0))
    now = 1.0
    for number in range(1, ATTEMPTS_KEPT + 3):
        (row,) = await run(store, methodcaller("claim", channel_id, "me", 1, now, lease_s=5))
        plan = FailurePlan(DeliveryStatus.PENDING, number, now)
        failed = Settlement.failed(row.id, "me", plan, 500, "HTTP 500", now, _attempt(number, now))
        await run(store, methodcaller("settle", [failed]))
        now += 1
    kept = await _kept(store, row.id, ATTEMPTS_KEPT + 5)
    assert [seq for seq, _, _ in kept] == list(range(ATTEMPTS_KEPT + 2, 2, -1))  # newest first, a ring
    # A release sends nothing and keeps nothing; a success keeps its 200 and starts the run afresh.
    (row,) = await run(store, methodcaller("claim", channel_id, "me", 1, now, lease_s=5))
    await run(store, methodcaller("settle", [Settlement.released(row.id, "me", now)]))
    (row,) = await run(store, methodcaller("claim", channel_id, "me", 1, now, lease_s=5))
    success = Settlement.success(row.id, "me", 1, 200, now, _attempt(1, now, 200, None))
    await run(store, methodcaller("settle", [success]))
    assert (await _kept(store, row.id, 2)) == [(ATTEMPTS_KEPT + 3, 1, 200), (ATTEMPTS_KEPT + 2, ATTEMPTS_KEPT + 2, 500)]
    (attempt,) = (await run(store, methodcaller("attempts", [row.id], 1)))[row.id]
    assert (attempt.channel_id, attempt.record.latency_ms, attempt.record.error, attempt.record.started_at) == (
        channel_id,
        4.25,
        None,
        now,
    )


async def test_an_attempt_settled_by_an_owner_whose_lease_lapsed_is_not_kept(store: NotifierStore) -> None:
    channel_id = await _channel(store)
    await run(store, methodcaller("offer", [(channel_id, "A", 1, _doc(1))], 0.0))
    (first,) = await run(store, methodcaller("claim", channel_id, "one", 1, 1.0, lease_s=5))
    (taken,) = await run(store, methodcaller("claim", channel_id, "two", 1, 7.0, lease_s=5))
    late = Settlement.success(first.id, "one", 1, 200, 8.0, _attempt(1, 1.0, 200, None))
    gone = Settlement.released(taken.id, "two", 8.0, "HTTP 410: channel disabled", attempt=_attempt(1, 7.0, 410))
    await run(store, methodcaller("settle", [late, gone]))
    assert await _kept(store, taken.id) == [(1, 1, 410)]  # the 410 was sent, and kept without counting
    (record,) = await run(store, methodcaller("deliveries", channel_id, None, 10))
    assert (record.status, record.attempts) == ("pending", 0)


async def test_attempts_go_with_their_delivery(store: NotifierStore) -> None:
    channel_id = await _channel(store)
    other = await _channel(store, "other")
    offers = [(channel_id, "A", 1, _doc(1)), (channel_id, "B", 1, _doc(1)), (channel_id, "C", 1, _doc(1))]
    await run(store, methodcaller("offer", [*offers, (other, "A", 1, _doc(1))], 0.0))
    rows = await run(store, methodcaller("claim", channel_id, "me", 3, 1.0, lease_s=5))
    (kept,) = await run(store, methodcaller("claim", other, "me", 1, 1.0, lease_s=5))
    plan = FailurePlan(DeliveryStatus.PENDING, 1, 1.0)
    settled = [Settlement.failed(r.id, "me", plan, 500, "HTTP 500", 2.0, _attempt(1, 1.0)) for r in [*rows, kept]]
    await run(store, methodcaller("settle", settled))
    a, b, c = rows
    (again,) = await run(store, methodcaller("claim", channel_id, "me", 1, 1.0, lease_s=5))
    await run(store, methodcaller("settle", [Settlement.drop(again.id, "me", 3.0)]))  # its filters changed
    await run(store, methodcaller("delete_deliveries", [b.id if again.id != b.id else c.id]))
    left = await run(store, methodcaller("attempts", [r.id for r in [*rows, kept]], 5))
    assert len([i for i in left if i in {a.id, b.id, c.id}]) == 1 and kept.id in left
    await run(store, methodcaller("remove_channel", channel_id))
    assert set(await run(store, methodcaller("attempts", [r.id for r in [*rows, kept]], 5))) == {kept.id}
    async with store.engine.connect() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(attempts_table))).scalar() == 1


async def test_an_older_store_gets_the_attempt_history(store_url: str) -> None:
    engine = create_engine(store_url)
    try:
        await migrate(engine, COMPONENT, MIGRATIONS[:3])
        async with engine.begin() as conn:  # as the releases before the attempt history left it
            await conn.execute(sa.text("ALTER TABLE channel_deliveries DROP COLUMN attempt_seq"))
            await conn.execute(
                sa.text(
                    "INSERT INTO channels (name, kind, secrets, filters, buffer, enabled, created_at, updated_at)"
                    " VALUES ('old', 'webhook', '[]', '{}', 0, true, 0, 0)"
                )
            )
        assert await migrate(engine, COMPONENT, MIGRATIONS) == len(MIGRATIONS)
    finally:
        await engine.dispose()
    store = await NotifierStore.open(store_url)
    try:
        (channel,) = await run(store, methodcaller("channels"))
        await run(store, methodcaller("offer", [(channel.id, "A", 1, _doc(1))], 0.0))
        (row,) = await run(store, methodcaller("claim", channel.id, "me", 1, 1.0, lease_s=5))
        await run(store, methodcaller("settle", [Settlement.success(row.id, "me", 1, 200, 2.0, _attempt(1, 1.0, 200))]))
        assert await _kept(store, row.id) == [(1, 1, 200)]
    finally:
        await store.close()
