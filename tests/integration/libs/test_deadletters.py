"""Dead letters against a real nats-server: listing with every filter, showing one, replaying to the original
subject with the original headers, once per dead letter."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js import api as js_api

from libs.consumer import Decision, PullConsumer
from libs.contracts import (
    CONFLICT_HEADERS,
    DIRECT_GET_HEADERS,
    HEADER_MSG_ID,
    HEADER_ORIGINAL_MSG_ID,
)
from libs.deadletters import (
    DeadLetterFilter,
    DeadLetterNotFound,
    DeadLetterStreamMissing,
    ReplayOutcome,
    list_deadletters,
    replay_deadletters,
    replay_matching,
    show_deadletter,
)
from libs.topology import COMMERCE, DEADLETTER, INVENTORY
from tests.support import commerce_headers, dead_letter, eventually, stored_message


async def _messages(js: JetStreamContext, stream: str) -> int:
    return (await js.stream_info(stream)).state.messages


# -- list and show -------------------------------------------------------------------------------------------


async def test_list_reads_every_field_and_filters_by_consumer_subject_and_reason(js: JetStreamContext) -> None:
    first = await dead_letter(js, event_id="e1", stream_seq=11)
    await dead_letter(js, event_id="e2", event_type="payment.successful", reason="parked longer than 3600s")
    await dead_letter(js, event_id="e3", consumer="mailer", reason="SMTP refused")

    page = await list_deadletters(js)
    assert [r.seq for r in page.records] == [1, 2, 3]
    assert (page.scanned, page.next_seq, page.last_seq) == (3, None, 3)
    record = page.records[0]
    assert record.seq == first
    assert record.as_dict() | {"time": None} == {
        "seq": 1,
        "time": None,
        "subject": "deadletter.inventory.commerce.shop.order.created",
        "consumer": "inventory",
        "reason": "malformed: data.lines: expected a list",
        "original_subject": "commerce.shop.order.created",
        "original_stream": "COMMERCE",
        "original_seq": 11,
        "delivery_count": 8,
        "original_msg_id": "shop:e1",
        "replay_of": None,
        "event_type": "order.created",
        "source": "shop",
        "event_id": "e1",
        "body_size": 11,
    }

    async def seqs(**fields: object) -> list[int]:
        return [r.seq for r in (await list_deadletters(js, DeadLetterFilter(**fields))).records]  # type: ignore[arg-type]

    assert await seqs(consumer="inventory") == [1, 2]
    assert await seqs(consumer="mailer") == [3]
    assert await seqs(subject="commerce.*.payment.>") == [2]
    assert await seqs(subject="commerce.shop.order") == [1, 3]
    assert await seqs(subject="commerce.shop.order.created.v2") == []
    assert await seqs(reason="PARKED") == [2]
    assert await seqs(consumer="inventory", reason="smtp") == []


async def test_list_filters_by_time_and_pages_by_sequence_within_bounds(js: JetStreamContext) -> None:
    for i in range(5):
        await dead_letter(js, event_id=f"e{i}")
    records = (await list_deadletters(js)).records
    times = [r.time for r in records]
    assert times == sorted(times) and len(set(times)) == 5, times

    since = await list_deadletters(js, DeadLetterFilter(since=times[2]))
    assert [r.seq for r in since.records] == [3, 4, 5]
    window = await list_deadletters(js, DeadLetterFilter(since=times[1], until=times[3]))
    assert [r.seq for r in window.records] == [2, 3]

    page = await list_deadletters(js, limit=2)
    assert [r.seq for r in page.records] == [1, 2] and page.next_seq == 3
    page = await list_deadletters(js, start_seq=page.next_seq, limit=2)
    assert [r.seq for r in page.records] == [3, 4] and page.next_seq == 5
    page = await list_deadletters(js, start_seq=5, limit=2)
    assert [r.seq for r in page.records] == [5] and page.next_seq is None

    bounded = await list_deadletters(js, DeadLetterFilter(reason="nothing matches"), max_scan=3)
    assert (bounded.records, bounded.scanned, bounded.next_seq) == ([], 3, 4)
    for bad in ({"limit": 0}, {"limit": 1001}, {"max_scan": 100_001}, {"start_seq": 0}):
        with pytest.raises(ValueError):
            await list_deadletters(js, **bad)  # type: ignore[arg-type]


async def test_the_scan_reads_only_the_subjects_a_filter_may_take(js: JetStreamContext) -> None:
    for i in range(4):
        await dead_letter(js, event_id=f"m{i}", consumer="mailer")
    await dead_letter(js, event_id="i1")
    page = await list_deadletters(js, DeadLetterFilter(consumer="inventory"))
    assert [r.seq for r in page.records] == [5]
    assert page.scanned == 1, "the server skipped the mailer's dead letters"


async def test_show_returns_the_record_every_stored_header_and_the_raw_body(js: JetStreamContext) -> None:
    reason = "malformed: sku 'Ä' unknown"
    body = b'{"id": "e1", "data": {"sku": "\xc3\x84"}}\xff'
    seq = await dead_letter(js, event_id="e1", reason=reason, body=body, stream_seq=7)
    shown = await show_deadletter(js, seq)
    assert shown.body == body
    assert shown.record.reason == reason and shown.record.body_size == len(body)
    _subject, stored, _body = await stored_message(js, DEADLETTER, seq)
    assert shown.headers == stored
    assert shown.headers[HEADER_MSG_ID] == "deadletter:inventory:COMMERCE:7"
    assert not set(DIRECT_GET_HEADERS) & shown.headers.keys()

    with pytest.raises(DeadLetterNotFound):
        await show_deadletter(js, seq + 1)
    await js.delete_msg(DEADLETTER, seq)
    with pytest.raises(DeadLetterNotFound):
        await show_deadletter(js, seq)


async def test_a_missing_deadletter_stream_is_unavailable_not_empty(js: JetStreamContext) -> None:
    await js.delete_stream(DEADLETTER)
    with pytest.raises(DeadLetterStreamMissing, match="does not exist"):
        await list_deadletters(js)
    with pytest.raises(DeadLetterStreamMissing, match="does not exist"):
        await show_deadletter(js, 1)


# -- replay --------------------------------------------------------------------------------------------------


async def test_replay_publishes_to_the_original_subject_with_the_original_headers(
    js: JetStreamContext, nc: Client
) -> None:
    body = b'{"id": "e1", "event_type": "order.created", "data": {}}'
    seq = await dead_letter(js, event_id="e1", body=body)
    report = await replay_deadletters(js, [seq], max_payload=nc.max_payload)
    (result,) = report.results
    assert result.outcome is ReplayOutcome.REPLAYED, result
    assert (result.subject, result.stream, result.msg_id) == (
        "commerce.shop.order.created",
        COMMERCE,
        "replay:1:shop:e1",
    )
    subject, headers, stored_body = await stored_message(js, COMMERCE, result.stream_seq or 0)
    assert subject == "commerce.shop.order.created" and stored_body == body
    assert headers == {
        "Stockwire-Source": "shop",
        "Stockwire-Event-Type": "order.created",
        "Stockwire-Event-Id": "e1",
        "Stockwire-Received-At": "2026-12-01T10:00:00.000000+00:00",
        "Stockwire-Original-Msg-Id": "shop:e1",
        "Stockwire-Replay-Of": "1",
        "Nats-Msg-Id": "replay:1:shop:e1",
    }
    assert report.counts()["replayed"] == 1 and not report.stopped


async def test_replaying_the_same_dead_letter_twice_stores_it_once(js: JetStreamContext, nc: Client) -> None:
    seq = await dead_letter(js, event_id="e1")
    first = (await replay_deadletters(js, [seq], max_payload=nc.max_payload)).results[0]
    again = (await replay_deadletters(js, [seq, seq], max_payload=nc.max_payload)).results
    assert first.outcome is ReplayOutcome.REPLAYED
    assert [(r.outcome, r.stream_seq) for r in again] == [(ReplayOutcome.DUPLICATE, first.stream_seq)]
    assert await _messages(js, COMMERCE) == 1


async def test_a_dead_letter_of_an_earlier_release_is_replayed_under_source_and_event_id(
    js: JetStreamContext, nc: Client
) -> None:
    seq = await dead_letter(js, event_id="old-1", earlier_release=True)
    assert HEADER_ORIGINAL_MSG_ID not in (await show_deadletter(js, seq)).headers
    (result,) = (await replay_deadletters(js, [seq], max_payload=nc.max_payload)).results
    assert result.outcome is ReplayOutcome.REPLAYED and result.msg_id == "replay:1:shop:old-1"
    _subject, headers, _body = await stored_message(js, COMMERCE, result.stream_seq or 0)
    assert headers[HEADER_ORIGINAL_MSG_ID] == "shop:old-1"
    assert headers["Stockwire-Replay-Of"] == "1" and headers[HEADER_MSG_ID] == "replay:1:shop:old-1"


async def test_what_cannot_be_replayed_is_skipped_with_why_and_nothing_is_published(
    js: JetStreamContext, nc: Client
) -> None:
    gone = await dead_letter(js, event_id="e1", stream="GONE")
    moved = await dead_letter(js, event_id="e2", stream=INVENTORY)
    evidence = await dead_letter(
        js,
        event_id="e3",
        consumer="ingress",
        original={**commerce_headers("e3"), CONFLICT_HEADERS["event_msg_id"]: "x"},
    )
    bare = await dead_letter(js, event_id="e4", earlier_release=True, original={"Stockwire-Event-Type": "x"})
    big = await dead_letter(js, event_id="e5", body=b"x" * 600)
    report = await replay_deadletters(js, [gone, moved, evidence, bare, 99], max_payload=nc.max_payload)
    details = {r.seq: (r.outcome, r.detail) for r in report.results}
    assert all(outcome is ReplayOutcome.SKIPPED for outcome, _ in details.values()), details
    assert "original stream GONE does not exist" in details[gone][1]
    assert f"stream {INVENTORY} no longer takes commerce.shop.order.created" in details[moved][1]
    assert "kept for audit" in details[evidence][1]
    assert "no original message id" in details[bare][1]
    assert "no dead letter at DEADLETTER sequence 99" in details[99][1]
    (oversize,) = (await replay_deadletters(js, [big], max_payload=512)).results
    assert oversize.outcome is ReplayOutcome.SKIPPED and "over the server's max_payload of 512" in oversize.detail
    assert await _messages(js, COMMERCE) == 0


async def test_a_filtered_replay_takes_what_list_takes_and_a_dry_run_publishes_nothing(
    js: JetStreamContext, nc: Client
) -> None:
    for i in range(3):
        await dead_letter(js, event_id=f"p{i}", event_type="payment.successful", reason="parked too long")
    await dead_letter(js, event_id="o1", reason="malformed")
    parked = DeadLetterFilter(reason="parked")

    dry = await replay_matching(js, parked, max_payload=nc.max_payload, dry_run=True)
    assert [(r.seq, r.outcome) for r in dry.results] == [(s, ReplayOutcome.WOULD_REPLAY) for s in (1, 2, 3)]
    assert dry.results[0].msg_id == "replay:1:shop:p0"
    assert await _messages(js, COMMERCE) == 0

    first = await replay_matching(js, parked, max_payload=nc.max_payload, limit=2)
    assert [(r.seq, r.outcome) for r in first.results] == [(1, ReplayOutcome.REPLAYED), (2, ReplayOutcome.REPLAYED)]
    assert first.next_seq == 3
    rest = await replay_matching(js, parked, max_payload=nc.max_payload, start_seq=first.next_seq or 0)
    assert [(r.seq, r.outcome) for r in rest.results] == [(3, ReplayOutcome.REPLAYED)] and rest.next_seq is None
    assert await _messages(js, COMMERCE) == 3


async def test_a_dead_letter_written_by_the_consumer_runner_goes_back_where_it_came_from(
    js: JetStreamContext, nc: Client
) -> None:
    await js.add_stream(js_api.StreamConfig(name="RUNNER_TEST", subjects=["runner.>"], duplicate_window=120))
    await js.add_consumer(
        "RUNNER_TEST", js_api.ConsumerConfig(durable_name="worker", ack_policy=js_api.AckPolicy.EXPLICIT)
    )
    seen: list[Msg] = []

    async def handler(batch: Sequence[Msg]) -> list[Decision]:
        seen.extend(batch)
        return [
            Decision.ack() if m.headers and "Stockwire-Replay-Of" in m.headers else Decision.dead_letter("no")
            for m in batch
        ]

    consumer = PullConsumer(js, "RUNNER_TEST", "worker", handler, fetch_timeout_s=0.2)
    task = asyncio.create_task(consumer.run())
    try:
        await js.publish("runner.job", b"payload", headers={HEADER_MSG_ID: "job-1", "X-Trace": "t1"})
        await eventually(lambda: _messages(js, DEADLETTER), what="dead-lettered by the runner")
        (record,) = (await list_deadletters(js, DeadLetterFilter(consumer="worker"))).records
        assert (record.original_stream, record.original_seq, record.original_msg_id) == ("RUNNER_TEST", 1, "job-1")

        (result,) = (await replay_deadletters(js, [record.seq], max_payload=nc.max_payload)).results
        assert result.outcome is ReplayOutcome.REPLAYED and result.stream == "RUNNER_TEST"

        async def replay_seen() -> bool:
            return len(seen) == 2

        await eventually(replay_seen, what="the replay delivered to the consumer")
        replayed = seen[1]
        assert replayed.subject == "runner.job" and replayed.data == b"payload"
        assert replayed.headers is not None
        assert {k: replayed.headers[k] for k in ("X-Trace", "Stockwire-Replay-Of", HEADER_ORIGINAL_MSG_ID)} == {
            "X-Trace": "t1",
            "Stockwire-Replay-Of": str(record.seq),
            HEADER_ORIGINAL_MSG_ID: "job-1",
        }
        assert await _messages(js, DEADLETTER) == 1, "the replay was acknowledged, not dead-lettered again"
    finally:
        consumer.stop()
        await task
