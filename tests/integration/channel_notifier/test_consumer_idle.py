"""The notifier fetches with a short wait (it bounds latency); an idle consumer must not keep re-binding.

nats-py ends some empty fetches with a bare ``asyncio.TimeoutError`` instead of its own TimeoutError
(when the no-wait probe's answer arrives after the deadline, which a busy loop makes common with a
50 ms wait). The bound subscription here answers every other fetch that way, so the test does not
depend on how busy the machine is.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from nats.js import JetStreamContext

from libs.consumer import Decision, PullConsumer
from libs.topology import INVENTORY, NOTIFIER_CONSUMER
from tests.support import eventually


async def test_short_empty_fetches_do_not_count_as_stalls(js: JetStreamContext) -> None:
    binds = 0
    fetches = 0
    bind = js.pull_subscribe_bind

    async def counting_bind(*args: Any, **kwargs: Any) -> Any:
        nonlocal binds
        binds += 1
        sub = await bind(*args, **kwargs)
        fetch = sub.fetch

        async def counting_fetch(*a: Any, **k: Any) -> Any:
            nonlocal fetches
            fetches += 1
            if fetches % 2:
                raise TimeoutError  # what nats-py raises when the deadline passed during the probe
            return await fetch(*a, **k)

        sub.fetch = counting_fetch  # type: ignore[method-assign]
        return sub

    js.pull_subscribe_bind = counting_bind  # type: ignore[method-assign]

    async def handler(batch: Any) -> list[Decision]:
        return [Decision.ack() for _ in batch]

    consumer = PullConsumer(js, INVENTORY, NOTIFIER_CONSUMER, handler, fetch_timeout_s=0.02)
    task = asyncio.create_task(consumer.run())
    try:

        async def many_empty_fetches() -> bool:
            return fetches >= 30

        await eventually(many_empty_fetches, timeout=15, what="30 empty fetches")
        assert binds == 1
        assert consumer.bound
    finally:
        consumer.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)
