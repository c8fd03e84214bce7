"""The parse boundary: any field that cannot be read makes that event ``malformed: <field>``, nothing else.

An event that parses can always be applied: a value that could never apply (a time no calendar holds,
a quantity beyond the ledger's bounds) is refused here, so it is dead-lettered at once, never retried.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libs.profiles import load_profile
from libs.profiles.canonical import MAX_TIME as MAX_EPOCH
from services.inventory.adapters.wire import Envelope, MalformedEvent, parse_event
from services.inventory.domain.workspace import Outcome

from .histories import BASE_TS, MemoryInventory

HUGE = 10**400
# json.dumps refuses integers over 4,300 digits; such bodies are written by hand (msgspec reads up to that).
DIGITS_5000 = "9" * 5000
DIGITS_4000 = "9" * 4000


def _body(event_type: str, data: Any, **document: Any) -> bytes:
    return json.dumps({"id": "e", "event_type": event_type, "created_at": BASE_TS, "data": data, **document}).encode()


def _standard_body(event_type: str, data: Any, timestamp: Any) -> bytes:
    return json.dumps({"type": event_type, "timestamp": timestamp, "data": data}).encode()


def _envelope(event_type: str, body: bytes) -> Envelope:
    headers = {"Nats-Msg-Id": "ce:e", "Stockwire-Event-Type": event_type, "Stockwire-Source": "ce"}
    return Envelope(f"commerce.ce.{event_type}", body, headers, 1)


RECEIPT = {"sku": "A", "qty": 1}
ORDER = {"order_id": "o1", "lines": [{"sku": "A", "qty": 1}]}
RETURN = {"order_id": "o1", "lines": [{"sku": "A", "qty": 1}], "restock": True}


def _count(**extra: Any) -> dict[str, Any]:
    return {"sku": "A", "on_hand": 3, **extra}


def _line(**line: Any) -> dict[str, Any]:
    return {"order_id": "o1", "lines": [{"sku": "A", "qty": 1, **line}]}


_TIMES: list[Any] = [
    HUGE,
    -HUGE,
    1e20,
    -1.0,
    MAX_EPOCH + 1,
    1.7976931348623157e308,
    "inf",
    "nan",
    "NaN",
    "Infinity",
    "yesterday",
    "²",
    "²⁰²⁶-11-28",
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-01:00",
    "2026-11-28T10:00:00Z" + " " * 4500,
    "1" * 5000,
    "",
    True,
    [],
    {"t": 1},
]
_QUANTITIES: list[Any] = [HUGE, -HUGE, 10**30, 1_000_000_001, 1.0, 1.5, 1e20, "3", "²", True, None, [], {"q": 1}]

# (event type, body, the field named)
POISON: list[tuple[str, bytes, str]] = [
    *[("order.created", _body("order.created", ORDER, created_at=t), "created_at") for t in _TIMES],
    *[("payment.captured", _standard_body("payment.captured", {"order_id": "o1"}, t), "timestamp") for t in _TIMES],
    *[("inventory.adjusted", _body("inventory.adjusted", _count(counted_at=t)), "counted_at") for t in _TIMES],
    *[("inventory.received", _body("inventory.received", {"sku": "A", "qty": q}), "qty") for q in _QUANTITIES],
    *[("order.created", _body("order.created", _line(qty=q)), "lines[0].qty") for q in _QUANTITIES],
    *[
        ("return.received", _body("return.received", {**RETURN, "lines": [{"sku": "A", "qty": q}]}), "lines[0].qty")
        for q in _QUANTITIES
    ],
    ("inventory.received", _body("inventory.received", {"sku": "A", "qty": 0}), "qty"),
    ("inventory.received", _body("inventory.received", {"sku": "A", "qty": -1}), "qty"),
    ("order.created", _body("order.created", _line(qty=0)), "lines[0].qty"),
    ("inventory.adjusted", _body("inventory.adjusted", {"sku": "A", "delta": HUGE}), "delta"),
    ("inventory.adjusted", _body("inventory.adjusted", {"sku": "A", "delta": -1_000_000_001}), "delta"),
    ("inventory.adjusted", _body("inventory.adjusted", {"sku": "A", "delta": 2.5}), "delta"),
    ("inventory.adjusted", _body("inventory.adjusted", {"sku": "A", "on_hand": -1}), "on_hand"),
    ("inventory.adjusted", _body("inventory.adjusted", {"sku": "A", "on_hand": HUGE}), "on_hand"),
    ("inventory.adjusted", _body("inventory.adjusted", {"sku": "A", "on_hand": "²"}), "on_hand"),
    # A rule over two fields is named by the event it is a rule of.
    ("inventory.adjusted", _body("inventory.adjusted", {"sku": "A"}), "stock_adjusted"),
    ("inventory.received", _body("inventory.received", {"sku": "", "qty": 1}), "sku"),
    ("inventory.received", _body("inventory.received", {"sku": "x" * 201, "qty": 1}), "sku"),
    ("inventory.received", _body("inventory.received", {"sku": "x" * 100_000, "qty": 1}), "sku"),
    ("inventory.received", _body("inventory.received", {"sku": "a\nb", "qty": 1}), "sku"),
    # A lone surrogate: msgspec refuses the JSON itself.
    ("inventory.received", _body("inventory.received", {"sku": "\ud800", "qty": 1}), "body"),
    ("inventory.received", _body("inventory.received", {"sku": 7, "qty": 1}), "sku"),
    ("inventory.received", _body("inventory.received", {"sku": {"nested": ["junk"]}, "qty": 1}), "sku"),
    ("order.created", _body("order.created", _line(sku=None)), "lines[0].sku"),
    ("order.created", _body("order.created", {**ORDER, "order_id": HUGE}), "order_id"),
    ("order.created", _body("order.created", {**ORDER, "order_id": 1.5}), "order_id"),
    ("order.created", _body("order.created", {**ORDER, "order_id": True}), "order_id"),
    ("order.created", _body("order.created", {**ORDER, "order_id": ""}), "order_id"),
    ("order.created", _body("order.created", {**ORDER, "order_id": "o" * 201}), "order_id"),
    ("order.created", _body("order.created", {**ORDER, "order_id": [[["o1"]]]}), "order_id"),
    ("order.created", _body("order.created", {**ORDER, "reservation_id": {"r": 1}}), "reservation_id"),
    ("order.created", _body("order.created", {**ORDER, "reservation_id": HUGE}), "reservation_id"),
    ("order.created", _body("order.created", {"order_id": "o1"}), "lines"),
    ("order.created", _body("order.created", {"order_id": "o1", "lines": []}), "lines"),
    ("order.created", _body("order.created", {"order_id": "o1", "lines": {"sku": "A"}}), "lines"),
    ("order.created", _body("order.created", {"order_id": "o1", "lines": [{"sku": "A", "qty": 1}] * 501}), "lines"),
    ("order.created", _body("order.created", {"order_id": "o1", "lines": [ORDER["lines"][0], [[["A"]]]]}), "lines[1]"),
    ("return.received", _body("return.received", {**RETURN, "restock": "yes"}), "restock"),
    (
        "return.received",
        _body("return.received", {**RETURN, "lines": [{"sku": "A", "qty": 1, "restock": 1}]}),
        "lines[0].restock",
    ),
    ("payment.failed", _body("payment.failed", {"order_id": None}), "order_id"),
    ("payment.failed", _body("payment.failed", "o1"), "data"),
    ("payment.failed", _body("payment.failed", None), "data"),
    ("payment.failed", _body("payment.failed", [{"order_id": "o1"}]), "data"),
    ("payment.failed", b"{nope", "body"),
    ("payment.failed", b"[1]", "body"),
    ("payment.failed", b"", "body"),
    ("payment.failed", b"\xff\xfe", "body"),
    ("payment.failed", b'{"data": {"order_id": "o1"}, "created_at": NaN}', "body"),
    ("payment.failed", b'{"data": {"order_id": "o1"}, "created_at": 1e400}', "body"),
    ("payment.failed", b'{"data": {"order_id": "o1"}, "created_at": ' + DIGITS_5000.encode() + b"}", "body"),
    ("order.created", b'{"data": {"order_id": "o1", "lines": ' + b"[" * 5000 + b"]" * 5000 + b"}}", "body"),
    ("payment.failed", b'{"data": {"order_id": "o1"}, "created_at": ' + DIGITS_4000.encode() + b"}", "created_at"),
    ("inventory.received", b'{"data": {"sku": "A", "qty": ' + DIGITS_4000.encode() + b"}}", "qty"),
    ("inventory.adjusted", b'{"data": {"sku": "A", "delta": -' + DIGITS_4000.encode() + b"}}", "delta"),
    ("payment.failed", b'{"data": {"order_id": ' + DIGITS_4000.encode() + b"}}", "order_id"),
]


@pytest.mark.parametrize(
    ("event_type", "body", "field"), POISON, ids=[f"{t}:{f}:{i}" for i, (t, _, f) in enumerate(POISON)]
)
def test_a_poison_field_makes_the_event_malformed_naming_the_field(event_type: str, body: bytes, field: str) -> None:
    # Fields are named where they are on the wire: ``data.…`` for the payload's.
    field = field if field in ("body", "created_at", "timestamp", "data", "stock_adjusted") else f"data.{field}"
    with pytest.raises(MalformedEvent) as caught:
        parse_event(_envelope(event_type, body))
    message = str(caught.value)
    # A field that is not an object or a list is named down to the part that is missing.
    assert message.startswith(f"malformed: {field}"), message
    assert caught.value.field.startswith(field)
    assert len(message) < 300, "the reason goes into a header and a log line: never the whole value"


def test_a_poison_event_is_dead_lettered_at_once_with_its_field_in_the_reason() -> None:
    memory = MemoryInventory()
    body = _body("inventory.adjusted", _count(counted_at=1e20))
    result = memory.deliver(_envelope("inventory.adjusted", body))
    assert result.outcome is Outcome.DEAD_LETTERED
    assert result.detail.startswith("malformed: data.counted_at: ")


@pytest.mark.parametrize(
    ("stamp", "epoch"),
    [
        ("2026-11-28T10:00:00Z", 1_795_860_000.0),
        ("2026-11-28T11:00:00+01:00", 1_795_860_000.0),
        ("2026-11-28", 1_795_824_000.0),
        (1_795_860_000, 1_795_860_000.0),
        (1_795_860_000.25, 1_795_860_000.25),
        (0, 0.0),
        (MAX_EPOCH, MAX_EPOCH),
        ("9999-12-31T23:59:59Z", MAX_EPOCH),
        (None, 0.0),
    ],
)
def test_times_in_range_are_read(stamp: object, epoch: float) -> None:
    event = parse_event(_envelope("payment.failed", _body("payment.failed", {"order_id": "o1"}, created_at=stamp)))
    assert event.source_ts == epoch
    count = parse_event(_envelope("inventory.adjusted", _body("inventory.adjusted", _count(counted_at=stamp))))
    # A count without its own time is taken at the event's time.
    assert count.payload.counted_at == (BASE_TS if stamp is None else epoch)  # type: ignore[union-attr]


# --- any value in any field: malformed, or applicable -----------------------------------------------
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**600), max_value=10**600),
    st.sampled_from([0, 1, -1, 10**9, 10**9 + 1, 2**63, -(2**63), 10**20, BASE_TS, MAX_EPOCH + 1]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.sampled_from(["", "²", "١٢", "1e20", "inf", "nan", "2026-11-28T10:00:00Z", "A", "o1", "x" * 300]),
)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
_FIELDS = ("sku", "qty", "delta", "on_hand", "counted_at", "order_id", "reservation_id", "restock", "lines")
_line_values = st.fixed_dictionaries(
    {}, optional={"sku": _json | st.sampled_from(["A", "B"]), "qty": _json, "restock": _json}
)
_data = st.fixed_dictionaries(
    {},
    optional={name: _json for name in _FIELDS}
    | {"lines": st.lists(_line_values | _json, max_size=4), "order_id": _json | st.just("o1")},
)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(load_profile("stockwire").event_types), _data, _json)
def test_any_value_is_either_malformed_or_applies_without_error(event_type: str, data: dict, stamp: object) -> None:
    body = json.dumps({"id": "e", "event_type": event_type, "created_at": stamp, "data": data}).encode()
    envelope = _envelope(event_type, body)
    try:
        parse_event(envelope)
    except MalformedEvent as exc:
        assert str(exc).startswith("malformed: ") and len(str(exc)) < 300
        return
    memory = MemoryInventory()
    memory.deliver(_envelope("inventory.received", _body("inventory.received", {"sku": "A", "qty": 5})))
    memory.deliver(_envelope("order.created", _body("order.created", ORDER)))
    result = memory.deliver(envelope)  # must not raise: what parsed can be applied
    assert result.outcome is not Outcome.DEAD_LETTERED


def test_an_overlong_message_id_becomes_a_digest_that_still_deduplicates() -> None:
    body = _body("inventory.received", RECEIPT)
    long_id = {"Nats-Msg-Id": "ce:" + "i" * 5000, "Stockwire-Event-Type": "inventory.received"}
    one = Envelope("commerce.ce.inventory.received", body, long_id, 1)
    again = Envelope("commerce.ce.inventory.received", body, dict(long_id), 2)
    assert one.msg_id == again.msg_id and one.msg_id.startswith("sha256:") and len(one.msg_id) == 71
    memory = MemoryInventory()
    assert memory.deliver(one).outcome is Outcome.APPLIED
    assert memory.deliver(again).outcome is Outcome.DUPLICATE
    with_nul = Envelope("commerce.ce.inventory.received", body, {"Nats-Msg-Id": "ce:a\x00b"}, 3)
    assert with_nul.msg_id.startswith("sha256:")


def test_a_subject_too_long_to_keep_is_malformed() -> None:
    source = "s" * 600
    headers = {"Nats-Msg-Id": "ce:e", "Stockwire-Event-Type": "payment.failed"}
    envelope = Envelope(f"commerce.{source}.payment.failed", _body("payment.failed", {"order_id": "o1"}), headers)
    with pytest.raises(MalformedEvent, match=r"^malformed: subject: longer than 512"):
        parse_event(envelope)
