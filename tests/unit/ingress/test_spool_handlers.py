"""The spool's use cases over the in-memory unit of work: the gate that keeps acknowledged events in order."""

from __future__ import annotations

import pytest

from libs.outbox import OutboxMessage
from services.ingress.service_layer import handlers
from services.ingress.service_layer.handlers import Gate

from .memory import Flag, MemorySpool


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def message(n: int, body: bytes = b"{}") -> OutboxMessage:
    return OutboxMessage("commerce.src.order.paid", f"src:{n}", body)


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def test_a_clear_flag_sends_events_straight_on_without_asking_the_store(clock: Clock) -> None:
    spool, gate = MemorySpool(), Gate(Flag(), recheck_s=1.0, clock=clock)
    assert not await handlers.must_spool(spool.unit_of_work(), gate)
    assert spool.transactions == 0


async def test_a_spooled_event_sets_the_flag_and_holds_later_events_until_the_relay_drains_it(clock: Clock) -> None:
    spool, gate = MemorySpool(), Gate(Flag(), recheck_s=1.0, clock=clock)
    assert await handlers.spool(spool.unit_of_work(), gate, message(1), now=1.0) is None
    assert gate.flag is not None and gate.flag.is_set()
    assert await handlers.must_spool(spool.unit_of_work(), gate)
    assert spool.transactions == 1, "inside the recheck window: no query"
    clock.now += 1.0
    assert await handlers.must_spool(spool.unit_of_work(), gate), "rows still wait"
    assert spool.transactions == 2 and gate.flag.is_set()
    spool.publish_all()
    assert await handlers.must_spool(spool.unit_of_work(), gate), "seen waiting a moment ago"
    clock.now += 1.0
    assert not await handlers.must_spool(spool.unit_of_work(), gate)
    assert not gate.flag.is_set(), "cleared once no row waits"


async def test_an_id_spooled_twice_keeps_its_first_payload(clock: Clock) -> None:
    spool, gate = MemorySpool(), Gate(Flag(), clock=clock)
    assert await handlers.spool(spool.unit_of_work(), gate, message(1, b"first"), now=1.0) is None
    assert await handlers.spool(spool.unit_of_work(), gate, message(1, b"second"), now=2.0) == b"first"
    assert spool.rows == {"src:1": (b"first", False)}


async def test_a_spool_write_that_fails_starts_no_recheck_window(clock: Clock) -> None:
    spool, gate = MemorySpool(fail_commit=True), Gate(Flag(), recheck_s=1.0, clock=clock)
    with pytest.raises(OSError):
        await handlers.spool(spool.unit_of_work(), gate, message(1), now=1.0)
    assert not gate.recently_waiting and spool.rows == {}


async def test_without_a_flag_every_request_asks_the_store(clock: Clock) -> None:
    spool, gate = MemorySpool(), Gate(None, recheck_s=1.0, clock=clock)
    assert not await handlers.must_spool(spool.unit_of_work(), gate)
    await handlers.spool(spool.unit_of_work(), gate, message(1), now=1.0)
    assert await handlers.must_spool(spool.unit_of_work(), gate)
    assert spool.transactions == 3
