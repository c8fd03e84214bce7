"""The Commerce Engine fixtures follow the published schema: every required field present, every enum
value one the schema allows, and every event type of both documented vocabularies covered.

The required-field lists and enums below were read from ``@commercengine/storefront-sdk`` 0.15.0
(``dist/index.d.mts``, ``components["schemas"]``: a field without ``?`` is required); the event names
from commercengine/skills, ``skills/webhooks/SKILL.md`` (current text, and its first version for the
earlier names). ``tests/fixtures/commerce_engine/README.md`` lists the fixtures.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "commerce_engine"

ENVELOPE = ("id", "event_type", "created_at", "data")

REQUIRED: dict[str, tuple[str, ...]] = {
    "Order": ("applied_promotions", "applied_coupons"),
    "OrderItem": (
        "product_id", "product_name", "product_image_url", "product_type", "sku", "slug", "variant_id",
        "variant_name", "backorder", "on_promotion", "on_subscription", "subscription_plan",
        "subscription_interval", "subscription_frequency", "quantity", "free_quantity", "is_free_item",
        "price_including_tax", "selling_price", "listing_price", "selling_price_excluding_tax",
        "promotion_discount_amount", "coupon_discount_amount", "tax_type", "tax_rate", "tax_amount",
        "handling_charge_excluding_tax", "handling_charge_tax_rate", "handling_charge_including_tax",
    ),
    "AppliedPromotion": (
        "promotion_id", "promotion_type", "savings", "product_id", "variant_id", "product_name", "variant_name",
        "applied_sequence", "scope",
    ),
    "AppliedCoupon": (
        "coupon_id", "coupon_type", "savings", "product_id", "variant_id", "product_name", "variant_name",
    ),
    "CustomerAddress": (
        "first_name", "last_name", "country_code", "phone", "email", "address_line1", "address_line2", "landmark",
        "pincode", "city", "state", "country", "tax_identification_number", "business_name", "is_phone_verified",
        "is_email_verified", "nickname",
    ),
    # Shipment and return events carry the order's number beside the object (issue 11).
    "OrderShipment": ("is_return_allowed", "order_number"),
    "ShipmentItem": (),
    "OrderReturn": ("order_number",),
    "OrderReturnItem": ("shipment_number", "product_id", "variant_id", "quantity"),
    "Subscription": (
        "id", "plan_id", "plan_name", "price", "status", "start_date", "end_date", "trial_days", "trial_start_date",
        "trial_end_date", "next_billing_date", "last_payment_date", "pause_start_date", "pause_end_date",
        "billing_frequency", "billing_interval", "billing_limit", "shipping_frequency", "shipping_interval",
        "shipping_limit", "coupon_id", "coupon_code", "coupon_discount_percent", "coupon_discount_amount",
        "coupon_redemption_limit", "is_prepaid", "usage_based_billing", "usage_based_tiers", "grace_period_days",
        "is_cancellation_allowed", "days_until_cancellation_allowed", "currency", "metadata", "created_at",
        "modified_at",
    ),
    "Currency": ("name", "code", "symbol"),
}  # fmt: skip

# Nested objects: (schema of the parent, its field) -> (schema of the value, whether it is a list).
CHILDREN: dict[tuple[str, str], tuple[str, bool]] = {
    ("Order", "order_items"): ("OrderItem", True),
    ("Order", "applied_promotions"): ("AppliedPromotion", True),
    ("Order", "applied_coupons"): ("AppliedCoupon", True),
    ("Order", "billing_address"): ("CustomerAddress", False),
    ("Order", "shipping_address"): ("CustomerAddress", False),
    ("OrderShipment", "shipment_items"): ("ShipmentItem", True),
    ("OrderReturn", "items"): ("OrderReturnItem", True),
    ("Subscription", "currency"): ("Currency", False),
}

SHIPMENT_STATUS = (
    "unscheduled", "schedule_requested", "scheduled", "packed", "shipped", "in_transit", "out_for_delivery",
    "delivery_attempted", "undelivered", "return_to_origin", "delivered", "cancelled", "lost",
)  # fmt: skip
ENUMS: dict[tuple[str, str], tuple[object, ...]] = {
    ("Order", "status"): (
        "draft", "awaiting_approval", "confirmed", "partially_scheduled", "awaiting_shipment", "shipped",
        "partially_shipped", "undelivered", "partially_undelivered", "return_to_origin",
        "partially_return_to_origin", "complete", "partially_delivered", "cancelled", "pending",
    ),
    ("Order", "payment_status"): ("pending", "success", "failed", "partially_paid"),
    ("OrderItem", "product_type"): ("physical", "digital", "bundle"),
    ("OrderItem", "tax_type"): ("GST",),
    ("AppliedPromotion", "promotion_type"): ("discount", "free-goods", "free-shipping", "buy-x-get-y", "volume-based"),
    ("AppliedCoupon", "coupon_type"): (
        "discount", "free-goods", "fixed-price", "free-shipping", "buy-x-get-y", "volume-based", "accelerated-rewards",
    ),
    ("CustomerAddress", "country"): ("India",),
    ("OrderShipment", "status"): SHIPMENT_STATUS,
    ("OrderReturn", "status"): ("created", "approved", "rejected", "complete", "cancelled"),
    ("Subscription", "status"): ("created", "active", "paused", "revoked"),
    ("Subscription", "billing_frequency"): ("monthly",),
    ("Subscription", "shipping_frequency"): ("monthly",),
}  # fmt: skip

# The object under `data`, by the event type's first token.
DATA_SCHEMA = {
    "order": "Order",
    "payment": "Order",
    "shipment": "OrderShipment",
    "return": "OrderReturn",
    "subscription": "Subscription",
}

CURRENT_VOCABULARY = {
    "order.created", "order.confirmed", "order.completed", "order.cancelled",
    "payment.success", "payment.failed", "payment.retried",
    "payment.refund.initiated", "payment.refund.success", "payment.refund.failed",
    "shipment.created", "shipment.updated", "shipment.delivered", "shipment.cancelled",
}  # fmt: skip
EARLIER_VOCABULARY = {
    "order.created", "order.confirmed", "order.cancelled",
    "payment.successful", "payment.failed",
    "shipment.created", "shipment.shipped", "shipment.delivered", "shipment.cancelled",
    "subscription.created", "subscription.renewed", "subscription.paused", "subscription.revoked",
    "return.initiated",
}  # fmt: skip


def _fixture_paths() -> list[Path]:
    return sorted(FIXTURES.glob("*.json"))


def _load(path: Path) -> dict[str, Any]:
    document = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def objects(schema: str, value: dict[str, Any], where: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Every (schema name, path, object) in ``value``, itself first."""
    yield schema, where, value
    for (parent, field), (child, is_list) in CHILDREN.items():
        if parent != schema or value.get(field) is None:
            continue
        entries = value[field] if is_list else [value[field]]
        for i, entry in enumerate(entries):
            assert isinstance(entry, dict), f"{where}.{field}: an object is expected"
            yield from objects(child, entry, f"{where}.{field}[{i}]" if is_list else f"{where}.{field}")


def _data_schema(document: dict[str, Any]) -> str:
    return DATA_SCHEMA[document["event_type"].split(".")[0]]


def test_there_are_fixtures_and_the_readme_lists_each() -> None:
    paths = _fixture_paths()
    assert len(paths) >= 30
    readme = (FIXTURES / "README.md").read_text(encoding="utf-8")
    assert [p.name for p in paths if p.name not in readme] == []


@pytest.mark.parametrize("path", _fixture_paths(), ids=lambda p: p.name)
def test_every_required_field_is_present_and_every_enum_value_allowed(path: Path) -> None:
    document = _load(path)
    assert [field for field in ENVELOPE if field not in document] == []
    assert path.name.split("-", 1)[1].startswith(document["event_type"])
    missing, wrong = [], []
    for schema, where, value in objects(_data_schema(document), document["data"], "data"):
        missing += [f"{where}.{field} ({schema})" for field in REQUIRED[schema] if field not in value]
        wrong += [
            f"{where}.{field}={value[field]!r} ({schema})"
            for (owner, field), allowed in ENUMS.items()
            if owner == schema and field in value and value[field] not in allowed
        ]
    assert missing == []
    assert wrong == []


def test_every_documented_event_type_of_both_vocabularies_has_a_fixture() -> None:
    covered = {_load(path)["event_type"] for path in _fixture_paths()}
    assert sorted((CURRENT_VOCABULARY | EARLIER_VOCABULARY) - covered) == []


def test_the_fixtures_hold_the_cases_the_ledger_needs() -> None:
    documents = [_load(path) for path in _fixture_paths()]
    items = [item for d in documents if d["event_type"] == "order.created" for item in d["data"]["order_items"]]
    assert any(item["free_quantity"] > 0 and item["quantity"] == 0 and item["is_free_item"] for item in items)
    assert any(item["free_quantity"] > 0 and item["quantity"] > 0 for item in items)
    assert {"physical", "digital", "bundle"} <= {item["product_type"] for item in items}
    assert any(item["backorder"] for item in items)
    shipments: dict[str, set[str]] = {}
    for d in documents:
        if d["event_type"].startswith("shipment."):
            shipments.setdefault(d["data"]["order_number"], set()).add(d["data"]["reference_number"])
    assert max(len(references) for references in shipments.values()) >= 2
    statuses = [d["data"]["status"] for d in documents if d["event_type"] == "shipment.updated"]
    assert len(set(statuses)) >= 4
