"""The availability bucket: compare-and-set, never an older version over a newer one."""

from __future__ import annotations

import asyncio

from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from libs.bus import ATOMIC_MIN_BATCH
from libs.contracts import HEADER_BATCH_ID, AvailabilityChanged, decode_availability, encode
from libs.subjects import encode_token
from libs.topology import KV_AVAILABILITY, kv_stream, kv_subject
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


async def _stored_headers(js: JetStreamContext, key: str) -> dict[str, str]:
    msg = await js.get_last_msg(kv_stream(KV_AVAILABILITY), kv_subject(KV_AVAILABILITY, key), direct=True)
    return dict(msg.headers or {})


async def _stored_one_by_one(kv: KeyValue, js: JetStreamContext, updates: list[AvailabilityChanged]) -> None:
    """Each update's document is its key's value, and it was not stored in an atomic batch."""
    for update in updates:
        entry = await kv.get(encode_token(update.sku), validate_keys=False)
        assert decode_availability(entry.value).available == update.available
        assert HEADER_BATCH_ID not in await _stored_headers(js, encode_token(update.sku)), "not in a batch"


async def test_a_batch_of_skus_is_written_in_one_atomic_batch_and_stale_ones_are_left(
    nc: Client, js: JetStreamContext
) -> None:
    kv = await js.key_value(KV_AVAILABILITY)
    writer = AvailabilityKv(kv, nc=nc, bucket=KV_AVAILABILITY)
    seen = availability("MANY.0", 5, 5)
    assert await writer.offer(seen, encode(seen)) is KvWrite.WRITTEN
    fresh = range(1, ATOMIC_MIN_BATCH + 1)
    updates = [availability("MANY.0", 4, 1)] + [availability(f"MANY.{n}", 1, n) for n in fresh]
    results = await writer.offer_many([(u, encode(u)) for u in updates], asyncio.Semaphore(4))
    assert results == [KvWrite.STALE] + [KvWrite.WRITTEN] * len(fresh)
    batch_ids = {(await _stored_headers(js, encode_token(f"MANY.{n}"))).get(HEADER_BATCH_ID) for n in fresh}
    assert len(batch_ids) == 1 and None not in batch_ids, "the new SKUs in one atomic batch"
    assert decode_availability((await kv.get(encode_token("MANY.0"), validate_keys=False)).value).version == 5


async def test_fewer_skus_than_pay_for_an_atomic_batch_are_written_one_by_one(
    nc: Client, js: JetStreamContext
) -> None:
    kv = await js.key_value(KV_AVAILABILITY)
    writer = AvailabilityKv(kv, nc=nc, bucket=KV_AVAILABILITY)
    updates = [availability(f"FEW.{n}", 1, n) for n in range(ATOMIC_MIN_BATCH - 1)]
    for update in updates:  # each key's revision known, as for the batch above
        assert await writer.offer(update, encode(update)) is KvWrite.WRITTEN
    newer = [availability(update.sku, 2, update.available + 100) for update in updates]
    results = await writer.offer_many([(u, encode(u)) for u in newer], asyncio.Semaphore(4))
    assert results == [KvWrite.WRITTEN] * len(newer)
    await _stored_one_by_one(kv, js, newer)


async def test_a_batch_refused_because_another_writer_moved_a_key_is_written_one_by_one(
    nc: Client, js: JetStreamContext
) -> None:
    kv = await js.key_value(KV_AVAILABILITY)
    writer, other = AvailabilityKv(kv, nc=nc, bucket=KV_AVAILABILITY), AvailabilityKv(kv)
    keys = range(ATOMIC_MIN_BATCH)
    first = [availability(f"MOVED.{n}", 1, n) for n in keys]
    await writer.offer_many([(u, encode(u)) for u in first], asyncio.Semaphore(4))
    assert HEADER_BATCH_ID in await _stored_headers(js, encode_token("MOVED.0")), "the first batch went atomic"
    # Another replica writes a newer version of one key: this writer's remembered revision is old now.
    newer = availability("MOVED.1", 2, 20)
    assert await other.offer(newer, encode(newer)) is KvWrite.WRITTEN
    second = [availability(f"MOVED.{n}", 3, 30 + n) for n in keys]
    results = await writer.offer_many([(u, encode(u)) for u in second], asyncio.Semaphore(4))
    assert results == [KvWrite.WRITTEN] * len(second)
    await _stored_one_by_one(kv, js, second)  # the batch was refused whole


async def test_without_a_connection_the_writes_go_one_by_one(js: JetStreamContext) -> None:
    kv = await js.key_value(KV_AVAILABILITY)
    updates = [availability(f"SINGLE.{n}", 1, n) for n in range(3)]
    results = await AvailabilityKv(kv).offer_many([(u, encode(u)) for u in updates], asyncio.Semaphore(2))
    assert results == [KvWrite.WRITTEN] * 3
    stored = [await _stored_headers(js, encode_token(u.sku)) for u in updates]
    assert not any(HEADER_BATCH_ID in headers for headers in stored)
