from __future__ import annotations

import base64
import hashlib
import hmac
import time

import pytest
import stripe
from standardwebhooks import Webhook

from libs.schemes import SCHEMES
from libs.signing import (
    BodyHmac,
    SignatureError,
    commerce_engine_signature,
    generate_standard_secret,
    sign_standard_webhook,
    sign_stripe,
    verify_commerce_engine,
    verify_standard_webhook,
    verify_stripe,
)

BODY = b'{"type":"availability.changed","sku":"A"}'


def test_commerce_engine_accepts_any_configured_secret_during_rotation() -> None:
    signature = commerce_engine_signature("new", BODY)
    verify_commerce_engine(["old", "new"], BODY, signature)
    verify_commerce_engine(["old", "new"], BODY, signature.upper())
    with pytest.raises(SignatureError, match="does not match"):
        verify_commerce_engine(["old"], BODY, signature)
    with pytest.raises(SignatureError, match="missing"):
        verify_commerce_engine(["new"], BODY, None)
    with pytest.raises(SignatureError):
        verify_commerce_engine(["new"], BODY + b" ", signature)


def test_our_standard_signature_is_what_the_official_package_verifies() -> None:
    secret = generate_standard_secret()
    headers = sign_standard_webhook(secret, "msg_1", BODY)
    assert Webhook(secret).verify(BODY, headers.as_dict()) == {"type": "availability.changed", "sku": "A"}


def test_the_official_package_signature_is_what_we_verify() -> None:
    secret = generate_standard_secret()
    now = int(time.time())
    from datetime import UTC, datetime

    signature = Webhook(secret).sign("msg_2", datetime.fromtimestamp(now, UTC), BODY.decode())
    verify_standard_webhook([generate_standard_secret(), secret], BODY, "msg_2", str(now), signature)


@pytest.mark.parametrize(
    ("msg_id", "offset", "body", "message"),
    [
        ("msg_3", -301, BODY, "too old"),
        ("msg_3", 301, BODY, "future"),
        ("msg_3", 0, BODY + b"x", "does not match"),
        ("other", 0, BODY, "does not match"),
    ],
)
def test_standard_refusals(msg_id: str, offset: int, body: bytes, message: str) -> None:
    secret = generate_standard_secret()
    now = int(time.time())
    headers = sign_standard_webhook(secret, "msg_3", BODY, timestamp=now + offset)
    with pytest.raises(SignatureError, match=message):
        verify_standard_webhook([secret], body, msg_id, headers.timestamp, headers.signature, now=now)


def test_standard_malformed_headers_are_refusals_not_crashes() -> None:
    secret = generate_standard_secret()
    for timestamp, signature in [
        ("abc", "v1,AAAA"),
        (str(int(time.time())), "v1,***"),
        (str(int(time.time())), "v2,x"),
    ]:
        with pytest.raises(SignatureError):
            verify_standard_webhook([secret], BODY, "m", timestamp, signature)
    with pytest.raises(SignatureError, match="missing"):
        verify_standard_webhook([secret], BODY, "m", None, "v1,AAAA")


# --- Shopify, WooCommerce: one header, base64 HMAC-SHA256 of the raw body ---------------------------

# Vectors computed outside Python, with `printf '%s' BODY | openssl dgst -sha256 -hmac SECRET -binary | base64`
# (and `-hex`): the documented algorithm, by another implementation.
VECTOR_BODY = b'{"id":820982911946154508,"email":"jon@example.com"}'
VECTOR_SECRET = "shpss_example_secret"
VECTOR_BASE64 = "35DGSCsYGhssCXikM1rFvRtvLrHjZ3LG9BTZ5lYDs7g="
VECTOR_HEX = "df90c6482b181a1b2c0978a4335ac5bd1b6f2eb1e36772c6f414d9e65603b3b8"


def _documented(secret: str, body: bytes) -> str:
    """Shopify ("Verify webhook deliveries") and WooCommerce (WC_Webhook::generate_signature): HMAC-SHA256 of
    the raw body, keyed with the secret as text, base64-encoded. Written from the docs, not from libs.signing:
    neither platform has a Python package that verifies webhooks (ShopifyAPI 12.7 checks only the OAuth
    query's hex HMAC, Session.validate_hmac; the woocommerce package is a REST client)."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


@pytest.mark.parametrize(
    ("scheme", "header"),
    [("shopify", "x-shopify-hmac-sha256"), ("woocommerce", "x-wc-webhook-signature")],
)
def test_the_base64_body_schemes_sign_and_verify_as_documented(scheme: str, header: str) -> None:
    signature = SCHEMES[scheme].signature
    assert isinstance(signature, BodyHmac) and signature.header == header and signature.encoding == "base64"
    assert signature.value(VECTOR_SECRET, VECTOR_BODY) == VECTOR_BASE64 == _documented(VECTOR_SECRET, VECTOR_BODY)
    assert signature.sign(VECTOR_SECRET, VECTOR_BODY) == {header: VECTOR_BASE64}
    # Theirs verified by ours, with the current secret anywhere in a rotation.
    signature.verify(["old", VECTOR_SECRET], {header: VECTOR_BASE64}, VECTOR_BODY, tolerance_s=0, now=0)
    signature.verify([VECTOR_SECRET, "new"], {header: VECTOR_BASE64}, VECTOR_BODY, tolerance_s=0, now=0)
    for headers, body, message in [
        ({}, VECTOR_BODY, "missing"),
        ({header: ""}, VECTOR_BODY, "missing"),
        ({header: VECTOR_BASE64}, VECTOR_BODY + b" ", "does not match"),
        ({header: _documented("other", VECTOR_BODY)}, VECTOR_BODY, "does not match"),
        ({header: VECTOR_HEX}, VECTOR_BODY, "not the base64"),  # the hex digest is not what they send
        ({header: "%%%"}, VECTOR_BODY, "not the base64"),
        ({header: base64.b64encode(b"short").decode()}, VECTOR_BODY, "not the base64"),
    ]:
        with pytest.raises(SignatureError, match=message):
            signature.verify(["old", VECTOR_SECRET], headers, body, tolerance_s=0, now=0)


def test_commerce_engine_is_the_hex_of_the_same_digest() -> None:
    assert commerce_engine_signature(VECTOR_SECRET, VECTOR_BODY) == VECTOR_HEX
    verify_commerce_engine([VECTOR_SECRET], VECTOR_BODY, VECTOR_HEX.upper())
    with pytest.raises(SignatureError, match="not the hex"):
        verify_commerce_engine([VECTOR_SECRET], VECTOR_BODY, VECTOR_BASE64)


# --- Stripe: Stripe-Signature t=<unix>,v1=<hex> over "<t>.<body>" --------------------------------------

STRIPE_BODY = b'{"id":"evt_1","object":"event","type":"payment_intent.succeeded","data":{"object":{}}}'
# `printf '%s' '1700000000.{"id":"evt_1","type":"payment_intent.succeeded"}' | openssl dgst -sha256
# -hmac whsec_example -hex`: the key is the secret's text, whsec_ prefix and all.
STRIPE_VECTOR = (
    "whsec_example",
    b'{"id":"evt_1","type":"payment_intent.succeeded"}',
    1_700_000_000,
    "5832137456f15eccee0365acb331b6eae3c974cfde2205fa83d3bfa0fb76f237",
)


def test_stripe_signs_the_timestamp_and_body_with_the_secret_text_as_key() -> None:
    secret, body, timestamp, digest = STRIPE_VECTOR
    assert sign_stripe(secret, body, timestamp) == f"t={timestamp},v1={digest}"
    verify_stripe([secret], body, f"t={timestamp},v1={digest}", now=timestamp)


def test_our_stripe_signature_is_what_the_stripe_package_verifies() -> None:
    secret = "whsec_" + "A1b2" * 8
    header = sign_stripe(secret, STRIPE_BODY, int(time.time()))
    event = stripe.Webhook.construct_event(STRIPE_BODY, header, secret)
    assert (event.id, event.type) == ("evt_1", "payment_intent.succeeded")
    signed = SCHEMES["stripe"].signature.sign(secret, STRIPE_BODY, msg_id="evt_1", timestamp=int(time.time()))
    assert stripe.WebhookSignature.verify_header(STRIPE_BODY, signed["stripe-signature"], secret, tolerance=300)


def test_the_stripe_package_signature_is_what_we_verify() -> None:
    old, new = "whsec_old" + "x" * 24, "whsec_new" + "y" * 24
    now = int(time.time())
    header = stripe.WebhookSignature.generate_signature_header(STRIPE_BODY.decode(), new, now)
    verify_stripe([old, new], STRIPE_BODY, header, now=now)
    # While an old secret is kept after a roll, Stripe signs with both: one v1 per secret.
    rolled = (
        header + "," + stripe.WebhookSignature.generate_signature_header(STRIPE_BODY.decode(), old, now).split(",")[1]
    )
    verify_stripe([old], STRIPE_BODY, rolled, now=now)
    verify_stripe([new], STRIPE_BODY, rolled, now=now)
    assert stripe.WebhookSignature.verify_header(STRIPE_BODY, rolled, old, tolerance=300)
    with pytest.raises(SignatureError, match="does not match"):
        verify_stripe(["whsec_other"], STRIPE_BODY, rolled, now=now)


@pytest.mark.parametrize(
    ("offset", "body", "secret", "message"),
    [
        (-301, STRIPE_BODY, "whsec_a", "too old"),
        (301, STRIPE_BODY, "whsec_a", "in the future"),
        (0, STRIPE_BODY + b" ", "whsec_a", "does not match"),
        (0, STRIPE_BODY, "whsec_b", "does not match"),
    ],
)
def test_stripe_refusals_agree_with_the_stripe_package(offset: int, body: bytes, secret: str, message: str) -> None:
    now = int(time.time())
    header = stripe.WebhookSignature.generate_signature_header(STRIPE_BODY.decode(), secret, now + offset)
    with pytest.raises(SignatureError, match=message):
        verify_stripe(["whsec_a"], body, header, now=now)
    if offset <= 0:  # Stripe's libraries refuse only the past; a future timestamp is refused here alone.
        with pytest.raises(stripe.SignatureVerificationError):
            stripe.WebhookSignature.verify_header(body, header, "whsec_a", tolerance=300)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "v1=" + "0" * 64,  # no timestamp
        "t=1700000000",  # no signature
        "t=1700000000,v0=" + "0" * 64,  # test mode's v0 alone: ignored against downgrades
        "t=abc,v1=" + "0" * 64,
        "t=-1,v1=" + "0" * 64,
        "t=" + "9" * 40 + ",v1=" + "0" * 64,
        "t=1700000000,t=1700000001,v1=" + "0" * 64,
        "t=1700000000,v1=zz",
        "garbage",
    ],
)
def test_malformed_stripe_headers_are_refusals_not_crashes(header: str | None) -> None:
    with pytest.raises(SignatureError):
        verify_stripe(["whsec_a"], STRIPE_BODY, header, now=1_700_000_000)
