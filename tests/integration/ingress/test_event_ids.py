"""KV ``event-ids`` read with ingress's own direct get answers what ``KeyValue.get`` answers."""

from __future__ import annotations

import msgspec
import nats.errors
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from libs.bus import direct_get_last
from libs.contracts import FirstBody
from libs.topology import KV_EVENT_IDS, kv_stream, kv_subject
from services.ingress.identity import EventIds, id_key


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
