"""The pure acceptance decision: no HTTP, no broker."""

from __future__ import annotations

import datetime as dt

import pytest

from libs.config import SourceSettings
from libs.schemes import SCHEMES
from libs.signing import commerce_engine_signature, generate_standard_secret, sign_standard_webhook
from services.ingress.webhook import (
    MAX_NESTING,
    WebhookRejected,
    accept_webhook,
    check_content_type,
    check_headers,
    check_size,
    is_ping,
)

CE = SourceSettings(scheme="commerce-engine", secrets=["s"])
NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)


def _ce_headers(body: bytes) -> dict[str, str]:
    return {"content-type": "application/json", "x-webhook-signature": commerce_engine_signature("s", body)}


def test_a_commerce_engine_webhook_becomes_an_event_with_its_subject_and_headers() -> None:
    body = b'{"id": 42, "event_type": "order.created", "data": {}}'
    event = accept_webhook("shop", CE, _ce_headers(body), body, max_body_bytes=1024, now=NOW)
    assert (event.event_id, event.event_type, event.subject) == ("42", "order.created", "commerce.shop.order.created")
    assert event.headers() == {
        "Nats-Msg-Id": "shop:42",
        "Stockwire-Source": "shop",
        "Stockwire-Event-Type": "order.created",
        "Stockwire-Event-Id": "42",
        "Stockwire-Received-At": "2026-11-28T12:00:00.000000+00:00",
    }


def test_standard_webhooks_take_the_id_from_the_header_and_the_type_from_the_body() -> None:
    secret = generate_standard_secret()
    body = b'{"type": "payment.captured", "data": {"order_id": "o"}}'
    signed = sign_standard_webhook(secret, "msg_9", body, timestamp=int(NOW.timestamp()))
    source = SourceSettings(scheme="standard-webhooks", secrets=[secret])
    headers = {"content-type": "application/json; charset=utf-8", **signed.as_dict()}
    event = accept_webhook("psp", source, headers, body, max_body_bytes=1024, now=NOW)
    assert (event.event_id, event.event_type, event.msg_id) == ("msg_9", "payment.captured", "psp:msg_9")


def test_nothing_unauthenticated_is_parsed() -> None:
    with pytest.raises(WebhookRejected) as refused:
        accept_webhook(
            "shop",
            CE,
            {"content-type": "application/json", "x-webhook-signature": "0"},
            b"{bad",
            max_body_bytes=1024,
            now=NOW,
        )
    assert refused.value.status == 401


@pytest.mark.parametrize("value", [True, 1.5, None, "", "x" * 257, "a\nb", ["a"]])
def test_ids_must_be_printable_strings_or_integers(value: object) -> None:
    import json

    body = json.dumps({"id": value, "event_type": "order.created"}).encode()
    with pytest.raises(WebhookRejected) as refused:
        accept_webhook("shop", CE, _ce_headers(body), body, max_body_bytes=4096, now=NOW)
    assert (refused.value.status, refused.value.code) == (422, "missing_id")


def test_size_and_content_type_checks() -> None:
    check_size(None, 10)
    check_size("10", 10)
    with pytest.raises(WebhookRejected, match="over the limit"):
        check_size("11", 10)
    with pytest.raises(WebhookRejected) as refused:
        check_size("ten", 10)
    assert refused.value.status == 400
    check_content_type("application/cloudevents+json")
    with pytest.raises(WebhookRejected):
        check_content_type("application/x-www-form-urlencoded")


@pytest.mark.parametrize("declared", ["9" * 400, "9" * 5000, " 1_0", "\u0661\u0662", "\u00b2", "-1", "+5", "1e3", ""])
def test_a_content_length_that_is_not_plain_bounded_digits_is_refused(declared: str) -> None:
    with pytest.raises(WebhookRejected) as refused:
        check_size(declared, 10**12)
    assert (refused.value.status, refused.value.code) == (400, "bad_content_length")


def test_each_header_ingress_reads_is_bounded() -> None:
    check_headers({"webhook-id": "m" * 256, "x-other": "y" * 100_000})
    with pytest.raises(WebhookRejected) as refused:
        check_headers({"webhook-id": "m" * 257})
    assert (refused.value.status, refused.value.code) == (431, "header_too_large")
    assert "webhook-id" in refused.value.detail


def _nested_body(depth: int, filler: bytes = b"") -> bytes:
    inner = b"[" * (depth - 1) + filler + b"]" * (depth - 1)
    return b'{"id":"d","event_type":"order.created","data":' + inner + b"}"


@pytest.mark.parametrize("depth", [MAX_NESTING + 1, 200, 999, 1000, 5000, 100_000])
def test_documents_nested_beyond_the_limit_are_refused_not_raised(depth: int) -> None:
    body = _nested_body(depth)
    with pytest.raises(WebhookRejected) as refused:
        accept_webhook("shop", CE, _ce_headers(body), body, max_body_bytes=1 << 20, now=NOW)
    assert (refused.value.status, refused.value.code) == (400, "nesting_too_deep")


def test_depth_is_measured_not_guessed_from_bracket_counts() -> None:
    # Many brackets inside strings and many siblings: deep enough in count, shallow in structure.
    body = _nested_body(MAX_NESTING, filler=b'"' + b"[{" * 500 + b'"')
    accept_webhook("shop", CE, _ce_headers(body), body, max_body_bytes=1 << 20, now=NOW)
    wide = b'{"id":"w","event_type":"order.created","data":[' + b",".join([b"[{}]"] * 500) + b"]}"
    accept_webhook("shop", CE, _ce_headers(wide), wide, max_body_bytes=1 << 20, now=NOW)


def test_an_id_key_is_a_valid_kv_key_of_bounded_length_whatever_the_id() -> None:
    import re

    from services.ingress.identity import id_key

    keys = {id_key(f"shop:{event_id}") for event_id in ["a", "a.b", "ü ~*>", "x" * 256, "A"]}
    assert len(keys) == 5, "different ids, different keys"
    assert all(re.fullmatch(r"[-/_=.a-zA-Z0-9]{1,80}", key) for key in keys)
    assert id_key("shop:a") != id_key("psp:a"), "the source is part of the key"


def test_conflict_evidence_keeps_the_body_and_both_digests() -> None:
    import hashlib

    from services.ingress.identity import conflict_evidence
    from services.ingress.webhook import InboundWebhook

    event = InboundWebhook("shop", "dup-1", "order.created", b'{"qty":7}', NOW)
    evidence = conflict_evidence(event, "f" * 64)
    digest = hashlib.sha256(b'{"qty":7}').hexdigest()
    assert evidence.subject == "deadletter.ingress.commerce.shop.order.created"
    assert evidence.payload == b'{"qty":7}'
    assert evidence.msg_id == evidence.headers["Nats-Msg-Id"] == f"conflict:shop:dup-1:{digest}"
    assert evidence.headers["Stockwire-First-Body-Digest"] == "f" * 64
    assert evidence.headers["Stockwire-Body-Digest"] == digest
    assert evidence.headers["Stockwire-Event-Msg-Id"] == "shop:dup-1"


# --- Shopify, WooCommerce, Stripe: id and type where each platform puts them ------------------------

SHOPIFY = SourceSettings(scheme="shopify", secrets=["shpss_old", "shpss_new"])
WOO = SourceSettings(scheme="woocommerce", secrets=["wc-secret"])
STRIPE = SourceSettings(scheme="stripe", secrets=["whsec_stripe"])


def _delivery(
    source: SourceSettings, event_id: str, event_type: str, data: object, secret: str | None = None
) -> tuple[bytes, dict[str, str]]:
    scheme = SCHEMES[source.scheme]
    return scheme.delivery(
        secret or source.secrets[-1], event_id=event_id, event_type=event_type, data=data, now=int(NOW.timestamp())
    )


def test_a_shopify_topic_keeps_its_spelling_and_becomes_subject_levels() -> None:
    body, headers = _delivery(
        SHOPIFY, "b54557e4-0000-4000-8000-000000000001", "orders/create", {"id": 820982911946154508}
    )
    assert set(headers) == {"content-type", "x-shopify-hmac-sha256", "x-shopify-webhook-id", "x-shopify-topic"}
    event = accept_webhook("store", SHOPIFY, headers, body, max_body_bytes=4096, now=NOW)
    assert event.event_id == "b54557e4-0000-4000-8000-000000000001"
    assert event.subject == "commerce.store.orders.create"
    assert event.headers()["Stockwire-Event-Type"] == "orders/create"
    assert event.msg_id == event.headers()["Nats-Msg-Id"] == "store:b54557e4-0000-4000-8000-000000000001"
    # Signed with the old secret of a rotation: still accepted.
    old_body, old_headers = _delivery(SHOPIFY, "w2", "inventory_levels/update", {"available": 3}, secret="shpss_old")
    event = accept_webhook("store", SHOPIFY, old_headers, old_body, max_body_bytes=4096, now=NOW)
    assert event.subject == "commerce.store.inventory_levels.update"


@pytest.mark.parametrize(
    ("header", "value", "status", "code"),
    [
        ("x-shopify-topic", "orders.create", 422, "invalid_event_type"),
        ("x-shopify-topic", "Orders/Create", 422, "invalid_event_type"),
        ("x-shopify-topic", None, 422, "missing_event_type"),
        ("x-shopify-webhook-id", None, 422, "missing_id"),
        ("x-shopify-webhook-id", "a\nb", 422, "missing_id"),
        ("x-shopify-hmac-sha256", None, 401, "invalid_signature"),
        ("x-shopify-topic", "t" * 257, 431, "header_too_large"),
    ],
)
def test_shopify_headers_are_checked(header: str, value: str | None, status: int, code: str) -> None:
    body, headers = _delivery(SHOPIFY, "w1", "orders/create", {"id": 1})
    headers = {k: v for k, v in headers.items() if k != header} | ({header: value} if value is not None else {})
    with pytest.raises(WebhookRejected) as refused:
        accept_webhook("store", SHOPIFY, headers, body, max_body_bytes=4096, now=NOW)
    assert (refused.value.status, refused.value.code) == (status, code)
    if code in ("missing_id", "missing_event_type", "invalid_event_type"):
        assert header in refused.value.detail, "the refusal names the header"


def test_a_woocommerce_delivery_id_gets_the_body_s_digest() -> None:
    import hashlib

    order = {"id": 4750, "status": "processing", "line_items": [{"sku": "A", "quantity": 1}]}
    body, headers = _delivery(WOO, "36e520ebabc2fa725092ff4a47acedf2", "order.created", order)
    event = accept_webhook("woo", WOO, headers, body, max_body_bytes=4096, now=NOW)
    assert event.event_id == f"36e520ebabc2fa725092ff4a47acedf2.{hashlib.sha256(body).hexdigest()[:16]}"
    assert (event.event_type, event.subject) == ("order.created", "commerce.woo.order.created")
    # The same delivery id within one second, another event: another id, not a conflict.
    other_body, other_headers = _delivery(
        WOO, "36e520ebabc2fa725092ff4a47acedf2", "order.updated", {**order, "id": 4751}
    )
    other = accept_webhook("woo", WOO, other_headers, other_body, max_body_bytes=4096, now=NOW)
    assert other.event_id != event.event_id and other.event_id.startswith("36e520ebabc2fa725092ff4a47acedf2.")


def test_a_stripe_event_s_id_and_type_are_in_its_body() -> None:
    body, headers = _delivery(STRIPE, "evt_1NG8Du2eZvKYlo2CUI79vXWy", "payment_intent.succeeded", {"id": "pi_1"})
    assert set(headers) == {"content-type", "stripe-signature"}
    event = accept_webhook("psp", STRIPE, headers, body, max_body_bytes=4096, now=NOW)
    assert (event.event_id, event.event_type) == ("evt_1NG8Du2eZvKYlo2CUI79vXWy", "payment_intent.succeeded")
    assert event.subject == "commerce.psp.payment_intent.succeeded"
    stale = dt.datetime.fromtimestamp(NOW.timestamp() + 301, dt.UTC)
    with pytest.raises(WebhookRejected) as refused:
        accept_webhook("psp", STRIPE, headers, body, max_body_bytes=4096, now=stale)
    assert (refused.value.status, refused.value.code) == (401, "invalid_signature")
    assert "too old" in refused.value.detail


def test_only_a_woocommerce_source_answers_the_unsigned_url_test() -> None:
    form = {"content-type": "application/x-www-form-urlencoded"}
    assert is_ping(WOO, form, b"webhook_id=3")
    assert not is_ping(SHOPIFY, form, b"webhook_id=3")
    assert not is_ping(CE, form, b"webhook_id=3")
    assert not is_ping(WOO, {**form, "x-wc-webhook-signature": "AAAA"}, b"webhook_id=3")
    with pytest.raises(WebhookRejected) as refused:  # anything else from WooCommerce is verified as usual
        accept_webhook("woo", WOO, form, b"webhook_id=3&more=1", max_body_bytes=4096, now=NOW)
    assert refused.value.code == "unsupported_media_type"
