"""libs.lease against a real KV bucket: one holder, takeover after a death, at once after a release."""

from __future__ import annotations

import asyncio
import contextlib
import time

import msgspec
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from libs.lease import KvLease, LeaseRecord
from libs.topology import KV_LEASES
from tests.support import eventually

TTL = 0.8


async def _both(leases: list[KvLease]) -> list[bool]:
    return [lease.is_leader() for lease in leases]


async def test_one_leader_takeover_after_death_and_at_once_after_release(js: JetStreamContext) -> None:
    async def bucket() -> KeyValue:
        return await js.key_value(KV_LEASES)

    changes: list[tuple[str, bool]] = []
    leases = [
        KvLease(bucket, "outbox-relay.lease-test", TTL, holder=h, on_change=lambda v, h=h: changes.append((h, v)))
        for h in ("a", "b")
    ]
    tasks = [asyncio.create_task(lease.run()) for lease in leases]
    try:
        await eventually(lambda: _exactly_one(leases), what="one leader")
        first = next(lease for lease in leases if lease.is_leader())
        other = leases[1 - leases.index(first)]
        entry = await (await bucket()).get("outbox-relay.lease-test")
        assert entry.value is not None
        assert LeaseRecord(first.holder, TTL) == msgspec.json.decode(entry.value, type=LeaseRecord)
        # Renewals keep the lease well past its ttl.
        hold_until = time.monotonic() + 2 * TTL
        while time.monotonic() < hold_until:
            assert first.is_leader() and not other.is_leader()
            await asyncio.sleep(0.05)

        # The leader dies without a word: the other takes over once the ttl has passed, not before.
        tasks[leases.index(first)].cancel()
        died = time.monotonic()
        await eventually(lambda: _leads(other), timeout=5, what="takeover")
        assert time.monotonic() - died >= TTL - first.state.margin_s, "no takeover before the holder gave up"
        assert not first.is_leader()

        # A clean release hands over at once to a candidate that was counting towards the ttl.
        third = KvLease(bucket, "outbox-relay.lease-test", TTL, holder="c")
        tasks.append(asyncio.create_task(third.run()))
        await eventually(lambda: _watching(third), what="third candidate watching the key")
        await other.release()
        released = time.monotonic()
        await eventually(lambda: _leads(third), timeout=5, what="takeover after release")
        assert time.monotonic() - released < TTL, "a released key is free at once"
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task


async def _watching(lease: KvLease) -> bool:
    return lease.state.seen_revision is not None


async def _exactly_one(leases: list[KvLease]) -> bool:
    return (await _both(leases)).count(True) == 1


async def _leads(lease: KvLease) -> bool:
    return lease.is_leader()
