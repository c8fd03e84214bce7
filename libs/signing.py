"""Webhook signatures: the HMAC-SHA256 formats of the platforms ingress takes webhooks from.

Three formats cover them (:mod:`libs.schemes` says which platform uses which, and where its event id
and type are):

- :class:`BodyHmac`: one header holding the HMAC-SHA256 of the raw body, keyed with the secret's UTF-8
  bytes, in hex (Commerce Engine) or base64 (Shopify, WooCommerce);
- :class:`StandardWebhooksSignature`: ``webhook-id``/``webhook-timestamp``/``webhook-signature``
  (``v1,<base64>``, space-separated) over ``<id>.<timestamp>.<body>``, keyed with the decoded
  ``whsec_`` secret;
- :class:`StripeSignature`: ``Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]`` over ``<t>.<body>``,
  keyed with the endpoint secret's UTF-8 bytes, ``whsec_`` prefix and all.

Every comparison is constant-time and every configured secret is tried against every signature
presented, whatever matched first, so rotation works and the time taken says nothing about which
secret, or which byte, matched. :class:`SignatureError` messages name the header, never a secret.

Header names are lower-case (HTTP/2's spelling; HTTP header names are case-insensitive).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

__all__ = [
    "HEADER_CE_SIGNATURE",
    "HEADER_SHOPIFY_HMAC",
    "HEADER_SHOPIFY_TOPIC",
    "HEADER_SHOPIFY_WEBHOOK_ID",
    "HEADER_STANDARD_ID",
    "HEADER_STANDARD_SIGNATURE",
    "HEADER_STANDARD_TIMESTAMP",
    "HEADER_STRIPE_SIGNATURE",
    "HEADER_WC_DELIVERY_ID",
    "HEADER_WC_SIGNATURE",
    "HEADER_WC_TOPIC",
    "BodyHmac",
    "SignatureError",
    "SignatureFormat",
    "StandardWebhookHeaders",
    "StandardWebhooksSignature",
    "StripeSignature",
    "commerce_engine_signature",
    "generate_standard_secret",
    "is_standard_secret",
    "sign_standard_webhook",
    "sign_stripe",
    "verify_commerce_engine",
    "verify_standard_webhook",
    "verify_stripe",
]

# Commerce Engine (commercengine/skills, skills/webhooks/SKILL.md).
HEADER_CE_SIGNATURE = "x-webhook-signature"
# Standard Webhooks (https://www.standardwebhooks.com/, "Verifying webhooks").
HEADER_STANDARD_ID = "webhook-id"
HEADER_STANDARD_TIMESTAMP = "webhook-timestamp"
HEADER_STANDARD_SIGNATURE = "webhook-signature"
# Shopify, "Webhooks delivery structure", Headers (shopify.dev/docs/apps/build/webhooks/delivery-structure).
HEADER_SHOPIFY_HMAC = "x-shopify-hmac-sha256"
HEADER_SHOPIFY_TOPIC = "x-shopify-topic"
HEADER_SHOPIFY_WEBHOOK_ID = "x-shopify-webhook-id"
# WooCommerce REST API docs, Webhooks, "Delivery/payload" (woocommerce.github.io/woocommerce-rest-api-docs),
# and the headers WC_Webhook::deliver() sets (plugins/woocommerce/includes/class-wc-webhook.php).
HEADER_WC_SIGNATURE = "x-wc-webhook-signature"
HEADER_WC_TOPIC = "x-wc-webhook-topic"
HEADER_WC_DELIVERY_ID = "x-wc-webhook-delivery-id"
# Stripe, "Check the webhook signatures" (docs.stripe.com/webhooks#verify-manually).
HEADER_STRIPE_SIGNATURE = "stripe-signature"

_WHSEC = "whsec_"
_MAX_TIMESTAMP_DIGITS = 12
_DIGEST_BYTES = hashlib.sha256().digest_size


class SignatureError(Exception):
    """The request is not authentic; the message says why without revealing a secret."""


class SignatureFormat(Protocol):
    """How one platform signs a delivery: what :mod:`libs.schemes` needs of a format."""

    @property
    def headers(self) -> tuple[str, ...]:
        """The headers :meth:`verify` reads (lower-case)."""
        ...

    def verify(
        self, secrets: Sequence[str], headers: Mapping[str, str], body: bytes, *, tolerance_s: int, now: float
    ) -> None:
        """Accept the delivery if a signature in ``headers`` is ``body``'s under any of ``secrets``; else
        raise :class:`SignatureError`. ``now`` is Unix seconds."""
        ...

    def sign(self, secret: str, body: bytes, *, msg_id: str, timestamp: int) -> dict[str, str]:
        """The signature headers of ``body`` under ``secret`` (``msg_id`` and ``timestamp``, Unix seconds,
        where the format signs them)."""
        ...


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def _matches(keys: Iterable[bytes], message: bytes, presented: Sequence[bytes]) -> bool:
    """Whether any presented digest is ``message``'s HMAC under any key: every pair compared in constant
    time, none skipped once one matched. A blank key proves nothing (anyone can sign with it): it never
    matches, whatever the configuration let through."""
    matched = False
    for key in keys:
        if not key.strip():
            continue
        expected = _hmac(key, message)
        for candidate in presented:
            matched |= hmac.compare_digest(expected, candidate)
    return matched


def _timestamp(text: str, what: str, tolerance_s: int, now: float) -> int:
    """``text`` as Unix seconds within ``tolerance_s`` of ``now``, either way; raises :class:`SignatureError`
    naming ``what``."""
    # ASCII digits only and a bounded length, because int() also takes signs, '_', white space,
    # non-ASCII digits and any size.
    if not (text.isascii() and text.isdigit()) or len(text) > _MAX_TIMESTAMP_DIGITS:
        raise SignatureError(f"{what} is not Unix seconds of at most {_MAX_TIMESTAMP_DIGITS} digits")
    ts = int(text)
    if ts < now - tolerance_s:
        raise SignatureError(f"{what} is too old")
    if ts > now + tolerance_s:
        raise SignatureError(f"{what} is in the future")
    return ts


def _decoded(value: str, encoding: Literal["hex", "base64"]) -> bytes | None:
    """A presented digest: ``value`` decoded, None when it is not ``encoding`` of 32 bytes."""
    try:
        raw = bytes.fromhex(value) if encoding == "hex" else base64.b64decode(value, validate=True)
    except (ValueError, binascii.Error):
        return None
    return raw if len(raw) == _DIGEST_BYTES else None


@dataclass(frozen=True, slots=True)
class BodyHmac:
    """One header holding HMAC-SHA256 of the raw body under the secret's UTF-8 bytes, in ``encoding``.

    Commerce Engine: lower-case hex in ``x-webhook-signature``. Shopify: base64 in
    ``X-Shopify-Hmac-Sha256``, keyed with the app's client secret ("Verify webhook deliveries",
    shopify.dev/docs/apps/build/webhooks/verify-deliveries). WooCommerce: base64 in
    ``X-WC-Webhook-Signature``, keyed with the webhook's secret (REST API docs, Webhooks,
    "Delivery/payload"; ``WC_Webhook::generate_signature`` signs the JSON-encoded payload with the raw
    digest base64-encoded, keyed with the secret as entered: WooCommerce decodes HTML entities of the
    stored value before signing).
    """

    header: str
    encoding: Literal["hex", "base64"]

    @property
    def headers(self) -> tuple[str, ...]:
        """The one signature header. Nothing but the body is signed, so a delivery can be replayed at any
        time (JetStream's dedup and KV ``event-ids`` make a replay a duplicate)."""
        return (self.header,)

    def value(self, secret: str, body: bytes) -> str:
        """The header's value for ``body`` under ``secret``: hex (lower-case) or base64 of the digest."""
        digest = _hmac(secret.encode(), body)
        return digest.hex() if self.encoding == "hex" else base64.b64encode(digest).decode()

    def check(self, secrets: Sequence[str], body: bytes, signature: str | None) -> None:
        """Accept ``signature`` (the header's value) if it is ``body``'s under any of ``secrets``.

        Hex is read in either case. Raises :class:`SignatureError` when it is missing, not ``encoding``
        of a SHA-256 digest, or matches none."""
        if not signature:
            raise SignatureError(f"missing {self.header} header")
        presented = _decoded(signature.strip(), self.encoding)
        if presented is None:
            raise SignatureError(f"{self.header} is not the {self.encoding} of an HMAC-SHA256")
        if not _matches((secret.encode() for secret in secrets), body, [presented]):
            raise SignatureError("signature does not match")

    def verify(
        self, secrets: Sequence[str], headers: Mapping[str, str], body: bytes, *, tolerance_s: int, now: float
    ) -> None:
        """:meth:`check` the header's value in ``headers`` (``tolerance_s`` and ``now`` are not used)."""
        self.check(secrets, body, headers.get(self.header))

    def sign(self, secret: str, body: bytes, *, msg_id: str = "", timestamp: int = 0) -> dict[str, str]:
        """``{header: value}`` for ``body`` under ``secret`` (the id and time are not signed)."""
        return {self.header: self.value(secret, body)}


_COMMERCE_ENGINE = BodyHmac(HEADER_CE_SIGNATURE, "hex")


def commerce_engine_signature(secret: str, body: bytes) -> str:
    """Commerce Engine's ``x-webhook-signature``: lower-case hex HMAC-SHA256 of the raw ``body``."""
    return _COMMERCE_ENGINE.value(secret, body)


def verify_commerce_engine(secrets: Sequence[str], body: bytes, signature: str | None) -> None:
    """Accept ``signature`` if it is the hex HMAC-SHA256 of ``body`` under any of ``secrets`` (compared in
    constant time); raises :class:`SignatureError` when it is missing or matches none."""
    _COMMERCE_ENGINE.check(secrets, body, signature)


def _standard_key(secret: str, *, strict: bool = False) -> bytes:
    encoded = secret[len(_WHSEC) :] if secret.startswith(_WHSEC) else secret
    return base64.b64decode(encoded, validate=strict)


def is_standard_secret(secret: str) -> bool:
    """Whether ``secret`` is a Standard Webhooks secret: ``whsec_`` (optional) and non-empty base64
    (the specification's secret format); anything else could never verify a signature."""
    try:
        return bool(_standard_key(secret, strict=True))
    except (ValueError, TypeError):
        return False


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
        return {
            HEADER_STANDARD_ID: self.id,
            HEADER_STANDARD_TIMESTAMP: self.timestamp,
            HEADER_STANDARD_SIGNATURE: self.signature,
        }


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
    _timestamp(timestamp, HEADER_STANDARD_TIMESTAMP, tolerance_s, time.time() if now is None else now)
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
    if not _matches((_standard_key(secret) for secret in secrets), signed, presented):
        raise SignatureError("signature does not match")


@dataclass(frozen=True, slots=True)
class StandardWebhooksSignature:
    """Standard Webhooks as a :class:`SignatureFormat` (:func:`verify_standard_webhook`)."""

    headers: tuple[str, ...] = field(
        default=(HEADER_STANDARD_ID, HEADER_STANDARD_TIMESTAMP, HEADER_STANDARD_SIGNATURE), init=False
    )

    def verify(
        self, secrets: Sequence[str], headers: Mapping[str, str], body: bytes, *, tolerance_s: int, now: float
    ) -> None:
        """:func:`verify_standard_webhook` on the three headers of ``headers``."""
        verify_standard_webhook(
            secrets,
            body,
            headers.get(HEADER_STANDARD_ID),
            headers.get(HEADER_STANDARD_TIMESTAMP),
            headers.get(HEADER_STANDARD_SIGNATURE),
            tolerance_s=tolerance_s,
            now=now,
        )

    def sign(self, secret: str, body: bytes, *, msg_id: str, timestamp: int) -> dict[str, str]:
        """The three headers (:func:`sign_standard_webhook`)."""
        return sign_standard_webhook(secret, msg_id, body, timestamp).as_dict()


def sign_stripe(secret: str, body: bytes, timestamp: int) -> str:
    """A ``Stripe-Signature`` value for ``body``: ``t=<timestamp>,v1=<hex>``, the hex HMAC-SHA256 of
    ``<timestamp>.<body>`` keyed with ``secret``'s UTF-8 bytes (the ``whsec_…`` text as it is: Stripe's
    libraries key with the whole string, they do not decode it)."""
    return f"t={timestamp},v1={_hmac(secret.encode(), f'{timestamp}.'.encode() + body).hex()}"


def verify_stripe(
    secrets: Sequence[str], body: bytes, header: str | None, *, tolerance_s: int = 300, now: float | None = None
) -> None:
    """Check a ``Stripe-Signature`` header (Stripe, "Check the webhook signatures", verifying manually).

    The header is ``,``-separated ``key=value`` elements: one ``t`` (Unix seconds, within ``tolerance_s``
    of ``now`` either way: Stripe's libraries default to 300 s and refuse only the past; a time in the
    future is refused here too) and one ``v1`` per active endpoint secret (Stripe signs with each while
    an old secret is kept after a roll). Every other scheme is ignored, ``v0`` (test mode's) included,
    against downgrades. Raises :class:`SignatureError` saying why, never which secret or byte.
    """
    if not header:
        raise SignatureError("missing stripe-signature header")
    timestamps: list[str] = []
    presented: list[bytes] = []
    for element in header.split(","):
        key, _, value = element.strip().partition("=")
        if key == "t":
            timestamps.append(value)
        elif key == "v1":
            digest = _decoded(value, "hex")
            if digest is not None:
                presented.append(digest)
    if len(timestamps) != 1:
        raise SignatureError("stripe-signature must hold exactly one t= timestamp")
    ts = _timestamp(timestamps[0], "stripe-signature timestamp", tolerance_s, time.time() if now is None else now)
    if not presented:
        raise SignatureError("no v1 signature in stripe-signature")
    if not _matches((secret.encode() for secret in secrets), f"{ts}.".encode() + body, presented):
        raise SignatureError("signature does not match")


@dataclass(frozen=True, slots=True)
class StripeSignature:
    """Stripe's ``Stripe-Signature`` as a :class:`SignatureFormat` (:func:`verify_stripe`)."""

    headers: tuple[str, ...] = field(default=(HEADER_STRIPE_SIGNATURE,), init=False)

    def verify(
        self, secrets: Sequence[str], headers: Mapping[str, str], body: bytes, *, tolerance_s: int, now: float
    ) -> None:
        """:func:`verify_stripe` on the header in ``headers``."""
        verify_stripe(secrets, body, headers.get(HEADER_STRIPE_SIGNATURE), tolerance_s=tolerance_s, now=now)

    def sign(self, secret: str, body: bytes, *, msg_id: str = "", timestamp: int) -> dict[str, str]:
        """``{stripe-signature: t=…,v1=…}`` (:func:`sign_stripe`; the id is in the body, not signed apart)."""
        return {HEADER_STRIPE_SIGNATURE: sign_stripe(secret, body, timestamp)}
