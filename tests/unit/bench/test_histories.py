"""bench/histories.py: each dialect's order histories map cleanly and compare event for event."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter

import pytest

from bench.histories import ORDER_SOURCES, SOURCE_PROFILES, Event, histories
from libs.config import SourceSettings
from libs.profiles import SourceProfiles
from libs.profiles.canonical import Unmapped
from libs.schemes import SCHEMES
from libs.signing import HEADER_SHOPIFY_TOPIC, HEADER_SHOPIFY_WEBHOOK_ID
from services.ingress.webhook import accept_webhook
from services.inventory.adapters.wire import Envelope, read_event

SECRET = "bench-secret"


def _profiles(dialect: str) -> SourceProfiles:
    profiles = {**SOURCE_PROFILES, "ce": "stockwire" if dialect == "stockwire" else "commerce-engine"}
    return SourceProfiles(
        {
            source: SourceSettings(profile=profile, scheme="shopify" if profile == "shopify" else "commerce-engine")
            for source, profile in profiles.items()
        }
    )


def _order_key(event: Event) -> str:
    document = json.loads(event.body)
    if event.headers["Stockwire-Source"] == "shopify":
        return str(document.get("order_id") or document["id"])
    data = document["data"]
    return str(data.get("order_number") or data.get("order_id"))


def _events_per_order(events: list[Event]) -> list[int]:
    """Events per order, orders in the order they were placed (receipts left out)."""
    counts = Counter(_order_key(e) for e in events if e.headers["Stockwire-Source"] != "shop")
    return list(counts.values())


@pytest.mark.parametrize(
    ("dialect", "bodies"),
    [("commerce-engine", "lean"), ("commerce-engine", "full"), ("shopify", "lean"), ("shopify", "full"),
     ("stockwire", "lean")],
)  # fmt: skip
def test_every_event_maps_through_its_source_profile(dialect: str, bodies: str) -> None:
    events = histories(120, skus=50, dialect=dialect, bodies=bodies)
    profiles = _profiles(dialect)
    kinds = Counter()
    for seq, event in enumerate(events, 1):
        envelope = Envelope(event.subject, event.body, event.headers, seq)
        read = read_event(envelope, profiles)  # raises MalformedEvent (a dead letter) on anything wrong
        # Shopify's declined payment is an orders/updated, unmapped on purpose (as payment.failed moves nothing).
        assert not isinstance(read.payload, Unmapped) or read.event_type == "orders/updated", event
        kinds[type(read.payload).__name__] += 1
    assert {"OrderPlaced", "OrderCancelled", "PaymentSucceeded"} <= set(kinds)
    assert kinds["Shipment" if dialect != "stockwire" else "OrderShipped"] > 0


def test_shopify_histories_have_the_commerce_engine_shape() -> None:
    ce = histories(300, seed=7, dialect="commerce-engine")
    shopify = histories(300, seed=7, dialect="shopify")
    assert len(shopify) == len(ce)
    assert _events_per_order(shopify) == _events_per_order(ce)
    for full in (histories(40, seed=7, dialect="commerce-engine", bodies="full"),
                 histories(40, seed=7, dialect="shopify", bodies="full")):  # fmt: skip
        assert _events_per_order(full) == _events_per_order(ce)[:40]


def test_shopify_histories_carry_the_headers_and_subjects_ingress_writes() -> None:
    events = [e for e in histories(60, dialect="shopify") if e.headers["Stockwire-Source"] == ORDER_SOURCES["shopify"]]
    topics = Counter(e.headers["Stockwire-Event-Type"] for e in events)
    assert set(topics) == {
        "orders/create",
        "orders/paid",
        "orders/updated",
        "orders/cancelled",
        "fulfillments/create",
        "fulfillments/update",
    }
    assert len({e.headers["Nats-Msg-Id"] for e in events}) == len(events)
    source = SourceSettings(scheme="shopify", secrets=[SECRET])
    for event in events:
        topic, webhook_id = event.headers["Stockwire-Event-Type"], event.headers["Stockwire-Event-Id"]
        headers = {
            "content-type": "application/json",
            HEADER_SHOPIFY_TOPIC: topic,
            HEADER_SHOPIFY_WEBHOOK_ID: webhook_id,
            **SCHEMES["shopify"].signature.sign(SECRET, event.body, msg_id=webhook_id, timestamp=0),
        }
        received = dt.datetime.fromisoformat(event.headers["Stockwire-Received-At"])
        inbound = accept_webhook("shopify", source, headers, event.body, max_body_bytes=1 << 20, now=received)
        assert (inbound.subject, inbound.headers()) == (event.subject, event.headers)


def test_full_bodies_are_the_fixtures_with_the_orders_substituted() -> None:
    events = histories(20, seed=3, dialect="shopify", bodies="full")
    created = next(json.loads(e.body) for e in events if e.headers["Stockwire-Event-Type"] == "orders/create")
    assert {"customer", "shipping_address", "tax_lines", "client_details"} <= set(created)
    assert all(line["sku"].startswith("SKU-") for line in created["line_items"])
    ce = histories(20, seed=3, dialect="commerce-engine", bodies="full")
    order = json.loads(next(e.body for e in ce if e.headers["Stockwire-Event-Type"] == "order.created"))["data"]
    assert {"billing_address", "grand_total", "applied_promotions"} <= set(order)
    assert order["order_items_count"] == len(order["order_items"])


def test_stockwire_has_no_full_bodies() -> None:
    with pytest.raises(ValueError, match="full"):
        histories(1, dialect="stockwire", bodies="full")
