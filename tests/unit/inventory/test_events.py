"""Reading COMMERCE messages into domain events (the wire adapter); the reservation rule; the state machine."""

from __future__ import annotations

import json

import pytest

from libs.profiles.canonical import (
    OrderCancelled,
    OrderLine,
    OrderPlaced,
    OrderShipped,
    PaymentSucceeded,
    ReturnLine,
    ReturnReceived,
    StockAdjusted,
    StockReceived,
    Unmapped,
)
from services.inventory.adapters.wire import Envelope, MalformedEvent, parse_event
from services.inventory.domain.events import summed_lines
from services.inventory.domain.model import Reservation, ReservationState, order_key
from services.inventory.domain.rules import Shortage, Step, decide_reservation, order_step

from .histories import envelope

S = ReservationState


def test_a_commerce_engine_webhook_is_read_with_type_and_id_from_the_headers() -> None:
    event = parse_event(envelope("order.created", "evt-1", {"order_id": "o1", "lines": [{"sku": "A", "qty": 2}]}))
    assert event.msg_id == "ce:evt-1"
    assert event.event_type == "order.created"
    assert event.payload == OrderPlaced(order_key="o1", lines=(OrderLine(sku="A", quantity=2),))
    assert event.skus == frozenset({"A"})


def test_a_standard_webhooks_body_is_read_the_same_way() -> None:
    body = json.dumps({"type": "payment.captured", "timestamp": "2026-11-28T10:00:00Z", "data": {"order_id": "o9"}})
    headers = {
        "Nats-Msg-Id": "sw:msg_1",
        "Stockwire-Event-Type": "payment.captured",
        "Stockwire-Event-Id": "msg_1",
        "Stockwire-Source": "sw",
    }
    event = parse_event(Envelope("commerce.sw.payment.captured", body.encode(), headers, 7))
    assert (event.msg_id, event.stream_seq, event.payload) == ("sw:msg_1", 7, PaymentSucceeded(order_key="o9"))
    assert event.source_ts == 1_795_860_000.0


def test_without_headers_the_subject_and_sequence_still_identify_the_event() -> None:
    body = json.dumps({"id": "x", "event_type": "order.cancelled", "data": {"order_id": "o1"}}).encode()
    event = parse_event(Envelope("commerce.ce.order.cancelled", body, {}, 12))
    assert event.payload == OrderCancelled(order_key="o1")
    assert event.msg_id == "commerce.ce.order.cancelled#12"


@pytest.mark.parametrize(
    ("event_type", "data", "payload"),
    [
        ("inventory.received", {"sku": "A", "qty": 3}, StockReceived(sku="A", quantity=3)),
        ("inventory.adjusted", {"sku": "A", "delta": -2}, StockAdjusted(sku="A", delta=-2, counted_at=1_790_000_000.0)),
        (
            "inventory.adjusted",
            {"sku": "A", "on_hand": 4, "counted_at": 100},
            StockAdjusted(sku="A", on_hand=4, counted_at=100.0),
        ),
        ("shipment.shipped", {"order_id": "o1"}, OrderShipped(order_key="o1")),
        ("order.fulfilled", {"order_id": "o1"}, OrderShipped(order_key="o1")),
        (
            "return.received",
            {
                "order_id": "o1",
                "lines": [{"sku": "A", "qty": 1}, {"sku": "B", "qty": 1, "restock": False}],
                "restock": True,
            },
            ReturnReceived(
                order_key="o1",
                lines=(ReturnLine(sku="A", quantity=1), ReturnLine(sku="B", quantity=1, restock=False)),
                restock=True,
            ),
        ),
        ("customer.created", {"anything": True}, Unmapped(event_type="customer.created")),
    ],
)
def test_each_event_type_reads_into_its_record(event_type: str, data: dict, payload: object) -> None:
    assert parse_event(envelope(event_type, "e", data)).payload == payload


@pytest.mark.parametrize(
    ("event_type", "data", "complaint"),
    [
        ("inventory.received", {"sku": "A", "qty": 0}, "malformed: data.qty: Expected `int` >= 1"),
        ("inventory.received", {"sku": "A", "qty": True}, "malformed: data.qty: Expected `int`, got `bool`"),
        ("inventory.received", {"qty": 1}, "malformed: data.sku: required"),
        ("inventory.received", {"sku": "A\nB", "qty": 1}, "printable"),
        ("inventory.adjusted", {"sku": "A"}, "either 'delta' or 'on_hand'"),
        ("inventory.adjusted", {"sku": "A", "delta": 1, "on_hand": 2}, "exactly one of them"),
        ("inventory.adjusted", {"sku": "A", "on_hand": 2, "counted_at": "yesterday"}, "counted_at"),
        ("order.created", {"order_id": "o1", "lines": []}, "malformed: data.lines: Expected `array` of length >= 1"),
        ("order.created", {"order_id": "o1", "lines": ["A"]}, r"malformed: data\.lines\[0\]\.sku"),
        ("order.created", {"lines": [{"sku": "A", "qty": 1}]}, "malformed: data.order_id: required"),
        (
            "return.received",
            {"order_id": "o1", "lines": [{"sku": "A", "qty": 1}], "restock": "yes"},
            "malformed: data.restock: Expected `bool`",
        ),
    ],
)
def test_malformed_events_say_what_is_wrong(event_type: str, data: dict, complaint: str) -> None:
    with pytest.raises(MalformedEvent, match=complaint):
        parse_event(envelope(event_type, "e", data))


@pytest.mark.parametrize(
    ("body", "complaint"),
    [(b"{nope", "not valid JSON"), (b"[1]", "JSON object"), (b'{"data": 3}', "malformed: data.sku: required")],
)
def test_bodies_that_are_not_webhooks_are_malformed(body: bytes, complaint: str) -> None:
    headers = {"Nats-Msg-Id": "ce:x", "Stockwire-Event-Type": "inventory.received"}
    with pytest.raises(MalformedEvent, match=complaint):
        parse_event(Envelope("commerce.ce.inventory.received", body, headers))


def test_lines_of_one_sku_are_summed() -> None:
    event = parse_event(
        envelope(
            "order.created",
            "e",
            {"order_id": "o", "lines": [{"sku": "B", "qty": 1}, {"sku": "A", "qty": 2}, {"sku": "B", "qty": 3}]},
        )
    )
    assert summed_lines(event.payload.lines) == {"A": 2, "B": 4}


def test_reserve_every_line_or_name_each_short_one() -> None:
    assert decide_reservation({"A": 2, "B": 1}, {"A": 2, "B": 5}) == []
    assert decide_reservation({"A": 3, "B": 6, "C": 1}, {"A": 2, "B": 5}) == [
        Shortage("A", 3, 2),
        Shortage("B", 6, 5),
        Shortage("C", 1, 0),
    ]


@pytest.mark.parametrize(
    ("state", "event", "step"),
    [
        (None, OrderPlaced(order_key="o", lines=()), Step.APPLY),
        (S.RESERVED, OrderPlaced(order_key="o", lines=()), Step.IGNORE),
        (None, PaymentSucceeded(order_key="o"), Step.PARK),
        (None, OrderCancelled(order_key="o"), Step.PARK),
        (S.RESERVED, PaymentSucceeded(order_key="o"), Step.APPLY),
        (S.EXPIRED, PaymentSucceeded(order_key="o"), Step.APPLY),
        (S.COMMITTED, PaymentSucceeded(order_key="o"), Step.IGNORE),
        (S.RESERVED, OrderShipped(order_key="o"), Step.PARK),
        (S.COMMITTED, OrderShipped(order_key="o"), Step.APPLY),
        (S.COMMITTED, OrderCancelled(order_key="o"), Step.APPLY),
        (S.SHIPPED, OrderCancelled(order_key="o"), Step.IGNORE),
        (S.COMMITTED, ReturnReceived(order_key="o", lines=()), Step.PARK),
        (S.SHIPPED, ReturnReceived(order_key="o", lines=()), Step.APPLY),
        (S.CANCELLED, PaymentSucceeded(order_key="o"), Step.IGNORE),
        (S.REJECTED, OrderShipped(order_key="o"), Step.IGNORE),
    ],
)
def test_the_order_state_machine(state: ReservationState | None, event: object, step: Step) -> None:
    order = None if state is None else Reservation(order_key("o"), state, {}, 0.0, 0.0)
    assert order_step(order, event)[0] is step  # type: ignore[arg-type]
