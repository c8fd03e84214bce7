from __future__ import annotations

import time

import pytest
from standardwebhooks import Webhook

from libs.signing import (
    SignatureError,
    commerce_engine_signature,
    generate_standard_secret,
    sign_standard_webhook,
    verify_commerce_engine,
    verify_standard_webhook,
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
