"""An idle consumer neither polls nor re-binds, and still hands over a new message at once.

The notifier's durable used to be fetched with a 50 ms wait, because a fetch held the first message
back until its wait ended: twenty pull requests a second while nothing happened. Now an idle fetch is
one long poll that the first stored message ends (libs.pull).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from libs import pull
from libs.consumer import Decision, PullConsumer
from libs.contracts import pull_next_subject
from libs.subjects import inventory_subject
from libs.topology import INVENTORY, NOTIFIER_CONSUMER
from tests.support import eventually


async def test_an_idle_consumer_asks_once_per_wait_and_does_not_rebind(
    nc: Client, js: JetStreamContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    binds = 0
    subscribe = pull.PullRequests.subscribe

    async def counting_subscribe(self: pull.PullRequests) -> None:
        nonlocal binds
        binds += 1
        await subscribe(self)

    monkeypatch.setattr(pull.PullRequests, "subscribe", counting_subscribe)
    requests = await nc.subscribe(pull_next_subject(INVENTORY, NOTIFIER_CONSUMER))

    async def handler(batch: Any) -> list[Decision]:
        return [Decision.ack() for _ in batch]

    consumer = PullConsumer(js, INVENTORY, NOTIFIER_CONSUMER, handler, fetch_timeout_s=0.5)
    task = asyncio.create_task(consumer.run())
    try:
        await eventually(lambda: _true(consumer.bound), what="consumer bound")
        # Four idle fetches, each a no-wait request and a long poll: the eighth request follows three
        # whole waits. (A lower bound on time only: a slow machine makes it longer, never shorter.)
        await requests.next_msg(timeout=5)
        began = time.monotonic()
        for _ in range(7):
            await requests.next_msg(timeout=5)
        assert time.monotonic() - began >= 3 * 0.5 - 0.05
        assert binds == 1
        assert consumer.bound
    finally:
        consumer.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)


async def test_a_message_stored_while_idle_is_handled_before_the_wait_ends(js: JetStreamContext) -> None:
    handled: list[Any] = []

    async def handler(batch: Any) -> list[Decision]:
        handled.extend(batch)
        return [Decision.ack() for _ in batch]

    # A fetch that kept the message until its 10 s wait ended would miss the 5 s deadline below.
    consumer = PullConsumer(js, INVENTORY, NOTIFIER_CONSUMER, handler, fetch_timeout_s=10)
    task = asyncio.create_task(consumer.run())
    try:
        await eventually(lambda: _true(consumer.bound), what="consumer bound")
        await js.publish(inventory_subject("availability", "SKU-1"), b"{}")
        await eventually(lambda: _true(len(handled) == 1), timeout=5, what="the message handled")
    finally:
        consumer.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 15)


async def _true(value: bool) -> bool:
    return value
