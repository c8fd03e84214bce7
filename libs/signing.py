"""Webhook signatures: Commerce Engine's hex HMAC and Standard Webhooks (``v1,<base64>``).

Every comparison is constant-time and every configured secret is tried, so rotation works and the
time taken says nothing about which secret, or which byte, matched.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "SignatureError",
    "StandardWebhookHeaders",
    "commerce_engine_signature",
    "generate_standard_secret",
    "sign_standard_webhook",
    "verify_commerce_engine",
    "verify_standard_webhook",
]

_WHSEC = "whsec_"
_MAX_TIMESTAMP_DIGITS = 12


class SignatureError(Exception):
    """The request is not authentic; the message says why without revealing a secret."""


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def commerce_engine_signature(secret: str, body: bytes) -> str:
    """Commerce Engine's ``x-webhook-signature``: lower-case hex HMAC-SHA256 of the raw ``body``."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_commerce_engine(secrets: Sequence[str], body: bytes, signature: str | None) -> None:
    """Accept ``signature`` if it is the hex HMAC-SHA256 of ``body`` under any of ``secrets`` (compared in
    constant time); raises :class:`SignatureError` when it is missing or matches none."""
    if not signature:
        raise SignatureError("missing x-webhook-signature header")
    presented = signature.strip().lower().encode()
    matched = False
    for secret in secrets:
        expected = commerce_engine_signature(secret, body).encode()
        matched |= hmac.compare_digest(expected, presented)
    if not matched:
        raise SignatureError("signature does not match")


def _standard_key(secret: str) -> bytes:
    encoded = secret[len(_WHSEC) :] if secret.startswith(_WHSEC) else secret
    return base64.b64decode(encoded)


def generate_standard_secret() -> str:
    """A new Standard Webhooks secret: ``whsec_`` and 24 random bytes in base64."""
    import secrets

    return _WHSEC + base64.b64encode(secrets.token_bytes(24)).decode()


@dataclass(frozen=True, slots=True)
class StandardWebhookHeaders:
    """The three headers of a Standard Webhooks delivery (standardwebhooks.com)."""

    id: str
    timestamp: str
    signature: str

    def as_dict(self) -> dict[str, str]:
        """The headers by their wire names."""
        return {"webhook-id": self.id, "webhook-timestamp": self.timestamp, "webhook-signature": self.signature}


def sign_standard_webhook(
    secret: str, msg_id: str, body: bytes, timestamp: int | None = None
) -> StandardWebhookHeaders:
    """Sign ``body`` as Standard Webhooks does: ``v1,`` + base64 HMAC-SHA256 of ``<id>.<timestamp>.<body>``
    under the secret's decoded key; ``timestamp`` in epoch seconds (default: now)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = _hmac(_standard_key(secret), f"{msg_id}.{ts}.".encode() + body)
    return StandardWebhookHeaders(msg_id, ts, "v1," + base64.b64encode(digest).decode())


def verify_standard_webhook(
    secrets: Sequence[str],
    body: bytes,
    msg_id: str | None,
    timestamp: str | None,
    signature: str | None,
    *,
    tolerance_s: int = 300,
    now: float | None = None,
) -> None:
    """Check a Standard Webhooks signature (https://www.standardwebhooks.com/, "Verifying webhooks").

    ``timestamp`` is Unix seconds and must be within ``tolerance_s`` seconds of ``now``; any ``v1``
    signature in the space-separated ``signature`` header may match any secret. Raises
    :class:`SignatureError` saying why, never which secret or byte.
    """
    if not msg_id or not timestamp or not signature:
        raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature header")
    # Unix seconds (Standard Webhooks spec, "webhook-timestamp"): ASCII digits only and a bounded
    # length, because int() also takes signs, '_', white space, non-ASCII digits and any size.
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > _MAX_TIMESTAMP_DIGITS:
        raise SignatureError(f"webhook-timestamp is not Unix seconds of at most {_MAX_TIMESTAMP_DIGITS} digits")
    ts = int(timestamp)
    current = time.time() if now is None else now
    if ts < current - tolerance_s:
        raise SignatureError("webhook-timestamp is too old")
    if ts > current + tolerance_s:
        raise SignatureError("webhook-timestamp is in the future")
    presented: list[bytes] = []
    for part in signature.split(" "):
        version, _, value = part.partition(",")
        if version == "v1" and value:
            try:
                presented.append(base64.b64decode(value, validate=True))
            except ValueError:
                continue
    if not presented:
        raise SignatureError("no v1 signature in webhook-signature")
    signed = f"{msg_id}.{timestamp}.".encode() + body
    matched = False
    for secret in secrets:
        expected = _hmac(_standard_key(secret), signed)
        for candidate in presented:
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise SignatureError("signature does not match")
