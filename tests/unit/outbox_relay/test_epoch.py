"""A publishing epoch over the in-memory outbox and a JetStream stand-in whose answers the test decides."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from nats.js import JetStreamContext
from nats.js import errors as js_errors

from services.outbox_relay.pipeline import EpochFailed, PublishEpoch, Tuning
from services.outbox_relay.wakeup import Wakeup

from .memory import MemoryOutbox


class _RefusesFirst:
    """``publish_async`` as nats-py's: a future per message. The first message is refused at once ("no
    responders": no stream leader); the others are never answered."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def publish_async(self, subject: str, payload: bytes, headers: dict[str, str]) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if not self.sent:
            future.set_exception(js_errors.NoStreamResponseError())
        self.sent.append(headers["Nats-Msg-Id"])
        return future


async def test_nothing_more_is_sent_once_jetstream_refused_a_row() -> None:
    outbox = MemoryOutbox()
    for row_id in range(1, 101):
        outbox.add(row_id)
    js = _RefusesFirst()
    epoch = PublishEpoch(
        "t",
        outbox,  # type: ignore[arg-type]
        cast(JetStreamContext, js),
        Wakeup(),
        Tuning(batch_size=10, ack_timeout_s=0.2, idle_poll_s=0.05),
        keep_going=lambda: True,
        closed=asyncio.Event(),
    )
    with pytest.raises((EpochFailed, ExceptionGroup)) as failure:
        await asyncio.wait_for(epoch.run(), timeout=10)
    assert "NoStreamResponseError" in str(failure.value) or any(
        "NoStreamResponseError" in str(e) for e in getattr(failure.value, "exceptions", [])
    )
    # Rows sent after a refusal could be stored ahead of it (a clustered stream that has elected a leader
    # meanwhile): none is sent, not even the rest of its batch.
    assert js.sent == ["m:1"]
    assert outbox.marks == [], "nothing was acknowledged"
