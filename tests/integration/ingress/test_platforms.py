"""Shopify, WooCommerce and Stripe deliveries through the real ingress app into a real nats-server.

The deliveries here are signed as each platform documents it, without libs.signing: Shopify's and
WooCommerce's base64 HMAC of the body written out below, Stripe's by the ``stripe`` package itself.
The refusals are rows of the table-driven test in test_webhooks.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import httpx
import pytest
import stripe
from litestar.testing import AsyncTestClient
from nats.js import JetStreamContext
from nats.js.errors import NoKeysError

from libs.topology import COMMERCE, DEADLETTER, KV_EVENT_IDS

from .conftest import (
    SHOPIFY_OLD_SECRET,
    SHOPIFY_SECRET,
    STRIPE_OLD_SECRET,
    STRIPE_SECRET,
    WOO_OLD_SECRET,
    WOO_SECRET,
)


def _base64_hmac(secret: str, body: bytes) -> str:
    """Shopify ("Verify webhook deliveries") and WooCommerce (WC_Webhook::generate_signature): HMAC-SHA256 of
    the raw body keyed with the secret, base64."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


async def _messages(js: JetStreamContext, stream: str = COMMERCE) -> int:
    return (await js.stream_info(stream)).state.messages


ORDER = json.dumps({"id": 820982911946154508, "name": "#1001", "line_items": [{"sku": "TEE-RED-M", "quantity": 2}]})


def _shopify(
    body: bytes, webhook_id: str, topic: str = "orders/create", secret: str = SHOPIFY_SECRET
) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "X-Shopify-Hmac-Sha256": _base64_hmac(secret, body),
        "X-Shopify-Topic": topic,
        "X-Shopify-Webhook-Id": webhook_id,
        "X-Shopify-Event-Id": "98880550-7158-44d4-b7cd-2c97c8a091b5",
        "X-Shopify-Shop-Domain": "example.myshopify.com",
        "X-Shopify-API-Version": "2026-07",
    }


async def test_a_shopify_delivery_re_sent_with_its_webhook_id_is_one_message(
    ingress: AsyncTestClient, js: JetStreamContext
) -> None:
    body = ORDER.encode()
    first = await ingress.post("/webhooks/shopify", content=body, headers=_shopify(body, "wh-1"))
    assert first.status_code == 200 and first.json()["status"] == "accepted", first.text
    # Shopify retries with the original payload; during a secret rotation it may still sign with the old one.
    again = await ingress.post(
        "/webhooks/shopify", content=body, headers=_shopify(body, "wh-1", secret=SHOPIFY_OLD_SECRET)
    )
    assert again.status_code == 200 and again.json() == {"status": "duplicate"}, again.text
    assert await _messages(js) == 1
    stored = await js.get_msg(COMMERCE, first.json()["stream_seq"])
    assert stored.subject == "commerce.shopify.orders.create"
    assert stored.data == body
    assert stored.headers["Nats-Msg-Id"] == "shopify:wh-1"
    assert stored.headers["Stockwire-Event-Type"] == "orders/create"
    assert stored.headers["Stockwire-Event-Id"] == "wh-1"


async def test_deliveries_of_one_merchant_action_are_separate_events(
    ingress: AsyncTestClient, js: JetStreamContext
) -> None:
    # A checkout: orders/create and orders/paid share X-Shopify-Event-Id, each has its own X-Shopify-Webhook-Id.
    body = ORDER.encode()
    created = await ingress.post("/webhooks/shopify", content=body, headers=_shopify(body, "wh-a", "orders/create"))
    paid = await ingress.post("/webhooks/shopify", content=body, headers=_shopify(body, "wh-b", "orders/paid"))
    assert [created.json()["status"], paid.json()["status"]] == ["accepted", "accepted"]
    subjects = [(await js.get_msg(COMMERCE, seq)).subject for seq in (1, 2)]
    assert subjects == ["commerce.shopify.orders.create", "commerce.shopify.orders.paid"]


def _woo(body: bytes, delivery_id: str, topic: str, secret: str = WOO_SECRET) -> dict[str, str]:
    resource, _, event = topic.partition(".")
    return {
        "content-type": "application/json",
        "X-WC-Webhook-Source": "https://shop.example/",
        "X-WC-Webhook-Topic": topic,
        "X-WC-Webhook-Resource": resource,
        "X-WC-Webhook-Event": event,
        "X-WC-Webhook-Signature": _base64_hmac(secret, body),
        "X-WC-Webhook-ID": "3",
        "X-WC-Webhook-Delivery-ID": delivery_id,
    }


async def _url_test(ingress: AsyncTestClient, headers: dict[str, str]) -> httpx.Response:
    """WC_Webhook::deliver_ping(): form-encoded ``webhook_id=<id>``, unsigned; it must be answered 200."""
    headers = {"content-type": "application/x-www-form-urlencoded", **headers}
    return await ingress.post("/webhooks/woo", content=b"webhook_id=3", headers=headers)


async def test_woocommerce_s_url_test_is_answered_and_kept_nowhere(
    ingress: AsyncTestClient, js: JetStreamContext
) -> None:
    response = await _url_test(ingress, {"user-agent": "WooCommerce/9.0 Hookshot"})
    assert response.status_code == 200 and response.json() == {"status": "ping"}
    assert await _messages(js) == 0
    assert await _messages(js, DEADLETTER) == 0
    with pytest.raises(NoKeysError):
        await (await js.key_value(KV_EVENT_IDS)).keys()
    assert await ingress.app.state.writer.spool.depth() == 0


@pytest.mark.parametrize("header", ["x-webhook-signature", "webhook-id", "X-WC-Webhook-Topic"])
async def test_a_url_test_with_an_over_long_header_is_refused_like_any_webhook(
    ingress: AsyncTestClient, header: str
) -> None:
    response = await _url_test(ingress, {header: "x" * 5000})
    assert response.status_code == 431, response.text
    assert response.json()["error"] == "header_too_large"


async def test_woocommerce_deliveries_sharing_a_delivery_id_are_two_events(
    ingress: AsyncTestClient, js: JetStreamContext
) -> None:
    created = json.dumps({"id": 4750, "status": "processing", "line_items": [{"sku": "A", "quantity": 1}]}).encode()
    updated = json.dumps({"id": 4750, "status": "completed", "line_items": [{"sku": "A", "quantity": 1}]}).encode()
    # WC_Webhook::get_new_delivery_id(): a hash of the webhook's id and the current second.
    same_second = "36e520ebabc2fa725092ff4a47acedf2"
    first = await ingress.post("/webhooks/woo", content=created, headers=_woo(created, same_second, "order.created"))
    second = await ingress.post(
        "/webhooks/woo", content=updated, headers=_woo(updated, same_second, "order.updated", WOO_OLD_SECRET)
    )
    repeat = await ingress.post("/webhooks/woo", content=created, headers=_woo(created, same_second, "order.created"))
    assert [r.json()["status"] for r in (first, second, repeat)] == ["accepted", "accepted", "duplicate"]
    assert await _messages(js) == 2
    stored = await js.get_msg(COMMERCE, 1)
    assert stored.subject == "commerce.woo.order.created"
    digest = hashlib.sha256(created).hexdigest()[:16]
    assert stored.headers["Nats-Msg-Id"] == f"woo:{same_second}.{digest}"


async def test_a_stripe_event_signed_by_the_stripe_package_is_accepted_once(
    ingress: AsyncTestClient, js: JetStreamContext
) -> None:
    event = {
        "id": "evt_1NG8Du2eZvKYlo2CUI79vXWy",
        "object": "event",
        "type": "payment_intent.succeeded",
        "created": 1_686_089_970,
        "data": {"object": {"id": "pi_3", "object": "payment_intent", "metadata": {"order_id": "1001"}}},
    }
    payload = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(payload, STRIPE_SECRET)
    response = await ingress.post(
        "/webhooks/stripe",
        content=payload.encode(),
        headers={"content-type": "application/json; charset=utf-8", "Stripe-Signature": header},
    )
    assert response.status_code == 200, response.text
    stored = await js.get_msg(COMMERCE, response.json()["stream_seq"])
    assert stored.subject == "commerce.stripe.payment_intent.succeeded"
    assert stored.headers["Nats-Msg-Id"] == "stripe:evt_1NG8Du2eZvKYlo2CUI79vXWy"
    assert stored.headers["Stockwire-Event-Type"] == "payment_intent.succeeded"
    # Stripe retries the same event; after an endpoint secret roll it signs with both secrets.
    old = stripe.WebhookSignature.generate_signature_header(payload, STRIPE_OLD_SECRET)
    t, old_v1 = old.split(",")
    rolled = f"{t},{old_v1},v1=" + "0" * 64
    again = await ingress.post(
        "/webhooks/stripe",
        content=payload.encode(),
        headers={"content-type": "application/json", "Stripe-Signature": rolled},
    )
    assert again.status_code == 200 and again.json() == {"status": "duplicate"}, again.text
    assert await _messages(js) == 1
