from __future__ import annotations

import json
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from libs.contracts import AvailabilityChanged
from libs.signing import generate_standard_secret
from services.channel_notifier.domain.outcome import AttemptOutcome, classify_status
from services.channel_notifier.domain.payload import signed_headers, webhook_body, webhook_id

UPDATE = AvailabilityChanged(
    sku="TEE.red/L",
    version=42,
    available=7,
    on_hand=10,
    reserved=2,
    committed=1,
    occurred_at="2026-11-28T10:00:00.000000+00:00",
    cause="reserved",
)


def test_body_is_the_design_payload_with_the_buffer_applied() -> None:
    assert json.loads(webhook_body(UPDATE, buffer=3)) == {
        "type": "availability.changed",
        "sku": "TEE.red/L",
        "available": 4,
        "version": 42,
        "occurred_at": "2026-11-28T10:00:00.000000+00:00",
    }
    assert json.loads(webhook_body(UPDATE, buffer=50))["available"] == 0


def test_webhook_id_is_stable_per_version_and_safe() -> None:
    assert webhook_id("shop", "TEE.red/L", 42) == webhook_id("shop", "TEE.red/L", 42)
    assert webhook_id("shop", "TEE.red/L", 42) != webhook_id("shop", "TEE.red/L", 43)
    assert " " not in webhook_id("shop", "a b", 1)


def test_every_active_secret_signs_and_the_official_library_verifies_each() -> None:
    old, new = generate_standard_secret(), generate_standard_secret()
    body = webhook_body(UPDATE, 0)
    headers = signed_headers([new, old], "msg_1", body, int(time.time()))
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert all(part.startswith("v1,") for part in headers["webhook-signature"].split(" "))
    for secret in (old, new):
        Webhook(secret).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_standard_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(body + b" ", headers)


def test_signing_needs_a_secret() -> None:
    with pytest.raises(ValueError):
        signed_headers([], "id", b"{}", 0)


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, AttemptOutcome.DELIVERED),
        (204, AttemptOutcome.DELIVERED),
        (410, AttemptOutcome.GONE),
        (301, AttemptOutcome.HTTP_ERROR),
        (404, AttemptOutcome.HTTP_ERROR),
        (429, AttemptOutcome.HTTP_ERROR),
        (500, AttemptOutcome.HTTP_ERROR),
    ],
)
def test_classify_status(status: int, outcome: AttemptOutcome) -> None:
    assert classify_status(status) is outcome
