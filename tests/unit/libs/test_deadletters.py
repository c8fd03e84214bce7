"""Dead letters without a broker: reading a record from headers, the filters, and what a replay would send."""

from __future__ import annotations

import datetime as dt

import pytest

from libs.contracts import (
    CONFLICT_HEADERS,
    HEADER_MSG_ID,
    HEADER_ORIGINAL_MSG_ID,
    HEADER_REPLAY_OF,
    deadletter_headers,
)
from libs.deadletters import (
    DeadLetter,
    DeadLetterFilter,
    DeadLetterMessage,
    ReplayOutcome,
    ReplayPlan,
    ReplayReport,
    ReplayResult,
    parse_record,
    replay_plan,
)

T0 = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC)
SUBJECT = "commerce.shop.order.created"
COMMERCE_HEADERS = {
    HEADER_MSG_ID: "shop:evt-1",
    "Stockwire-Source": "shop",
    "Stockwire-Event-Type": "order.created",
    "Stockwire-Event-Id": "evt-1",
    "Stockwire-Received-At": "2026-12-01T09:59:59.000000+00:00",
}


def _dead_headers(original: dict[str, str] | None = None, **overrides: object) -> dict[str, str]:
    fields: dict = {
        "consumer": "inventory",
        "reason": "malformed: data.lines: expected a list",
        "subject": SUBJECT,
        "stream": "COMMERCE",
        "stream_seq": 41,
        "delivery_count": 1,
        **overrides,
    }
    return deadletter_headers(COMMERCE_HEADERS if original is None else original, **fields)


def _record(headers: dict[str, str] | None = None) -> DeadLetter:
    return parse_record(7, T0, f"deadletter.inventory.{SUBJECT}", _dead_headers() if headers is None else headers, 3)


def _message(
    headers: dict[str, str], seq: int = 7, subject: str = f"deadletter.inventory.{SUBJECT}"
) -> DeadLetterMessage:
    return DeadLetterMessage(parse_record(seq, T0, subject, headers, 2), headers, b"{}")


# -- records -----------------------------------------------------------------------------------------------


def test_a_record_reads_every_header_of_a_dead_letter() -> None:
    record = _record()
    assert record == DeadLetter(
        seq=7,
        time=T0,
        subject=f"deadletter.inventory.{SUBJECT}",
        consumer="inventory",
        reason="malformed: data.lines: expected a list",
        original_subject=SUBJECT,
        original_stream="COMMERCE",
        original_seq=41,
        delivery_count=1,
        original_msg_id="shop:evt-1",
        replay_of=None,
        event_type="order.created",
        source="shop",
        event_id="evt-1",
        body_size=3,
    )
    assert record.as_dict()["time"] == "2026-12-01T10:00:00.000000+00:00"


def test_a_dead_letter_of_an_earlier_release_is_keyed_by_source_and_event_id() -> None:
    headers = _dead_headers()
    del headers[HEADER_ORIGINAL_MSG_ID]
    assert _record(headers=headers).original_msg_id == "shop:evt-1"
    bare = {k: v for k, v in headers.items() if k not in ("Stockwire-Source",)}
    assert _record(headers=bare).original_msg_id is None


def test_missing_or_unreadable_headers_are_none_and_the_subject_fills_in() -> None:
    record = parse_record(3, T0.replace(tzinfo=None), "deadletter.worker.runner.b", {"Stockwire-Original-Seq": "x1"}, 0)
    assert (record.consumer, record.original_subject) == ("worker", "runner.b")
    assert record.original_seq is None and record.delivery_count is None and record.reason is None
    assert record.time == T0, "a naive time is UTC"
    odd = parse_record(4, T0, "elsewhere", {"Stockwire-Delivery-Count": "²"}, 0)
    assert (odd.consumer, odd.original_subject, odd.delivery_count) == (None, None, None)


def test_a_shown_dead_letter_carries_its_body_exactly_and_as_text_when_it_is_text() -> None:
    headers = _dead_headers()
    shown = DeadLetterMessage(_record(headers), headers, b'{"sku": "\xc3\x84"}').as_dict()
    assert shown["body"] == '{"sku": "Ä"}' and shown["body_base64"] == "eyJza3UiOiAiw4QifQ=="
    assert shown["headers"] == headers and shown["seq"] == 7
    binary = DeadLetterMessage(_record(headers), headers, b"\xff\x00").as_dict()
    assert binary["body"] is None and binary["body_base64"] == "/wA="


# -- filters -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "complaint"),
    [
        ({"consumer": "a.b"}, "consumer"),
        ({"consumer": ""}, "consumer"),
        ({"consumer": "*"}, "consumer"),
        ({"consumer": "x" * 257}, "consumer"),
        ({"subject": "commerce.>.x"}, "last token"),
        ({"subject": "commerce.sh*"}, "whole tokens"),
        ({"subject": "commerce..x"}, "empty token"),
        ({"subject": "commerce shop"}, "white space"),
        ({"subject": ""}, "non-empty"),
        ({"reason": ""}, "reason"),
        ({"reason": "x" * 1001}, "reason"),
        ({"since": T0, "until": T0}, "since must be before until"),
    ],
)
def test_a_filter_that_can_never_match_is_refused(fields: dict, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        DeadLetterFilter(**fields)


@pytest.mark.parametrize(
    ("fields", "scan_subject"),
    [
        ({}, "deadletter.*.>"),
        ({"consumer": "inventory"}, "deadletter.inventory.>"),
        ({"subject": "commerce.*.order.>"}, "deadletter.*.commerce.*.order.>"),
        ({"consumer": "inventory", "subject": "commerce"}, "deadletter.inventory.>"),
        ({"subject": "commerce.shop"}, "deadletter.*.commerce.>"),
    ],
)
def test_the_server_narrows_the_scan_to_the_dead_letters_a_filter_may_take(fields: dict, scan_subject: str) -> None:
    assert DeadLetterFilter(**fields).scan_subject() == scan_subject


@pytest.mark.parametrize(
    ("subject", "original", "taken"),
    [
        ("commerce.shop", "commerce.shop.order.created", True),
        ("commerce.shop", "commerce.shop", True),
        ("commerce.shop", "commerce.shopify.order.created", False),
        ("commerce.shop.order.created", "commerce.shop.order.created", True),
        ("commerce.*.order.created", "commerce.erp.order.created", True),
        ("commerce.*.order.created", "commerce.erp.order.created.v2", False),
        ("commerce.>", "commerce.erp", True),
        ("commerce.>", "commerce", False),
        ("inventory.>", "commerce.shop.order.created", False),
    ],
)
def test_the_subject_filter_is_a_nats_wildcard_or_a_prefix_of_whole_tokens(
    subject: str, original: str, taken: bool
) -> None:
    record = parse_record(1, T0, f"deadletter.c.{original}", {}, 0)
    assert DeadLetterFilter(subject=subject).matches(record) is taken


def test_consumer_reason_and_time_range_all_hold() -> None:
    record = _record()
    assert DeadLetterFilter(consumer="inventory", reason="DATA.LINES").matches(record)
    assert not DeadLetterFilter(consumer="channel-notifier").matches(record)
    assert not DeadLetterFilter(reason="parked").matches(record)
    assert DeadLetterFilter(since=T0).matches(record), "since is inclusive"
    assert not DeadLetterFilter(until=T0).matches(record), "until is exclusive"
    assert DeadLetterFilter(since=T0 - dt.timedelta(seconds=1), until=T0 + dt.timedelta(microseconds=1)).matches(record)
    assert DeadLetterFilter(since=T0.replace(tzinfo=None)).since == T0, "a naive bound is UTC"
    no_reason = parse_record(1, T0, "deadletter.c.a", {}, 0)
    assert not DeadLetterFilter(reason="x").matches(no_reason)


# -- what a replay sends -------------------------------------------------------------------------------------


def test_a_replay_carries_the_original_headers_the_original_id_and_the_dead_letter_it_comes_from() -> None:
    plan = replay_plan(_message(_dead_headers()))
    assert plan == ReplayPlan(
        subject=SUBJECT,
        stream="COMMERCE",
        headers={
            **{k: v for k, v in COMMERCE_HEADERS.items() if k != HEADER_MSG_ID},
            HEADER_ORIGINAL_MSG_ID: "shop:evt-1",
            HEADER_REPLAY_OF: "7",
            HEADER_MSG_ID: "replay:7:shop:evt-1",
        },
        msg_id="replay:7:shop:evt-1",
    )


def test_a_replay_of_an_earlier_release_dead_letter_derives_the_original_id() -> None:
    headers = _dead_headers()
    del headers[HEADER_ORIGINAL_MSG_ID]
    plan = replay_plan(_message(headers, seq=9))
    assert isinstance(plan, ReplayPlan)
    assert plan.headers[HEADER_ORIGINAL_MSG_ID] == "shop:evt-1"
    assert plan.msg_id == "replay:9:shop:evt-1"


def test_jetstream_headers_of_the_first_publication_are_not_replayed() -> None:
    headers = {**_dead_headers(), "Nats-Expected-Stream": "COMMERCE", "Nats-TTL": "60", "X-Custom": "kept"}
    plan = replay_plan(_message(headers))
    assert isinstance(plan, ReplayPlan)
    assert [k for k in plan.headers if k.startswith("Nats-")] == [HEADER_MSG_ID]
    assert plan.headers["X-Custom"] == "kept"


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda h: h.update({CONFLICT_HEADERS["event_msg_id"]: "shop:evt-1"}), "kept for audit"),
        (lambda h: h.pop("Stockwire-Original-Stream"), "original stream unknown"),
        (lambda h: h.update({"Stockwire-Original-Subject": "commerce.*.x"}), "not a subject"),
        (lambda h: h.update({"Stockwire-Original-Subject": "deadletter.inventory.x"}), "DEADLETTER's own"),
        (lambda h: h.update({"Stockwire-Original-Stream": "DEADLETTER"}), "DEADLETTER's own"),
        (
            lambda h: [h.pop(k) for k in (HEADER_ORIGINAL_MSG_ID, "Stockwire-Event-Id")],
            "no original message id",
        ),
    ],
)
def test_what_cannot_be_replayed_is_skipped_with_the_reason(change: object, why: str) -> None:
    headers = _dead_headers()
    change(headers)  # type: ignore[operator]
    plan = replay_plan(_message(headers))
    assert isinstance(plan, str) and why in plan


def test_no_original_subject_anywhere_is_skipped() -> None:
    headers = _dead_headers()
    del headers["Stockwire-Original-Subject"]
    plan = replay_plan(_message(headers, subject="elsewhere"))
    assert isinstance(plan, str) and "no original subject" in plan


def test_a_report_counts_every_outcome() -> None:
    report = ReplayReport(
        [
            ReplayResult(1, ReplayOutcome.REPLAYED, stream_seq=5),
            ReplayResult(2, ReplayOutcome.DUPLICATE, stream_seq=5),
            ReplayResult(3, ReplayOutcome.SKIPPED, "why"),
        ]
    )
    assert report.counts() == {"replayed": 1, "duplicate": 1, "would_replay": 0, "skipped": 1, "failed": 0}
    assert report.as_dict()["results"][2] == {
        "seq": 3,
        "outcome": "skipped",
        "detail": "why",
        "subject": None,
        "stream": None,
        "msg_id": None,
        "stream_seq": None,
    }
