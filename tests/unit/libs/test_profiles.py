"""Source profiles: the shipped files map the Commerce Engine fixtures and Stockwire's own dialect to
exact canonical events; overrides, unmapped types, bad payloads, compile-once, and a fuzz."""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import jmespath
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libs.profiles import MappingError, Profile, ProfileError, load_profile, parse_profile, profile_names
from libs.profiles.canonical import (
    MAX_ITEMS,
    Mapped,
    OrderCancelled,
    OrderCompleted,
    OrderConfirmed,
    OrderLine,
    OrderPlaced,
    OrderShipped,
    PaymentFailed,
    PaymentRefunded,
    PaymentRetried,
    PaymentSucceeded,
    Return,
    ReturnItem,
    ReturnLine,
    ReturnReceived,
    Shipment,
    ShipmentItem,
    StockAdjusted,
    StockReceived,
    Unmapped,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "commerce_engine"


@pytest.fixture(scope="module")
def ce() -> Profile:
    return load_profile("commerce-engine")


@pytest.fixture(scope="module")
def sw() -> Profile:
    return load_profile("stockwire")


def _fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


# --- Commerce Engine: every fixture, exact values ------------------------------------------------

A, B, C = "ORD-2026-000101", "ORD-2026-000102", "ORD-2026-000103"
TEE_PRODUCT = "prd_01JD3TEE0000A1"
A_LINES = (
    OrderLine(
        sku="TEE-ORG-BLK-M", quantity=3, product_id=TEE_PRODUCT, variant_id="var_01JD3TEEBLKM01"
    ),  # 2 paid + 1 free
    OrderLine(sku="MUG-CER-350-WHT", quantity=1, product_id="prd_01JD3MUG0000B2"),  # a free gift: 0 + 1
    OrderLine(sku="EBOOK-CARE-GUIDE", quantity=1, product_type="digital", product_id="prd_01JD3EBK0000C3"),
    OrderLine(sku="BNDL-GIFT-BOX-01", quantity=1, product_type="bundle", product_id="prd_01JD3BDL0000D4"),
    OrderLine(
        sku="JKT-RAIN-NVY-L",
        quantity=1,
        backorder=True,
        product_id="prd_01JD3JKT0000E5",
        variant_id="var_01JD3JKTNVYL01",
    ),
)
WHITE_TEE = OrderLine(sku="TEE-ORG-WHT-S", quantity=1, product_id=TEE_PRODUCT, variant_id="var_01JD3TEEWHTS01")
S1_ITEMS = (
    ShipmentItem(
        sku="TEE-ORG-BLK-M",
        product_id="prd_01JD3TEE0000A1",
        variant_id="var_01JD3TEEBLKM01",
        quantity=2,
        free_quantity=1,
    ),
    ShipmentItem(sku="MUG-CER-350-WHT", product_id="prd_01JD3MUG0000B2", quantity=0, free_quantity=1),
    ShipmentItem(sku="BNDL-GIFT-BOX-01", product_id="prd_01JD3BDL0000D4", quantity=1, free_quantity=0),
)
S2_ITEMS = (
    ShipmentItem(sku="JKT-RAIN-NVY-L", product_id="prd_01JD3JKT0000E5", variant_id="var_01JD3JKTNVYL01", quantity=1),
)
SB_ITEMS = (
    ShipmentItem(sku="TEE-ORG-WHT-S", product_id="prd_01JD3TEE0000A1", variant_id="var_01JD3TEEWHTS01", quantity=1),
)
RETURN_ITEMS = (
    ReturnItem(product_id=TEE_PRODUCT, variant_id="var_01JD3TEEBLKM01", quantity=1, shipment_number="SHP-000101-1"),
)


def _s1(status: str) -> Shipment:
    return Shipment(order_key=A, reference="SHP-000101-1", status=status, items=S1_ITEMS)  # type: ignore[arg-type]


def _s2(status: str) -> Shipment:
    return Shipment(order_key=A, reference="SHP-000101-2", status=status, items=S2_ITEMS)  # type: ignore[arg-type]


EXPECTED: dict[str, object] = {
    "01-order.created.json": OrderPlaced(order_key=A, lines=A_LINES),
    "02-payment.success.json": PaymentSucceeded(order_key=A),
    "03-payment.successful-earlier-name.json": PaymentSucceeded(order_key=A),
    "04-order.confirmed.json": OrderConfirmed(order_key=A),
    "05-shipment.created-scheduled.json": _s1("scheduled"),
    "06-shipment.updated-packed.json": _s1("packed"),
    "07-shipment.updated-shipped.json": _s1("shipped"),
    "08-shipment.shipped-earlier-name.json": _s1("shipped"),
    "09-shipment.updated-in-transit.json": _s1("in_transit"),
    "10-shipment.delivered.json": _s1("delivered"),
    "11-shipment.created-backorder-scheduled.json": _s2("scheduled"),
    "12-shipment.updated-out-for-delivery.json": _s2("out_for_delivery"),
    "13-shipment.updated-delivered.json": _s2("delivered"),
    "14-return.initiated.json": Return(
        order_key=A, request_number="RET-000101-1", status="created", received_at=None, items=RETURN_ITEMS
    ),
    "15-return.completed-undocumented-name.json": Return(
        order_key=A,
        request_number="RET-000101-1",
        status="complete",
        received_at=1795780101.0,  # 2026-11-27T11:48:21Z
        items=RETURN_ITEMS,
    ),
    "16-order.completed.json": OrderCompleted(order_key=A),
    "17-payment.refund.initiated.json": PaymentRefunded(order_key=A),
    "18-payment.refund.success.json": PaymentRefunded(order_key=A),
    "19-order.created-second-order.json": OrderPlaced(order_key=B, lines=(WHITE_TEE,)),
    "20-payment.failed.json": PaymentFailed(order_key=B),
    "21-payment.retried.json": PaymentRetried(order_key=B),
    "22-payment.success-after-retry.json": PaymentSucceeded(order_key=B),
    "23-shipment.created-second-order.json": Shipment(
        order_key=B, reference="SHP-000102-1", status="scheduled", items=SB_ITEMS
    ),
    "24-shipment.cancelled.json": Shipment(order_key=B, reference="SHP-000102-1", status="cancelled", items=SB_ITEMS),
    "25-order.cancelled.json": OrderCancelled(order_key=B),
    "26-payment.refund.failed.json": PaymentRefunded(order_key=B),
    # Placed with status `confirmed`: committed at once.
    "27-order.created-third-order.json": OrderPlaced(
        order_key=C,
        lines=(OrderLine(sku="CAP-CNV-OLV", quantity=2, product_id="prd_01JD3CAP0000F6"), WHITE_TEE),
        confirmed=True,
    ),
    "28-shipment.updated-return-to-origin.json": Shipment(
        order_key=C,
        reference="SHP-000103-1",
        status="return_to_origin",
        items=(ShipmentItem(sku="CAP-CNV-OLV", product_id="prd_01JD3CAP0000F6", quantity=2),),
    ),
    "29-shipment.updated-lost.json": Shipment(order_key=C, reference="SHP-000103-2", status="lost", items=SB_ITEMS),
    "30-subscription.created.json": Unmapped(event_type="subscription.created"),
    "31-subscription.renewed.json": Unmapped(event_type="subscription.renewed"),
    "32-subscription.paused.json": Unmapped(event_type="subscription.paused"),
    "33-subscription.revoked.json": Unmapped(event_type="subscription.revoked"),
}


def test_every_fixture_has_an_expectation() -> None:
    assert sorted(EXPECTED) == sorted(p.name for p in FIXTURES.glob("*.json"))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_commerce_engine_fixture_maps_to_its_exact_canonical_event(ce: Profile, name: str) -> None:
    body = (FIXTURES / name).read_bytes()
    document = json.loads(body)
    mapped = ce.map_body(body)
    assert mapped.event == EXPECTED[name]
    assert mapped.event_type == document["event_type"]
    assert mapped.event_id == document["id"]
    assert mapped.occurred_at == dt.datetime.fromisoformat(document["created_at"].replace("Z", "+00:00")).timestamp()


def test_the_first_order_reads_its_envelope_exactly(ce: Profile) -> None:
    mapped = ce.map_body((FIXTURES / "01-order.created.json").read_bytes())
    assert (mapped.event_type, mapped.occurred_at) == ("order.created", 1795165962.0)  # 2026-11-20T09:12:42Z
    assert sum(line.quantity for line in mapped.event.lines) == 7  # type: ignore[union-attr]


def test_the_commerce_engine_profile_implies_its_scheme_and_names_its_schema(ce: Profile) -> None:
    assert ce.scheme == "commerce-engine"
    assert ce.follows == "@commercengine/storefront-sdk 0.15.0"
    assert set(profile_names()) >= {"commerce-engine", "stockwire"}


def test_a_shipment_event_without_status_takes_the_one_its_type_names(ce: Profile) -> None:
    document = _fixture("10-shipment.delivered.json")
    del document["data"]["status"]
    assert ce.map(document).event == _s1("delivered")
    document["event_type"] = "shipment.updated"  # no status implied: it is required
    with pytest.raises(MappingError) as caught:
        ce.map(document)
    assert caught.value.field == "data.status"


def test_the_caller_s_event_type_and_id_win_over_the_body(ce: Profile) -> None:
    body = (FIXTURES / "02-payment.success.json").read_bytes()
    mapped = ce.map_body(body, event_type="payment.failed", event_id="evt-from-header")
    assert (mapped.event, mapped.event_id) == (PaymentFailed(order_key=A), "evt-from-header")


# --- the canonical `stockwire` dialect ----------------------------------------------------------


def _ce_envelope(event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"id": "evt-1", "event_type": event_type, "created_at": "2026-11-29T10:00:00Z", "data": data}


NOW = 1795946400.0  # 2026-11-29T10:00:00Z

STOCKWIRE_CASES: list[tuple[str, dict[str, Any], object]] = [
    (
        "order.created",
        {"order_id": "o-1", "lines": [{"sku": "A", "qty": 2}, {"sku": "B", "qty": 1}], "reservation_id": "r-9"},
        OrderPlaced(
            order_key="o-1",
            lines=(OrderLine(sku="A", quantity=2), OrderLine(sku="B", quantity=1)),
            reservation_id="r-9",
        ),
    ),
    (
        "order.created",
        {"order_id": 1001, "lines": [{"sku": "A", "qty": 1}]},
        OrderPlaced(order_key="1001", lines=(OrderLine(sku="A", quantity=1),)),
    ),
    ("payment.successful", {"order_id": "o-1"}, PaymentSucceeded(order_key="o-1")),
    ("payment.captured", {"order_id": "o-1"}, PaymentSucceeded(order_key="o-1")),
    ("payment.failed", {"order_id": "o-1"}, PaymentFailed(order_key="o-1", release=True)),
    ("order.cancelled", {"order_id": "o-1"}, OrderCancelled(order_key="o-1")),
    ("shipment.shipped", {"order_id": "o-1"}, OrderShipped(order_key="o-1")),
    ("order.fulfilled", {"order_id": "o-1"}, OrderShipped(order_key="o-1")),
    (
        "return.received",
        {
            "order_id": "o-1",
            "restock": True,
            "lines": [{"sku": "A", "qty": 1}, {"sku": "B", "qty": 1, "restock": False}],
        },
        ReturnReceived(
            order_key="o-1",
            restock=True,
            lines=(ReturnLine(sku="A", quantity=1), ReturnLine(sku="B", quantity=1, restock=False)),
        ),
    ),
    ("inventory.received", {"sku": "A", "qty": 50}, StockReceived(sku="A", quantity=50)),
    ("inventory.adjusted", {"sku": "A", "delta": -3}, StockAdjusted(sku="A", delta=-3, counted_at=NOW)),
    (
        "inventory.adjusted",
        {"sku": "A", "on_hand": 40, "counted_at": "2026-11-29T09:00:00Z"},
        StockAdjusted(sku="A", on_hand=40, counted_at=NOW - 3600),
    ),
    ("inventory.adjusted", {"sku": "A", "on_hand": 40}, StockAdjusted(sku="A", on_hand=40, counted_at=NOW)),
    ("order.confirmed", {"order_id": "o-1"}, Unmapped(event_type="order.confirmed")),
]


@pytest.mark.parametrize(("event_type", "data", "expected"), STOCKWIRE_CASES)
def test_the_stockwire_profile_maps_today_s_dialect(
    sw: Profile, event_type: str, data: dict[str, Any], expected: object
) -> None:
    body = json.dumps(_ce_envelope(event_type, data)).encode()
    mapped = sw.map_body(body)
    assert mapped == Mapped(event_type=event_type, event_id="evt-1", occurred_at=NOW, event=expected)  # type: ignore[arg-type]


def test_the_stockwire_profile_reads_a_standard_webhooks_envelope_with_its_id_in_a_header(sw: Profile) -> None:
    body = json.dumps({"type": "order.cancelled", "timestamp": "2026-11-29T10:00:00Z", "data": {"order_id": "o-7"}})
    mapped = sw.map_body(body.encode(), headers={"Webhook-Id": "msg_2x"})
    assert mapped == Mapped(
        event_type="order.cancelled", event_id="msg_2x", occurred_at=NOW, event=OrderCancelled(order_key="o-7")
    )
    assert sw.scheme is None  # the source's own scheme applies


def test_a_return_line_restocks_as_it_says_else_as_the_return_says() -> None:
    event = ReturnReceived(
        order_key="o", lines=(ReturnLine(sku="A", quantity=1), ReturnLine(sku="B", quantity=1, restock=True))
    )
    assert [event.restocks(line) for line in event.lines] == [False, True]


@pytest.mark.parametrize(
    ("event_type", "data", "field"),
    [
        ("order.created", {"order_id": "o", "lines": []}, "data.lines"),
        ("order.created", {"order_id": "o", "lines": [{"sku": "A", "qty": 0}]}, "data.lines[0].qty"),
        ("order.created", {"order_id": True, "lines": [{"sku": "A", "qty": 1}]}, "data.order_id"),
        ("order.created", {"lines": [{"sku": "A", "qty": 1}]}, "data.order_id"),
        ("order.created", {"order_id": "o", "lines": [{"sku": 7, "qty": 1}]}, "data.lines[0].sku"),
        ("return.received", {"order_id": "o", "restock": "yes", "lines": [{"sku": "A", "qty": 1}]}, "data.restock"),
        ("inventory.received", {"sku": "A", "qty": 1.5}, "data.qty"),
        ("inventory.adjusted", {"sku": "A", "delta": 1, "on_hand": 2}, "stock_adjusted"),
        ("inventory.adjusted", {"sku": "A"}, "stock_adjusted"),
        ("inventory.adjusted", {"sku": "A", "on_hand": 2, "counted_at": "last tuesday"}, "data.counted_at"),
    ],
)
def test_bad_stockwire_payloads_name_the_field(sw: Profile, event_type: str, data: dict[str, Any], field: str) -> None:
    with pytest.raises(MappingError) as caught:
        sw.map(_ce_envelope(event_type, data))
    assert caught.value.field == field
    assert caught.value.event_type == event_type


# --- bad Commerce Engine payloads name the field --------------------------------------------------


def _order(**changes: Any) -> dict[str, Any]:
    document = _fixture("01-order.created.json")
    for path, value in changes.items():
        target = document
        *parents, last = path.split("__")
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        if value is _DELETE:
            del target[int(last) if last.isdigit() else last]
        else:
            target[int(last) if last.isdigit() else last] = value
    return document


_DELETE = object()


@pytest.mark.parametrize(
    ("changes", "field", "detail"),
    [
        ({"data__order_items__0__sku": _DELETE}, "data.order_items[0].sku", "required"),
        ({"data__order_items__2__sku": 123}, "data.order_items[2].sku", "Expected `str`, got `int`"),
        ({"data__order_items__0__sku": "A\nB"}, "data.order_items[0].sku", "printable"),
        ({"data__order_items__0__sku": "S" * 201}, "data.order_items[0].sku", "length <= 200"),
        ({"data__order_items__0__quantity": "2"}, "data.order_items[0].quantity", "sum([quantity, free_quantity"),
        # A free gift line without its free_quantity holds no unit at all.
        ({"data__order_items__1__free_quantity": _DELETE}, "data.order_items[1].quantity", ">= 1"),
        ({"data__order_items__0__quantity": 10**12}, "data.order_items[0].quantity", "<= 1000000000"),
        ({"data__order_items__0__quantity": -9}, "data.order_items[0].quantity", ">= 1"),
        ({"data__order_items__3__product_type": "service"}, "data.order_items[3].product_type", "enum"),
        ({"data__order_items__4__backorder": "yes"}, "data.order_items[4].backorder", "Expected `bool`"),
        ({"data__order_number": _DELETE}, "data.order_number", "required"),
        ({"data__order_number": {"n": 1}}, "data.order_number", "Expected `str`"),
        ({"data__order_items": {"sku": "A"}}, "data.order_items", "must be a list"),
        ({"data__order_items": []}, "data.order_items", "length >= 1"),
        ({"data": "ORD-1"}, "data.order_number", "required"),
        ({"id": ["x"]}, "id", "printable"),
        ({"event_type": 5.5}, "event_type", "printable"),
    ],
)
def test_a_bad_order_names_the_field(ce: Profile, changes: dict[str, Any], field: str, detail: str) -> None:
    with pytest.raises(MappingError) as caught:
        ce.map(_order(**changes))
    assert (caught.value.field, detail in caught.value.detail) == (field, True), caught.value.detail


def test_too_many_lines_are_refused_before_they_are_read(ce: Profile) -> None:
    document = _order()
    document["data"]["order_items"] = document["data"]["order_items"][:1] * (MAX_ITEMS + 1)
    with pytest.raises(MappingError) as caught:
        ce.map(document)
    assert (caught.value.field, caught.value.detail) == ("data.order_items", "holds 501 entries, over the limit of 500")


@pytest.mark.parametrize(
    ("name", "path", "value", "field"),
    [
        ("05-shipment.created-scheduled.json", ("status",), "teleported", "data.status"),
        ("05-shipment.created-scheduled.json", ("reference_number",), None, "data.reference_number"),
        (
            "05-shipment.created-scheduled.json",
            ("shipment_items", 1, "free_quantity"),
            -1,
            "data.shipment_items[1].free_quantity",
        ),
        ("14-return.initiated.json", ("received_at",), "yesterday", "data.received_at"),
        ("14-return.initiated.json", ("received_at",), "9" * 65, "data.received_at"),
        # An item names its sku or its product: without either, the item itself is at fault.
        ("14-return.initiated.json", ("items", 0, "product_id"), None, "data.items[0]"),
        ("14-return.initiated.json", ("request_number",), 12.5, "data.request_number"),
    ],
)
def test_bad_shipments_and_returns_name_the_field(
    ce: Profile, name: str, path: tuple[Any, ...], value: object, field: str
) -> None:
    document = _fixture(name)
    target = document["data"]
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    with pytest.raises(MappingError) as caught:
        ce.map(document)
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b"[" * 100_000 + b"]" * 100_000, "JSON"),
        (b'{"event_type": "order.created", "data": {"n": 1e400}}', "not valid JSON"),
        (b" " * 2_000_000, "over the limit"),
    ],
)
def test_a_body_that_is_no_json_object_names_the_body(ce: Profile, body: bytes, detail: str) -> None:
    with pytest.raises(MappingError) as caught:
        ce.map_body(body, event_type="order.created")
    assert caught.value.field == "body"
    assert detail in caught.value.detail


def test_a_missing_event_type_is_named(ce: Profile) -> None:
    with pytest.raises(MappingError) as caught:
        ce.map({"id": "evt-1", "data": {}})
    assert caught.value.field == "event_type"


# --- unmapped --------------------------------------------------------------------------------------


@pytest.mark.parametrize("event_type", ["subscription.created", "customer.created", "order", "payment.refundx"])
def test_types_a_profile_does_not_map_give_unmapped(ce: Profile, event_type: str) -> None:
    mapped = ce.map({"id": "evt-9", "event_type": event_type, "data": {"whatever": [1]}})
    assert mapped.event == Unmapped(event_type=event_type)
    assert ce.kind_of(event_type) == "unmapped"


def test_an_unmapped_type_is_answered_without_reading_the_body(ce: Profile) -> None:
    mapped = ce.map_body(b"\xff not json", event_type="subscription.renewed", event_id="evt-3")
    assert mapped == Mapped(
        event_type="subscription.renewed",
        event_id="evt-3",
        occurred_at=None,
        event=Unmapped(event_type="subscription.renewed"),
    )


def test_patterns_cover_every_refund_stage_and_return_name(ce: Profile) -> None:
    assert [ce.kind_of(t) for t in ("payment.refund.initiated", "payment.refund.partial", "return.received")] == [
        "payment_refunded",
        "payment_refunded",
        "return",
    ]
    assert "payment.refund.*" in ce.event_types
    assert "subscription.created" not in ce.event_types


# --- operator overrides ----------------------------------------------------------------------------


def test_an_override_changes_one_field_s_expression_and_nothing_else() -> None:
    profile = load_profile("commerce-engine", {"kinds": {"order_placed": {"lines": {"sku": "variant_name || sku"}}}})
    event = profile.map(_fixture("01-order.created.json")).event
    assert [line.sku for line in event.lines] == [  # type: ignore[union-attr]
        "Black / M",
        "MUG-CER-350-WHT",
        "EBOOK-CARE-GUIDE",
        "BNDL-GIFT-BOX-01",
        "Navy / L",
    ]
    assert [line.quantity for line in event.lines] == [line.quantity for line in A_LINES]  # type: ignore[union-attr]
    # the shipped profile is untouched
    assert (
        load_profile("commerce-engine").map(_fixture("01-order.created.json")).event
        == EXPECTED["01-order.created.json"]
    )


def test_an_override_can_key_orders_differently_for_every_kind_at_once() -> None:
    profile = load_profile("commerce-engine", {"common": {"order_key": "data.metadata.channel"}})
    assert profile.map(_fixture("04-order.confirmed.json")).event == OrderConfirmed(order_key="web")
    assert profile.map(_fixture("01-order.created.json")).event.order_key == "web"  # type: ignore[union-attr]


def test_an_override_adds_a_type_silences_a_type_and_changes_one_type_only() -> None:
    profile = load_profile(
        "commerce-engine",
        {
            "events": {
                "order.updated": "order_confirmed",
                "payment.retried": False,
                "shipment.updated": {"status": "'in_transit'"},
            }
        },
    )
    assert profile.map(_fixture("04-order.confirmed.json"), event_type="order.updated").event == OrderConfirmed(
        order_key=A
    )
    assert profile.map(_fixture("21-payment.retried.json")).event == Unmapped(event_type="payment.retried")
    assert profile.map(_fixture("06-shipment.updated-packed.json")).event == _s1("in_transit")
    assert profile.map(_fixture("05-shipment.created-scheduled.json")).event == _s1("scheduled")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"kinds": {"order_placed": {"lines": {"colour": "colour"}}}}, "kinds.order_placed.lines.colour"),
        ({"kinds": {"order_placed": {"lines": {"sku": "sku[?"}}}}, "is not a JMESPath expression"),
        ({"kinds": {"refund": {"order_key": "x"}}}, "kinds.refund: unknown kind"),
        ({"events": {"order.created": "order_shipped_twice"}}, "kind 'order_shipped_twice' is unknown"),
        ({"events": {"order.*.x": "order_placed"}}, "a pattern ends in '.*'"),
        ({"scheme": "standard-webhooks"}, "cannot be overridden"),
        ({"common": {"colour": "x"}}, "no kind has a field 'colour'"),
        ({"common": {"order_key": 5}}, "a JMESPath expression"),
        ({"envelope": {"id_hdr": "x"}}, "unknown keys ['id_hdr']"),
        ({"events": {"order.created": {"kind": "stock_received"}}}, "stock_received needs an expression for 'sku'"),
    ],
)
def test_a_bad_override_is_refused_naming_the_key(override: dict[str, Any], message: str) -> None:
    with pytest.raises(ProfileError, match=re.escape(message)):
        load_profile("commerce-engine", override)


def test_an_unknown_profile_name_is_refused() -> None:
    with pytest.raises(ProfileError, match=re.escape("unknown profile '../stockwire'")):
        load_profile("../stockwire")


def test_a_profile_needs_a_name_and_a_place_for_the_type() -> None:
    with pytest.raises(ProfileError, match="'name'"):
        parse_profile({"events": {}})
    with pytest.raises(ProfileError, match="type_header"):
        parse_profile({"name": "x", "envelope": {"id": "id"}})


# --- compiled once -----------------------------------------------------------------------------


def test_expressions_are_compiled_once_at_load_and_never_while_mapping(monkeypatch: pytest.MonkeyPatch) -> None:
    compiled: list[str] = []
    real_compile = jmespath.compile

    def counting(expression: str) -> Any:
        compiled.append(expression)
        return real_compile(expression)

    monkeypatch.setattr(jmespath, "compile", counting)
    profile = load_profile("commerce-engine")
    assert len(compiled) == len(set(compiled)) == profile.expressions_compiled == 24
    compiled.clear()

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("an expression was compiled while mapping")

    monkeypatch.setattr(jmespath, "compile", refuse)
    monkeypatch.setattr(jmespath.parser.Parser, "parse", refuse)
    for path in sorted(FIXTURES.glob("*.json")):
        for _ in range(3):
            profile.map_body(path.read_bytes())
    assert compiled == []


# --- fuzz: arbitrary JSON never raises anything but MappingError -----------------------------------

_KEYS = st.sampled_from(
    [
        "id", "event_type", "type", "created_at", "timestamp", "data", "order_number", "order_id", "order_items",
        "lines", "sku", "qty", "quantity", "free_quantity", "product_type", "backorder", "product_id", "variant_id",
        "reference_number", "status", "shipment_items", "items", "request_number", "received_at", "shipment_number",
        "restock", "delta", "on_hand", "counted_at", "reservation_id",
    ]
) | st.text(max_size=8)  # fmt: skip
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
    | st.sampled_from(["physical", "digital", "bundle", "shipped", "complete", "2026-11-29T10:00:00Z", "A", "1"])
)
_JSON = st.recursive(
    _SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_KEYS, children, max_size=6),
    max_leaves=40,
)
_TYPES = st.sampled_from(
    [
        "order.created", "payment.success", "payment.refund.success", "shipment.updated", "shipment.delivered",
        "return.initiated", "return.received", "inventory.adjusted", "inventory.received", "subscription.paused",
    ]
) | st.text(max_size=12)  # fmt: skip


def _maps_or_names_a_field(profile: Profile, call: Any) -> None:
    try:
        result = call()
    except MappingError as exc:
        assert exc.field
        return
    assert isinstance(result, Mapped)
    msgspec.json.encode(result)  # whatever maps is plain data


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=_JSON, event_type=_TYPES | st.none(), data=_JSON)
def test_arbitrary_json_never_raises_anything_but_mapping_error(
    ce: Profile, sw: Profile, document: object, event_type: str | None, data: object
) -> None:
    wrapped = {"id": "e", "event_type": event_type or "order.created", "data": data}
    body = msgspec.json.encode(document)
    for profile in (ce, sw):
        _maps_or_names_a_field(profile, lambda p=profile: p.map(document, event_type=event_type))
        _maps_or_names_a_field(profile, lambda p=profile: p.map(wrapped))
        _maps_or_names_a_field(profile, lambda p=profile: p.map_body(body, event_type=event_type))


def _paths(value: object, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            out += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            out += _paths(child, (*prefix, i))
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(choice=st.data())
def test_a_fixture_with_any_part_replaced_by_arbitrary_json_maps_or_names_a_field(
    ce: Profile, choice: st.DataObject
) -> None:
    name = choice.draw(st.sampled_from(sorted(EXPECTED)[:29]))
    document = _fixture(name)
    path = choice.draw(st.sampled_from(_paths(document)[1:]))
    replacement = choice.draw(_JSON)
    mutated = copy.deepcopy(document)
    target = mutated
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = replacement
    _maps_or_names_a_field(ce, lambda: ce.map(mutated))


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=200))
def test_arbitrary_bytes_never_raise_anything_but_mapping_error(ce: Profile, sw: Profile, body: bytes) -> None:
    for profile in (ce, sw):
        _maps_or_names_a_field(profile, lambda p=profile: p.map_body(body))


# --- the same mechanism for a producer that puts id and type in headers -------------------------

ACME = {
    "name": "acme",
    "scheme": "acme-hmac",
    "envelope": {"id_header": "X-Acme-Delivery", "type_header": "X-Acme-Topic", "occurred_at": "sent_at"},
    "events": {"orders/create": "order_placed", "orders/paid": "payment_succeeded"},
    "common": {"order_key": "id"},
    "kinds": {"order_placed": {"lines": {"from": "line_items", "sku": "sku", "quantity": "quantity"}}},
}


def test_a_profile_can_read_id_and_type_from_headers_in_any_case() -> None:
    profile = parse_profile(ACME)
    body = json.dumps({"id": 820982911946154508, "sent_at": 1795946400, "line_items": [{"sku": "A", "quantity": 2}]})
    mapped = profile.map_body(body.encode(), headers={"x-acme-topic": "orders/create", "X-ACME-DELIVERY": "d-1"})
    assert mapped == Mapped(
        event_type="orders/create",
        event_id="d-1",
        occurred_at=NOW,
        event=OrderPlaced(order_key="820982911946154508", lines=(OrderLine(sku="A", quantity=2),)),
    )
    assert profile.map({"id": 7}, headers={"X-Acme-Topic": "orders/paid"}, event_id="given").event_id == "given"
    with pytest.raises(MappingError) as caught:
        profile.map({"id": 7}, headers={"X-Acme-Topic": "x" * 201})
    assert caught.value.field == "event_type"


# --- plain paths are evaluated by lookups: exactly what JMESPath gives ---------------------------

_NESTED = st.recursive(
    _SCALARS,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.sampled_from("abc"), children),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(document=_NESTED, path=st.sampled_from(["a", "b", "a.b", "a.b.c", "c.a", "a.a.a.a"]))
def test_a_plain_path_gives_what_jmespath_gives(document: object, path: str) -> None:
    from libs.profiles.profile import _Compiler

    compiled = _Compiler()(path, "test")
    assert compiled.keys is not None
    assert compiled.search(document) == jmespath.search(path, document)


_OVERRIDE_KEYS = st.sampled_from(
    ["envelope", "common", "events", "kinds", "order_placed", "lines", "from", "sku", "order_key", "id", "kind",
     "shipment", "items", "order.created", "return.*", "x.*", "*", "scheme", "status"]
)  # fmt: skip
_OVERRIDES = st.recursive(
    _SCALARS | st.sampled_from(["sku", "data.x || `1`", "sum(", "order_placed", "unmapped"]),
    lambda children: (
        st.dictionaries(_OVERRIDE_KEYS | st.integers(), children, max_size=4) | st.lists(children, max_size=2)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(override=st.dictionaries(_OVERRIDE_KEYS, _OVERRIDES, max_size=3))
def test_any_override_loads_or_is_refused_with_profile_error(override: dict[str, Any]) -> None:
    for name in ("commerce-engine", "stockwire"):
        try:
            profile = load_profile(name, override)
        except ProfileError:
            continue
        _maps_or_names_a_field(profile, lambda p=profile: p.map(_fixture("01-order.created.json")))
