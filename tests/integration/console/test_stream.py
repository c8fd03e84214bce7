"""What the console reads from JetStream, against a real nats-server: COMMERCE searched by source, event
type, a text in the body (an order number, a SKU) and a time range; the consumers' lag; DEADLETTER's count."""

from __future__ import annotations

import datetime as dt
import json

from nats.js import JetStreamContext
from nats.js import api as js_api

from libs.topology import COMMERCE
from services.console.stream import ConsumerLag, EventFilter, consumer_lag, deadletter_count, read_event, search
from tests.support import commerce_headers, dead_letter, eventually


async def _publish(js: JetStreamContext, source: str, event_type: str, event_id: str, data: dict[str, object]) -> int:
    body = json.dumps({"id": event_id, "event_type": event_type, "data": data}).encode()
    ack = await js.publish(
        f"commerce.{source}.{event_type}", body, headers=commerce_headers(event_id, event_type, source)
    )
    return int(ack.seq)


async def _stored_at(js: JetStreamContext, seq: int) -> dt.datetime:
    event = await read_event(js, seq)
    assert event is not None
    head, _, rest = event.headers["Nats-Time-Stamp"].partition(".")
    return dt.datetime.fromisoformat(f"{head}.{rest[:6]}+00:00")


async def _found(js: JetStreamContext, wanted: EventFilter) -> list[str]:
    found, scanned = await search(js, wanted, limit=50, scan=1000)
    assert scanned >= len(found)
    return [event.event_id for event in found]


async def test_commerce_is_searched_by_source_type_text_and_time(js: JetStreamContext) -> None:
    await _publish(js, "shop", "order.created", "a1", {"order_id": "o-1", "lines": [{"sku": "TEE-1", "qty": 1}]})
    await _publish(js, "store", "order.created", "a2", {"order_id": "o-2", "lines": [{"sku": "MUG-1", "qty": 1}]})
    await _publish(js, "shop", "inventory.received", "a3", {"sku": "TEE-10", "qty": 5})
    later = await _publish(js, "shop", "order.cancelled", "b1", {"order_id": "o-1"})
    await _publish(js, "store", "inventory.received", "b2", {"sku": "MUG-1", "qty": 2})
    middle = await _stored_at(js, later)

    # Newest first.
    assert await _found(js, EventFilter()) == ["b2", "b1", "a3", "a2", "a1"]
    assert await _found(js, EventFilter(source="shop")) == ["b1", "a3", "a1"]
    assert await _found(js, EventFilter(event_type="order.created")) == ["a2", "a1"]
    assert await _found(js, EventFilter(source="store", event_type="inventory.received")) == ["b2"]
    # A SKU as the page asks for it (quoted, so TEE-1 does not find TEE-10), an order number as it is.
    assert await _found(js, EventFilter(text='"TEE-1"')) == ["a1"]
    assert await _found(js, EventFilter(text='"MUG-1"')) == ["b2", "a2"]
    assert await _found(js, EventFilter(text="o-1")) == ["b1", "a1"]
    # The time range: from a message's own stored time on, and up to (not including) it.
    assert await _found(js, EventFilter(since=middle)) == ["b2", "b1"]
    assert await _found(js, EventFilter(until=middle)) == ["a3", "a2", "a1"]
    assert await _found(js, EventFilter(source="shop", since=middle)) == ["b1"]
    assert await _found(js, EventFilter(since=middle + dt.timedelta(hours=1))) == []


async def test_the_newest_events_within_the_scan_and_the_limit(js: JetStreamContext) -> None:
    for n in range(8):
        await _publish(js, "shop", "inventory.received", f"n{n}", {"sku": "A", "qty": 1})
    found, scanned = await search(js, EventFilter(), limit=3, scan=5)
    assert [e.event_id for e in found] == ["n7", "n6", "n5"] and scanned == 5


async def test_consumer_lag_per_durable_and_the_dead_letters_counted(js: JetStreamContext) -> None:
    await js.add_consumer(
        COMMERCE, js_api.ConsumerConfig(durable_name="console-test", ack_policy=js_api.AckPolicy.EXPLICIT)
    )
    for n in range(3):
        await _publish(js, "shop", "inventory.received", f"l{n}", {"sku": "A", "qty": 1})

    async def lag_of_the_consumer() -> ConsumerLag | None:
        lag = {lag.durable: lag for lag in await consumer_lag(js)}["console-test"]
        # nats-server counts a consumer's pending messages as it is told of new ones, a moment after
        # their PubAcks: the count is waited for, not read once.
        return lag if lag.pending == 3 else None

    lag = await eventually(lag_of_the_consumer, timeout=10, what="3 pending for console-test")
    assert lag.stream == COMMERCE
    assert await deadletter_count(js) == 0
    await dead_letter(js, event_id="d1")
    await dead_letter(js, event_id="d2")
    assert await deadletter_count(js) == 2
