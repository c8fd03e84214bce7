"""The bus as a machine-readable contract: an AsyncAPI 3.0 document built from the declarations in code.

Nothing here is maintained by hand twice: streams, consumers and buckets come from
:func:`libs.topology.topology_specs`, subject templates from :mod:`libs.subjects`, header names and
message types from :mod:`libs.contracts` (payload schemas are generated from the msgspec structs), and
the lease document from :mod:`libs.lease`. ``stockwire topology asyncapi`` prints it.

Format: AsyncAPI 3.0.0 (https://www.asyncapi.com/docs/reference/specification/v3.0.0); payload schemas
are JSON Schema, which the AsyncAPI Schema format accepts as a superset of Draft 07.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from libs import contracts
from libs.config import TopologySettings
from libs.lease import LeaseRecord
from libs.subjects import (
    COMMERCE_SUBJECT,
    DEADLETTER_DISCARDED_SUBJECT,
    DEADLETTER_SUBJECT,
    INVENTORY_SUBJECT,
    SOURCE_PATTERN,
)
from libs.topology import DEADLETTER, INVENTORY, KV_AVAILABILITY, KV_EVENT_IDS, KV_LEASES, kv_subject, topology_specs

__all__ = ["ASYNCAPI_VERSION", "asyncapi_document"]

ASYNCAPI_VERSION = "3.0.0"

_REF = "#/components/schemas/{name}"
_PARAMETER = re.compile(r"\{(\w+)\}")

# What each subject parameter holds; the keys are the names used in libs.subjects' templates.
_PARAMETERS = {
    "source": "The configured source the webhook came in through (`[sources.<name>]`).",
    "event_type": "The producer's event type as subject levels: one or more lower-case tokens (`order.created` is"
    " two; Shopify's `orders/create` is `orders.create`). `Stockwire-Event-Type` keeps the producer's spelling.",
    "kind": "The kind of ledger movement, or `availability` for the SKU's stock after a change.",
    "sku_token": "The SKU as one subject token: bytes outside `[A-Za-z0-9_-]` written as `~XX` (hex), reversibly.",
    "consumer": "The durable consumer that gave up on the message.",
    "original_subject": "The message's subject in its original stream, every token kept.",
    "key": "The KV key.",
}

_STRING = {"type": "string"}


def _camel(name: str) -> str:
    """``channel-notifier`` -> ``channelNotifier``: an operation id from a durable's name."""
    first, *rest = re.split(r"[^A-Za-z0-9]+", name)
    return first + "".join(part.title() for part in rest)


def _address(template: str) -> tuple[str, dict[str, Any]]:
    """An AsyncAPI channel address and its parameters from one of libs.subjects' templates."""
    params = {name: {"description": _PARAMETERS[name]} for name in _PARAMETER.findall(template)}
    return template, params


def _headers(properties: dict[str, str], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {name: {**_STRING, "description": text} for name, text in properties.items()},
        "required": required,
    }


# Any message may come round again from DEADLETTER (`stockwire deadletter replay`): these say so.
_REPLAY_HEADERS = {
    contracts.HEADER_REPLAY_OF: "Only on a message republished from DEADLETTER: the dead letter's sequence there"
    " (decimal). Key such a message by `Stockwire-Original-Msg-Id`, never by its `Nats-Msg-Id`.",
    contracts.HEADER_ORIGINAL_MSG_ID: "With `Stockwire-Replay-Of`: the `Nats-Msg-Id` the message was first"
    " published with.",
}
_REPLAY_ID = " A replay's is `replay:<deadletter seq>:<original id>`."
# Only while `[tracing]` is on (docs/architecture.md, "Traces").
_TRACE_HEADERS = {
    contracts.HEADER_TRACEPARENT: "W3C Trace Context: the span that sent the message (only while `[tracing]` is on).",
    contracts.HEADER_TRACESTATE: "W3C Trace Context vendor state, passed along when the trace has one.",
}


# Written by JetStream's atomic batch publish, which the outbox relay uses (docs/architecture.md).
_BATCH_HEADERS = {
    contracts.HEADER_BATCH_ID: "Only on a message the outbox relay stored in a JetStream atomic batch: the batch's"
    " id. A batch is stored whole or not at all.",
    contracts.HEADER_BATCH_SEQUENCE: "With `Nats-Batch-Id`: the message's position in its batch, from 1.",
    contracts.HEADER_BATCH_COMMIT: "With `Nats-Batch-Id`: on the batch's last message only.",
}


def _replayable(msg_id: str, others: dict[str, str] | None = None) -> dict[str, str]:
    """Header descriptions of a message that may be replayed: ``msg_id`` describes its ``Nats-Msg-Id``."""
    return {
        contracts.HEADER_MSG_ID: msg_id + _REPLAY_ID,
        **(others or {}),
        **_REPLAY_HEADERS,
        **_TRACE_HEADERS,
        **_BATCH_HEADERS,
    }


def _commerce_headers() -> dict[str, Any]:
    return _headers(
        _replayable(
            "`<source>:<event id>`; JetStream drops a second publish within the duplicate window.",
            {
                contracts.HEADER_SOURCE: "The source the webhook came in through.",
                contracts.HEADER_EVENT_TYPE: "The producer's event type, as the producer spells it (`order.created`,"
                " Shopify's `orders/create`).",
                contracts.HEADER_EVENT_ID: "The producer's event id, unique per source.",
                contracts.HEADER_RECEIVED_AT: "When ingress received the webhook (ISO 8601, UTC).",
            },
        ),
        [contracts.HEADER_MSG_ID, contracts.HEADER_SOURCE, contracts.HEADER_EVENT_TYPE, contracts.HEADER_EVENT_ID],
    )


def _discard_headers() -> dict[str, Any]:
    described = {
        contracts.HEADER_MSG_ID: "`discard:<deadletter seq>`: one record per discarded dead letter.",
        contracts.HEADER_DISCARDED_SEQ: "The dead letter's sequence in DEADLETTER (decimal), deleted after this.",
        contracts.HEADER_DISCARDED_SUBJECT: "The dead letter's DEADLETTER subject.",
        contracts.HEADER_DISCARD_REASON: "Why, as the operator gave it (1 to 500 printable characters).",
        contracts.HEADER_DISCARDED_BY: "Who discarded it: the admin API's caller (`admin`).",
        contracts.HEADER_DISCARDED_AT: "When, RFC 3339 UTC.",
        contracts.HEADER_BODY_SHA256: "SHA-256 of the dead letter's body (hex); the body itself is not kept.",
    }
    headers = _headers(described, list(described))
    # The dead letter's own headers (why it was given up, its original subject…) are kept beside these.
    headers["additionalProperties"] = _STRING
    return headers


def _deadletter_headers() -> dict[str, Any]:
    described = {
        contracts.HEADER_MSG_ID: "`deadletter:<consumer>:<stream>:<sequence>`: one dead letter per message and"
        " consumer.",
        contracts.HEADER_CONSUMER: "The durable consumer that gave up.",
        contracts.HEADER_ERROR: "Why (at most 1,000 characters).",
        contracts.HEADER_ORIGINAL_SUBJECT: "The message's subject in its original stream.",
        contracts.HEADER_ORIGINAL_STREAM: "The original stream.",
        contracts.HEADER_ORIGINAL_SEQ: "The message's sequence in the original stream (decimal).",
        contracts.HEADER_DELIVERY_COUNT: "How many times the consumer had received it (decimal).",
        contracts.HEADER_ORIGINAL_MSG_ID: "The original message's `Nats-Msg-Id` (absent on dead letters of earlier"
        " releases: then `<Stockwire-Source>:<Stockwire-Event-Id>` names it); a replay's first id.",
        contracts.HEADER_REPLAY_OF: "Set when the message that failed was itself a replay: the dead letter it came"
        " from.",
        contracts.CONFLICT_HEADERS["first_digest"]: "Conflict evidence (`deadletter.ingress.*`): SHA-256 of the"
        " body the id was first received with.",
        contracts.CONFLICT_HEADERS["digest"]: "Conflict evidence: SHA-256 of this (refused) body.",
        contracts.CONFLICT_HEADERS["event_msg_id"]: "Conflict evidence: the event's `<source>:<id>`.",
    }
    # Conflict evidence from ingress never sat in a stream: it has no original stream, sequence or count.
    required = [contracts.HEADER_MSG_ID, contracts.HEADER_CONSUMER, contracts.HEADER_ERROR]
    headers = _headers(described, [*required, contracts.HEADER_ORIGINAL_SUBJECT])
    # The original message's own headers travel with it.
    headers["additionalProperties"] = _STRING
    return headers


# COMMERCE holds each webhook body byte for byte (the audit log), so its payload is whatever the
# producer sent; what ingress guarantees is that it is a JSON object: an envelope with the id and type,
# or (Shopify, WooCommerce) the resource itself, its id and type in the headers.
_WEBHOOK = {
    "title": "Webhook",
    "description": "The producer's webhook body, byte for byte as received.",
    "anyOf": [
        {
            "title": "CommerceEngineEnvelope",
            "type": "object",
            "properties": {
                "id": _STRING,
                "event_type": _STRING,
                "created_at": _STRING,
                "data": {"type": "object"},
            },
            "required": ["id", "event_type"],
        },
        {
            "title": "StandardWebhooksEnvelope",
            "type": "object",
            "properties": {"type": _STRING, "timestamp": _STRING, "data": {"type": "object"}},
            "required": ["type"],
        },
        {
            "title": "StripeEvent",
            "type": "object",
            "properties": {"id": _STRING, "object": {"const": "event"}, "type": _STRING, "data": {"type": "object"}},
            "required": ["id", "type"],
        },
        {
            "title": "PlatformResource",
            "description": "Shopify, WooCommerce: the resource itself (an order, a fulfillment…); the id and type are"
            " in `Stockwire-Event-Id` and `Stockwire-Event-Type`.",
            "type": "object",
        },
    ],
}


def _message(
    name: str, title: str, summary: str, payload: dict[str, Any], headers: dict[str, Any] | None = None
) -> dict[str, Any]:
    message: dict[str, Any] = {"name": name, "title": title, "summary": summary, "contentType": "application/json"}
    if headers is not None:
        message["headers"] = headers
    message["payload"] = payload
    return message


def _seconds(value: float) -> str:
    """A duration for a reader: ``2,592,000 s`` (no exponent), ``0.5 s``."""
    return f"{value:,.0f} s" if float(value).is_integer() else f"{value:,g} s"


def asyncapi_document(
    settings: TopologySettings, *, version: str = "0", server: str = "127.0.0.1:4222"
) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of the bus for ``settings``, as a JSON-ready dict.

    ``version`` is the document's ``info.version`` (the package version); ``server`` the NATS host:port
    named in ``servers``. Pure: reads no server.
    """
    streams, buckets, consumers = topology_specs(settings)
    _, components = msgspec.json.schema_components(
        [contracts.InventoryEvent, contracts.AvailabilityChanged, LeaseRecord, contracts.FirstBody], ref_template=_REF
    )
    components["Webhook"] = _WEBHOOK
    stream_notes = {s.name: s for s in streams}

    messages = {
        "Webhook": _message(
            "Webhook",
            "A received webhook",
            "One webhook as ingress accepted it: verified, and durable before the producer was answered.",
            {"$ref": _REF.format(name="Webhook")},
            _commerce_headers(),
        ),
        "InventoryEvent": _message(
            "InventoryEvent",
            "A ledger movement",
            "One ledger row (or a rejected order line); `version` grows by one per row of the SKU.",
            {"$ref": _REF.format(name="InventoryEvent")},
            _headers(
                _replayable("`inventory:<sku>:<version>`, or `rejected:<order>:<sku>` for a rejection."),
                [contracts.HEADER_MSG_ID],
            ),
        ),
        "AvailabilityChanged": _message(
            "AvailabilityChanged",
            "A SKU's availability",
            "The SKU's stock after a change; drop any version older than the one you hold.",
            {"$ref": _REF.format(name="AvailabilityChanged")},
            _headers(
                _replayable("`availability:<sku>:<version>`."),
                [contracts.HEADER_MSG_ID],
            ),
        ),
        "DeadLetter": _message(
            "DeadLetter",
            "A message a consumer gave up on",
            "The original body, unchanged, with why and where it came from in the headers.",
            {"description": "The original message's body, byte for byte."},
            _deadletter_headers(),
        ),
        "DeadLetterDiscarded": _message(
            "DeadLetterDiscarded",
            "The record of a discarded dead letter",
            "Who discarded which dead letter, when and why; the dead letter is deleted once this is stored.",
            {"description": "Empty: the record keeps the dead letter's headers and the SHA-256 of its body."},
            _discard_headers(),
        ),
        "LeaseRecord": _message(
            "LeaseRecord",
            "A leader lease",
            "Who holds a lease and for how long; written by compare-and-set on the key's revision.",
            {"$ref": _REF.format(name="LeaseRecord")},
        ),
        "FirstBody": _message(
            "FirstBody",
            "The body a webhook id was first received with",
            "Written by ingress under `<source>.<sha256 of the id>`; a later body with the same id is a conflict.",
            {"$ref": _REF.format(name="FirstBody")},
        ),
    }

    def stream_text(name: str) -> str:
        spec = stream_notes[name]
        return (
            f"Stream `{name}` ({spec.description}): retained {spec.max_age_s / 86_400:,g} days, duplicate window "
            f"{_seconds(spec.duplicate_window_s)}, {spec.replicas} replica(s)."
        )

    commerce_address, commerce_params = _address(COMMERCE_SUBJECT)
    inventory_address, inventory_params = _address(INVENTORY_SUBJECT)
    availability_address, availability_params = _address(INVENTORY_SUBJECT.replace("{kind}", "availability"))
    deadletter_address, deadletter_params = _address(DEADLETTER_SUBJECT)
    discarded_address, discarded_params = _address(DEADLETTER_DISCARDED_SUBJECT)
    discarded_params["consumer"] = {
        "description": "The consumer that had given up on the discarded dead letter (`unknown` when its record "
        "named none); `discarded` is no consumer's name, so these never mix with dead letters."
    }
    inventory_params["kind"]["enum"] = [k for k in contracts.INVENTORY_KINDS if k != "availability"]
    channels: dict[str, Any] = {
        "commerce": {
            "address": commerce_address,
            "parameters": commerce_params,
            "description": stream_text("COMMERCE"),
            "messages": {"Webhook": {"$ref": "#/components/messages/Webhook"}},
        },
        "inventoryEvents": {
            "address": inventory_address,
            "parameters": inventory_params,
            "description": stream_text(INVENTORY),
            "messages": {"InventoryEvent": {"$ref": "#/components/messages/InventoryEvent"}},
        },
        "availability": {
            "address": availability_address,
            "parameters": availability_params,
            "description": stream_text(INVENTORY),
            "messages": {"AvailabilityChanged": {"$ref": "#/components/messages/AvailabilityChanged"}},
        },
        "deadletter": {
            "address": deadletter_address,
            "parameters": deadletter_params,
            "description": stream_text(DEADLETTER),
            "messages": {"DeadLetter": {"$ref": "#/components/messages/DeadLetter"}},
        },
        "deadletterDiscarded": {
            "address": discarded_address,
            "parameters": discarded_params,
            "description": stream_text(DEADLETTER),
            "messages": {"DeadLetterDiscarded": {"$ref": "#/components/messages/DeadLetterDiscarded"}},
        },
    }
    kv_documents = {KV_AVAILABILITY: "AvailabilityChanged", KV_LEASES: "LeaseRecord", KV_EVENT_IDS: "FirstBody"}
    for bucket in buckets:
        ttl = f", entries expire after {_seconds(bucket.ttl_s)}" if bucket.ttl_s else ""
        key = "{sku_token}" if bucket.bucket == KV_AVAILABILITY else "{key}"
        address, params = _address(kv_subject(bucket.bucket, key))
        document = kv_documents[bucket.bucket]
        channels[f"kv-{bucket.bucket}"] = {
            "address": address,
            "parameters": params,
            "description": f"KV bucket `{bucket.bucket}` ({bucket.description}): history {bucket.history}{ttl}.",
            "messages": {document: {"$ref": f"#/components/messages/{document}"}},
        }

    def operation(action: str, channel: str, message: str, summary: str) -> dict[str, Any]:
        return {
            "action": action,
            "channel": {"$ref": f"#/channels/{channel}"},
            "summary": summary,
            "messages": [{"$ref": f"#/channels/{channel}/messages/{message}"}],
        }

    kv_availability, kv_leases = f"kv-{KV_AVAILABILITY}", f"kv-{KV_LEASES}"
    operations: dict[str, Any] = {
        "ingressPublishesWebhooks": operation(
            "send", "commerce", "Webhook", "ingress publishes each verified webhook and answers once it is durable."
        ),
        "relayPublishesInventoryEvents": operation(
            "send", "inventoryEvents", "InventoryEvent", "outbox-relay publishes inventory's outbox rows in order."
        ),
        "relayPublishesAvailability": operation(
            "send", "availability", "AvailabilityChanged", "outbox-relay publishes a SKU's availability after a change."
        ),
        "consumersDeadLetter": operation(
            "send", "deadletter", "DeadLetter", "A consumer publishes a message it gave up on, then terminates it."
        ),
        "inventoryRecordsDiscards": operation(
            "send",
            "deadletterDiscarded",
            "DeadLetterDiscarded",
            "inventory's admin API (and `stockwire deadletter discard`) records each discard, then deletes the "
            "dead letter.",
        ),
        "notifierWritesAvailability": operation(
            "send", kv_availability, "AvailabilityChanged", "channel-notifier keeps the newest document per SKU."
        ),
        "relayHoldsLeases": operation(
            "send", kv_leases, "LeaseRecord", "outbox-relay replicas hold one leader lease per outbox."
        ),
        "ingressRecordsFirstBodies": operation(
            "send", f"kv-{KV_EVENT_IDS}", "FirstBody", "ingress records the digest of each id's first body."
        ),
    }
    channel_of_stream = {"COMMERCE": ("commerce", "Webhook"), INVENTORY: ("inventoryEvents", "InventoryEvent")}
    for consumer in consumers:
        channel, message = channel_of_stream[consumer.stream]
        operations[f"{_camel(consumer.durable)}Consumes{consumer.stream.title()}"] = operation(
            "receive",
            channel,
            message,
            f"Durable pull consumer `{consumer.stream}/{consumer.durable}` ({consumer.description}): filter "
            f"`{consumer.filter_subject}`, explicit ack, at most {consumer.max_ack_pending} unacknowledged, "
            f"dead-lettered after {consumer.max_deliver} deliveries.",
        )
    host, _, port = server.rpartition(":")
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "Stockwire bus",
            "version": version,
            "description": (
                "Subjects, headers and payloads of Stockwire's JetStream streams and KV buckets. Sources are named "
                f"by the pattern `{SOURCE_PATTERN.pattern}`."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {"nats": {"host": f"{host}:{port}", "protocol": "nats", "description": "NATS with JetStream"}},
        "channels": channels,
        "operations": operations,
        "components": {"schemas": components, "messages": messages},
    }
