"""Pull requests taken in bulk (libs.pull) against a real nats-server: what a fetch hands over and when."""

from __future__ import annotations

import asyncio

import nats.errors
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js import errors as js_errors

from libs.contracts import HEADER_STATUS, HEADER_STATUS_DESCRIPTION, pull_next_subject
from libs.pull import PullRequests
from tests.support import eventually

STREAM = "PULL_TEST"
DURABLE = "worker"


@pytest.fixture
async def stream(js: JetStreamContext) -> str:
    await js.add_stream(js_api.StreamConfig(name=STREAM, subjects=["pull.>"]))
    await js.add_consumer(
        STREAM, js_api.ConsumerConfig(durable_name=DURABLE, ack_policy=js_api.AckPolicy.EXPLICIT, ack_wait=30)
    )
    return STREAM


async def _publish(js: JetStreamContext, count: int, start: int = 0) -> None:
    for n in range(start, start + count):
        await js.publish(f"pull.{n}", str(n).encode())


async def _pull(js: JetStreamContext) -> PullRequests:
    return await PullRequests.bind(js, STREAM, DURABLE)


async def _delivered_late(js: JetStreamContext, pull: PullRequests) -> None:
    """The next message, as one that arrives after its request was given up: delivered, in the buffer."""
    late = await js.pull_subscribe_bind(durable=DURABLE, stream=STREAM)
    [msg] = await late.fetch(1, timeout=5)
    await late.unsubscribe()
    await pull._arrived(msg)


async def test_a_fetch_hands_over_what_is_stored_up_to_the_batch_oldest_first(
    nc: Client, js: JetStreamContext, stream: str
) -> None:
    await _publish(js, 5)
    pull = await _pull(js)
    try:
        first = await pull.fetch(3, timeout=5)
        rest = await pull.fetch(10, timeout=5)
        assert [m.data for m in first] == [b"0", b"1", b"2"]
        assert [m.data for m in rest] == [b"3", b"4"]
        for msg in first + rest:
            await msg.ack()
    finally:
        await pull.unsubscribe()


async def test_an_idle_fetch_hands_over_the_first_message_as_soon_as_it_is_stored(
    nc: Client, js: JetStreamContext, stream: str
) -> None:
    pull = await _pull(js)
    try:
        # Waiting up to a minute: a fetch that held the message for its whole wait would fail the deadline.
        fetch = asyncio.create_task(pull.fetch(100, timeout=60))
        requests = await nc.subscribe(pull_next_subject(STREAM, DURABLE))
        await requests.next_msg(timeout=5)  # the no-wait request
        await requests.next_msg(timeout=5)  # the long poll, now waiting
        await _publish(js, 1)
        got = await asyncio.wait_for(fetch, 10)
        assert [m.data for m in got] == [b"0"]
    finally:
        await pull.unsubscribe()


async def test_an_empty_fetch_returns_nothing_after_its_wait(nc: Client, js: JetStreamContext, stream: str) -> None:
    pull = await _pull(js)
    try:
        assert await pull.fetch(10, timeout=0.2) == []
        await _publish(js, 2)
        # The expired long poll's close does not end the next request early.
        assert [m.data for m in await pull.fetch(10, timeout=5)] == [b"0", b"1"]
    finally:
        await pull.unsubscribe()


async def test_a_fetch_for_a_deleted_durable_raises(nc: Client, js: JetStreamContext, stream: str) -> None:
    pull = await _pull(js)
    try:
        await js.delete_consumer(STREAM, DURABLE)
        with pytest.raises((nats.errors.NoRespondersError, js_errors.APIError)):
            await pull.fetch(10, timeout=1)
    finally:
        await pull.unsubscribe()


async def test_the_durable_deleted_under_a_long_poll_raises(nc: Client, js: JetStreamContext, stream: str) -> None:
    pull = await _pull(js)
    try:
        fetch = asyncio.create_task(pull.fetch(10, timeout=30))
        requests = await nc.subscribe(pull_next_subject(STREAM, DURABLE))
        await requests.next_msg(timeout=5)
        await requests.next_msg(timeout=5)
        await js.delete_consumer(STREAM, DURABLE)
        with pytest.raises(js_errors.APIError) as raised:
            await asyncio.wait_for(fetch, 10)
        assert raised.value.code == 409
    finally:
        await pull.unsubscribe()


async def test_unsubscribing_gives_back_what_was_delivered_but_not_handed_out(
    nc: Client, js: JetStreamContext, stream: str
) -> None:
    await _publish(js, 3)
    pull = await _pull(js)
    await _delivered_late(js, pull)
    await pull.unsubscribe()
    again = await _pull(js)
    seen: list[bytes] = []

    async def redelivered() -> bool:
        seen.extend(m.data for m in await again.fetch(3, timeout=0.5))
        return b"0" in seen

    try:
        # Within 10 s, not after its 30 s ack_wait: the nak (handled apart from pull requests) gave it back.
        await eventually(redelivered, timeout=10, what="the buffered message redelivered")
        assert sorted(seen) == [b"0", b"1", b"2"]
    finally:
        await again.unsubscribe()


def _status(subject: str, code: str, description: str) -> Msg:
    return Msg(_client=None, subject=subject, headers={HEADER_STATUS: code, HEADER_STATUS_DESCRIPTION: description})  # type: ignore[arg-type]


async def test_only_the_close_of_the_current_request_ends_it(nc: Client) -> None:
    pull = PullRequests(nc, STREAM, DURABLE)
    pull._current = f"{pull._prefix}.2"
    pull._want = 5
    await pull._arrived(_status(f"{pull._prefix}.1", "408", "Request Timeout"))
    await pull._arrived(_status(f"{pull._prefix}.2", "100", "Idle Heartbeat"))
    assert pull._closed_by is None
    await pull._arrived(_status(f"{pull._prefix}.2", "404", "No Messages"))
    assert pull._closed_by is not None


async def test_what_a_given_up_request_delivered_is_handed_over_with_what_is_stored(
    nc: Client, js: JetStreamContext, stream: str
) -> None:
    await _publish(js, 4)
    pull = await _pull(js)
    await _delivered_late(js, pull)
    try:
        batch = await pull.fetch(10, timeout=5)
        assert [m.data for m in batch] == [b"0", b"1", b"2", b"3"]  # not the buffered one alone
        for m in batch:
            await m.ack()
        full = await pull.fetch(1, timeout=0.2)
        assert full == []
    finally:
        await pull.unsubscribe()


async def test_a_fetch_waits_for_the_no_wait_answer_whatever_its_own_wait(
    nc: Client, js: JetStreamContext, stream: str
) -> None:
    # A consumer tops up its batch after its linger with a wait far below a round trip; the answer to
    # the request that asks without waiting still counts.
    await _publish(js, 4)
    pull = await _pull(js)
    try:
        batch = await pull.fetch(10, timeout=1e-6)
        assert [m.data for m in batch] == [b"0", b"1", b"2", b"3"]
        for m in batch:
            await m.ack()
    finally:
        await pull.unsubscribe()
