"""Messages the services exchange over JetStream (besides the raw webhooks in COMMERCE).

Inventory publishes both through its outbox; the channel-notifier and users' own consumers read them.
JSON, encoded with msgspec; every message about a SKU carries that SKU's ``version``, which grows by
one with each ledger row, so a receiver can drop anything older than what it has.
"""

from __future__ import annotations

import datetime as dt

import msgspec

from libs.subjects import inventory_subject

__all__ = [
    "CONFLICT_HEADERS",
    "INVENTORY_KINDS",
    "AvailabilityChanged",
    "FirstBody",
    "InventoryEvent",
    "availability_msg_id",
    "availability_subject",
    "conflict_msg_id",
    "decode_availability",
    "decode_first_body",
    "decode_inventory_event",
    "encode",
    "utc_now_iso",
]

# The kinds of design §2; each is the second token of `inventory.<kind>.<sku-token>`.
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
    return _encoder.encode(message)


def decode_availability(data: bytes) -> AvailabilityChanged:
    return _availability_decoder.decode(data)


def decode_inventory_event(data: bytes) -> InventoryEvent:
    return _event_decoder.decode(data)


def availability_subject(sku: str) -> str:
    return inventory_subject("availability", sku)


def availability_msg_id(sku: str, version: int) -> str:
    return f"availability:{sku}:{version}"


def utc_now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


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
