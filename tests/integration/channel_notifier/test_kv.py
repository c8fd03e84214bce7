"""The availability bucket: compare-and-set, never an older version over a newer one."""

from __future__ import annotations

import asyncio

from nats.js import JetStreamContext

from libs.contracts import decode_availability, encode
from libs.subjects import encode_token
from libs.topology import KV_AVAILABILITY
from services.channel_notifier.kv import AvailabilityKv, KvWrite

from .support import availability


async def test_older_versions_never_replace_newer_ones(js: JetStreamContext) -> None:
    kv = await js.key_value(KV_AVAILABILITY)
    writer = AvailabilityKv(kv)
    newer, older = availability("K.1", 5, 9), availability("K.1", 4, 1)
    assert await writer.offer(newer, encode(newer)) is KvWrite.WRITTEN
    assert await writer.offer(older, encode(older)) is KvWrite.STALE
    assert await writer.offer(newer, encode(newer)) is KvWrite.STALE
    # A second writer (another replica) that has never seen the key learns the revision from the server.
    other = AvailabilityKv(kv)
    assert await other.offer(older, encode(older)) is KvWrite.STALE
    entry = await kv.get(encode_token("K.1"), validate_keys=False)
    assert decode_availability(entry.value).version == 5


async def test_racing_writers_converge_to_the_newest(js: JetStreamContext) -> None:
    kv = await js.key_value(KV_AVAILABILITY)
    writers = [AvailabilityKv(kv) for _ in range(4)]
    updates = [availability("RACE", v, v) for v in range(1, 41)]

    async def write(writer: AvailabilityKv, offset: int) -> None:
        for update in updates[offset::4] + updates[::-7]:
            await writer.offer(update, encode(update))

    await asyncio.gather(*(write(w, i) for i, w in enumerate(writers)))
    entry = await kv.get("RACE")
    assert decode_availability(entry.value).version == 40


async def test_a_deleted_key_can_be_written_again(js: JetStreamContext) -> None:
    kv = await js.key_value(KV_AVAILABILITY)
    writer = AvailabilityKv(kv)
    first = availability("DEL", 1, 1)
    await writer.offer(first, encode(first))
    await kv.delete("DEL")
    fresh = AvailabilityKv(kv)
    again = availability("DEL", 2, 2)
    assert await fresh.offer(again, encode(again)) is KvWrite.WRITTEN
    assert decode_availability((await kv.get("DEL")).value).version == 2
