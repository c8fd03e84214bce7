"""The webhook schemes ingress takes, as one table: each platform's signature, and where it puts the
event's id and type.

``[sources.<name>] scheme`` names a row of :data:`SCHEMES`. Ingress reads everything it needs of a
source's deliveries from that row (``services/ingress/webhook.py`` has no per-platform branch), the
ingress OpenAPI document describes the rows' headers, and ``stockwire send`` builds a delivery with
:meth:`WebhookScheme.delivery`. A row says:

- ``signature``: the format (:mod:`libs.signing`), with its header and encoding;
- ``event_id``, ``event_type``: a header, or keys of the JSON body (the first one present);
- ``headers``: every header ingress reads for it, with the longest value it looks at (a longer one is
  answered 431) and what the OpenAPI document says of it;
- ``type_separator``: what separates the levels of the platform's event type (Shopify's topics are
  ``orders/create``); ingress keeps the type as the platform spells it in ``Stockwire-Event-Type`` and
  publishes on ``commerce.<source>.<levels joined by .>`` (see :func:`libs.subjects.event_type_levels`);
- ``id_per_event``: False where the id the platform sends may stand for several events
  (WooCommerce's), so ingress appends the body's digest to it;
- ``ping``: an unsigned request the platform sends to test the URL, answered 200 and kept nowhere.

A source profile that implies a scheme (``libs/profiles``, its ``scheme`` key) names a row of this table.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

import msgspec

from libs.signing import (
    HEADER_CE_SIGNATURE,
    HEADER_SHOPIFY_HMAC,
    HEADER_SHOPIFY_TOPIC,
    HEADER_SHOPIFY_WEBHOOK_ID,
    HEADER_STANDARD_ID,
    HEADER_STANDARD_SIGNATURE,
    HEADER_STANDARD_TIMESTAMP,
    HEADER_STRIPE_SIGNATURE,
    HEADER_WC_DELIVERY_ID,
    HEADER_WC_SIGNATURE,
    HEADER_WC_TOPIC,
    BodyHmac,
    SignatureFormat,
    StandardWebhooksSignature,
    StripeSignature,
)
from libs.subjects import event_type_levels

__all__ = [
    "MAX_ID_LENGTH",
    "SCHEMES",
    "SCHEME_NAMES",
    "HeaderSpec",
    "Located",
    "SchemeName",
    "WebhookScheme",
]

SchemeName = Literal["commerce-engine", "standard-webhooks", "shopify", "woocommerce", "stripe"]
SCHEME_NAMES: tuple[SchemeName, ...] = get_args(SchemeName)

MAX_ID_LENGTH = 256
"""The longest event id ingress takes, from a header or the body."""
_MAX_TOPIC = 256
_MAX_DIGEST_SIGNATURE = 128  # base64 of 32 bytes is 44 characters, hex 64


@dataclass(frozen=True, slots=True)
class Located:
    """Where a value is in a delivery: a header, or the first of ``keys`` the JSON body has (not null)."""

    header: str | None = None
    keys: tuple[str, ...] = ()

    def read(self, headers: Mapping[str, str], document: Mapping[str, Any]) -> object:
        """The value, or None when the delivery does not have it."""
        if self.header is not None:
            return headers.get(self.header)
        return next((document[key] for key in self.keys if document.get(key) is not None), None)

    def describe(self) -> str:
        """How an error message names the place: ``'id'``, ``'type' (or 'event_type')``, ``header …``."""
        if self.header is not None:
            return f"header {self.header}"
        first, *others = self.keys
        return f"'{first}'" + "".join(f" (or '{other}')" for other in others)


@dataclass(frozen=True, slots=True)
class HeaderSpec:
    """A header ingress reads: its name (lower-case), the longest value looked at, and its description."""

    name: str
    max_length: int
    description: str


Envelope = Callable[[str, str, Any, int], Any]
"""``(event id, event type, data, Unix seconds) -> the JSON body`` of a delivery carrying ``data``."""


@dataclass(frozen=True, slots=True)
class WebhookScheme:
    """One platform's webhooks: how they are signed and where their id and type are (see the module)."""

    name: SchemeName
    follows: str
    """The vendor documentation its facts come from."""
    signature: SignatureFormat
    event_id: Located
    event_type: Located
    headers: tuple[HeaderSpec, ...]
    envelope: Envelope
    type_separator: str = "."
    id_per_event: bool = True
    ping: re.Pattern[bytes] | None = None

    def __post_init__(self) -> None:
        # Every header ingress reads is bounded (431): a row that forgot one is refused at import.
        read = (*self.signature.headers, self.event_id.header, self.event_type.header)
        unbounded = {name for name in read if name is not None} - {spec.name for spec in self.headers}
        if unbounded:
            raise ValueError(f"scheme {self.name}: headers read without a bound: {sorted(unbounded)}")

    def levels(self, event_type: object) -> str | None:
        """The subject levels of ``event_type`` (:func:`libs.subjects.event_type_levels` with this
        platform's separator), or None when it is not a safe event type."""
        return event_type_levels(event_type, self.type_separator)

    def is_ping(self, headers: Mapping[str, str], body: bytes) -> bool:
        """Whether the request is the platform's URL test: no signature header and the ping's body."""
        return (
            self.ping is not None
            and not any(headers.get(name) for name in self.signature.headers)
            and self.ping.fullmatch(body) is not None
        )

    def delivery(
        self, secret: str, *, event_id: str, event_type: str, data: Any, now: int, occurred_at: int | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """A delivery of ``data`` as the platform sends one, signed with ``secret`` at ``now`` (Unix
        seconds): its JSON body and headers. ``occurred_at`` (Unix seconds, default ``now``) is the event's
        own time where the body carries one: a platform re-sending an event sends the body it sent first,
        under a new signature. Raises ``TypeError`` when the platform's body is ``data`` itself and
        ``data`` is not a JSON object."""
        document = self.envelope(event_id, event_type, data, now if occurred_at is None else occurred_at)
        if not isinstance(document, dict):
            raise TypeError(f"a {self.name} body is a JSON object")
        body = msgspec.json.encode(document)
        headers = {
            "content-type": "application/json",
            **self.signature.sign(secret, body, msg_id=event_id, timestamp=now),
        }
        for located, value in ((self.event_id, event_id), (self.event_type, event_type)):
            if located.header is not None:
                headers.setdefault(located.header, value)
        return body, headers


def _iso(now: int) -> str:
    return dt.datetime.fromtimestamp(now, dt.UTC).isoformat()


def _commerce_engine_envelope(event_id: str, event_type: str, data: Any, now: int) -> Any:
    return {"id": event_id, "event_type": event_type, "created_at": _iso(now), "data": data}


def _standard_envelope(event_id: str, event_type: str, data: Any, now: int) -> Any:
    return {"type": event_type, "timestamp": _iso(now), "data": data}


def _the_resource(event_id: str, event_type: str, data: Any, now: int) -> Any:
    return data


def _stripe_event(event_id: str, event_type: str, data: Any, now: int) -> Any:
    # The Event object (docs.stripe.com/api/events/object): the resource under data.object.
    return {"id": event_id, "object": "event", "type": event_type, "created": now, "data": {"object": data}}


_SCHEMES = (
    WebhookScheme(
        name="commerce-engine",
        follows="commercengine/skills, skills/webhooks/SKILL.md; @commercengine/storefront-sdk",
        signature=BodyHmac(HEADER_CE_SIGNATURE, "hex"),
        event_id=Located(keys=("id",)),
        event_type=Located(keys=("event_type",)),
        headers=(
            HeaderSpec(
                HEADER_CE_SIGNATURE,
                _MAX_DIGEST_SIGNATURE,
                "Commerce Engine sources: hex HMAC-SHA256 of the raw body under the source's secret.",
            ),
        ),
        envelope=_commerce_engine_envelope,
    ),
    WebhookScheme(
        name="standard-webhooks",
        follows="https://www.standardwebhooks.com/ (the specification, 'Verifying webhooks')",
        signature=StandardWebhooksSignature(),
        event_id=Located(header=HEADER_STANDARD_ID),
        event_type=Located(keys=("type", "event_type")),
        headers=(
            HeaderSpec(
                HEADER_STANDARD_ID,
                MAX_ID_LENGTH,
                "Standard Webhooks sources: the event id (also the id ingress deduplicates on).",
            ),
            HeaderSpec(
                HEADER_STANDARD_TIMESTAMP,
                20,
                "Standard Webhooks sources: Unix seconds; refused outside the source's tolerance.",
            ),
            HeaderSpec(
                HEADER_STANDARD_SIGNATURE,
                4096,
                "Standard Webhooks sources: `v1,<base64 HMAC-SHA256>`, space-separated.",
            ),
        ),
        envelope=_standard_envelope,
    ),
    WebhookScheme(
        name="shopify",
        # shopify.dev/docs/apps/build/webhooks/delivery-structure (Headers) and .../verify-deliveries.
        follows="shopify.dev: 'Webhooks delivery structure' (Headers), 'Verify webhook deliveries'",
        signature=BodyHmac(HEADER_SHOPIFY_HMAC, "base64"),
        # The delivery's id. Shopify's pages disagree: "Ignore duplicate webhooks" (…/webhooks/ignore-duplicates)
        # says to deduplicate on X-Shopify-Event-Id; the current "Webhooks delivery structure" and "Verify
        # webhook deliveries" define X-Shopify-Webhook-Id as the per-delivery key to deduplicate on, and
        # X-Shopify-Event-Id as one id shared by every delivery a single merchant action produces;
        # shopify-app-remix's authenticate.webhook documents webhookId as the idempotency key
        # (shopify.dev/docs/api/shopify-app-remix/v4/authenticate/webhook). One merchant action (a checkout)
        # yields orders/create, orders/paid and inventory_levels/update: as the COMMERCE id,
        # X-Shopify-Event-Id would make the later ones duplicates, or 409 conflicts, and lose them.
        event_id=Located(header=HEADER_SHOPIFY_WEBHOOK_ID),
        event_type=Located(header=HEADER_SHOPIFY_TOPIC),
        headers=(
            HeaderSpec(
                HEADER_SHOPIFY_HMAC,
                _MAX_DIGEST_SIGNATURE,
                "Shopify sources (`X-Shopify-Hmac-Sha256`): base64 HMAC-SHA256 of the raw body under the app's "
                "client secret.",
            ),
            HeaderSpec(
                HEADER_SHOPIFY_TOPIC,
                _MAX_TOPIC,
                "Shopify sources (`X-Shopify-Topic`): the event type, e.g. `orders/create`; published on "
                "`commerce.<source>.orders.create`, the topic kept in `Stockwire-Event-Type`.",
            ),
            HeaderSpec(
                HEADER_SHOPIFY_WEBHOOK_ID,
                MAX_ID_LENGTH,
                "Shopify sources (`X-Shopify-Webhook-Id`): the delivery's id, which Shopify says to deduplicate "
                "deliveries on; the id ingress deduplicates on.",
            ),
        ),
        envelope=_the_resource,  # the body is the resource itself (the REST representation), no envelope
        type_separator="/",
    ),
    WebhookScheme(
        name="woocommerce",
        follows="WooCommerce REST API docs, Webhooks ('Delivery/payload'); WC_Webhook (class-wc-webhook.php)",
        signature=BodyHmac(HEADER_WC_SIGNATURE, "base64"),
        # WC_Webhook::get_new_delivery_id() hashes the webhook's id and the current second: two deliveries
        # of one webhook within a second (a queue runner sends a backlog in a burst) share it, and WooCommerce
        # does not retry a failed delivery. Alone it would make distinct events duplicates or conflicts, so
        # the id is `<X-WC-Webhook-Delivery-ID>.<first 16 hex digits of the body's SHA-256>`.
        # X-WC-Webhook-Resource and -Event are the topic's two halves (`order`, `updated`), X-WC-Webhook-ID
        # the webhook's own id: not read.
        event_id=Located(header=HEADER_WC_DELIVERY_ID),
        event_type=Located(header=HEADER_WC_TOPIC),
        headers=(
            HeaderSpec(
                HEADER_WC_SIGNATURE,
                _MAX_DIGEST_SIGNATURE,
                "WooCommerce sources (`X-WC-Webhook-Signature`): base64 HMAC-SHA256 of the raw body under the "
                "webhook's secret.",
            ),
            HeaderSpec(
                HEADER_WC_TOPIC,
                _MAX_TOPIC,
                "WooCommerce sources (`X-WC-Webhook-Topic`): the event type, e.g. `order.created`.",
            ),
            HeaderSpec(
                HEADER_WC_DELIVERY_ID,
                128,
                "WooCommerce sources (`X-WC-Webhook-Delivery-ID`): the delivery's id; ingress's event id is it "
                "and the first 16 hex digits of the body's SHA-256.",
            ),
        ),
        envelope=_the_resource,  # the body is the resource as the REST API returns it
        id_per_event=False,
        # WC_Webhook::deliver_ping(): on creation WooCommerce POSTs `webhook_id=<id>`, unsigned, and keeps the
        # webhook only if the answer is 200.
        ping=re.compile(rb"webhook_id=[0-9]{1,20}"),
    ),
    WebhookScheme(
        name="stripe",
        follows="docs.stripe.com/webhooks ('Check the webhook signatures'); stripe-python WebhookSignature",
        signature=StripeSignature(),
        event_id=Located(keys=("id",)),  # evt_…
        event_type=Located(keys=("type",)),  # payment_intent.succeeded …
        headers=(
            HeaderSpec(
                HEADER_STRIPE_SIGNATURE,
                1024,
                "Stripe sources (`Stripe-Signature`): `t=<unix>,v1=<hex HMAC-SHA256 of <t>.<body>>`, one `v1` per "
                "active endpoint secret; `t` refused outside the source's tolerance.",
            ),
        ),
        envelope=_stripe_event,
    ),
)

SCHEMES: Mapping[SchemeName, WebhookScheme] = {scheme.name: scheme for scheme in _SCHEMES}
"""Every scheme ingress takes, by the name ``[sources.<name>] scheme`` gives."""
