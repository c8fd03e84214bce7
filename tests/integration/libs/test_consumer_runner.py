"""The consumer runner against a real stream: acks, retries, dead letters that never block the stream."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence

import pytest
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js import api as js_api

from libs.config import TopologySettings
from libs.consumer import BatchHandler, Decision, PullConsumer, per_message, retry_schedule
from libs.topology import COMMERCE, DEADLETTER, INVENTORY_CONSUMER, consumer_spec
from tests.support import eventually

STREAM = "RUNNER_TEST"


@pytest.fixture
async def stream(js: JetStreamContext) -> str:
    await js.add_stream(js_api.StreamConfig(name=STREAM, subjects=["runner.>"]))
    await js.add_consumer(
        STREAM,
        js_api.ConsumerConfig(durable_name="worker", ack_policy=js_api.AckPolicy.EXPLICIT, max_deliver=3, ack_wait=5),
    )
    return STREAM


async def _run(consumer: PullConsumer) -> asyncio.Task[None]:
    task = asyncio.create_task(consumer.run())
    await eventually(lambda: _true(consumer.bound), what="consumer bound")
    return task


async def _true(value: bool) -> bool:
    return value


async def test_poison_message_is_dead_lettered_after_max_deliver_and_the_rest_flow(
    js: JetStreamContext, stream: str
) -> None:
    handled: list[bytes] = []

    async def handler(msg: Msg) -> Decision | None:
        if msg.data == b"poison":
            raise ValueError("cannot parse")
        handled.append(msg.data)
        return None

    consumer = PullConsumer(
        js,
        stream,
        "worker",
        per_message(handler),
        batch_size=10,
        fetch_timeout_s=0.2,
        max_deliver=3,
        retry_delay_s=lambda _n: 0.05,
    )
    task = await _run(consumer)
    try:
        await js.publish("runner.a", b"one")
        await js.publish("runner.b", b"poison")
        await js.publish("runner.c", b"two")

        async def dead_lettered() -> int:
            return (await js.stream_info(DEADLETTER)).state.messages

        await eventually(dead_lettered, what="poison message dead-lettered")
        await eventually(lambda: _true(handled == [b"one", b"two"]), what="other messages handled")
        letter = await js.get_msg(DEADLETTER, 1)
        assert letter.subject == "deadletter.worker.runner.b"
        assert letter.data == b"poison"
        assert letter.headers["Stockwire-Consumer"] == "worker"
        assert letter.headers["Stockwire-Original-Seq"] == "2"
        assert letter.headers["Stockwire-Delivery-Count"] == "3"
        assert "ValueError: cannot parse" in letter.headers["Stockwire-Error"]
        info = await js.consumer_info(stream, "worker")
        assert info.num_ack_pending == 0 and info.num_pending == 0
    finally:
        consumer.stop()
        await task


async def test_a_handler_can_dead_letter_at_once(js: JetStreamContext, stream: str) -> None:
    async def handler(batch: Sequence[Msg]) -> list[Decision]:
        return [Decision.dead_letter("parked too long") if m.data == b"late" else Decision.ack() for m in batch]

    consumer = PullConsumer(js, stream, "worker", handler, fetch_timeout_s=0.2)
    task = await _run(consumer)
    try:
        await js.publish("runner.x", b"late")

        async def letters() -> int:
            return (await js.stream_info(DEADLETTER)).state.messages

        await eventually(letters, what="dead letter")
        letter = await js.get_msg(DEADLETTER, 1)
        assert letter.headers["Stockwire-Error"] == "parked too long"
        assert letter.headers["Stockwire-Delivery-Count"] == "1"
    finally:
        consumer.stop()
        await task


# -- the runner owns its durable: re-created from the ack floor, never from the start ------------------


def _owned(js: JetStreamContext, settings: TopologySettings, handler: BatchHandler) -> PullConsumer:
    return PullConsumer(
        js,
        COMMERCE,
        INVENTORY_CONSUMER,
        handler,
        fetch_timeout_s=0.2,
        floor_poll_s=0.05,
        max_deliver=settings.max_deliver,
        spec=consumer_spec(settings, COMMERCE, INVENTORY_CONSUMER),
    )


async def _bind_and_stop(js: JetStreamContext, settings: TopologySettings) -> None:
    async def handler(batch: Sequence[Msg]) -> list[Decision]:
        return [Decision.ack()] * len(batch)

    consumer = _owned(js, settings, handler)
    task = await _run(consumer)
    consumer.stop()
    await task


async def _deadletters(js: JetStreamContext) -> int:
    return (await js.stream_info(DEADLETTER)).state.messages


async def test_a_deleted_durable_is_recreated_from_its_ack_floor_and_nothing_is_handled_or_dead_lettered_twice(
    js: JetStreamContext, topology_settings: TopologySettings
) -> None:
    seen: list[int] = []

    async def handler(batch: Sequence[Msg]) -> list[Decision]:
        seen.extend(m.metadata.sequence.stream for m in batch)
        return [Decision.dead_letter("unreadable") if m.data == b"bad" else Decision.ack() for m in batch]

    consumer = _owned(js, topology_settings, handler)
    task = await _run(consumer)
    try:
        for body in (b"a", b"bad", b"b", b"c"):
            await js.publish("commerce.test.event", body)
        await eventually(lambda: _true(consumer.ack_floor == 4), what="ack floor at 4")
        assert await _deadletters(js) == 1

        await js.delete_consumer(COMMERCE, INVENTORY_CONSUMER)
        for body in (b"d", b"e"):
            await js.publish("commerce.test.event", body)

        await eventually(lambda: _true(sorted(seen) == [1, 2, 3, 4, 5, 6]), what="the two new events handled")
        info = await js.consumer_info(COMMERCE, INVENTORY_CONSUMER)
        assert info.config.deliver_policy == js_api.DeliverPolicy.BY_START_SEQUENCE
        assert info.config.opt_start_seq == 5
        await eventually(lambda: _true(consumer.bound), what="bound again")
        assert seen.count(2) == 1 and await _deadletters(js) == 1
    finally:
        consumer.stop()
        await task


async def test_a_runner_that_cannot_recreate_its_durable_is_not_bound(js: JetStreamContext, stream: str) -> None:
    async def handler(batch: Sequence[Msg]) -> list[Decision]:
        return [Decision.ack()] * len(batch)

    # No spec: the durable belongs to someone else, so the runner may not re-create it.
    consumer = PullConsumer(js, stream, "worker", handler, fetch_timeout_s=0.2, floor_poll_s=0.05)
    task = await _run(consumer)
    try:
        await js.delete_consumer(stream, "worker")
        await eventually(lambda: _true(not consumer.bound), what="not bound once the durable is gone")
        # It stays so through the runner's re-bind attempts (one a second).
        for _ in range(3):
            await asyncio.wait_for(asyncio.shield(_unbound_for(consumer, 0.5)), 5)
    finally:
        consumer.stop()
        await task


async def _unbound_for(consumer: PullConsumer, seconds: float) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        assert not consumer.bound
        await asyncio.sleep(0.02)


async def test_a_failing_handler_holds_its_batch_reports_not_bound_and_uses_up_no_delivery(
    js: JetStreamContext, topology_settings: TopologySettings
) -> None:
    store_full = True
    deliveries: list[int] = []

    async def handler(batch: Sequence[Msg]) -> list[Decision]:
        deliveries.extend(m.metadata.num_delivered for m in batch)
        if store_full:
            raise OSError("database or disk is full")
        return [Decision.ack()] * len(batch)

    consumer = _owned(js, topology_settings, handler)
    task = await _run(consumer)
    try:
        await js.publish("commerce.test.event", b"x")
        await eventually(lambda: _true(len(deliveries) >= 3), what="the batch retried in place")
        assert not consumer.bound and "disk is full" in (consumer.failing or "")
        store_full = False
        await eventually(lambda: _true(consumer.bound), what="bound once the handler succeeds")
        await eventually(lambda: _true(consumer.ack_floor == 1), what="acknowledged")
        # Held and retried by this process: the server delivered it once.
        assert set(deliveries) == {1} and await _deadletters(js) == 0
    finally:
        consumer.stop()
        await task


# -- one retry schedule, end to end -----------------------------------------------------------------------


@pytest.mark.parametrize("topology_settings", [TopologySettings(max_deliver=5)])
async def test_a_message_that_always_fails_is_redelivered_on_the_schedule_then_dead_lettered(
    js: JetStreamContext, topology_settings: TopologySettings
) -> None:
    delivered_at: list[float] = []
    loop = asyncio.get_running_loop()

    async def handler(msg: Msg) -> Decision | None:
        delivered_at.append(loop.time())
        raise ValueError("always fails")

    consumer = _owned(js, topology_settings, per_message(handler))
    schedule = retry_schedule(topology_settings.max_deliver)
    task = await _run(consumer)
    try:
        published = loop.time()
        await js.publish("commerce.test.event", b"x")
        await eventually(lambda: _deadletters(js), timeout=sum(schedule) + 5, what="dead-lettered")
        reached = loop.time() - published
    finally:
        consumer.stop()
        await task
    waits = [later - earlier for earlier, later in itertools.pairwise(delivered_at)]
    assert len(waits) == len(schedule) == 4
    for waited, planned in zip(waits, schedule, strict=True):
        # Never early; late at most by a fetch round trip.
        assert planned - 0.05 <= waited <= planned + 1.0, (waits, schedule)
    assert reached <= sum(schedule) + 2.0, (reached, schedule)


@pytest.mark.parametrize("topology_settings", [TopologySettings(duplicate_window_s=30.0)])
async def test_a_retry_schedule_longer_than_the_deadletter_dedup_window_is_reported(
    js: JetStreamContext, topology_settings: TopologySettings, caplog: pytest.LogCaptureFixture
) -> None:
    await _bind_and_stop(js, topology_settings)
    # 0.5 + 1 + ... + 32 s of retries (max_deliver 8) outlast a 30 s window.
    assert any("not under DEADLETTER's 30s duplicate window" in r.getMessage() for r in caplog.records)


async def test_the_runner_brings_a_durable_with_older_settings_to_its_spec(
    js: JetStreamContext, topology_settings: TopologySettings
) -> None:
    old = (await js.consumer_info(COMMERCE, INVENTORY_CONSUMER)).config
    old.ack_wait = 30.0
    old.backoff = [30.0, 60.0, 120.0, 240.0, 480.0, 600.0, 600.0]
    await js.add_consumer(COMMERCE, old)

    await _bind_and_stop(js, topology_settings)
    info = await js.consumer_info(COMMERCE, INVENTORY_CONSUMER)
    assert info.config.backoff is None
    assert info.config.ack_wait == pytest.approx(topology_settings.ack_wait_s)


async def test_a_short_batch_lingers_and_takes_what_arrives_meanwhile(js: JetStreamContext, stream: str) -> None:
    batches: list[list[bytes]] = []

    async def handler(batch: Sequence[Msg]) -> list[Decision]:
        batches.append([msg.data for msg in batch])
        return [Decision.ack()] * len(batch)

    # A linger far longer than the test needs, even on a loaded machine: the four later messages are
    # published once the first is known to be fetched, so they can only join its batch by the linger.
    config = (await js.consumer_info(stream, "worker")).config
    config.ack_wait = 30.0  # the linger is held under a third of it
    await js.add_consumer(stream, config)
    consumer = PullConsumer(js, stream, "worker", handler, batch_size=10, fetch_timeout_s=0.2, linger_s=5.0)
    task = await _run(consumer)
    try:
        await js.publish("runner.a", b"first")

        async def fetched() -> bool:
            return (await js.consumer_info(stream, "worker")).num_ack_pending == 1

        await eventually(fetched, what="the first message fetched")
        for n in range(4):
            await js.publish("runner.a", b"later-%d" % n)
        await eventually(lambda: _true(bool(batches)), timeout=15, what="a batch handled")
        assert batches[0] == [b"first", *(b"later-%d" % n for n in range(4))], "one batch, the later ones in it"
    finally:
        consumer.stop()
        await task


async def test_without_linger_a_fetch_hands_over_what_it_has_at_once(js: JetStreamContext, stream: str) -> None:
    batches: list[list[bytes]] = []
    release = asyncio.Event()

    async def handler(batch: Sequence[Msg]) -> list[Decision]:
        batches.append([msg.data for msg in batch])
        await release.wait()
        return [Decision.ack()] * len(batch)

    consumer = PullConsumer(js, stream, "worker", handler, batch_size=10, fetch_timeout_s=0.2)
    task = await _run(consumer)
    try:
        await js.publish("runner.a", b"first")
        await eventually(lambda: _true(bool(batches)), what="the first batch handed over")
        await js.publish("runner.a", b"second")
        release.set()
        await eventually(lambda: _true(len(batches) == 2), what="the second batch")
        assert batches == [[b"first"], [b"second"]]
    finally:
        consumer.stop()
        await task
