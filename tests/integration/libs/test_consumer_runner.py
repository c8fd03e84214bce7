"""The consumer runner against a real stream: acks, retries, dead letters that never block the stream."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js import api as js_api

from libs.consumer import Decision, PullConsumer, per_message
from libs.topology import DEADLETTER
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
