"""Commerce Engine's order model on real stores, SQLite and PostgreSQL: backorders kept between
transactions, a version 1 store migrated at open, and dead letters replayed under their original key."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.config import SourceSettings
from libs.profiles import SourceProfiles
from services.inventory.adapters.wire import Envelope
from services.inventory.domain.workspace import Outcome
from services.inventory.service_layer import handlers
from services.inventory.store import schema
from services.inventory.store.maintenance import verify_store
from services.inventory.store.reads import InventoryReader
from services.inventory.store.repository import InventoryStore
from services.inventory.store.unit_of_work import SqlUnitOfWork
from tests.commerce_engine import BOX, JACKET, MUG, ORDER_A, TEE, WHITE_TEE, as_published, load, receipt

from .ce_store import TTL_S, apply, open_store, replayed, select, sku_rows, v1_engine

T0 = 1_790_000_000.0
# The source `ce` before anyone configured its profile: read as Stockwire's own dialect, where a
# Commerce Engine order has no `order_id` and cannot be read.
UNCONFIGURED = SourceProfiles({"shop": SourceSettings(profile="stockwire")})


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The store's URL: a SQLite file, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/inventory.db"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def store(database: str) -> AsyncIterator[InventoryStore]:
    opened = await open_store(database)
    try:
        yield opened
    finally:
        await opened.close()


def backorder(order: str, qty: int, *, seq: int) -> Envelope:
    """Commerce Engine's ``order.created`` of ``qty`` jackets the store accepted without stock."""
    item = {"product_id": "prd_jacket", "variant_id": None, "sku": JACKET, "quantity": qty, "free_quantity": 0,
            "product_type": "physical", "backorder": True}  # fmt: skip
    return as_published(load(19, event_id=f"evt-{order}", order_number=order, order_items=[item]), seq=seq)


def received(sku: str, qty: int, *, seq: int) -> Envelope:
    return as_published(receipt(f"recv-{seq}", sku, qty), source="shop", seq=seq)


def shop_event(event_type: str, event_id: str, *, seq: int, **data: Any) -> Envelope:
    document = {"id": event_id, "event_type": event_type, "created_at": "2026-11-26T08:00:00Z", "data": data}
    return as_published(document, source="shop", seq=seq)


async def outcomes(store: InventoryStore, envelopes: list[Envelope], *, now: float, **kw: Any) -> list[Outcome]:
    return [r.outcome for r in (await apply(store, envelopes, now=now, **kw)).results]


async def backorder_queue(store: InventoryStore) -> list[tuple[str, str, int, float, int]]:
    t = schema.backorders
    return await select(store, sa.select(t.c.order_key, t.c.sku, t.c.qty, t.c.since, t.c.seq).order_by(t.c.since))


async def order_detail(store: InventoryStore, *orders: str) -> dict[str, tuple[str, dict[str, int]]]:
    """Each order's state and backordered units, as the ``reservations`` table holds them."""
    t = schema.reservations
    rows = await select(store, sa.select(t.c.key, t.c.state, t.c.detail).where(t.c.key.in_(orders)))
    return {key: (state, json.loads(detail)["backordered"]) for key, state, detail in rows}


async def jacket_rows(store: InventoryStore, after: int = 0) -> list[tuple[str, int, int, int, str | None, str]]:
    """The jacket's ledger rows after version ``after``: kind, qty, reserved and committed deltas,
    the order it moved for, and the message that caused it."""
    entries = await InventoryReader(store.engine).ledger_page(JACKET, after=after)
    return [(e.kind.value, e.qty, e.reserved_delta, e.committed_delta, e.reservation, e.source) for e in entries]


async def available(store: InventoryStore, sku: str, now: float) -> int:
    view = await InventoryReader(store.engine).sku(sku, now)
    assert view is not None
    return view.available


async def assert_verified(store: InventoryStore, rows: int) -> None:
    report = await verify_store(store.engine)
    assert report.problems == [] and report.rows == rows


# --- backorders ------------------------------------------------------------------------------------
async def test_backorders_wait_across_transactions_and_a_later_receipt_fills_the_oldest_first(database: str) -> None:
    # Placed in separate transactions, in an order that is neither alphabetical nor the reverse; the
    # first one is paid while it waits, so its units are filled straight into committed.
    store = await open_store(database)
    try:
        for n, order in enumerate(("ORD-C", "ORD-A", "ORD-B")):
            assert await outcomes(store, [backorder(order, 2, seq=n + 1)], now=T0 + n) == [Outcome.APPLIED]
        paid = as_published(load(22, event_id="evt-pay-c", order_number="ORD-C"), seq=4)
        assert await outcomes(store, [paid], now=T0 + 3) == [Outcome.APPLIED]
    finally:
        await store.close()

    store = await open_store(database)  # nothing of the queue lives in the process
    try:
        assert await sku_rows(store, [JACKET]) == {JACKET: (0, 0, 0, 6)}
        assert await backorder_queue(store) == [
            ("order:ce:ORD-C", JACKET, 2, T0, 1), ("order:ce:ORD-A", JACKET, 2, T0 + 1, 2),
            ("order:ce:ORD-B", JACKET, 2, T0 + 2, 3),
        ]  # fmt: skip

        assert await outcomes(store, [received(JACKET, 3, seq=5)], now=T0 + 10) == [Outcome.APPLIED]
        # C takes its 2 (committed), A 1 of its 2 (reserved); nothing is left to sell.
        assert await sku_rows(store, [JACKET]) == {JACKET: (3, 1, 2, 3)}
        assert await available(store, JACKET, T0 + 10) == 0
        assert await backorder_queue(store) == [
            ("order:ce:ORD-A", JACKET, 1, T0 + 1, 2), ("order:ce:ORD-B", JACKET, 2, T0 + 2, 3),
        ]  # fmt: skip
        assert await order_detail(store, "order:ce:ORD-C", "order:ce:ORD-A", "order:ce:ORD-B") == {
            "order:ce:ORD-C": ("committed", {}), "order:ce:ORD-A": ("reserved", {JACKET: 1}),
            "order:ce:ORD-B": ("reserved", {JACKET: 2}),
        }  # fmt: skip
        assert await jacket_rows(store, after=3) == [
            ("received", 3, 0, 0, None, "shop:recv-5"),
            ("filled", 2, 0, 2, "order:ce:ORD-C", "shop:recv-5"),
            ("filled", 1, 1, 0, "order:ce:ORD-A", "shop:recv-5"),
        ]

        assert await outcomes(store, [received(JACKET, 5, seq=6)], now=T0 + 20) == [Outcome.APPLIED]
        assert await sku_rows(store, [JACKET]) == {JACKET: (8, 4, 2, 0)}
        assert await available(store, JACKET, T0 + 20) == 2
        assert await backorder_queue(store) == []
        assert [(kind, reservation) for kind, _, _, _, reservation, _ in await jacket_rows(store, after=6)] == [
            ("received", None), ("filled", "order:ce:ORD-A"), ("filled", "order:ce:ORD-B"),
        ]  # fmt: skip
        await assert_verified(store, rows=9)
    finally:
        await store.close()


async def test_a_cancelled_backorder_leaves_the_queue_and_the_next_receipt_passes_it_by(store: InventoryStore) -> None:
    placed = [backorder("ORD-D", 1, seq=1), backorder("ORD-E", 1, seq=2)]
    assert await outcomes(store, placed, now=T0) == [Outcome.APPLIED] * 2
    cancel = as_published(load(25, event_id="evt-cancel-d", order_number="ORD-D"), seq=3)
    assert await outcomes(store, [cancel], now=T0 + 1) == [Outcome.APPLIED]
    assert await sku_rows(store, [JACKET]) == {JACKET: (0, 0, 0, 1)}
    assert await backorder_queue(store) == [("order:ce:ORD-E", JACKET, 1, T0, 2)]

    assert await outcomes(store, [received(JACKET, 1, seq=4)], now=T0 + 2) == [Outcome.APPLIED]
    assert await sku_rows(store, [JACKET]) == {JACKET: (1, 1, 0, 0)}
    assert await backorder_queue(store) == []
    assert [(kind, reservation) for kind, _, _, _, reservation, _ in await jacket_rows(store)] == [
        ("backordered", "order:ce:ORD-D"), ("backordered", "order:ce:ORD-E"), ("dropped", "order:ce:ORD-D"),
        ("received", None), ("filled", "order:ce:ORD-E"),
    ]  # fmt: skip
    await assert_verified(store, rows=5)


async def test_backorders_placed_in_one_batch_are_filled_in_stream_order(store: InventoryStore) -> None:
    placed = [backorder("ORD-Z", 1, seq=7), backorder("ORD-Y", 1, seq=8)]
    assert await outcomes(store, placed, now=T0) == [Outcome.APPLIED] * 2
    assert await outcomes(store, [received(JACKET, 1, seq=9)], now=T0 + 1) == [Outcome.APPLIED]
    assert await backorder_queue(store) == [("order:ce:ORD-Y", JACKET, 1, T0, 8)]
    assert await order_detail(store, "order:ce:ORD-Z", "order:ce:ORD-Y") == {
        "order:ce:ORD-Z": ("reserved", {}), "order:ce:ORD-Y": ("reserved", {JACKET: 1}),
    }  # fmt: skip


async def test_a_backorder_whose_order_expires_is_dropped_by_the_sweep(store: InventoryStore) -> None:
    placed = [backorder("ORD-X", 2, seq=1), received(JACKET, 1, seq=2)]
    assert await outcomes(store, placed, now=T0) == [Outcome.APPLIED] * 2
    assert await sku_rows(store, [JACKET]) == {JACKET: (1, 1, 0, 1)}
    assert await backorder_queue(store) == [("order:ce:ORD-X", JACKET, 1, T0, 1)]

    expired, _outbox_rows = await handlers.expire_overdue(SqlUnitOfWork(store), now=T0 + TTL_S + 1, ttl_s=TTL_S)
    assert expired == 1
    assert await sku_rows(store, [JACKET]) == {JACKET: (1, 0, 0, 0)}
    assert await backorder_queue(store) == []
    assert [(kind, qty, source) for kind, qty, _, _, _, source in await jacket_rows(store)] == [
        ("backordered", 2, "ce:evt-ORD-X"), ("received", 1, "shop:recv-2"), ("filled", 1, "shop:recv-2"),
        ("expired", 1, "ttl"), ("dropped", 1, "ttl"),
    ]  # fmt: skip
    await assert_verified(store, rows=5)


# --- migration 2 -----------------------------------------------------------------------------------
async def _columns(engine: AsyncEngine, table: str) -> set[str]:
    async with engine.connect() as conn:
        names: list[str] = await conn.run_sync(lambda c: [col["name"] for col in sa.inspect(c).get_columns(table)])
    return set(names)


async def _tables(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names()))


EARLIER_RELEASE = "an earlier release's version 1"


async def _version_1_store(database: str, history: list[Envelope], release: str) -> None:
    """A store at schema version 1 holding ``history``, closed. Version 1 creates today's tables; the
    release that shipped it had neither ``skus.backordered`` nor ``reservations.detail`` (its tables
    are today's without those two columns), so for that release they are dropped again."""
    engine = await v1_engine(database)
    try:
        assert await outcomes(InventoryStore(engine), history, now=T0) == [Outcome.APPLIED] * len(history)
        assert "backorders" not in await _tables(engine)
        if release == EARLIER_RELEASE:
            async with engine.begin() as conn:
                await conn.execute(sa.text("ALTER TABLE skus DROP COLUMN backordered"))
                await conn.execute(sa.text("ALTER TABLE reservations DROP COLUMN detail"))
                # That release keyed orders without their source (`order:o1`; the inbox's order `o1`).
                await conn.execute(sa.text("UPDATE reservations SET key = replace(key, 'order:shop:', 'order:')"))
                await conn.execute(sa.text("UPDATE parked SET order_key = replace(order_key, 'order:shop:', 'order:')"))
                await conn.execute(sa.text("UPDATE inbox SET order_id = replace(order_id, 'shop:', '')"))
            assert "backordered" not in await _columns(engine, "skus")
    finally:
        await engine.dispose()


@pytest.mark.parametrize("release", ["today's version 1", EARLIER_RELEASE])
async def test_a_version_1_store_is_migrated_at_open_and_reads_back(database: str, release: str) -> None:
    history = [
        received("A", 5, seq=1),
        shop_event("order.created", "c1", seq=2, order_id="o1", lines=[{"sku": "A", "qty": 2}]),
        shop_event("order.created", "c2", seq=3, order_id="o2", lines=[{"sku": "A", "qty": 1}]),
        shop_event("payment.successful", "p2", seq=4, order_id="o2"),
    ]
    await _version_1_store(database, history, release)
    store = await open_store(database)
    try:
        version = sa.text("SELECT version FROM stockwire_schema WHERE component = 'inventory'")
        assert await select(store, version) == [(2,)]
        assert "backorders" in await _tables(store.engine)
        assert await sku_rows(store, ["A"]) == {"A": (5, 1 + 1, 1, 0)}
        reader = InventoryReader(store.engine)
        for key, state, lines in (("order:shop:o1", "reserved", {"A": 2}), ("order:shop:o2", "committed", {"A": 1})):
            order = await reader.reservation(key)
            assert order is not None and (order.state.value, order.lines) == (state, lines)
            assert order.detail_json() == {
                "backordered": {}, "shipped": {}, "shipments": {}, "returns": [], "products": {}, "unattributed": {},
                "restocked": {},
            }  # fmt: skip
        if release == EARLIER_RELEASE:
            t = schema.reservations
            assert await select(store, sa.select(t.c.detail).order_by(t.c.key)) == [("{}",), ("{}",)]
        await assert_verified(store, rows=4)

        # The old inbox still answers; old orders move on; a new order may wait for stock.
        assert await outcomes(store, history[:1], now=T0 + 10) == [Outcome.DUPLICATE]
        later = [
            shop_event("shipment.shipped", "s2", seq=5, order_id="o2"),
            shop_event("payment.successful", "p1", seq=6, order_id="o1"),
            backorder("ORD-NEW", 1, seq=7),
        ]
        assert await outcomes(store, later, now=T0 + 10) == [Outcome.APPLIED] * 3
        assert await sku_rows(store, ["A", JACKET]) == {"A": (4, 0, 2, 0), JACKET: (0, 0, 0, 1)}
        assert await backorder_queue(store) == [("order:ce:ORD-NEW", JACKET, 1, T0 + 10, 7)]
        await assert_verified(store, rows=7)
    finally:
        await store.close()


async def test_an_order_shipped_before_the_upgrade_can_still_be_returned(database: str) -> None:
    history = [
        received("A", 5, seq=1),
        shop_event("order.created", "c3", seq=2, order_id="o3", lines=[{"sku": "A", "qty": 2}]),
        shop_event("payment.successful", "p3", seq=3, order_id="o3"),
        shop_event("shipment.shipped", "s3", seq=4, order_id="o3"),
    ]
    await _version_1_store(database, history, EARLIER_RELEASE)
    store = await open_store(database)
    try:
        assert await sku_rows(store, ["A"]) == {"A": (3, 0, 0, 0)}
        back = shop_event("return.received", "r3", seq=5, order_id="o3", lines=[{"sku": "A", "qty": 1}], restock=True)
        [result] = (await apply(store, [back], now=T0 + 10)).results
        assert (result.outcome, result.detail) == (Outcome.APPLIED, "")
        assert await sku_rows(store, ["A"]) == {"A": (4, 0, 0, 0)}
    finally:
        await store.close()


# --- replaying dead letters ------------------------------------------------------------------------
async def _stock(store: InventoryStore, *levels: tuple[str, int]) -> None:
    receipts = [received(sku, qty, seq=n + 1) for n, (sku, qty) in enumerate(levels)]
    assert await outcomes(store, receipts, now=T0) == [Outcome.APPLIED] * len(levels)


async def _inbox(store: InventoryStore, msg_id: str) -> list[tuple[Any, ...]]:
    t = schema.inbox
    query = sa.select(t.c.stream_seq, t.c.outcome, t.c.detail, t.c.settled_at).where(t.c.msg_id == msg_id)
    return await select(store, query)


async def _ledger_sources(store: InventoryStore) -> list[str]:
    return sorted(source for (source,) in await select(store, sa.select(schema.ledger.c.source)))


@pytest.mark.parametrize("original_msg_id", [True, False], ids=["original-msg-id", "earlier-release-dead-letter"])
async def test_a_dead_letter_replayed_is_applied_once_under_its_original_key(
    store: InventoryStore, original_msg_id: bool
) -> None:
    await _stock(store, (TEE, 10), (MUG, 5), (BOX, 2))
    first = as_published(load(1), seq=4)
    [dead] = (await apply(store, [first], now=T0 + 1, profiles=UNCONFIGURED)).results
    assert dead.outcome is Outcome.DEAD_LETTERED and dead.detail.startswith("malformed: ")
    key = f"ce:{load(1)['id']}"
    assert await _inbox(store, key) == [(4, "dead_lettered", dead.detail, T0 + 1)]

    # The source's profile is configured now, and the dead letter replayed.
    replay = replayed(first, reason=dead.detail, deadletter_seq=1, seq=9, original_msg_id=original_msg_id)
    [result] = (await apply(store, [replay], now=T0 + 2)).results
    assert result.outcome is Outcome.APPLIED
    assert await sku_rows(store, [TEE, MUG, BOX, JACKET]) == {
        TEE: (10, 3, 0, 0), MUG: (5, 1, 0, 0), BOX: (2, 1, 0, 0), JACKET: (0, 0, 0, 1),
    }  # fmt: skip
    assert await _inbox(store, key) == [(9, "applied", result.detail, T0 + 2)]
    sources = await _ledger_sources(store)
    assert sources.count(key) == 4 and len(sources) == 7  # 3 receipts, 3 holds and the backorder

    # The replay delivered again, and the same dead letter replayed a second time: both duplicates.
    again = replayed(first, reason=dead.detail, deadletter_seq=2, seq=10, original_msg_id=original_msg_id)
    for redelivery in (replay, again):
        [duplicate] = (await apply(store, [redelivery], now=T0 + 3)).results
        assert (duplicate.outcome, duplicate.detail) == (Outcome.DUPLICATE, "applied")
    assert await _ledger_sources(store) == sources
    assert await _inbox(store, key) == [(9, "applied", result.detail, T0 + 2)]
    assert await outcomes(store, [as_published(load(2), seq=11)], now=T0 + 4) == [Outcome.APPLIED]
    assert await sku_rows(store, [TEE]) == {TEE: (10, 0, 3, 0)}


async def test_a_plain_redelivery_of_a_dead_lettered_event_stays_a_duplicate(store: InventoryStore) -> None:
    await _stock(store, (WHITE_TEE, 3))
    order_b = as_published(load(19), seq=2)
    [dead] = (await apply(store, [order_b], now=T0 + 1, profiles=UNCONFIGURED)).results
    assert dead.outcome is Outcome.DEAD_LETTERED
    key = f"ce:{load(19)['id']}"
    # Even read with the right profile now: without Stockwire-Replay-Of it is the same delivery again.
    [again] = (await apply(store, [order_b], now=T0 + 2)).results
    assert (again.outcome, again.detail) == (Outcome.DUPLICATE, "dead_lettered")
    assert await _inbox(store, key) == [(2, "dead_lettered", dead.detail, T0 + 1)]
    assert await sku_rows(store, [WHITE_TEE]) == {WHITE_TEE: (3, 0, 0, 0)}
    assert await InventoryReader(store.engine).reservation("order:ce:ORD-2026-000102") is None


async def _shipment_given_up(store: InventoryStore) -> tuple[Envelope, str]:
    """Shipment 1 of order A parked before its order was known, then given up by the sweeper: the
    message it dead-lettered (the parked row's own), and the reason."""
    await _stock(store, (TEE, 10), (MUG, 5), (BOX, 2))
    assert await outcomes(store, [as_published(load(7), seq=4)], now=T0) == [Outcome.PARKED]
    assert await store.claim_stale_parked(older_than=T0 + 1) == 1
    [row] = await store.dead_lettering()
    await store.forget_parked([row.msg_id])
    assert [outcome for _, outcome, _, _ in await _inbox(store, row.msg_id)] == ["dead_lettered"]
    return Envelope(row.subject, row.body, row.headers, row.stream_seq), f"parked: {row.reason}"


async def test_an_event_parked_past_the_limit_is_applied_when_replayed_after_its_order(store: InventoryStore) -> None:
    parked, reason = await _shipment_given_up(store)
    placed_and_paid = [as_published(load(1), seq=5), as_published(load(2), seq=6)]
    assert await outcomes(store, placed_and_paid, now=T0 + 2) == [Outcome.APPLIED] * 2
    # The sweeper gave the shipment up: the order's arrival does not bring it back.
    assert await sku_rows(store, [TEE]) == {TEE: (10, 0, 3, 0)}

    replay = replayed(parked, reason=reason, deadletter_seq=1, seq=7)
    assert await outcomes(store, [replay], now=T0 + 3) == [Outcome.APPLIED]
    assert await sku_rows(store, [TEE, MUG, BOX]) == {TEE: (7, 0, 0, 0), MUG: (4, 0, 0, 0), BOX: (1, 0, 0, 0)}
    assert [(seq, outcome) for seq, outcome, _, _ in await _inbox(store, parked.msg_id)] == [(7, "applied")]
    assert await outcomes(store, [replay], now=T0 + 4) == [Outcome.DUPLICATE]
    order = await InventoryReader(store.engine).reservation(f"order:ce:{ORDER_A}")
    assert order is not None and order.shipped == {TEE: 3, MUG: 1, BOX: 1}
    await assert_verified(store, rows=13)


async def test_a_replay_that_comes_before_its_order_waits_again_and_applies_when_it_arrives(
    store: InventoryStore,
) -> None:
    parked, reason = await _shipment_given_up(store)
    replay = replayed(parked, reason=reason, deadletter_seq=1, seq=7)
    assert await outcomes(store, [replay], now=T0 + 2) == [Outcome.PARKED]
    assert await _inbox(store, parked.msg_id) == [(7, "parked", "waiting for order.created", T0 + 2)]
    assert await store.parked_count() == 1

    placed_and_paid = [as_published(load(1), seq=8), as_published(load(2), seq=9)]
    assert await outcomes(store, placed_and_paid, now=T0 + 3) == [Outcome.APPLIED] * 2
    assert await sku_rows(store, [TEE, MUG, BOX]) == {TEE: (7, 0, 0, 0), MUG: (4, 0, 0, 0), BOX: (1, 0, 0, 0)}
    assert await _inbox(store, parked.msg_id) == [(7, "applied", "", T0 + 3)]
    assert await store.parked_count() == 0
