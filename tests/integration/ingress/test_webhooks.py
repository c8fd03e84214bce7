"""ingress against a real nats-server: accepted, duplicate, every refusal of design §3."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from nats.js import JetStreamContext
from standardwebhooks import Webhook

from libs.signing import commerce_engine_signature, sign_standard_webhook, sign_stripe
from libs.topology import COMMERCE
from tests.support import ce_body, ce_headers

from .conftest import (
    CE_SECRET,
    SECRETS,
    SHOPIFY_SECRET,
    STRIPE_OLD_SECRET,
    STRIPE_SECRET,
    SW_SECRET,
    WOO_SECRET,
    platform_headers,
)


async def _stream_messages(js: JetStreamContext) -> int:
    return (await js.stream_info(COMMERCE)).state.messages


async def test_accepted_event_is_in_the_stream_byte_for_byte(ingress: AsyncTestClient, js: JetStreamContext) -> None:
    body = ce_body("order.created", "evt-1")
    response = await ingress.post("/webhooks/ce", content=body, headers=ce_headers(CE_SECRET, body))
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "accepted", "stream_seq": 1}
    stored = await js.get_msg(COMMERCE, 1)
    assert stored.subject == "commerce.ce.order.created"
    assert stored.data == body
    assert stored.headers["Nats-Msg-Id"] == "ce:evt-1"
    assert stored.headers["Stockwire-Source"] == "ce"
    assert stored.headers["Stockwire-Event-Type"] == "order.created"
    received = datetime.fromisoformat(stored.headers["Stockwire-Received-At"])
    assert abs((datetime.now(UTC) - received).total_seconds()) < 60


async def test_old_secret_still_accepted_during_rotation(ingress: AsyncTestClient, js: JetStreamContext) -> None:
    body = ce_body("inventory.received", "evt-rot", sku="A", qty=5)
    response = await ingress.post("/webhooks/ce", content=body, headers=ce_headers("ce-secret-old", body))
    assert response.status_code == 200
    assert await _stream_messages(js) == 1


async def test_duplicate_delivery_answers_duplicate_and_stores_once(
    ingress: AsyncTestClient, js: JetStreamContext
) -> None:
    body = ce_body("order.created", "evt-dup")
    first = await ingress.post("/webhooks/ce", content=body, headers=ce_headers(CE_SECRET, body))
    second = await ingress.post("/webhooks/ce", content=body, headers=ce_headers(CE_SECRET, body))
    assert first.json()["status"] == "accepted"
    assert second.status_code == 200 and second.json() == {"status": "duplicate"}
    assert await _stream_messages(js) == 1


async def test_the_same_id_from_two_sources_is_two_events(ingress: AsyncTestClient, js: JetStreamContext) -> None:
    body = ce_body("order.created", "shared-id")
    await ingress.post("/webhooks/ce", content=body, headers=ce_headers(CE_SECRET, body))
    sw_body = json.dumps({"type": "order.created", "data": {}}).encode()
    headers = {"content-type": "application/json", **sign_standard_webhook(SW_SECRET, "shared-id", sw_body).as_dict()}
    response = await ingress.post("/webhooks/sw", content=sw_body, headers=headers)
    assert response.json()["status"] == "accepted"
    assert await _stream_messages(js) == 2


async def test_standard_webhooks_signed_by_the_official_package_are_accepted(
    ingress: AsyncTestClient, js: JetStreamContext
) -> None:
    body = json.dumps(
        {"type": "payment.successful", "timestamp": "2026-11-28T10:00:00Z", "data": {"order_id": "o-9"}}
    ).encode()
    signature = Webhook(SW_SECRET).sign("msg_official", datetime.now(UTC), body.decode())
    headers = {
        "content-type": "application/json",
        "webhook-id": "msg_official",
        "webhook-timestamp": str(int(time.time())),
        "webhook-signature": signature,
    }
    response = await ingress.post("/webhooks/sw", content=body, headers=headers)
    assert response.status_code == 200, response.text
    stored = await js.get_msg(COMMERCE, response.json()["stream_seq"])
    assert stored.subject == "commerce.sw.payment.successful"
    assert stored.headers["Nats-Msg-Id"] == "sw:msg_official"


def _sw_headers(body: bytes, *, msg_id: str = "m1", offset: int = 0, secret: str = SW_SECRET) -> dict[str, str]:
    signed = sign_standard_webhook(secret, msg_id, body, timestamp=int(time.time()) + offset)
    return {"content-type": "application/json", **signed.as_dict()}


_OK_SW = json.dumps({"type": "order.created", "data": {}}).encode()


@dataclass(frozen=True)
class SignedLater:
    """Standard Webhooks headers signed when the test runs, not when the table is built: a suite that runs
    longer than the 5-minute tolerance must not turn a valid timestamp stale (or a future one valid)."""

    body: bytes
    msg_id: str = "m1"
    offset: int = 0
    secret: str = SW_SECRET
    extra: Mapping[str, str | bytes] = field(default_factory=dict)

    def build(self) -> dict[str, Any]:
        return {**_sw_headers(self.body, msg_id=self.msg_id, offset=self.offset, secret=self.secret), **self.extra}


def _sw(
    body: bytes, *, msg_id: str = "m1", offset: int = 0, secret: str = SW_SECRET, extra: Mapping[str, Any] | None = None
) -> SignedLater:
    return SignedLater(body, msg_id, offset, secret, dict(extra or {}))


@dataclass(frozen=True)
class StripeLater:
    """A ``Stripe-Signature`` made when the test runs (its ``t=`` must be fresh), one ``v1`` per secret."""

    body: bytes
    offset: int = 0
    secrets: tuple[str, ...] = (STRIPE_SECRET,)
    header: str | None = None
    """The header's value as given (no signing)."""

    def build(self) -> dict[str, Any]:
        t = int(time.time()) + self.offset
        signed = [sign_stripe(secret, self.body, t) for secret in self.secrets]
        value = (
            self.header if self.header is not None else ",".join([signed[0], *(s.split(",")[1] for s in signed[1:])])
        )
        return {"content-type": "application/json", "stripe-signature": value}


_SHOPIFY = b'{"id":820982911946154508,"email":"jon@example.com","line_items":[]}'
_WOO = b'{"id":4750,"status":"processing","line_items":[{"sku":"A","quantity":1}]}'
_STRIPE = b'{"id":"evt_1","object":"event","type":"payment_intent.succeeded","data":{"object":{}}}'


_PLATFORM_BODIES = {"shopify": (_SHOPIFY, SHOPIFY_SECRET), "woo": (_WOO, WOO_SECRET)}


def _platform(
    name: str,
    source: str,
    status: int,
    code: str,
    *,
    body: bytes | None = None,
    sent: bytes | None = None,
    secret: str | None = None,
    **headers: str | None,
) -> tuple[str, str, bytes, dict[str, str], int, str]:
    """A Shopify or WooCommerce row: ``body`` signed with ``secret`` (default: the source's sample body and
    current secret), ``sent`` in its place if given (a tampered body), ``headers`` replaced (None: left out)."""
    default_body, default_secret = _PLATFORM_BODIES[source]
    signed = default_body if body is None else body
    signed_headers = platform_headers(source, signed, secret or default_secret, headers)
    return (name, source, signed if sent is None else sent, signed_headers, status, code)


def _ce(body: bytes, secret: str = CE_SECRET, content_type: str = "application/json") -> dict[str, str]:
    return {"content-type": content_type, "x-webhook-signature": commerce_engine_signature(secret, body)}


_BAD_INPUTS = [
    # (name, source, body, headers, status, error code)
    ("unknown source", "nope", ce_body(event_id="b1"), _ce(ce_body(event_id="b1")), 404, "unknown_source"),
    ("missing signature", "ce", ce_body(event_id="b2"), {"content-type": "application/json"}, 401, "invalid_signature"),
    ("wrong secret", "ce", ce_body(event_id="b3"), _ce(ce_body(event_id="b3"), "wrong"), 401, "invalid_signature"),
    ("tampered body", "ce", ce_body(event_id="b4") + b" ", _ce(ce_body(event_id="b4")), 401, "invalid_signature"),
    ("sw tampered body", "sw", _OK_SW + b" ", _sw(_OK_SW), 401, "invalid_signature"),
    ("sw wrong secret", "sw", _OK_SW, _sw(_OK_SW, secret="whsec_" + "QUJD" * 8), 401, "invalid_signature"),
    ("sw stale timestamp", "sw", _OK_SW, _sw(_OK_SW, offset=-600), 401, "invalid_signature"),
    ("sw future timestamp", "sw", _OK_SW, _sw(_OK_SW, offset=600), 401, "invalid_signature"),
    ("sw missing headers", "sw", _OK_SW, {"content-type": "application/json"}, 401, "invalid_signature"),
    (
        "sw malformed signature",
        "sw",
        _OK_SW,
        _sw(_OK_SW, extra={"webhook-signature": "v1,%%%"}),
        401,
        "invalid_signature",
    ),
    # Shopify: base64 HMAC of the body in X-Shopify-Hmac-Sha256; id and topic in headers.
    _platform("shopify missing signature", "shopify", 401, "invalid_signature", x_shopify_hmac_sha256=None),
    _platform("shopify wrong secret", "shopify", 401, "invalid_signature", secret="shpss_not-in-the-rotation"),
    _platform("shopify tampered body", "shopify", 401, "invalid_signature", sent=_SHOPIFY + b" "),
    _platform(
        "shopify hex signature",
        "shopify",
        401,
        "invalid_signature",
        x_shopify_hmac_sha256=commerce_engine_signature(SHOPIFY_SECRET, _SHOPIFY),
    ),
    _platform("shopify missing webhook id", "shopify", 422, "missing_id", x_shopify_webhook_id=None),
    _platform("shopify missing topic", "shopify", 422, "missing_event_type", x_shopify_topic=None),
    _platform("shopify topic with a dot", "shopify", 422, "invalid_event_type", x_shopify_topic="orders.create"),
    _platform("shopify topic > wildcard", "shopify", 422, "invalid_event_type", x_shopify_topic="orders/>"),
    _platform("shopify body not an object", "shopify", 400, "malformed_json", body=b"[]"),
    # WooCommerce: base64 HMAC of the body in X-WC-Webhook-Signature; delivery id and topic in headers.
    _platform("woo missing signature", "woo", 401, "invalid_signature", x_wc_webhook_signature=None),
    _platform("woo wrong secret", "woo", 401, "invalid_signature", secret="wc-not-in-the-rotation"),
    _platform("woo tampered body", "woo", 401, "invalid_signature", sent=_WOO.replace(b"4750", b"4751")),
    _platform("woo missing delivery id", "woo", 422, "missing_id", x_wc_webhook_delivery_id=None),
    _platform("woo custom topic in capitals", "woo", 422, "invalid_event_type", x_wc_webhook_topic="action.Woo_Hook"),
    (
        "woo ping with more than the webhook id",
        "woo",
        b"webhook_id=3&x=1",
        {"content-type": "application/x-www-form-urlencoded"},
        415,
        "unsupported_media_type",
    ),
    (
        "woo ping body to another scheme",
        "shopify",
        b"webhook_id=3",
        {"content-type": "application/x-www-form-urlencoded"},
        415,
        "unsupported_media_type",
    ),
    # Stripe: t=<unix>,v1=<hex> over "<t>.<body>", one v1 per active secret.
    ("stripe missing signature", "stripe", _STRIPE, {"content-type": "application/json"}, 401, "invalid_signature"),
    (
        "stripe wrong secret",
        "stripe",
        _STRIPE,
        StripeLater(_STRIPE, secrets=("whsec_notInTheRotation",)),
        401,
        "invalid_signature",
    ),
    (
        "stripe tampered body",
        "stripe",
        _STRIPE.replace(b"evt_1", b"evt_2"),
        StripeLater(_STRIPE),
        401,
        "invalid_signature",
    ),
    ("stripe stale timestamp", "stripe", _STRIPE, StripeLater(_STRIPE, offset=-600), 401, "invalid_signature"),
    ("stripe future timestamp", "stripe", _STRIPE, StripeLater(_STRIPE, offset=600), 401, "invalid_signature"),
    (
        "stripe v0 only",
        "stripe",
        _STRIPE,
        StripeLater(_STRIPE, header="t=1700000000,v0=" + "0" * 64),
        401,
        "invalid_signature",
    ),
    (
        "stripe two timestamps",
        "stripe",
        _STRIPE,
        StripeLater(_STRIPE, header="t=1,t=2,v1=" + "0" * 64),
        401,
        "invalid_signature",
    ),
    (
        "stripe signed without the whsec_ prefix",
        "stripe",
        _STRIPE,
        StripeLater(_STRIPE, secrets=("stripeCurrent0123456789",)),
        401,
        "invalid_signature",
    ),
    (
        "stripe missing type",
        "stripe",
        b'{"id":"evt_3","object":"event"}',
        StripeLater(b'{"id":"evt_3","object":"event"}', secrets=(STRIPE_OLD_SECRET,)),
        422,
        "missing_event_type",
    ),
    (
        "stripe missing id",
        "stripe",
        b'{"type":"charge.refunded"}',
        StripeLater(b'{"type":"charge.refunded"}'),
        422,
        "missing_id",
    ),
    ("not json", "ce", b"{not json", _ce(b"{not json"), 400, "malformed_json"),
    ("json but not an object", "ce", b"[1,2]", _ce(b"[1,2]"), 400, "malformed_json"),
    ("missing id", "ce", b'{"event_type":"order.created"}', _ce(b'{"event_type":"order.created"}'), 422, "missing_id"),
    (
        "empty id",
        "ce",
        b'{"id":"","event_type":"order.created"}',
        _ce(b'{"id":"","event_type":"order.created"}'),
        422,
        "missing_id",
    ),
    ("missing event_type", "ce", b'{"id":"x1"}', _ce(b'{"id":"x1"}'), 422, "missing_event_type"),
    (
        "unsafe event_type",
        "ce",
        b'{"id":"x2","event_type":"order.>"}',
        _ce(b'{"id":"x2","event_type":"order.>"}'),
        422,
        "invalid_event_type",
    ),
    (
        "event_type with space",
        "ce",
        b'{"id":"x3","event_type":"order created"}',
        _ce(b'{"id":"x3","event_type":"order created"}'),
        422,
        "invalid_event_type",
    ),
    ("sw missing type", "sw", b'{"data":{}}', _sw(b'{"data":{}}'), 422, "missing_event_type"),
    (
        "wrong content type",
        "ce",
        ce_body(event_id="b5"),
        _ce(ce_body(event_id="b5"), content_type="text/plain"),
        415,
        "unsupported_media_type",
    ),
    ("no content type", "ce", ce_body(event_id="b6"), {"x-webhook-signature": "00"}, 415, "unsupported_media_type"),
    (
        "body over the limit",
        "ce",
        b'{"id":"big","event_type":"order.created","pad":"' + b"x" * 300_000 + b'"}',
        {"content-type": "application/json", "x-webhook-signature": "00"},
        413,
        "body_too_large",
    ),
]


def _nested(levels: int) -> bytes:
    """A signed-able CE body whose ``data`` holds ``levels`` nested lists (the document is one deeper)."""
    return b'{"id":"deep","event_type":"order.created","data":' + b"[" * levels + b"]" * levels + b"}"


Case = tuple[str, str, bytes, "dict[str, Any] | SignedLater | StripeLater", int, str]


def _signed_ce(name: str, body: bytes, status: int, code: str) -> Case:
    return (name, "ce", body, _ce(body), status, code)


def _sw_with(name: str, header: str, value: str | bytes, status: int, code: str) -> Case:
    return (name, "sw", _OK_SW, _sw(_OK_SW, extra={header: value}), status, code)


def _ce_with(name: str, header: str, value: str, status: int, code: str) -> Case:
    body = ce_body(event_id=f"h-{len(value)}")
    return (name, "ce", body, {**_ce(body), header: value}, status, code)


def _ce_envelope(id_json: bytes, event_type: bytes) -> bytes:
    return b'{"id":' + id_json + b',"event_type":"' + event_type + b'"}'


# Sizes, depths and integers ingress must bound where they enter: each a 4xx, never a 500.
_UNBOUNDED_INPUTS: list[Case] = [
    _signed_ce("data nested 5,000 deep", _nested(5000), 400, "nesting_too_deep"),
    _signed_ce("data nested 900 deep", _nested(900), 400, "nesting_too_deep"),
    _signed_ce("data nested 32 deep", _nested(32), 400, "nesting_too_deep"),
    _sw_with("sw timestamp of 400 digits", "webhook-timestamp", "9" * 400, 431, "header_too_large"),
    _sw_with("sw timestamp of 5,000 digits", "webhook-timestamp", "9" * 5000, 431, "header_too_large"),
    _sw_with("sw timestamp of 20 digits", "webhook-timestamp", "9" * 20, 401, "invalid_signature"),
    _sw_with("sw timestamp superscript two", "webhook-timestamp", b"\xb2", 401, "invalid_signature"),
    _sw_with("sw timestamp negative", "webhook-timestamp", "-1", 401, "invalid_signature"),
    _sw_with("sw timestamp with underscore", "webhook-timestamp", "1_7", 401, "invalid_signature"),
    ("sw id of 10,000 characters", "sw", _OK_SW, _sw(_OK_SW, msg_id="m" * 10_000), 431, "header_too_large"),
    _sw_with("sw signature header of 100 KB", "webhook-signature", "v1,QUJD " * 12_800, 431, "header_too_large"),
    _ce_with("ce signature header of 100 KB", "x-webhook-signature", "0" * 100_000, 431, "header_too_large"),
    _ce_with("content type of 10 KB", "content-type", "application/json;" + "x" * 10_000, 431, "header_too_large"),
    _ce_with("an unread header of 20 KB", "x-padding", "p" * 20_000, 431, "header_too_large"),
    _platform("shopify topic of 10 KB", "shopify", 431, "header_too_large", x_shopify_topic="o" * 10_000),
    _platform("shopify signature of 1 KB", "shopify", 431, "header_too_large", x_shopify_hmac_sha256="A" * 1024),
    _platform("shopify webhook id of 1 KB", "shopify", 431, "header_too_large", x_shopify_webhook_id="w" * 1024),
    _platform("woo delivery id of 1 KB", "woo", 431, "header_too_large", x_wc_webhook_delivery_id="d" * 1024),
    _platform("woo topic of 10 KB", "woo", 431, "header_too_large", x_wc_webhook_topic="o" * 10_000),
    (
        "stripe signature of 8 KB",
        "stripe",
        _STRIPE,
        StripeLater(_STRIPE, header="v1=0," * 1600),
        431,
        "header_too_large",
    ),
    (
        "100 headers",
        "ce",
        ce_body(event_id="h100"),
        {**_ce(ce_body(event_id="h100")), **{f"x-h{n}": "v" for n in range(100)}},
        431,
        "header_too_large",
    ),
    (
        "source of 10,000 characters",
        "s" * 10_000,
        ce_body(event_id="b9"),
        _ce(ce_body(event_id="b9")),
        404,
        "unknown_source",
    ),
    _signed_ce("id of 400 digits", _ce_envelope(b"9" * 400, b"order.created"), 422, "missing_id"),
    _signed_ce("id of 5,000 digits", _ce_envelope(b"9" * 5000, b"order.created"), 400, "malformed_json"),
    _signed_ce("event_type of 10,000 characters", _ce_envelope(b'"x4"', b"a" * 10_000), 422, "invalid_event_type"),
    _signed_ce("event_type of 100 levels", _ce_envelope(b'"x5"', b".".join([b"a"] * 100)), 422, "invalid_event_type"),
]
_BAD_INPUTS += _UNBOUNDED_INPUTS


@pytest.mark.parametrize(
    ("name", "source", "body", "headers", "status", "code"), _BAD_INPUTS, ids=[case[0] for case in _BAD_INPUTS]
)
async def test_bad_input_is_refused_clearly_and_nothing_reaches_the_stream(
    ingress: AsyncTestClient,
    js: JetStreamContext,
    name: str,
    source: str,
    body: bytes,
    headers: dict[str, str] | SignedLater | StripeLater,
    status: int,
    code: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", logger="stockwire")
    sent = headers.build() if isinstance(headers, SignedLater | StripeLater) else headers
    response = await ingress.post(f"/webhooks/{source}", content=body, headers=sent)
    assert response.status_code == status, response.text
    payload = response.json()
    assert payload["error"] == code
    assert isinstance(payload["detail"], str) and payload["detail"]
    assert len(payload["detail"]) < 300, "no input is echoed back at length"
    assert await _stream_messages(js) == 0
    assert any(str(status) in record.getMessage() for record in caplog.records), "a log line names the refusal"
    for secret in SECRETS:
        assert secret not in caplog.text


async def test_health_readiness_metrics_and_schema(ingress: AsyncTestClient) -> None:
    body = ce_body("order.created", "evt-metrics")
    await ingress.post("/webhooks/ce", content=body, headers=ce_headers(CE_SECRET, body))
    await ingress.post("/webhooks/ce", content=body, headers=ce_headers("bad", body))
    assert (await ingress.get("/healthz")).json() == {"status": "ok"}
    ready = await ingress.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"spool_writable": True}
    metrics = (await ingress.get("/metrics")).text
    assert 'ingress_webhooks_received_total{event_type="order.created",outcome="accepted",source="ce"}' in metrics
    assert 'ingress_webhooks_rejected_total{reason="invalid_signature",source="ce"}' in metrics
    assert "ingress_publish_duration_seconds_bucket" in metrics
    assert "ingress_spool_depth" in metrics
    schema = (await ingress.get("/schema/openapi.json")).json()
    assert "/webhooks/{source}" in schema["paths"]


async def test_a_document_at_the_nesting_limit_is_accepted(ingress: AsyncTestClient, js: JetStreamContext) -> None:
    body = _nested(31)
    response = await ingress.post("/webhooks/ce", content=body, headers=_ce(body))
    assert response.status_code == 200 and response.json()["status"] == "accepted"
    assert await _stream_messages(js) == 1
