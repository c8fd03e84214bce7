"""Helpers for the channel-notifier tests: publishing availability, checking sinks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from libs.contracts import AvailabilityChanged, availability_msg_id, availability_subject, encode, utc_now_iso
from libs.topology import INVENTORY
from stockwire.demo.sinks import ChannelSink
from tests.support import eventually

ADMIN_TOKEN = "channel-notifier-test-token"
AUTH = {"authorization": f"Bearer {ADMIN_TOKEN}"}


def availability(sku: str, version: int, available: int, **extra: Any) -> AvailabilityChanged:
    fields = {
        "sku": sku,
        "version": version,
        "available": available,
        "on_hand": available + 1,
        "reserved": 1,
        "committed": 0,
        "occurred_at": utc_now_iso(),
        "cause": "adjusted",
    }
    fields.update(extra)
    return AvailabilityChanged(**fields)


async def publish(js: JetStreamContext, update: AvailabilityChanged) -> None:
    await js.publish(
        availability_subject(update.sku),
        encode(update),
        headers={"Nats-Msg-Id": availability_msg_id(update.sku, update.version)},
    )


def converged(sink: ChannelSink, final: dict[str, AvailabilityChanged], buffer: int = 0) -> bool:
    return all(sink.cache.get(sku) == (u.version, max(0, u.available - buffer)) for sku, u in final.items())


def replace(update: AvailabilityChanged, **changes: Any) -> AvailabilityChanged:
    return msgspec.structs.replace(update, **changes)


async def until(predicate: Callable[[], object], *, timeout: float = 10.0, what: str = "condition") -> None:
    """Wait (with a deadline) for a plain predicate to hold."""

    async def probe() -> object:
        return predicate()

    await eventually(probe, timeout=timeout, what=what)


async def pull(js: JetStreamContext, durable: str, expected: int, *, timeout: float = 5.0) -> list[Msg]:
    """Pull up to ``expected`` messages from an INVENTORY durable as a channel's client does, each
    acknowledged (and the ack confirmed) before the next fetch."""
    sub = await js.pull_subscribe_bind(durable=durable, stream=INVENTORY)
    received: list[Msg] = []
    try:
        while len(received) < expected:
            try:
                batch = await sub.fetch(expected - len(received), timeout=timeout)
            except nats.errors.TimeoutError:
                break
            for msg in batch:
                await msg.ack_sync()
                received.append(msg)
    finally:
        await sub.unsubscribe()
    return received
