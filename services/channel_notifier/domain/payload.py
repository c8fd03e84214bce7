"""What a webhook channel receives: the body of design §6 and its Standard Webhooks headers."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from libs.contracts import AvailabilityChanged
from libs.signing import (
    HEADER_STANDARD_ID,
    HEADER_STANDARD_SIGNATURE,
    HEADER_STANDARD_TIMESTAMP,
    sign_standard_webhook,
)
from libs.subjects import encode_token

from .channel import visible_available

__all__ = ["AvailabilityPayload", "signed_headers", "webhook_body", "webhook_id"]


class AvailabilityPayload(msgspec.Struct, frozen=True, kw_only=True):
    type: str = "availability.changed"
    sku: str
    available: int
    version: int
    occurred_at: str


_encoder = msgspec.json.Encoder()


def webhook_body(update: AvailabilityChanged, buffer: int) -> bytes:
    payload = AvailabilityPayload(
        sku=update.sku,
        available=visible_available(update.available, buffer),
        version=update.version,
        occurred_at=update.occurred_at,
    )
    return _encoder.encode(payload)


def webhook_id(channel: str, sku: str, version: int) -> str:
    """Stable across retries of one (channel, SKU, version), so a receiver can deduplicate on it."""
    return f"avail_{channel}_{encode_token(sku)}_{version}"


def signed_headers(secrets: Sequence[str], msg_id: str, body: bytes, timestamp: int) -> dict[str, str]:
    """Sign with every active secret (rotation): one ``v1,`` signature each, space-separated."""
    if not secrets:
        raise ValueError("a webhook channel needs at least one secret")
    signatures = [sign_standard_webhook(secret, msg_id, body, timestamp).signature for secret in secrets]
    return {
        HEADER_STANDARD_ID: msg_id,
        HEADER_STANDARD_TIMESTAMP: str(timestamp),
        HEADER_STANDARD_SIGNATURE: " ".join(signatures),
        "content-type": "application/json",
    }
