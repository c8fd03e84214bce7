"""Messages the services exchange over JetStream (besides the raw webhooks in COMMERCE).

Inventory publishes both through its outbox; the channel-notifier and users' own consumers read them.
JSON, encoded with msgspec; every message about a SKU carries that SKU's ``version``, which grows by
one with each ledger row, so a receiver can drop anything older than what it has.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import msgspec

from libs.subjects import inventory_subject

__all__ = [
    "CONFLICT_HEADERS",
    "DEADLETTER_HEADERS",
    "HEADER_CONSUMER",
    "HEADER_DELIVERY_COUNT",
    "HEADER_ERROR",
    "HEADER_EVENT_ID",
    "HEADER_EVENT_TYPE",
    "HEADER_MSG_ID",
    "HEADER_ORIGINAL_MSG_ID",
    "HEADER_ORIGINAL_SEQ",
    "HEADER_ORIGINAL_STREAM",
    "HEADER_ORIGINAL_SUBJECT",
    "HEADER_RECEIVED_AT",
    "HEADER_REPLAY_OF",
    "HEADER_SOURCE",
    "INVENTORY_KINDS",
    "AvailabilityChanged",
    "FirstBody",
    "InventoryEvent",
    "availability_msg_id",
    "availability_subject",
    "commerce_msg_id",
    "conflict_msg_id",
    "deadletter_headers",
    "deadletter_msg_id",
    "decode_availability",
    "decode_first_body",
    "decode_inventory_event",
    "encode",
    "inventory_event_msg_id",
    "rejection_msg_id",
    "utc_now_iso",
]

# The kinds of design §2; each is the second token of `inventory.<kind>.<sku-token>`. `backordered`,
# `filled` and `dropped` follow a SKU's backordered units; `lost` records a shipment the carrier lost.
INVENTORY_KINDS = (
    "received",
    "adjusted",
    "reserved",
    "rejected",
    "committed",
    "deducted",
    "released",
    "expired",
    "returned",
    "backordered",
    "filled",
    "dropped",
    "lost",
    "availability",
)


class AvailabilityChanged(msgspec.Struct, frozen=True, kw_only=True):
    """``inventory.availability.<sku-token>``: the SKU's stock after a change, and the KV document."""

    sku: str
    version: int
    available: int
    on_hand: int
    reserved: int
    committed: int
    occurred_at: str
    """ISO 8601 UTC time of the ledger change (end-to-end latency is measured from it)."""
    cause: str = ""
    """The kind of change that moved it (``reserved``, ``received``…)."""


class InventoryEvent(msgspec.Struct, frozen=True, kw_only=True):
    """``inventory.<kind>.<sku-token>``: one ledger movement (or a rejected order line)."""

    kind: str
    sku: str
    qty: int
    version: int
    occurred_at: str
    order_id: str | None = None
    reservation_id: str | None = None
    source_event_id: str | None = None
    reason: str | None = None


_encoder = msgspec.json.Encoder()
_availability_decoder = msgspec.json.Decoder(AvailabilityChanged)
_event_decoder = msgspec.json.Decoder(InventoryEvent)


def encode(message: AvailabilityChanged | InventoryEvent) -> bytes:
    """The JSON bytes of an INVENTORY message (or of the KV document)."""
    return _encoder.encode(message)


def decode_availability(data: bytes) -> AvailabilityChanged:
    """Read an ``inventory.availability.*`` message or KV document; raises ``msgspec.ValidationError`` (or
    ``msgspec.DecodeError`` for bytes that are not JSON) when it does not match."""
    return _availability_decoder.decode(data)


def decode_inventory_event(data: bytes) -> InventoryEvent:
    """Read an ``inventory.<kind>.*`` message; raises as :func:`decode_availability` does."""
    return _event_decoder.decode(data)


def availability_subject(sku: str) -> str:
    """``inventory.availability.<sku-token>``; raises ``ValueError`` for an empty SKU."""
    return inventory_subject("availability", sku)


def availability_msg_id(sku: str, version: int) -> str:
    """``availability:<sku>:<version>``: the same change written twice (a retried transaction) gets the
    same id, so JetStream's deduplication keeps one copy."""
    return f"availability:{sku}:{version}"


def inventory_event_msg_id(sku: str, version: int) -> str:
    """``inventory:<sku>:<version>``: the id of the ledger row's event (one row per SKU version)."""
    return f"inventory:{sku}:{version}"


def rejection_msg_id(event: InventoryEvent) -> str:
    """``rejected:<order id>:<sku>`` (or ``rejected:cart:<reservation id>:<sku>``): one rejection per
    order (or checkout hold) and SKU, however often the order is re-delivered."""
    owner = event.order_id if event.order_id is not None else f"cart:{event.reservation_id}"
    return f"rejected:{owner}:{event.sku}"


def utc_now_iso() -> str:
    """Now, as ISO 8601 UTC with microseconds (``2026-11-29T22:30:40.123456+00:00``)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


# Headers. ``Nats-Msg-Id`` is JetStream's own: a publish whose id the stream saw within its duplicate
# window is acknowledged as a duplicate and not stored again (NATS docs, "JetStream: Message
# Deduplication"). The ``Stockwire-*`` headers are ours.
HEADER_MSG_ID = "Nats-Msg-Id"
HEADER_SOURCE = "Stockwire-Source"
"""COMMERCE: the configured source (``[sources.<name>]``) the webhook came in through."""
HEADER_EVENT_TYPE = "Stockwire-Event-Type"
"""COMMERCE: the producer's event type (``order.created`` …), as ingress read it from the webhook."""
HEADER_EVENT_ID = "Stockwire-Event-Id"
"""COMMERCE: the producer's event id, unique per source."""
HEADER_RECEIVED_AT = "Stockwire-Received-At"
"""COMMERCE: when ingress received the webhook, ISO 8601 UTC with microseconds."""

HEADER_CONSUMER = "Stockwire-Consumer"
"""DEADLETTER: the durable consumer that gave up on the message."""
HEADER_ERROR = "Stockwire-Error"
"""DEADLETTER: why, at most 1,000 characters."""
HEADER_ORIGINAL_SUBJECT = "Stockwire-Original-Subject"
HEADER_ORIGINAL_STREAM = "Stockwire-Original-Stream"
HEADER_ORIGINAL_SEQ = "Stockwire-Original-Seq"
"""DEADLETTER: the message's sequence in its original stream (decimal)."""
HEADER_DELIVERY_COUNT = "Stockwire-Delivery-Count"
"""DEADLETTER: how many times the consumer had received it (decimal)."""
HEADER_ORIGINAL_MSG_ID = "Stockwire-Original-Msg-Id"
"""DEADLETTER: the original message's ``Nats-Msg-Id`` (absent on dead letters of earlier releases:
then ``<Stockwire-Source>:<Stockwire-Event-Id>`` names a COMMERCE message)."""
HEADER_REPLAY_OF = "Stockwire-Replay-Of"
"""A message republished from DEADLETTER: the dead letter's sequence in DEADLETTER (decimal). Its
consumer keys it by ``Stockwire-Original-Msg-Id``, so an event applied once is never applied again,
while one that was dead-lettered may now be."""
DEADLETTER_HEADERS = (
    HEADER_CONSUMER,
    HEADER_ERROR,
    HEADER_ORIGINAL_SUBJECT,
    HEADER_ORIGINAL_STREAM,
    HEADER_ORIGINAL_SEQ,
    HEADER_DELIVERY_COUNT,
)

_MAX_ERROR_CHARS = 1000


def commerce_msg_id(source: str, event_id: str) -> str:
    """The ``Nats-Msg-Id`` of a webhook in COMMERCE: ``<source>:<event id>``.

    The same event id from two sources is two messages; the same id from one source is one.
    """
    return f"{source}:{event_id}"


def deadletter_msg_id(consumer: str, stream: str, stream_seq: int) -> str:
    """The ``Nats-Msg-Id`` of a dead letter: ``deadletter:<consumer>:<stream>:<seq>``.

    One per original message and consumer, so a consumer that dead-letters the same message twice
    (a redelivery, a second replica) stores it once within DEADLETTER's duplicate window.
    """
    return f"deadletter:{consumer}:{stream}:{stream_seq}"


def deadletter_headers(
    original: Mapping[str, str],
    *,
    consumer: str,
    reason: str,
    subject: str,
    stream: str,
    stream_seq: int,
    delivery_count: int,
) -> dict[str, str]:
    """Headers of a dead letter: the original message's own headers (its ``Nats-Msg-Id`` replaced by the
    dead letter's), plus who gave up on it, why (cut to 1,000 characters), and where it came from."""
    headers = {k: v for k, v in original.items() if k != HEADER_MSG_ID}
    if HEADER_MSG_ID in original:
        headers[HEADER_ORIGINAL_MSG_ID] = original[HEADER_MSG_ID]
    headers.update(
        {
            HEADER_CONSUMER: consumer,
            HEADER_ERROR: reason[:_MAX_ERROR_CHARS],
            HEADER_ORIGINAL_SUBJECT: subject,
            HEADER_ORIGINAL_STREAM: stream,
            HEADER_ORIGINAL_SEQ: str(stream_seq),
            HEADER_DELIVERY_COUNT: str(delivery_count),
            HEADER_MSG_ID: deadletter_msg_id(consumer, stream, stream_seq),
        }
    )
    return headers


class FirstBody(msgspec.Struct, frozen=True, kw_only=True):
    """Value of KV ``event-ids`` under the key of a webhook id: the body that id was first received with.

    ``digest`` is the lower-case hex SHA-256 of the raw body; ``stream_seq`` its COMMERCE sequence
    when known (events relayed from the ingress spool are recorded without it).
    """

    digest: str
    stream_seq: int | None = None


_first_body_decoder = msgspec.json.Decoder(FirstBody)


def decode_first_body(data: bytes) -> FirstBody:
    """Read a KV ``event-ids`` value; raises ``msgspec.DecodeError`` (or ``ValidationError``) if malformed."""
    return _first_body_decoder.decode(data)


# An id reused with a different body goes to DEADLETTER as evidence (``deadletter.ingress.<subject>``),
# with the event's own headers and these.
CONFLICT_HEADERS = {
    "first_digest": "Stockwire-First-Body-Digest",
    "digest": "Stockwire-Body-Digest",
    "event_msg_id": "Stockwire-Event-Msg-Id",
}


def conflict_msg_id(event_msg_id: str, digest: str) -> str:
    """``Nats-Msg-Id`` of the evidence: one per (id, conflicting body), so a re-sent conflict is kept once."""
    return f"conflict:{event_msg_id}:{digest}"
