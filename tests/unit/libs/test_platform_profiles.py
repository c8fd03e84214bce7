"""The platform profiles (`shopify`, `woocommerce`, `stripe`, `standard-webhooks`) on their fixtures, and
the profile mechanism they use: value maps, a kind chosen by a field, `[parameters]`, `extends`, and how
a source's configuration picks a profile and its scheme.

Every fixture of ``tests/fixtures/{shopify,woocommerce,stripe}`` maps, through the shipped profile, to
the exact canonical event of an explicit table (the topic header gives the type, as ingress does; Stripe
carries its type in the body). Bad inputs name the field where it is on the wire.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from libs.config import ConfigError, SourceSettings, load_settings
from libs.profiles import (
    SCHEME_DEFAULT_PROFILES,
    MappingError,
    Profile,
    ProfileError,
    load_profile,
    parse_profile,
    profile_name,
    source_profile,
)
from libs.profiles.canonical import (
    CanonicalEvent,
    OrderCancelled,
    OrderLine,
    OrderPlaced,
    PaymentFailed,
    PaymentRefunded,
    PaymentSucceeded,
    Return,
    ReturnItem,
    Shipment,
    ShipmentItem,
    StockReceived,
    Unmapped,
)
from libs.schemes import SCHEME_NAMES

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
TOPIC_HEADERS = {"shopify": "X-Shopify-Topic", "woocommerce": "X-WC-Webhook-Topic", "stripe": None}


def _fixture(platform: str, name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((FIXTURES / platform / name).read_text(encoding="utf-8"))
    return document


def _by_number(platform: str, number: int) -> dict[str, Any]:
    [path] = (FIXTURES / platform).glob(f"{number:02d}-*.json")
    return _fixture(platform, path.name)


def _map(profile: Profile, platform: str, document: dict[str, Any]) -> CanonicalEvent:
    """Map a fixture as inventory sees it: the type from the topic header (None for Stripe: in the body)."""
    headers = document["headers"]
    header = TOPIC_HEADERS[platform]
    event_type = headers[header] if header else None
    return profile.map(document["body"], event_type=event_type, headers=headers).event


@pytest.fixture(scope="module")
def shopify() -> Profile:
    return load_profile("shopify")


@pytest.fixture(scope="module")
def woo() -> Profile:
    return load_profile("woocommerce")


@pytest.fixture(scope="module")
def stripe() -> Profile:
    return load_profile("stripe")


# --- Shopify: every fixture ------------------------------------------------------------------------

A, B, C, E = "5735370481727", "5735371530303", "5735374250559", "5735382007871"
TEE_PRODUCT, MUG_PRODUCT, CAP_PRODUCT = "8123450001001", "8123450002001", "8123450003001"
TEE_RED, TEE_BLU, MUG, CAP = "45123450001011", "45123450001012", "45123450002011", "45123450003011"


def _line(sku: str, quantity: int, product: str, variant: str, **more: Any) -> OrderLine:
    return OrderLine(sku=sku, quantity=quantity, product_id=product, variant_id=variant, **more)


def _item(sku: str, quantity: int, product: str, variant: str) -> ShipmentItem:
    return ShipmentItem(sku=sku, quantity=quantity, product_id=product, variant_id=variant)


def _returned(sku: str, quantity: int, product: str, variant: str, disposition: str) -> ReturnItem:
    return ReturnItem(sku=sku, quantity=quantity, product_id=product, variant_id=variant, disposition=disposition)  # type: ignore[arg-type]


# Order A's lines: the gift card (`sku: ""`, requires_shipping false) is no stock and is left out.
A_LINES = (
    _line("TEE-RED-M", 3, TEE_PRODUCT, TEE_RED),
    _line("MUG-BLK", 1, MUG_PRODUCT, MUG),
    _line("CAP-GRY", 2, CAP_PRODUCT, CAP),
)
A_FIRST_ITEMS = (_item("TEE-RED-M", 2, TEE_PRODUCT, TEE_RED), _item("MUG-BLK", 1, MUG_PRODUCT, MUG))

SHOPIFY: dict[str, tuple[str, CanonicalEvent]] = {
    # file: (delivery id, canonical event)
    "01-orders.create-a-pending.json": (
        "42b7cb19-dc77-5ed0-92f5-69db0a3b7a24",
        OrderPlaced(order_key=A, lines=A_LINES, confirmed=False, completed=False),
    ),
    "02-orders.paid-a.json": ("26c0005b-ea39-5884-8ae6-a8d10c1623a9", PaymentSucceeded(order_key=A)),
    "03-fulfillments.create-a-partial.json": (
        "25405592-4207-5cdc-ac9d-5616e9751094",
        # status success, shipment_status null: shipped.
        Shipment(order_key=A, reference="5512340007811", status="shipped", items=A_FIRST_ITEMS),
    ),
    "04-fulfillments.update-a-in-transit.json": (
        "a3a18a93-5ed4-5f43-bba8-f11916e84150",
        Shipment(order_key=A, reference="5512340007811", status="in_transit", items=A_FIRST_ITEMS),
    ),
    "05-fulfillments.update-a-delivered.json": (
        "2d318fdf-4a14-5765-b35c-a4502365fde7",
        Shipment(order_key=A, reference="5512340007811", status="delivered", items=A_FIRST_ITEMS),
    ),
    "06-fulfillments.create-a-second.json": (
        "55e84b00-9187-5fe0-93f4-ccbc7d8d063f",
        Shipment(
            order_key=A,
            reference="5512340007812",
            status="shipped",
            items=(_item("TEE-RED-M", 1, TEE_PRODUCT, TEE_RED),),
        ),
    ),
    "07-refunds.create-a-return-and-no-restock.json": (
        "ef774b53-8d5a-572e-b6d7-91fb5d29b0d9",
        Return(
            order_key=A,
            request_number="1012345670011",
            status="complete",
            items=(
                _returned("TEE-RED-M", 1, TEE_PRODUCT, TEE_RED, "restock"),
                _returned("MUG-BLK", 1, MUG_PRODUCT, MUG, "no_restock"),
            ),
        ),
    ),
    "08-refunds.create-a-cancel-unfulfilled.json": (
        "19692b11-db70-5931-a20e-bdebdeb66c1c",
        Return(
            order_key=A,
            request_number="1012345670012",
            status="complete",
            items=(_returned("CAP-GRY", 2, CAP_PRODUCT, CAP, "cancel"),),
        ),
    ),
    "09-orders.updated-a.json": ("414a7db9-9562-5038-a29e-d63e277627ee", Unmapped(event_type="orders/updated")),
    "10-orders.create-b-paid.json": (
        "a97771eb-91f9-50b4-9aed-5b5c9d05d9fb",
        OrderPlaced(order_key=B, lines=(_line("TEE-BLU-L", 2, TEE_PRODUCT, TEE_BLU),), confirmed=True),
    ),
    "11-orders.cancelled-b.json": ("2a96d572-792d-56d7-919a-446fc9ac9a2b", OrderCancelled(order_key=B)),
    "12-refunds.create-b-cancel.json": (
        "484a0900-de5c-512e-b016-ee06428390e0",  # its own delivery id, though the Event-Id is 11's
        Return(
            order_key=B,
            request_number="1012345670021",
            status="complete",
            items=(_returned("TEE-BLU-L", 2, TEE_PRODUCT, TEE_BLU, "cancel"),),
        ),
    ),
    "13-orders.create-c-pending.json": (
        "d164d7b2-ab8f-5a11-a875-d0501cc568c5",
        OrderPlaced(order_key=C, lines=(_line("MUG-BLK", 1, MUG_PRODUCT, MUG),)),
    ),
    # The whole order, fulfilled (unpaid: cash on delivery): placed again as complete.
    "14-orders.fulfilled-c.json": (
        "aa6f4ac8-f85f-5da5-8ca2-44094272d74e",
        OrderPlaced(order_key=C, lines=(_line("MUG-BLK", 1, MUG_PRODUCT, MUG),), confirmed=False, completed=True),
    ),
    "15-orders.partially_fulfilled-d.json": (
        "a9ed916f-b7b2-5b7d-a648-4ef8f91ae75f",
        Unmapped(event_type="orders/partially_fulfilled"),
    ),
    "16-orders.create-e-stripe-pending.json": (
        "0df6356a-0e5f-5713-9b4b-2ec5466992e7",
        OrderPlaced(order_key=E, lines=(_line("TEE-RED-M", 1, TEE_PRODUCT, TEE_RED),)),
    ),
    "17-inventory_levels.update-tee-red-m.json": (
        "1da3155d-c58d-5141-a0e8-3f902294b3ce",
        Unmapped(event_type="inventory_levels/update"),
    ),
}


def test_every_shopify_fixture_has_an_expectation() -> None:
    assert sorted(p.name for p in (FIXTURES / "shopify").glob("*.json")) == sorted(SHOPIFY)


@pytest.mark.parametrize("name", sorted(SHOPIFY))
def test_each_shopify_fixture_maps_to_its_canonical_event(shopify: Profile, name: str) -> None:
    document = _fixture("shopify", name)
    delivery, expected = SHOPIFY[name]
    mapped = shopify.map(
        document["body"], event_type=document["headers"]["X-Shopify-Topic"], headers=document["headers"]
    )
    assert mapped.event == expected
    assert mapped.event_type == document["headers"]["X-Shopify-Topic"]
    # The delivery's own id (X-Shopify-Webhook-Id), never the Event-Id one merchant action shares.
    assert mapped.event_id == delivery


def test_the_shopify_profile_reads_the_topic_and_delivery_id_from_the_headers(shopify: Profile) -> None:
    document = _by_number("shopify", 1)
    mapped = shopify.map(document["body"], headers=document["headers"])
    assert mapped.event_type == "orders/create"
    assert mapped.event_id == "42b7cb19-dc77-5ed0-92f5-69db0a3b7a24"
    assert mapped.occurred_at == 1795187643.0  # updated_at 2026-11-20T10:14:03-05:00
    assert shopify.scheme == "shopify"


def test_a_shopify_order_placed_already_fulfilled_is_completed(shopify: Profile) -> None:
    body = copy.deepcopy(_by_number("shopify", 10)["body"])
    body["fulfillment_status"] = "fulfilled"
    event = shopify.map(body, event_type="orders/create").event
    assert isinstance(event, OrderPlaced) and event.confirmed and event.completed


@pytest.mark.parametrize(
    ("requires_shipping", "product_type"),
    [(True, "physical"), (False, "digital"), (None, "physical"), ("?", "physical")],
)
def test_a_shopify_line_s_requires_shipping_gives_its_product_type(
    shopify: Profile, requires_shipping: object, product_type: str
) -> None:
    body = copy.deepcopy(_by_number("shopify", 13)["body"])
    body["line_items"][0]["requires_shipping"] = requires_shipping
    event = shopify.map(body, event_type="orders/create").event
    assert isinstance(event, OrderPlaced)
    assert event.lines[0].product_type == product_type


@pytest.mark.parametrize(
    ("status", "shipment_status", "expected"),
    [
        ("success", None, "shipped"),
        ("success", "label_printed", "shipped"),
        ("success", "in_transit", "in_transit"),
        ("success", "out_for_delivery", "out_for_delivery"),
        ("success", "attempted_delivery", "delivery_attempted"),
        ("success", "delivered", "delivered"),
        ("success", "a_carrier_status_nobody_listed", "shipped"),
        ("pending", None, "scheduled"),
        ("open", "in_transit", "scheduled"),
        ("cancelled", None, "cancelled"),
        ("error", None, "cancelled"),
        ("failure", None, "cancelled"),
    ],
)
def test_a_shopify_fulfilment_s_status_maps_through_its_table(
    shopify: Profile, status: str | None, shipment_status: str | None, expected: str
) -> None:
    body = copy.deepcopy(_by_number("shopify", 3)["body"])
    body["status"], body["shipment_status"] = status, shipment_status
    event = shopify.map(body, event_type="fulfillments/create").event
    assert isinstance(event, Shipment)
    assert event.status == expected


@pytest.mark.parametrize("status", ["teleport", None])
def test_a_shopify_fulfilment_whose_own_status_is_unknown_is_refused_naming_it(
    shopify: Profile, status: str | None
) -> None:
    # Shopify's fulfilment statuses are a closed list: another (or none) cannot say whether units left.
    body = copy.deepcopy(_by_number("shopify", 3)["body"])
    body["status"] = status
    with pytest.raises(MappingError) as caught:
        shopify.map(body, event_type="fulfillments/create")
    assert caught.value.field == "status"


def test_a_shopify_order_of_a_gift_card_only_is_placed_with_no_lines(shopify: Profile) -> None:
    # docs/profiles.md: an order_placed has 0 to 500 lines; a gift card holds no stock.
    body = copy.deepcopy(_by_number("shopify", 1)["body"])
    body["line_items"] = [body["line_items"][3]]
    assert shopify.map(body, event_type="orders/create").event == OrderPlaced(order_key=A, lines=())


def test_a_shopify_fulfilment_of_a_gift_card_only_has_no_items(shopify: Profile) -> None:
    body = copy.deepcopy(_by_number("shopify", 6)["body"])
    body["line_items"][0]["sku"] = ""
    event = shopify.map(body, event_type="fulfillments/create").event
    assert event == Shipment(order_key=A, reference="5512340007812", status="shipped", items=())


def test_a_shopify_refund_of_shipping_only_has_no_items(shopify: Profile) -> None:
    body = copy.deepcopy(_by_number("shopify", 12)["body"])
    body["refund_line_items"] = []
    event = shopify.map(body, event_type="refunds/create").event
    assert event == Return(order_key=B, request_number="1012345670021", status="complete", items=())


@pytest.mark.parametrize(
    ("restock_type", "disposition"),
    [("return", "restock"), ("legacy_restock", "restock"), ("cancel", "cancel"), ("no_restock", "no_restock")],
)
def test_a_shopify_refund_line_s_restock_type_gives_its_disposition(
    shopify: Profile, restock_type: str, disposition: str
) -> None:
    body = copy.deepcopy(_by_number("shopify", 8)["body"])
    body["refund_line_items"][0]["restock_type"] = restock_type
    event = shopify.map(body, event_type="refunds/create").event
    assert isinstance(event, Return)
    assert [item.disposition for item in event.items] == [disposition]


@pytest.mark.parametrize(
    ("number", "topic", "change", "field"),
    [
        (1, "orders/create", ("line_items", 0, "quantity", "x"), "line_items[0].quantity"),
        (1, "orders/create", ("line_items", 1, "quantity", 0), "line_items[1].quantity"),
        (1, "orders/create", ("line_items", 2, "sku", 123), "line_items[2].sku"),
        (3, "fulfillments/create", ("line_items", 1, "quantity", "x"), "line_items[1].quantity"),
        (
            7,
            "refunds/create",
            ("refund_line_items", 0, "restock_type", "teleport"),
            "refund_line_items[0].restock_type",
        ),
        (7, "refunds/create", ("refund_line_items", 1, "quantity", "x"), "refund_line_items[1].quantity"),
    ],
)
def test_a_bad_shopify_value_names_its_field_on_the_wire(
    shopify: Profile, number: int, topic: str, change: tuple[str, int, str, object], field: str
) -> None:
    body = copy.deepcopy(_by_number("shopify", number)["body"])
    key, index, name, value = change
    body[key][index][name] = value
    with pytest.raises(MappingError) as caught:
        shopify.map(body, event_type=topic)
    assert caught.value.field == field
    assert caught.value.event_type == topic


def test_a_bad_shopify_line_after_a_line_without_sku_is_named_by_its_index_on_the_wire(shopify: Profile) -> None:
    # The gift card (sku "") is filtered out of the lines, but the error names the line where it is.
    body = copy.deepcopy(_by_number("shopify", 1)["body"])
    gift = body["line_items"].pop(3)
    body["line_items"].insert(0, gift)
    body["line_items"][1]["quantity"] = "x"  # TEE-RED-M, now the second line on the wire
    with pytest.raises(MappingError) as caught:
        shopify.map(body, event_type="orders/create")
    assert caught.value.field == "line_items[1].quantity"


def test_a_shopify_refund_restock_type_unknown_is_refused_naming_the_values(shopify: Profile) -> None:
    body = copy.deepcopy(_by_number("shopify", 7)["body"])
    body["refund_line_items"][0]["restock_type"] = "teleport"
    with pytest.raises(MappingError, match="teleport") as caught:
        shopify.map(body, event_type="refunds/create")
    for known in ("return", "legacy_restock", "cancel", "no_restock"):
        assert known in caught.value.detail


# --- WooCommerce: every fixture --------------------------------------------------------------------

W_1001_LINES = (
    OrderLine(sku="TEE-RED-M", quantity=3, product_id="50", variant_id="53"),
    OrderLine(sku="MUG-BLK", quantity=1, product_id="60", variant_id="0"),
)
W_1001_REFUNDED = (
    OrderLine(sku="TEE-RED-M", quantity=3, product_id="50", variant_id="53", restocked=3),
    OrderLine(sku="MUG-BLK", quantity=1, product_id="60", variant_id="0", restocked=1),
)
W_1002_LINES = (OrderLine(sku="TEE-BLU-L", quantity=2, product_id="50", variant_id="56"),)
W_1003_LINES = (OrderLine(sku="CAP-GRY", quantity=1, product_id="70", variant_id="0"),)

WOO: dict[str, tuple[str, CanonicalEvent]] = {
    "01-order.created-pending.json": (
        "d0807c2de3c9a50aa6ea807b9f92dcb9",
        OrderPlaced(order_key="1001", lines=W_1001_LINES, confirmed=False, completed=False),
    ),
    "02-order.updated-on-hold.json": (
        "67f825df8d6a90d554dc963b2ef41c0b",
        OrderPlaced(order_key="1001", lines=W_1001_LINES, confirmed=True, completed=False),
    ),
    "03-order.updated-processing.json": (
        "49ad513ec72055cdb5afc8acc4a759c7",
        OrderPlaced(order_key="1001", lines=W_1001_LINES, confirmed=True, completed=False),
    ),
    "04-order.updated-completed.json": (
        "1d966f6f78b3a3b1c7e8ec9df4889eb1",
        OrderPlaced(order_key="1001", lines=W_1001_LINES, confirmed=True, completed=True),
    ),
    "05-order.updated-refunded.json": (
        "0018e12225dcd328a6d990ecfef549f3",
        OrderPlaced(order_key="1001", lines=W_1001_REFUNDED, confirmed=True, completed=False),
    ),
    "06-order.created-processing.json": (
        "335ca3d7d636342ce7bd987f7949135b",
        OrderPlaced(order_key="1002", lines=W_1002_LINES, confirmed=True, completed=False),
    ),
    "07-order.updated-cancelled.json": ("0ee8feda0d189c1e628f33e4a57fab3e", OrderCancelled(order_key="1002")),
    "08-order.created-pending.json": (
        "f67f32cdbc4058a671378b30919a69c9",
        OrderPlaced(order_key="1003", lines=W_1003_LINES, confirmed=False, completed=False),
    ),
    "09-order.updated-failed.json": ("b3becdb997cc5841e6b3a3eff457ef3f", PaymentFailed(order_key="1003", release=True)),
    "10-order.created-checkout-draft.json": ("903249792a5818faedd1bf83252be958", Unmapped(event_type="order.created")),
    "11-order.updated-checkout-draft-newer-wc.json": (
        "e52926cfbb4ff859d632c7fa984c5f0d",
        Unmapped(event_type="order.updated"),
    ),
}
# The ping (`webhook_id=12`, a form body, no topic) is answered by ingress and never reaches a profile.
WOO_NOT_MAPPED = {"00-ping.json"}


def test_every_woocommerce_fixture_has_an_expectation() -> None:
    names = {p.name for p in (FIXTURES / "woocommerce").glob("*.json")}
    assert names == set(WOO) | WOO_NOT_MAPPED
    ping = _fixture("woocommerce", "00-ping.json")
    assert "body" not in ping and ping["raw"] == "webhook_id=12"
    assert not any(key.lower().startswith("x-wc-") for key in ping["headers"])


@pytest.mark.parametrize("name", sorted(WOO))
def test_each_woocommerce_fixture_maps_to_its_canonical_event(woo: Profile, name: str) -> None:
    document = _fixture("woocommerce", name)
    delivery, expected = WOO[name]
    topic = document["headers"]["X-WC-Webhook-Topic"]
    mapped = woo.map(document["body"], event_type=topic, headers=document["headers"])
    assert mapped.event == expected
    assert mapped.event_type == topic
    assert mapped.event_id == delivery


def test_the_woocommerce_profile_reads_topic_id_and_time(woo: Profile) -> None:
    document = _by_number("woocommerce", 1)
    mapped = woo.map(document["body"], headers=document["headers"])
    assert (mapped.event_type, mapped.event_id) == ("order.created", "d0807c2de3c9a50aa6ea807b9f92dcb9")
    assert mapped.occurred_at == 1717423511.0  # date_modified_gmt 2024-06-03T14:05:11, UTC without offset
    assert woo.scheme == "woocommerce"
    assert woo.kind_of("order.updated") == "order_cancelled|order_placed|payment_failed"
    assert woo.kind_of("order.deleted") == "unmapped"


@pytest.mark.parametrize(
    ("status", "kind", "confirmed", "completed"),
    [
        ("pending", OrderPlaced, False, False),
        ("on-hold", OrderPlaced, True, False),
        ("processing", OrderPlaced, True, False),
        ("completed", OrderPlaced, True, True),
        ("refunded", OrderPlaced, True, False),
        ("cancelled", OrderCancelled, None, None),
        ("failed", PaymentFailed, None, None),
        ("checkout-draft", Unmapped, None, None),
        ("trash", Unmapped, None, None),
        ("a-status-a-plugin-added", Unmapped, None, None),
        (None, Unmapped, None, None),
        (7, Unmapped, None, None),
    ],
)
@pytest.mark.parametrize("topic", ["order.created", "order.updated"])
def test_a_woocommerce_order_s_status_chooses_its_kind(
    woo: Profile, topic: str, status: object, kind: type, confirmed: bool | None, completed: bool | None
) -> None:
    body = copy.deepcopy(_by_number("woocommerce", 3)["body"])
    body["status"] = status
    event = woo.map(body, event_type=topic).event
    assert type(event) is kind
    if isinstance(event, OrderPlaced):
        assert (event.order_key, event.confirmed, event.completed) == ("1001", confirmed, completed)
    if isinstance(event, Unmapped):
        assert event.event_type == topic


def test_a_woocommerce_order_without_status_is_unmapped(woo: Profile) -> None:
    body = copy.deepcopy(_by_number("woocommerce", 3)["body"])
    del body["status"]
    assert woo.map(body, event_type="order.updated").event == Unmapped(event_type="order.updated")


def test_a_woocommerce_line_s_restocked_total_is_read_from_its_meta(woo: Profile) -> None:
    body = copy.deepcopy(_by_number("woocommerce", 5)["body"])
    [meta] = [m for m in body["line_items"][0]["meta_data"] if m["key"] == "_restock_refunded_items"]
    meta["value"] = "2"
    body["line_items"][1]["meta_data"] = [
        m for m in body["line_items"][1]["meta_data"] if m["key"] != "_restock_refunded_items"
    ]
    event = woo.map(body, event_type="order.updated").event
    assert isinstance(event, OrderPlaced)
    assert [(line.sku, line.restocked) for line in event.lines] == [("TEE-RED-M", 2), ("MUG-BLK", 0)]


def test_a_bad_woocommerce_line_quantity_names_its_field_on_the_wire(woo: Profile) -> None:
    body = copy.deepcopy(_by_number("woocommerce", 1)["body"])
    body["line_items"][1]["quantity"] = "x"
    with pytest.raises(MappingError) as caught:
        woo.map(body, event_type="order.created")
    assert caught.value.field == "line_items[1].quantity"


# --- Stripe: every fixture -------------------------------------------------------------------------

STRIPE: dict[str, tuple[str, CanonicalEvent | str]] = {
    # file: (event id, canonical event, or the wire field a MappingError names)
    "01-payment_intent.created.json": ("evt_3QdT7kLkT3rN5xYz0e5Cw9Hn", Unmapped(event_type="payment_intent.created")),
    "02-payment_intent.payment_failed-card-declined.json": (
        "evt_3QdT7kLkT3rN5xYz0f1Dq4Lr",
        PaymentFailed(order_key=E, release=False),  # Stripe retries the intent: the hold stays
    ),
    "03-payment_intent.succeeded-retry.json": ("evt_3QdT7kLkT3rN5xYz0g7Pv2Xe", PaymentSucceeded(order_key=E)),
    "04-charge.refunded.json": ("evt_3QdT7kLkT3rN5xYz0r3Tb8Wq", PaymentRefunded(order_key=E)),
    "05-payment_intent.succeeded-no-order-id.json": ("evt_3QdVb2LkT3rN5xYz1q6Ha3Dz", "data.object.metadata.order_id"),
    # The order id is under `shop_order`: the default key does not find it (see the parameter test).
    "06-payment_intent.succeeded-shop-order-key.json": (
        "evt_3QdWx8LkT3rN5xYz0u2Ke6Mf",
        "data.object.metadata.order_id",
    ),
}
STRIPE_TIMES = {
    "01-payment_intent.created.json": 1795165923.0,
    "02-payment_intent.payment_failed-card-declined.json": 1795165961.0,
    "03-payment_intent.succeeded-retry.json": 1795166047.0,
    "04-charge.refunded.json": 1795536175.0,
}


def test_every_stripe_fixture_has_an_expectation() -> None:
    assert sorted(p.name for p in (FIXTURES / "stripe").glob("*.json")) == sorted(STRIPE)


@pytest.mark.parametrize("name", sorted(STRIPE))
def test_each_stripe_fixture_maps_to_its_canonical_event(stripe: Profile, name: str) -> None:
    document = _fixture("stripe", name)
    event_id, expected = STRIPE[name]
    if isinstance(expected, str):
        with pytest.raises(MappingError) as caught:
            stripe.map(document["body"], event_type=None, headers=document["headers"])
        assert caught.value.field == expected
        assert caught.value.detail == "required, missing or null"
        assert caught.value.event_type == document["body"]["type"]
        return
    mapped = stripe.map(document["body"], event_type=None, headers=document["headers"])
    assert mapped.event == expected
    assert (mapped.event_type, mapped.event_id) == (document["body"]["type"], event_id)
    assert mapped.occurred_at == STRIPE_TIMES[name]


def test_the_stripe_source_s_order_metadata_key_reads_fixture_06() -> None:
    profile = load_profile("stripe", parameters={"order_metadata_key": "shop_order"})
    document = _by_number("stripe", 6)
    mapped = profile.map(document["body"], event_type=None, headers=document["headers"])
    assert mapped.event == PaymentSucceeded(order_key=E)
    assert mapped.event_id == "evt_3QdWx8LkT3rN5xYz0u2Ke6Mf"
    # The others name the order under order_id: this source's key does not find them, and says where it looked.
    with pytest.raises(MappingError) as caught:
        profile.map(_by_number("stripe", 3)["body"])
    assert caught.value.field == "data.object.metadata.shop_order"


def test_the_stripe_source_settings_pass_the_key_to_the_profile() -> None:
    settings = SourceSettings(scheme="stripe", order_metadata_key="shop_order", orders_source="shop")
    profile = source_profile("pay", settings)
    assert profile.map(_by_number("stripe", 6)["body"]).event == PaymentSucceeded(order_key=E)


def test_a_stripe_event_without_an_order_names_the_metadata_field(stripe: Profile) -> None:
    body = copy.deepcopy(_by_number("stripe", 3)["body"])
    del body["data"]["object"]["metadata"]
    with pytest.raises(MappingError) as caught:
        stripe.map(body)
    assert caught.value.field == "data.object.metadata.order_id"


# --- the mechanism: value maps ---------------------------------------------------------------------


def _profile(events: dict[str, Any], kinds: dict[str, Any] | None = None, **top: Any) -> Profile:
    document: dict[str, Any] = {"name": "t", "envelope": {"type": "type"}, "events": events, **top}
    if kinds is not None:
        document["kinds"] = kinds
    return parse_profile(document)


def _shipment_profile(status: Any) -> Profile:
    return _profile(
        {"s": "shipment"},
        {
            "shipment": {
                "order_key": "o",
                "reference": "r",
                "status": status,
                "items": {"from": "i", "sku": "sku", "quantity": "q"},
            }
        },
    )


def _shipment_body(**status: object) -> dict[str, Any]:
    return {"type": "s", "o": "O1", "r": "R1", "i": [{"sku": "A", "q": 1}], **status}


def test_a_value_map_translates_the_wire_value() -> None:
    profile = _shipment_profile({"from": "st", "map": {"a": "shipped", "b": "delivered"}, "default": "scheduled"})
    assert profile.map(_shipment_body(st="a")).event.status == "shipped"  # type: ignore[union-attr]
    assert profile.map(_shipment_body(st="b")).event.status == "delivered"  # type: ignore[union-attr]


@pytest.mark.parametrize("body", [{"st": "zzz"}, {"st": None}, {}, {"st": ["a"]}, {"st": 2.5}])
def test_a_value_map_s_default_takes_any_other_value_and_an_absent_one(body: dict[str, Any]) -> None:
    profile = _shipment_profile({"from": "st", "map": {"a": "shipped"}, "default": "scheduled"})
    assert profile.map(_shipment_body(**body)).event.status == "scheduled"  # type: ignore[union-attr]


def test_without_a_default_a_value_the_map_does_not_hold_is_refused_naming_the_field() -> None:
    profile = _shipment_profile({"from": "data.st", "map": {"a": "shipped", "b": "delivered"}})
    with pytest.raises(MappingError) as caught:
        profile.map({**_shipment_body(), "data": {"st": "zzz"}})
    assert caught.value.field == "data.st"
    assert "'zzz'" in caught.value.detail and "a, b" in caught.value.detail
    # Absent: the canonical field is left at its default; status has none, so it is required.
    with pytest.raises(MappingError) as missing:
        profile.map(_shipment_body())
    assert (missing.value.field, missing.value.detail) == ("data.st", "required, missing or null")


def test_a_value_map_inside_a_list_names_the_element() -> None:
    profile = _profile(
        {"r": "return"},
        {
            "return": {
                "order_key": "o",
                "request_number": "n",
                "status": "'complete'",
                "items": {
                    "from": "lines",
                    "sku": "sku",
                    "quantity": "q",
                    "disposition": {"from": "how", "map": {"back": "restock", "gone": "no_restock"}},
                },
            }
        },
    )
    body: dict[str, Any] = {
        "type": "r",
        "o": "O",
        "n": "N",
        "lines": [{"sku": "A", "q": 1, "how": "back"}, {"sku": "B", "q": 1, "how": "?"}],
    }
    with pytest.raises(MappingError) as caught:
        profile.map(body)
    assert caught.value.field == "lines[1].how"
    body["lines"][1]["how"] = "gone"
    event = profile.map(body).event
    assert isinstance(event, Return)
    assert [i.disposition for i in event.items] == ["restock", "no_restock"]


@pytest.mark.parametrize(
    ("wire", "expected"),
    [(True, "digital"), (False, "physical"), (1, "bundle"), (0, "physical"), ("true", "digital"), ("1", "bundle")],
)
def test_a_value_map_reads_booleans_and_integers_by_their_text(wire: object, expected: str) -> None:
    # A boolean is looked up as true/false, an integer as its decimal text; the map's keys are text.
    profile = _profile(
        {"o": "order_placed"},
        {
            "order_placed": {
                "order_key": "o",
                "lines": {
                    "from": "lines",
                    "sku": "sku",
                    "quantity": "q",
                    "product_type": {"from": "t", "map": {"true": "digital", "1": "bundle"}, "default": "physical"},
                },
            }
        },
    )
    event = profile.map({"type": "o", "o": "O", "lines": [{"sku": "A", "q": 1, "t": wire}]}).event
    assert isinstance(event, OrderPlaced)
    assert event.lines[0].product_type == expected


def test_a_value_map_may_give_booleans_and_numbers() -> None:
    profile = _profile(
        {"p": "payment_failed"},
        {"payment_failed": {"order_key": "o", "release": {"from": "retry", "map": {"never": True, "later": False}}}},
    )
    assert profile.map({"type": "p", "o": "O", "retry": "never"}).event == PaymentFailed(order_key="O", release=True)
    assert profile.map({"type": "p", "o": "O", "retry": "later"}).event == PaymentFailed(order_key="O", release=False)


@pytest.mark.parametrize(
    ("status", "message"),
    [
        ({"from": "st"}, "value map"),
        ({"map": {"a": "shipped"}}, "value map"),
        ({"from": "st", "map": {"a": "shipped"}, "otherwise": "x"}, "value map"),
        ({"from": "st", "map": {}}, "empty map"),
        ({"from": "st", "map": {"a": ["shipped"]}}, "kinds.shipment.status.map.a"),
        ({"from": "st", "map": {"a": "shipped"}, "default": {"x": 1}}, "kinds.shipment.status.default"),
        ({"from": "st", "map": {"a": {"from": "x", "map": {"b": ["c"]}}}}, "kinds.shipment.status.map.a.map.b"),
        ({"from": "st[", "map": {"a": "shipped"}}, "kinds.shipment.status.from"),
    ],
)
def test_a_bad_value_map_is_refused_naming_the_key(status: dict[str, Any], message: str) -> None:
    with pytest.raises(ProfileError, match=message.replace(".", r"\.")):
        _shipment_profile(status)


# --- the mechanism: a kind chosen by a field -------------------------------------------------------

CHOICE_KINDS = {
    "order_placed": {"lines": {"from": "lines", "sku": "sku", "quantity": "q"}},
    "payment_failed": {"release": "`true`"},
}


def _choice_profile(kind: dict[str, Any], **fields: Any) -> Profile:
    return _profile({"o.upd": {"kind": kind, **fields}}, CHOICE_KINDS, common={"order_key": "id"})


ORDER_BODY = {"type": "o.upd", "id": 7, "lines": [{"sku": "A", "q": 2}]}


def test_a_kind_chosen_by_a_field_builds_the_kind_its_value_names() -> None:
    profile = _choice_profile(
        {
            "from": "data.state",
            "map": {"new": "order_placed", "gone": "order_cancelled", "bad": "payment_failed"},
            "default": "unmapped",
        }
    )
    placed = OrderPlaced(order_key="7", lines=(OrderLine(sku="A", quantity=2),))
    assert profile.map({**ORDER_BODY, "data": {"state": "new"}}).event == placed
    assert profile.map({**ORDER_BODY, "data": {"state": "gone"}}).event == OrderCancelled(order_key="7")
    assert profile.map({**ORDER_BODY, "data": {"state": "bad"}}).event == PaymentFailed(order_key="7", release=True)
    for other in ("draft", None, 3):
        assert profile.map({**ORDER_BODY, "data": {"state": other}}).event == Unmapped(event_type="o.upd")
    assert profile.kind_of("o.upd") == "order_cancelled|order_placed|payment_failed"


def test_a_kind_choice_s_default_may_be_a_kind() -> None:
    profile = _choice_profile({"from": "state", "map": {"gone": "order_cancelled"}, "default": "order_placed"})
    event = profile.map({**ORDER_BODY, "state": "anything"}).event
    assert event == OrderPlaced(order_key="7", lines=(OrderLine(sku="A", quantity=2),))


@pytest.mark.parametrize(("state", "shown"), [("draft", "'draft'"), (None, "missing"), (True, "True")])
def test_without_a_default_an_unlisted_value_is_refused_naming_the_selector(state: object, shown: str) -> None:
    profile = _choice_profile({"from": "data.state", "map": {"new": "order_placed", "gone": "order_cancelled"}})
    with pytest.raises(MappingError) as caught:
        profile.map({**ORDER_BODY, "data": {"state": state}})
    assert caught.value.field == "data.state"
    assert caught.value.event_type == "o.upd"
    assert shown in caught.value.detail and "gone, new" in caught.value.detail


def test_a_kind_choice_values_may_be_booleans() -> None:
    profile = _choice_profile({"from": "paid", "map": {"true": "order_placed", "false": "order_cancelled"}})
    assert isinstance(profile.map({**ORDER_BODY, "paid": True}).event, OrderPlaced)
    assert profile.map({**ORDER_BODY, "paid": False}).event == OrderCancelled(order_key="7")


def test_an_entry_s_fields_go_only_to_the_chosen_kinds_that_have_them() -> None:
    # `confirmed` is an order_placed field: order_cancelled, chosen by the same entry, does without it.
    profile = _choice_profile(
        {"from": "state", "map": {"paid": "order_placed", "gone": "order_cancelled"}},
        confirmed="state == 'paid'",
    )
    placed = profile.map({**ORDER_BODY, "state": "paid"}).event
    assert isinstance(placed, OrderPlaced) and placed.confirmed
    assert profile.map({**ORDER_BODY, "state": "gone"}).event == OrderCancelled(order_key="7")


def test_an_entry_field_no_chosen_kind_has_is_refused() -> None:
    with pytest.raises(ProfileError, match=r"events\.'o\.upd'\.reference: none of the kinds"):
        _choice_profile({"from": "state", "map": {"paid": "order_placed", "gone": "order_cancelled"}}, reference="r")


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ({"from": "state", "map": {"a": "order_teleported"}}, "order_teleported"),
        ({"from": "state", "map": {"a": "order_placed"}, "default": "nothing"}, "nothing"),
        ({"from": "state"}, "value map"),
        ({"from": "state", "map": {}}, "empty map"),
        ({"from": "state[", "map": {"a": "order_placed"}}, r"events\.'o\.upd'\.kind\.from"),
    ],
)
def test_a_bad_kind_choice_is_refused_naming_the_entry(kind: dict[str, Any], message: str) -> None:
    with pytest.raises(ProfileError, match=message):
        _choice_profile(kind)


def test_a_chosen_kind_still_needs_its_required_fields() -> None:
    with pytest.raises(ProfileError, match="shipment needs an expression for 'reference'"):
        _choice_profile({"from": "state", "map": {"a": "order_placed", "b": "shipment"}})


# --- the mechanism: parameters ---------------------------------------------------------------------


def _parameter_profile(parameters: dict[str, str] | None = None, **declared: Any) -> Profile:
    document: dict[str, Any] = {
        "name": "t",
        "parameters": declared or {"key": "order_id"},
        "envelope": {"type": "type"},
        "events": {"p": "payment_succeeded"},
        "common": {"order_key": "data.meta.${key}"},
    }
    return parse_profile(document, parameters=parameters)


def test_a_parameter_s_default_is_written_into_the_expression() -> None:
    profile = _parameter_profile()
    assert profile.map({"type": "p", "data": {"meta": {"order_id": "O1"}}}).event == PaymentSucceeded(order_key="O1")
    with pytest.raises(MappingError) as caught:
        profile.map({"type": "p", "data": {"meta": {}}})
    assert caught.value.field == "data.meta.order_id"


def test_a_given_parameter_replaces_the_default_as_a_plain_identifier() -> None:
    profile = _parameter_profile({"key": "shop_order"})
    body = {"type": "p", "data": {"meta": {"order_id": "no", "shop_order": "O2"}}}
    assert profile.map(body).event == PaymentSucceeded(order_key="O2")
    with pytest.raises(MappingError) as caught:
        profile.map({"type": "p", "data": {"meta": {"order_id": "no"}}})
    assert caught.value.field == "data.meta.shop_order"


@pytest.mark.parametrize("key", ["shop-order", "order id", "1st", "a.b", 'say "x"', "ключ"])
def test_a_parameter_that_is_no_plain_identifier_is_quoted(key: str) -> None:
    profile = _parameter_profile({"key": key})
    body = {"type": "p", "data": {"meta": {key: "O3", "a": {"b": "wrong"}}}}
    assert profile.map(body).event == PaymentSucceeded(order_key="O3")
    with pytest.raises(MappingError):
        profile.map({"type": "p", "data": {"meta": {}}})


def test_an_unknown_parameter_in_an_expression_is_refused_naming_it() -> None:
    document: dict[str, Any] = {
        "name": "t",
        "parameters": {"key": "order_id"},
        "envelope": {"type": "type"},
        "events": {"p": "payment_succeeded"},
        "common": {"order_key": "data.${order_ref}"},
    }
    with pytest.raises(ProfileError, match=r"common\.order_key: unknown parameter \$\{order_ref\}.*key"):
        parse_profile(document)
    del document["parameters"]
    with pytest.raises(ProfileError, match=r"unknown parameter \$\{order_ref\} \(this profile's: none\)"):
        parse_profile(document)


def test_a_parameter_the_profile_does_not_declare_is_refused() -> None:
    with pytest.raises(
        ProfileError, match=r"parameter 'order_key' is not one of this profile's \(its parameters: key\)"
    ):
        _parameter_profile({"order_key": "x"})
    with pytest.raises(ProfileError, match=r"parameter 'order_metadata_key' is not one of this profile's"):
        load_profile("shopify", parameters={"order_metadata_key": "x"})


@pytest.mark.parametrize("value", ["", "a\nb", "x" * 201])
def test_a_given_parameter_must_be_printable_text(value: str) -> None:
    with pytest.raises(ProfileError, match="parameter 'key'"):
        _parameter_profile({"key": value})


@pytest.mark.parametrize("default", ["", 3, ["order_id"]])
def test_a_declared_parameter_s_default_is_a_non_empty_string(default: object) -> None:
    with pytest.raises(ProfileError, match=r"parameters\.key"):
        _parameter_profile(key=default)


# --- the mechanism: extends ------------------------------------------------------------------------


def test_standard_webhooks_extends_the_stockwire_dialect() -> None:
    profile = load_profile("standard-webhooks")
    assert (profile.name, profile.scheme) == ("standard-webhooks", "standard-webhooks")
    assert set(profile.event_types) == set(load_profile("stockwire").event_types)
    body = {
        "type": "order.created",
        "timestamp": "2026-11-20T15:14:03Z",
        "data": {"order_id": "o-1", "lines": [{"sku": "TEE-RED-M", "qty": 2}], "reservation_id": "cart-9"},
    }
    mapped = profile.map(body, headers={"Webhook-Id": "msg_2Kk", "Webhook-Timestamp": "1795187643"})
    assert mapped.event_type == "order.created"
    assert mapped.event_id == "msg_2Kk"
    assert mapped.occurred_at == 1795187643.0
    assert mapped.event == OrderPlaced(
        order_key="o-1", lines=(OrderLine(sku="TEE-RED-M", quantity=2),), reservation_id="cart-9"
    )
    receipt = profile.map({"type": "inventory.received", "timestamp": 1795187643, "data": {"sku": "MUG-BLK", "qty": 4}})
    assert receipt.event == StockReceived(sku="MUG-BLK", quantity=4)
    assert receipt.event_id is None
    failed = profile.map({"type": "payment.failed", "timestamp": 1795187643, "data": {"order_id": "o-1"}})
    assert failed.event == PaymentFailed(order_key="o-1", release=True)
    assert profile.map({"type": "order.teleported", "data": {}}).event == Unmapped(event_type="order.teleported")


def test_extends_is_for_shipped_profiles_only() -> None:
    with pytest.raises(ProfileError, match="extends"):
        parse_profile({"name": "t", "extends": "stockwire", "envelope": {"type": "type"}})


# --- choosing a source's profile -------------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEME_NAMES)
def test_each_scheme_has_its_own_profile_which_implies_it(scheme: str) -> None:
    assert SCHEME_DEFAULT_PROFILES[scheme] == scheme
    assert load_profile(SCHEME_DEFAULT_PROFILES[scheme]).scheme == scheme
    assert profile_name(SourceSettings(scheme=scheme)) == scheme  # type: ignore[arg-type]


def test_scheme_default_profiles_maps_exactly_the_schemes() -> None:
    assert dict(SCHEME_DEFAULT_PROFILES) == {
        "commerce-engine": "commerce-engine",
        "standard-webhooks": "standard-webhooks",
        "shopify": "shopify",
        "woocommerce": "woocommerce",
        "stripe": "stripe",
    }


def test_a_source_naming_a_profile_and_no_scheme_takes_the_profile_s_scheme() -> None:
    settings = load_settings({"sources": {"x": {"profile": "shopify", "secrets": ["s"]}}})
    assert settings.sources["x"].scheme == "shopify"
    assert settings.sources["x"].profile == "shopify"
    sources = {"w": {"profile": "woocommerce", "secrets": ["s"]}, "p": {"profile": "stripe", "secrets": ["s"]}}
    settings = load_settings({"sources": sources})
    assert (settings.sources["w"].scheme, settings.sources["p"].scheme) == ("woocommerce", "stripe")
    # The canonical dialect implies none: the source keeps its scheme (the default one here).
    settings = load_settings({"sources": {"shop": {"profile": "stockwire", "secrets": ["s"]}}})
    assert settings.sources["shop"].scheme == "commerce-engine"


def test_a_profile_and_a_scheme_that_disagree_are_refused_naming_the_scheme() -> None:
    with pytest.raises(ConfigError, match=r"^\[sources\.x\] scheme: 'stripe' does not agree with profile 'shopify'"):
        load_settings({"sources": {"x": {"profile": "shopify", "scheme": "stripe"}}})


@pytest.mark.parametrize("source", [{"profile": "shopify"}, {"scheme": "shopify"}, {"scheme": "woocommerce"}])
def test_order_metadata_key_on_a_profile_without_it_is_refused_naming_it(source: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match=r"^\[sources\.x\] order_metadata_key: "):
        load_settings({"sources": {"x": {**source, "order_metadata_key": "shop_order"}}})


def test_order_metadata_key_on_a_stripe_source_is_taken() -> None:
    raw = {
        "sources": {
            "shop": {"profile": "shopify", "secrets": ["s"]},
            "pay": {"scheme": "stripe", "orders_source": "shop", "order_metadata_key": "shop_order", "secrets": ["s"]},
        }
    }
    settings = load_settings(raw)
    assert settings.sources["pay"].order_metadata_key == "shop_order"
    profile = source_profile("pay", settings.sources["pay"])
    assert profile.map(_by_number("stripe", 6)["body"]).event == PaymentSucceeded(order_key=E)
