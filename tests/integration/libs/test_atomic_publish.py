"""``libs.bus.publish_atomic`` against a real nats-server: all of a batch stored, or none of it."""

from __future__ import annotations

import uuid

import nats
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js import api as js_api

from libs.bus import (
    ATOMIC_DISABLED,
    ATOMIC_DUPLICATE,
    MAX_ATOMIC_BATCH,
    AtomicBatchRefused,
    publish_atomic,
    stream_allows_atomic,
)
from libs.contracts import HEADER_MSG_ID
from tests.support import NatsCluster


@pytest.fixture
async def stream(js: JetStreamContext) -> str:
    name = f"ATOMIC_{uuid.uuid4().hex[:8]}"
    await js.add_stream(js_api.StreamConfig(name=name, subjects=[f"{name.lower()}.>"], allow_atomic=True))
    return name


def _messages(stream: str, ids: list[str]) -> list[tuple[str, bytes, dict[str, str]]]:
    return [(f"{stream.lower()}.{i}", i.encode(), {HEADER_MSG_ID: i}) for i in ids]


async def _stored(js: JetStreamContext, stream: str) -> int:
    return (await js.stream_info(stream)).state.messages


async def test_a_batch_is_stored_whole_and_its_ack_names_every_sequence(
    nc: Client, js: JetStreamContext, stream: str
) -> None:
    await js.publish(f"{stream.lower()}.before", b"")
    ack = await (await publish_atomic(nc, _messages(stream, ["a", "b", "c"]), timeout_s=5))
    assert (ack.stream, ack.count, list(ack.seqs())) == (stream, 3, [2, 3, 4])
    assert [(await js.get_msg(stream, seq)).data for seq in ack.seqs()] == [b"a", b"b", b"c"]


async def test_a_batch_repeating_a_stored_id_is_refused_and_nothing_of_it_is_stored(
    nc: Client, js: JetStreamContext, stream: str
) -> None:
    await (await publish_atomic(nc, _messages(stream, ["a"]), timeout_s=5))
    with pytest.raises(AtomicBatchRefused) as refused:
        await (await publish_atomic(nc, _messages(stream, ["b", "a", "c"]), timeout_s=5))
    assert refused.value.err_code == ATOMIC_DUPLICATE
    assert await _stored(js, stream) == 1


async def test_a_stream_without_allow_atomic_refuses_the_batch(nc: Client, js: JetStreamContext) -> None:
    name = f"PLAIN_{uuid.uuid4().hex[:8]}"
    await js.add_stream(js_api.StreamConfig(name=name, subjects=[f"{name.lower()}.>"]))
    with pytest.raises(AtomicBatchRefused) as refused:
        await (await publish_atomic(nc, _messages(name, ["a", "b"]), timeout_s=5))
    assert refused.value.err_code == ATOMIC_DISABLED
    assert await _stored(js, name) == 0


@pytest.mark.parametrize("size", [0, MAX_ATOMIC_BATCH + 1])
async def test_an_empty_or_oversized_batch_is_not_sent(
    nc: Client, js: JetStreamContext, stream: str, size: int
) -> None:
    with pytest.raises(ValueError, match="atomic batch holds"):
        await publish_atomic(nc, _messages(stream, [str(n) for n in range(size)]), timeout_s=5)
    assert await _stored(js, stream) == 0


async def test_what_is_published_right_after_a_batch_is_stored_after_it(
    nc: Client, js: JetStreamContext, stream: str
) -> None:
    for round_ in range(20):
        committed = await publish_atomic(nc, _messages(stream, [f"b{round_}-0", f"b{round_}-1"]), timeout_s=5)
        after = await js.publish_async(f"{stream.lower()}.after", b"", headers={HEADER_MSG_ID: f"after-{round_}"})
        batch = await committed
        assert (await after).seq > batch.last_seq, f"round {round_}: the later message overtook the batch"


async def test_a_replicated_stream_is_written_one_by_one(nats_cluster: NatsCluster) -> None:
    nc = await nats.connect(nats_cluster.url.split(","))
    try:
        js = nc.jetstream(timeout=10)
        name = f"R3_{uuid.uuid4().hex[:8]}"
        await js.add_stream(
            js_api.StreamConfig(name=name, subjects=[f"{name.lower()}.>"], num_replicas=3, allow_atomic=True)
        )
        assert (await js.stream_info(name)).config.allow_atomic
        assert await stream_allows_atomic(js, name, f"stream {name}") is False
    finally:
        await nc.close()
