"""KV ``event-ids`` read with ingress's own direct get answers what ``KeyValue.get`` answers."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import nats.errors
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from libs.bus import ATOMIC_MIN_BATCH, direct_get_last
from libs.contracts import HEADER_BATCH_ID, FirstBody
from libs.store import database_url
from libs.topology import KV_EVENT_IDS, kv_stream, kv_subject
from services.ingress.identity import EventIds, id_key
from services.ingress.publisher import RECORD_BATCH, DurableWriter, Outcome
from services.ingress.spool import Spool
from services.ingress.webhook import InboundWebhook
from tests.support import eventually


async def _both(nc: Client, js: JetStreamContext, msg_id: str) -> tuple[FirstBody | None, FirstBody | None]:
    """``first(msg_id)`` by the direct get, then through ``KeyValue.get``."""
    ids = EventIds(nc, js)
    direct = await ids.first(msg_id)
    assert ids._direct, "the declared bucket takes direct gets"
    ids._direct = False
    return direct, await ids.first(msg_id)


async def test_a_known_id_an_unknown_one_and_removed_ones_read_the_same_both_ways(
    nc: Client, js: JetStreamContext
) -> None:
    ids = EventIds(nc, js)
    first = FirstBody(digest="ab" * 32, stream_seq=9)
    assert await ids.remember("ce:known", first) is None
    kv = await js.key_value(KV_EVENT_IDS)
    for msg_id in ("ce:deleted", "ce:purged"):
        await kv.put(id_key(msg_id), msgspec.json.encode(first))
    await kv.delete(id_key("ce:deleted"))
    await kv.purge(id_key("ce:purged"))
    await kv.put(id_key("ce:unreadable"), b"not json")

    assert await _both(nc, js, "ce:known") == (first, first)
    for msg_id in ("ce:unknown", "ce:deleted", "ce:purged", "ce:unreadable"):
        assert await _both(nc, js, msg_id) == (None, None), msg_id


async def test_a_bucket_without_direct_gets_is_read_through_the_kv_api(nc: Client, js: JetStreamContext) -> None:
    info = await js.stream_info(kv_stream(KV_EVENT_IDS))
    info.config.allow_direct = False
    await js.update_stream(info.config)
    ids = EventIds(nc, js)
    first = FirstBody(digest="cd" * 32, stream_seq=3)
    await ids.remember("ce:old-bucket", first)
    assert await ids.first("ce:old-bucket") == first
    assert not ids._direct
    with pytest.raises(nats.errors.NoRespondersError):
        await direct_get_last(nc, kv_stream(KV_EVENT_IDS), kv_subject(KV_EVENT_IDS, id_key("ce:old-bucket")))


async def test_a_stream_that_is_gone_is_no_answer_but_an_error(nc: Client, js: JetStreamContext) -> None:
    with pytest.raises(nats.errors.NoRespondersError):
        await direct_get_last(nc, "NO_SUCH_STREAM", "nothing.here", timeout=1.0)


async def _batch_id(js: JetStreamContext, msg_id: str) -> str | None:
    stored = await js.get_last_msg(kv_stream(KV_EVENT_IDS), kv_subject(KV_EVENT_IDS, id_key(msg_id)), direct=True)
    return (stored.headers or {}).get(HEADER_BATCH_ID)


async def test_new_ids_are_recorded_in_one_atomic_batch(nc: Client, js: JetStreamContext) -> None:
    ids = EventIds(nc, js)
    records = [(f"ce:batch-{n}", FirstBody(digest=f"{n:064x}", stream_seq=n)) for n in range(ATOMIC_MIN_BATCH)]
    assert await ids.remember_all(records)
    assert [await ids.first(msg_id) for msg_id, _ in records] == [first for _, first in records]
    batch_ids = {await _batch_id(js, msg_id) for msg_id, _ in records}
    assert len(batch_ids) == 1 and None not in batch_ids


async def test_fewer_ids_than_pay_for_an_atomic_batch_are_not_recorded_as_one(nc: Client, js: JetStreamContext) -> None:
    ids = EventIds(nc, js)
    records = [(f"ce:few-{n}", FirstBody(digest=f"{n:064x}")) for n in range(ATOMIC_MIN_BATCH - 1)]
    assert not await ids.remember_all(records)
    assert [await ids.first(msg_id) for msg_id, _ in records] == [None] * len(records), "left to remember()"


async def test_a_batch_holding_a_known_id_records_nothing_and_each_is_recorded_one_by_one(
    nc: Client, js: JetStreamContext
) -> None:
    ids = EventIds(nc, js)
    known = FirstBody(digest="ee" * 32, stream_seq=1)
    assert await ids.remember("ce:seen", known) is None
    new = [(f"ce:new-{n}", FirstBody(digest=f"{n:064x}")) for n in range(ATOMIC_MIN_BATCH)]
    records = [*new[:1], ("ce:seen", known), *new[1:]]
    assert not await ids.remember_all(records)
    assert [await ids.first(msg_id) for msg_id, _ in new] == [None] * len(new), "refused whole"
    assert [await ids.remember(msg_id, first) for msg_id, first in records] == [None, known] + [None] * (len(new) - 1)


@contextlib.asynccontextmanager
async def _writer(nc: Client, js: JetStreamContext, data_dir: Path, **options: float) -> AsyncIterator[DurableWriter]:
    spool = await Spool.open(database_url("", data_dir, "ingress"))
    writer = DurableWriter(spool, publish_timeout_s=2.0, **options)
    writer.attach(nc, js)
    try:
        yield writer
    finally:
        await spool.close()


def _webhooks(name: str, count: int) -> list[InboundWebhook]:
    now = dt.datetime.now(dt.UTC)
    return [InboundWebhook("ce", f"{name}-{n}", "order.created", b'{"n": %d}' % n, now) for n in range(count)]


async def _all_recorded(ids: EventIds | None, events: list[InboundWebhook]) -> None:
    assert ids is not None

    async def recorded() -> bool:
        return all([await ids.first(event.msg_id) is not None for event in events])

    await eventually(recorded, what="every id recorded")


async def test_the_records_of_webhooks_accepted_together_go_out_as_one_batch_even_with_one_re_sent(
    nc: Client, js: JetStreamContext, data_dir: Path
) -> None:
    # The linger outlasts the test: only a full batch's worth of records (RECORD_BATCH) sends it.
    async with _writer(nc, js, data_dir, record_linger_s=300.0) as writer:
        events = _webhooks("together", RECORD_BATCH)
        outcomes = await asyncio.gather(*(writer.write(event) for event in events[:-1]))
        assert {written.outcome for written in outcomes} == {Outcome.ACCEPTED}
        assert writer.ids is not None
        assert await writer.ids.first(events[0].msg_id) is None, "one short of a full batch: nothing recorded yet"
        # Re-sent while the first delivery's record waits for its batch: that batch must still be stored.
        assert (await writer.write(events[0])).outcome is Outcome.DUPLICATE
        assert (await writer.write(events[-1])).outcome is Outcome.ACCEPTED  # the batch is full now
        await _all_recorded(writer.ids, events)
        batch_ids = {await _batch_id(js, event.msg_id) for event in events}
        assert len(batch_ids) == 1 and None not in batch_ids, "all in one atomic batch"


async def test_the_records_of_a_few_webhooks_are_created_one_by_one(
    nc: Client, js: JetStreamContext, data_dir: Path
) -> None:
    async with _writer(nc, js, data_dir) as writer:
        events = _webhooks("few", 3)
        outcomes = await asyncio.gather(*(writer.write(event) for event in events))
        assert {written.outcome for written in outcomes} == {Outcome.ACCEPTED}
        await _all_recorded(writer.ids, events)
        assert {await _batch_id(js, event.msg_id) for event in events} == {None}, "too few for an atomic batch"


async def test_records_waiting_for_their_batch_are_created_when_flushed(
    nc: Client, js: JetStreamContext, data_dir: Path
) -> None:
    async with _writer(nc, js, data_dir, record_linger_s=300.0) as writer:
        events = _webhooks("flushed", 3)
        await asyncio.gather(*(writer.write(event) for event in events))
        assert writer.ids is not None
        assert await writer.ids.first(events[0].msg_id) is None, "waiting for more to join the batch"
        await writer.flush_records(timeout_s=10.0)  # as at shutdown
        assert [await writer.ids.first(event.msg_id) is not None for event in events] == [True] * 3
