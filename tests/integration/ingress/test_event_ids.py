"""KV ``event-ids`` read with ingress's own direct get answers what ``KeyValue.get`` answers."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import msgspec
import nats.errors
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from libs.bus import direct_get_last
from libs.contracts import HEADER_BATCH_ID, FirstBody
from libs.store import database_url
from libs.topology import KV_EVENT_IDS, kv_stream, kv_subject
from services.ingress.identity import EventIds, id_key
from services.ingress.publisher import DurableWriter, Outcome
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
    records = [(f"ce:batch-{n}", FirstBody(digest=f"{n:064x}", stream_seq=n)) for n in range(5)]
    assert await ids.remember_all(records)
    assert [await ids.first(msg_id) for msg_id, _ in records] == [first for _, first in records]
    batch_ids = {await _batch_id(js, msg_id) for msg_id, _ in records}
    assert len(batch_ids) == 1 and None not in batch_ids


async def test_a_batch_holding_a_known_id_records_nothing_and_each_is_recorded_one_by_one(
    nc: Client, js: JetStreamContext
) -> None:
    ids = EventIds(nc, js)
    known = FirstBody(digest="ee" * 32, stream_seq=1)
    assert await ids.remember("ce:seen", known) is None
    records = [("ce:new-1", FirstBody(digest="01" * 32)), ("ce:seen", known), ("ce:new-2", FirstBody(digest="02" * 32))]
    assert not await ids.remember_all(records)
    assert await ids.first("ce:new-1") is None and await ids.first("ce:new-2") is None, "refused whole"
    assert [await ids.remember(msg_id, first) for msg_id, first in records] == [None, known, None]


async def test_the_records_of_webhooks_accepted_together_go_out_as_one_batch_even_with_one_re_sent(
    nc: Client, js: JetStreamContext, data_dir: Path
) -> None:
    spool = await Spool.open(database_url("", data_dir, "ingress"))
    writer = DurableWriter(spool, publish_timeout_s=2.0)
    writer.attach(nc, js)
    events = [
        InboundWebhook("ce", f"together-{n}", "order.created", b'{"n": %d}' % n, dt.datetime.now(dt.UTC))
        for n in range(6)
    ]
    try:
        outcomes = await asyncio.gather(*(writer.write(event) for event in events))
        assert {written.outcome for written in outcomes} == {Outcome.ACCEPTED}
        # Re-sent while the first delivery's record waits for its batch: that batch must still be stored.
        assert (await writer.write(events[0])).outcome is Outcome.DUPLICATE
        assert writer.ids is not None
        ids = writer.ids

        async def all_recorded() -> bool:
            return all([await ids.first(event.msg_id) is not None for event in events])

        await eventually(all_recorded, what="every id recorded")
        assert len({await _batch_id(js, event.msg_id) for event in events} - {None}) == 1
    finally:
        await spool.close()
