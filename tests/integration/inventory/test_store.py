"""The store on real databases: the property tests again (fewer examples), replicas racing on
PostgreSQL, and the ledger's own verification."""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import tempfile
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libs.profiles import SourceProfiles
from services.inventory.adapters.wire import MAX_EVENT_TYPE_LENGTH, MAX_MSG_ID_LENGTH, MAX_SUBJECT_LENGTH, Envelope
from services.inventory.consumer import incoming
from services.inventory.domain.workspace import Outcome
from services.inventory.service_layer import handlers
from services.inventory.service_layer.handlers import BatchResult
from services.inventory.store import schema
from services.inventory.store.reads import InventoryReader
from services.inventory.store.repository import InventoryStore
from services.inventory.store.unit_of_work import SqlUnitOfWork
from stockwire.cli import main as stockwire
from tests.unit.inventory.histories import (
    History,
    MemoryInventory,
    any_interleaving,
    check_invariants,
    envelope,
    histories,
    shuffled_per_order,
)

TTL_S = 900.0
PROFILES = SourceProfiles({})


async def _open(url: str) -> InventoryStore:
    return await InventoryStore.open(url, durable_commits=False)


async def apply(store: InventoryStore, envelopes: list[Envelope], *, now: float | None = None) -> BatchResult:
    """The consumer's use case on a real store: one batch, one SQL unit of work."""
    moment = time.time() if now is None else now
    items = [incoming(e, PROFILES) for e in envelopes]
    return await handlers.apply_batch(SqlUnitOfWork(store), items, now=moment, ttl_s=TTL_S)


async def expire(store: InventoryStore, *, now: float) -> tuple[int, int]:
    return await handlers.expire_overdue(SqlUnitOfWork(store), now=now, ttl_s=TTL_S)


async def _state(store: InventoryStore) -> tuple[dict, list, list]:
    reader = InventoryReader(store.engine)
    quantities = {
        s.sku: (s.on_hand, s.reserved, s.committed)
        for s in sorted(await reader.projection(), key=lambda s: s.sku)
        if (s.on_hand, s.reserved, s.committed) != (0, 0, 0) or s.version
    }
    ledger = [entry async for _id, entry in reader.stream_ledger()]
    async with store.engine.connect() as conn:
        rows = (await conn.execute(sa.select(schema.reservations))).all()
    reservations = [(r.key, r.state, json.loads(r.lines)) for r in rows]
    return quantities, ledger, reservations


def _batches(events: list[Envelope], rng: random.Random) -> list[list[Envelope]]:
    out, i = [], 0
    while i < len(events):
        size = rng.randint(1, 8)
        out.append(events[i : i + size])
        i += size
    return out


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories(max_segments=10), st.randoms(use_true_random=False))
def test_sqlite_store_ends_where_a_clean_delivery_ends(history: History, rng: random.Random) -> None:
    clean = MemoryInventory()
    clean.deliver_all(history.in_order())

    async def run() -> tuple[dict, list, int]:
        with tempfile.TemporaryDirectory() as tmp:
            store = await _open(f"sqlite+aiosqlite:///{tmp}/inventory.db")
            try:
                for batch in _batches(shuffled_per_order(history, rng, 0.3), rng):
                    await apply(store, batch)
                quantities, _ledger, reservations = await _state(store)
                return quantities, reservations, await store.parked_count()
            finally:
                await store.close()

    quantities, reservations, parked = asyncio.run(run())
    assert quantities == clean.quantities()
    assert {key: state for key, state, _ in reservations} == {
        k: r.state.value for k, r in clean.ws.reservations.items()
    }
    assert parked == 0


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories(max_segments=8), st.randoms(use_true_random=False))
def test_sqlite_store_keeps_the_invariants_at_every_step(history: History, rng: random.Random) -> None:
    async def run() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            store = await _open(f"sqlite+aiosqlite:///{tmp}/inventory.db")
            received: dict[str, int] = {}
            try:
                for event in any_interleaving(history, rng, 0.2):
                    [result] = (await apply(store, [event])).results
                    if result.outcome is Outcome.APPLIED and event.event_type == "inventory.received":
                        data = json.loads(event.body)["data"]
                        received[data["sku"]] = received.get(data["sku"], 0) + data["qty"]
                    quantities, ledger, reservations = await _state(store)
                    check_invariants(
                        quantities,
                        ledger,
                        received,
                        [(k, _state_enum(s), lines) for k, s, lines in reservations],
                        history.event_types(),
                    )
            finally:
                await store.close()

    asyncio.run(run())


def _state_enum(value: str):  # type: ignore[no-untyped-def]
    from services.inventory.domain.model import ReservationState

    return ReservationState(value)


async def test_a_duplicate_in_a_later_batch_changes_nothing(tmp_path: Path) -> None:
    store = await _open(f"sqlite+aiosqlite:///{tmp_path}/inventory.db")
    try:
        receipt = envelope("inventory.received", "r1", {"sku": "A", "qty": 2}, seq=1)
        order = envelope("order.created", "c1", {"order_id": "o1", "lines": [{"sku": "A", "qty": 1}]}, seq=2)
        first = await apply(store, [receipt, order, receipt])
        assert [r.outcome for r in first.results] == [Outcome.APPLIED, Outcome.APPLIED, Outcome.DUPLICATE]
        again = await apply(store, [order, receipt])
        assert [r.outcome for r in again.results] == [Outcome.DUPLICATE, Outcome.DUPLICATE]
        assert again.outbox_rows == 0
        quantities, ledger, _ = await _state(store)
        assert quantities == {"A": (2, 1, 0)}
        assert len(ledger) == 2
    finally:
        await store.close()


# --- PostgreSQL: replicas at the same moment -------------------------------------------------------
@pytest.mark.postgres
async def test_order_and_payment_applied_by_two_replicas_at_once_never_stay_parked(postgres_url: str) -> None:
    one, two = await _open(postgres_url), await _open(postgres_url)
    try:
        await apply(one, [envelope("inventory.received", "r", {"sku": "A", "qty": 1000}, seq=1)])
        orders = 60

        async def created(i: int) -> None:
            data = {"order_id": f"o{i}", "lines": [{"sku": "A", "qty": 1}, {"sku": f"B{i % 3}", "qty": 1}]}
            await apply(one, [envelope("order.created", f"c{i}", data, seq=10 + i)])

        async def paid(i: int) -> None:
            await apply(two, [envelope("payment.successful", f"p{i}", {"order_id": f"o{i}"}, seq=500 + i)])

        await apply(two, [envelope("inventory.received", f"rb{b}", {"sku": f"B{b}", "qty": 100}) for b in range(3)])
        tasks = []
        for i in range(orders):
            pair = [created(i), paid(i)]
            random.Random(i).shuffle(pair)
            tasks += pair
        await asyncio.gather(*tasks)
        assert await one.parked_count() == 0
        quantities, _ledger, reservations = await _state(one)
        assert {state for _key, state, _ in reservations} == {"committed"}
        assert quantities["A"] == (1000, 0, orders)
        assert sum(q[2] for sku, q in quantities.items() if sku.startswith("B")) == orders
    finally:
        await one.close()
        await two.close()


@pytest.mark.postgres
async def test_two_replicas_in_big_overlapping_batches_never_oversell_or_deadlock(postgres_url: str) -> None:
    one, two = await _open(postgres_url), await _open(postgres_url)
    try:
        skus = [f"S{i}" for i in range(6)]
        await apply(one, [envelope("inventory.received", f"r{s}", {"sku": s, "qty": 20}) for s in skus])
        rng = random.Random(7)

        def batch(start: int) -> list[Envelope]:
            out = []
            for i in range(start, start + 40):
                lines = [{"sku": s, "qty": rng.randint(1, 3)} for s in rng.sample(skus, rng.randint(1, 3))]
                out.append(envelope("order.created", f"c{i}", {"order_id": f"o{i}", "lines": lines}, seq=i))
            rng.shuffle(out)
            return out

        await asyncio.gather(*(apply(store, batch(k * 40)) for k, store in enumerate([one, two] * 4)))
        quantities, _ledger, reservations = await _state(one)
        held: dict[str, int] = {}
        for _key, state, lines in reservations:
            if state == "reserved":
                for s, q in lines.items():
                    held[s] = held.get(s, 0) + q
        for s in skus:
            on_hand, reserved, _committed = quantities[s]
            assert on_hand == 20 and reserved == held.get(s, 0) and reserved <= on_hand
        assert len(reservations) == 320
    finally:
        await one.close()
        await two.close()


def _long_headed(event_type: str, data: dict, *, msg_id: str, source: str = "ce") -> Envelope:
    """A message as a publisher other than ingress could put it on COMMERCE: headers of any length."""
    body = json.dumps({"id": "x", "event_type": event_type, "created_at": 1_790_000_000, "data": data}).encode()
    headers = {"Nats-Msg-Id": msg_id, "Stockwire-Event-Type": event_type, "Stockwire-Source": source}
    return Envelope(f"commerce.{source}.{event_type}", body, headers, 7)


async def test_a_known_shipment_keeps_an_unpaid_hold_past_its_ttl_in_the_store(tmp_path: Path) -> None:
    store = await _open(f"sqlite+aiosqlite:///{tmp_path}/inventory.db")
    try:
        one = {"order_id": "o1", "lines": [{"sku": "A", "qty": 1}]}
        await apply(
            store,
            [
                envelope("inventory.received", "r1", {"sku": "A", "qty": 1}, seq=1),
                envelope("shipment.shipped", "s1", {"order_id": "o1"}, seq=2),
            ],
            now=1000.0,
        )
        await apply(store, [envelope("order.created", "c1", one, seq=3)], now=1001.0)
        assert await expire(store, now=1_000_000.0) == (0, 0)
        late = {"order_id": "o2", "lines": [{"sku": "A", "qty": 1}]}
        [result] = (await apply(store, [envelope("order.created", "c2", late, seq=4)], now=1_000_001.0)).results
        assert result.outcome is Outcome.REJECTED
        await apply(store, [envelope("payment.successful", "p1", {"order_id": "o1"}, seq=5)], now=1_000_002.0)
        quantities, _ledger, reservations = await _state(store)
        assert quantities == {"A": (0, 0, 0)}
        assert {key: state for key, state, _ in reservations} == {"order:ce:o1": "shipped", "order:ce:o2": "rejected"}
    finally:
        await store.close()


def test_the_inbox_keeps_what_the_parse_boundary_lets_through() -> None:
    assert schema.inbox.c.msg_id.type.length == MAX_MSG_ID_LENGTH  # type: ignore[attr-defined]
    assert schema.ledger.c.source.type.length == MAX_MSG_ID_LENGTH  # type: ignore[attr-defined]
    assert schema.parked.c.subject.type.length == MAX_SUBJECT_LENGTH  # type: ignore[attr-defined]
    assert schema.inbox.c.event_type.type.length == MAX_EVENT_TYPE_LENGTH  # type: ignore[attr-defined]


@pytest.mark.postgres
async def test_overlong_message_headers_never_make_an_event_fail_on_postgresql(postgres_url: str) -> None:
    store = await _open(postgres_url)
    try:
        long_type = ".".join(["abcdefghij" * 6] * 8)  # a valid event type of 495 characters
        long_id = "ce:" + "i" * 1000
        batch = [
            _long_headed(long_type, {"x": 1}, msg_id="ce:unknown-type"),
            _long_headed("inventory.received", {"sku": "A", "qty": 2}, msg_id=long_id),
            _long_headed("inventory.received", {"sku": "A", "qty": 1}, msg_id="ce:r2", source="s" * 600),
            envelope("inventory.received", "good", {"sku": "A", "qty": 4}, seq=9),
            _long_headed("inventory.received", {"sku": "A", "qty": 10}, msg_id="ce:nul\x00id"),
        ]
        first = await apply(store, batch)
        assert [r.outcome for r in first.results] == [
            Outcome.IGNORED,
            Outcome.APPLIED,
            Outcome.DEAD_LETTERED,
            Outcome.APPLIED,
            Outcome.APPLIED,
        ]
        assert first.results[2].detail.startswith("malformed: subject: ")
        again = await apply(store, batch[:2])
        assert [r.outcome for r in again.results] == [Outcome.DUPLICATE, Outcome.DUPLICATE]
        quantities, _ledger, _ = await _state(store)
        assert quantities == {"A": (16, 0, 0)}
    finally:
        await store.close()


# --- ledger verify / rebuild -------------------------------------------------------------------------
async def _seeded(url: str) -> None:
    store = await _open(url)
    try:
        await apply(
            store,
            [
                envelope("inventory.received", "r1", {"sku": "A", "qty": 5}, seq=1),
                envelope("order.created", "c1", {"order_id": "o1", "lines": [{"sku": "A", "qty": 2}]}, seq=2),
                envelope("payment.successful", "p1", {"order_id": "o1"}, seq=3),
                envelope("inventory.received", "r2", {"sku": "B", "qty": 1}, seq=4),
            ],
        )
    finally:
        await store.close()


def test_ledger_verify_passes_then_catches_an_edited_row_and_rebuild_repairs_a_projection(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/inventory.db"
    asyncio.run(_seeded(url.replace("sqlite://", "sqlite+aiosqlite://")))
    assert stockwire(["ledger", "verify", "--database-url", url]) == 0
    assert "OK" in capsys.readouterr().out

    with sqlite3.connect(tmp_path / "inventory.db") as db:
        db.execute("UPDATE ledger SET qty = 50, on_hand_delta = 50 WHERE sku = 'A' AND version = 1")
    assert stockwire(["ledger", "verify", "--database-url", url]) == 1
    out = capsys.readouterr().out
    assert "MISMATCH" in out
    assert "A: ledger row 1 (version 1): content does not match its hash: the row was edited" in out
    assert "A: projection holds on_hand=5" in out
    # A damaged ledger is not silently turned into the truth.
    assert stockwire(["ledger", "rebuild", "--database-url", url]) == 1
    assert "refused" in capsys.readouterr().out

    with sqlite3.connect(tmp_path / "inventory.db") as db:
        db.execute("UPDATE ledger SET qty = 5, on_hand_delta = 5 WHERE sku = 'A' AND version = 1")
        db.execute("UPDATE skus SET on_hand = 99 WHERE sku = 'B'")
    assert stockwire(["ledger", "verify", "--database-url", url]) == 1
    assert "B: projection holds on_hand=99" in capsys.readouterr().out
    assert stockwire(["ledger", "rebuild", "--database-url", url]) == 0
    assert "1 SKU(s) rewritten" in capsys.readouterr().out
    assert stockwire(["ledger", "verify", "--database-url", url]) == 0


def test_ledger_verify_catches_a_deleted_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path}/inventory.db"
    asyncio.run(_seeded(url.replace("sqlite://", "sqlite+aiosqlite://")))
    with sqlite3.connect(tmp_path / "inventory.db") as db:
        db.execute("DELETE FROM ledger WHERE sku = 'A' AND version = 2")
    assert stockwire(["ledger", "verify", "--database-url", url]) == 1
    out = capsys.readouterr().out
    assert "expected version 2: a row is missing or added" in out


@pytest.mark.postgres
async def test_ledger_verify_on_postgresql_catches_an_edited_row(
    postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await _seeded(postgres_url)
    verify = ["ledger", "verify", "--database-url", postgres_url]
    assert await asyncio.to_thread(stockwire, verify) == 0
    store = await _open(postgres_url)
    try:
        async with store.engine.begin() as conn:
            await conn.execute(sa.text("UPDATE ledger SET reason = 'nothing to see' WHERE sku = 'B'"))
    finally:
        await store.close()
    assert await asyncio.to_thread(stockwire, verify) == 1
    assert "B: ledger row" in capsys.readouterr().out
