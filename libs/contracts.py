"""Messages the services exchange over JetStream (besides the raw webhooks in COMMERCE).

Inventory publishes both through its outbox; the channel-notifier and users' own consumers read them.
JSON, encoded with msgspec; every message about a SKU carries that SKU's ``version``, which grows by
one with each ledger row, so a receiver can drop anything older than what it has.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping

import msgspec

from libs.subjects import inventory_subject

__all__ = [
    "CONFLICT_HEADERS",
    "DEADLETTER_HEADERS",
    "DIRECT_GET_API",
    "DIRECT_GET_HEADERS",
    "DIRECT_GET_NOT_FOUND",
    "HEADER_BATCH_COMMIT",
    "HEADER_BATCH_ID",
    "HEADER_BATCH_SEQUENCE",
    "HEADER_BODY_SHA256",
    "HEADER_CONSUMER",
    "HEADER_DELIVERY_COUNT",
    "HEADER_DIRECT_GET_SUBJECT",
    "HEADER_DISCARDED_AT",
    "HEADER_DISCARDED_BY",
    "HEADER_DISCARDED_SEQ",
    "HEADER_DISCARDED_SUBJECT",
    "HEADER_DISCARD_REASON",
    "HEADER_ERROR",
    "HEADER_EVENT_ID",
    "HEADER_EVENT_TYPE",
    "HEADER_EXPECTED_LAST_SUBJECT_SEQ",
    "HEADER_KV_OPERATION",
    "HEADER_MSG_ID",
    "HEADER_ORIGINAL_MSG_ID",
    "HEADER_ORIGINAL_SEQ",
    "HEADER_ORIGINAL_STREAM",
    "HEADER_ORIGINAL_SUBJECT",
    "HEADER_RECEIVED_AT",
    "HEADER_REPLAY_OF",
    "HEADER_SOURCE",
    "HEADER_STATUS",
    "HEADER_STATUS_DESCRIPTION",
    "HEADER_TRACEPARENT",
    "HEADER_TRACESTATE",
    "INVENTORY_KINDS",
    "JETSTREAM_HEADER_PREFIX",
    "KV_REMOVED",
    "NO_RESPONDERS",
    "PULL_NEXT_API",
    "TRACE_HEADERS",
    "AvailabilityChanged",
    "FirstBody",
    "InventoryEvent",
    "availability_msg_id",
    "availability_subject",
    "commerce_msg_id",
    "conflict_msg_id",
    "deadletter_headers",
    "deadletter_msg_id",
    "deadletter_original_msg_id",
    "decode_availability",
    "decode_first_body",
    "decode_inventory_event",
    "direct_get_subject",
    "discard_msg_id",
    "encode",
    "inventory_event_msg_id",
    "pull_next_subject",
    "rejection_msg_id",
    "replay_headers",
    "replay_msg_id",
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
    """The order as its producer numbers it (Commerce Engine: ``order_number``)."""
    order_source: str | None = None
    """The source whose order it is (``[sources.<name>]``): the same number from two sources is two orders."""
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
    """``rejected:<source>:<order id>:<sku>`` (``rejected:<order id>:<sku>`` for an order with no source;
    ``rejected:cart:<reservation id>:<sku>`` for a checkout hold): one rejection per order (or hold) and
    SKU, however often the order is re-delivered."""
    if event.order_id is None:
        owner = f"cart:{event.reservation_id}"
    elif event.order_source:
        owner = f"{event.order_source}:{event.order_id}"
    else:
        owner = event.order_id
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

# JetStream's atomic batch publish (nats-server 2.12+, ADR-50 "JetStream Batch Publishing"): messages
# carrying one batch id and consecutive sequences (from 1) are staged until the one marked commit, then
# stored together, or none of them; the commit alone is answered, with the batch's last sequence and count.
HEADER_BATCH_ID = "Nats-Batch-Id"
HEADER_BATCH_SEQUENCE = "Nats-Batch-Sequence"
HEADER_BATCH_COMMIT = "Nats-Batch-Commit"
HEADER_EXPECTED_LAST_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"
"""JetStream stores the message only if the subject's last message is at this stream sequence (``0``: the
subject holds none); a KV update names the key's revision this way (NATS docs, "JetStream: Headers")."""

# W3C Trace Context (https://www.w3.org/TR/trace-context/), written and read by OpenTelemetry's
# propagator when ``[tracing]`` is on, absent otherwise: on the inbound webhook (read), on COMMERCE and
# INVENTORY messages and on the inventory outbox rows' headers, and on outbound channel webhooks.
HEADER_TRACEPARENT = "traceparent"
"""``00-<trace id>-<parent span id>-<flags>``: the span a message or request was sent from."""
HEADER_TRACESTATE = "tracestate"
"""Vendor trace state, passed along unchanged when the caller sent one."""
TRACE_HEADERS = (HEADER_TRACEPARENT, HEADER_TRACESTATE)

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
while one that was dead-lettered may now be. A replayed message also carries
``Stockwire-Original-Msg-Id`` (the id it was first published with) and, as ``Nats-Msg-Id``,
:func:`replay_msg_id`."""
HEADER_DISCARDED_SEQ = "Stockwire-Discarded-Seq"
"""The record of a discarded dead letter: the dead letter's sequence in DEADLETTER (decimal). The record
keeps the dead letter's headers (its subject in ``Stockwire-Original-Subject``) but not its body."""
HEADER_DISCARDED_SUBJECT = "Stockwire-Discarded-Subject"
"""The record of a discarded dead letter: the dead letter's DEADLETTER subject."""
HEADER_DISCARD_REASON = "Stockwire-Discard-Reason"
"""The record of a discarded dead letter: why it was discarded, as the operator gave it."""
HEADER_DISCARDED_BY = "Stockwire-Discarded-By"
"""The record of a discarded dead letter: who discarded it (the admin API's caller: ``admin``)."""
HEADER_DISCARDED_AT = "Stockwire-Discarded-At"
"""The record of a discarded dead letter: when, RFC 3339 UTC."""
HEADER_BODY_SHA256 = "Stockwire-Body-Sha256"
"""The record of a discarded dead letter: the SHA-256 of the dead letter's body (hex)."""
JETSTREAM_HEADER_PREFIX = "Nats-"
"""JetStream's own headers (``Nats-Msg-Id``, ``Nats-Expected-Stream``, ``Nats-TTL``…): instructions for
one publication, never part of the event, so a replay carries none of the first publication's."""
HEADER_DIRECT_GET_SUBJECT = "Nats-Subject"
"""A direct get's answer: the subject the message was stored under."""
HEADER_STATUS = "Status"
"""A direct get's answer without a message: its status (``404``: none on that subject)."""
DIRECT_GET_NOT_FOUND = "404"
NO_RESPONDERS = "503"
"""A request's answer from the server itself when nothing listens on the subject (no stream holds it)."""
HEADER_KV_OPERATION = "KV-Operation"
"""A KV entry that is a delete or purge marker says so here (:data:`KV_REMOVED`), with no value."""
KV_REMOVED = ("DEL", "PURGE")
DIRECT_GET_API = "$JS.API.DIRECT.GET"
"""The subject prefix of JetStream's direct get (default API prefix, no domain)."""
PULL_NEXT_API = "$JS.API.CONSUMER.MSG.NEXT"
"""The subject prefix of a pull request to a durable consumer (default API prefix, no domain)."""
HEADER_STATUS_DESCRIPTION = "Description"
"""A status message's reason, beside :data:`HEADER_STATUS` (``No Messages``, ``Request Timeout``, ...)."""
DIRECT_GET_HEADERS = (
    "Nats-Stream",
    HEADER_DIRECT_GET_SUBJECT,
    "Nats-Sequence",
    "Nats-Time-Stamp",
    "Nats-Num-Pending",
    "Nats-Last-Sequence",
    "Nats-UpTo-Sequence",
)
"""What the server adds to a message answering a direct get (``$JS.API.DIRECT.GET``): where and when it
was stored, not headers it was published with."""
DEADLETTER_HEADERS = (
    HEADER_CONSUMER,
    HEADER_ERROR,
    HEADER_ORIGINAL_SUBJECT,
    HEADER_ORIGINAL_STREAM,
    HEADER_ORIGINAL_SEQ,
    HEADER_DELIVERY_COUNT,
)

_MAX_ERROR_CHARS = 1000


def direct_get_subject(stream: str, subject: str) -> str:
    """``$JS.API.DIRECT.GET.<stream>.<subject>``: the request, with an empty payload, for the last message of
    ``subject`` in ``stream`` (a stream declared with ``allow_direct``)."""
    return f"{DIRECT_GET_API}.{stream}.{subject}"


def pull_next_subject(stream: str, durable: str) -> str:
    """``$JS.API.CONSUMER.MSG.NEXT.<stream>.<durable>``: where a pull request for the next messages of the
    durable pull consumer ``durable`` on ``stream`` is published (JSON body ``{"batch", "expires" (ns) or
    "no_wait"}``, the reply subject receiving the messages and the request's closing status)."""
    return f"{PULL_NEXT_API}.{stream}.{durable}"


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
    dead letter's and kept as ``Stockwire-Original-Msg-Id``, unless the message, a replay, already carries
    one), plus who gave up on it, why (cut to 1,000 characters), and where it came from."""
    headers = {k: v for k, v in original.items() if k != HEADER_MSG_ID}
    # A replayed message already names the id it was first published with; its own id is the replay's.
    if HEADER_MSG_ID in original and HEADER_ORIGINAL_MSG_ID not in original:
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


def deadletter_original_msg_id(headers: Mapping[str, str]) -> str | None:
    """The ``Nats-Msg-Id`` a dead letter's message was first published with, from the dead letter's
    ``headers``: ``Stockwire-Original-Msg-Id``, or on a dead letter of an earlier release (which lacks it)
    ``<Stockwire-Source>:<Stockwire-Event-Id>`` (:func:`commerce_msg_id`); None when neither is there."""
    original = headers.get(HEADER_ORIGINAL_MSG_ID)
    if original:
        return original
    source, event_id = headers.get(HEADER_SOURCE), headers.get(HEADER_EVENT_ID)
    if source and event_id:
        return commerce_msg_id(source, event_id)
    return None


# JetStream keeps every id of a stream's duplicate window in memory; ids stay short.
_MAX_REPLAY_ID_CHARS = 256


def discard_msg_id(deadletter_seq: int) -> str:
    """The ``Nats-Msg-Id`` of the record of discarding the dead letter ``deadletter_seq``:
    ``discard:<seq>`` (a retried discard stores its record once within DEADLETTER's duplicate window)."""
    return f"discard:{deadletter_seq}"


def replay_msg_id(deadletter_seq: int, original_msg_id: str) -> str:
    """The ``Nats-Msg-Id`` of a message replayed from DEADLETTER: ``replay:<deadletter seq>:<original id>``.

    One per dead letter, so replaying it twice within the original stream's duplicate window stores it
    once; a message dead-lettered again after a replay is a new dead letter, with a new sequence, and
    can be replayed in turn. When the whole would be over 256 characters the original id is replaced by
    its SHA-256: ``replay:<seq>:sha256:<lower-case hex>``.
    """
    msg_id = f"replay:{deadletter_seq}:{original_msg_id}"
    if len(msg_id) <= _MAX_REPLAY_ID_CHARS:
        return msg_id
    digest = hashlib.sha256(original_msg_id.encode("utf-8", "surrogatepass")).hexdigest()
    return f"replay:{deadletter_seq}:sha256:{digest}"


def replay_headers(deadletter: Mapping[str, str], *, deadletter_seq: int, original_msg_id: str) -> dict[str, str]:
    """Headers of a message replayed from the dead letter ``deadletter_seq`` (``deadletter``: its stored
    headers): the original message's own, that is the dead letter's without :data:`DEADLETTER_HEADERS` and
    without any JetStream header (``Nats-*``), plus ``Stockwire-Original-Msg-Id: original_msg_id``,
    ``Stockwire-Replay-Of: <deadletter_seq>`` and ``Nats-Msg-Id``: :func:`replay_msg_id`."""
    headers = {
        k: v for k, v in deadletter.items() if k not in DEADLETTER_HEADERS and not k.startswith(JETSTREAM_HEADER_PREFIX)
    }
    headers[HEADER_ORIGINAL_MSG_ID] = original_msg_id
    headers[HEADER_REPLAY_OF] = str(deadletter_seq)
    headers[HEADER_MSG_ID] = replay_msg_id(deadletter_seq, original_msg_id)
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
