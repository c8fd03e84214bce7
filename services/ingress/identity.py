"""One id, one body: tell a re-sent event from an id reused with different content.

JetStream's dedup window (``[topology] duplicate_window_s``) answers "duplicate" for any message with
a known ``Nats-Msg-Id``, whatever its body, and forgets the id afterwards. So ingress keeps, per
webhook id, the SHA-256 of the body it first made durable (KV ``event-ids``, as long as COMMERCE keeps
events), and compares: the same body again is a duplicate; another body is a conflict, answered 409,
counted by source, and kept as evidence in DEADLETTER. The first body stays the one applied: a
conflicting body never reaches COMMERCE.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence

import msgspec
import nats.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js import errors as js_errors
from nats.js.kv import KeyValue

from libs.bus import (
    API_TIMEOUT_S,
    AtomicBatchRefused,
    atomic_pays,
    direct_get_last,
    publish_atomic,
    stream_allows_atomic,
)
from libs.contracts import (
    CONFLICT_HEADERS,
    HEADER_CONSUMER,
    HEADER_DIRECT_GET_SUBJECT,
    HEADER_ERROR,
    HEADER_EXPECTED_LAST_SUBJECT_SEQ,
    HEADER_KV_OPERATION,
    HEADER_MSG_ID,
    HEADER_ORIGINAL_SUBJECT,
    KV_REMOVED,
    FirstBody,
    conflict_msg_id,
    decode_first_body,
)
from libs.outbox import OutboxMessage
from libs.subjects import deadletter_subject
from libs.topology import KV_EVENT_IDS, kv_stream, kv_subject

from .webhook import InboundWebhook

__all__ = ["CONFLICT_CONSUMER", "EventIds", "body_digest", "conflict_evidence", "id_key"]

log = logging.getLogger("stockwire.ingress")

CONFLICT_CONSUMER = "ingress"
_STREAM = kv_stream(KV_EVENT_IDS)


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def id_key(msg_id: str) -> str:
    """The KV key of ``<source>:<id>``: the source, then a hash of the id (ids may hold any printable
    character, KV keys only ``[-/_=.a-zA-Z0-9]``; a hash also bounds the length)."""
    source, _, event_id = msg_id.partition(":")
    return f"{source}.{hashlib.sha256(event_id.encode()).hexdigest()}"


def conflict_evidence(event: InboundWebhook, first_digest: str) -> OutboxMessage:
    """The DEADLETTER message that keeps a conflicting body, byte for byte, with both digests."""
    digest = body_digest(event.body)
    headers = {
        **event.headers(),
        HEADER_MSG_ID: conflict_msg_id(event.msg_id, digest),
        HEADER_CONSUMER: CONFLICT_CONSUMER,
        HEADER_ERROR: f"conflict: id {event.event_id!r} was first received with another body",
        HEADER_ORIGINAL_SUBJECT: event.subject,
        CONFLICT_HEADERS["event_msg_id"]: event.msg_id,
        CONFLICT_HEADERS["first_digest"]: first_digest,
        CONFLICT_HEADERS["digest"]: digest,
    }
    subject = deadletter_subject(CONFLICT_CONSUMER, event.subject)
    return OutboxMessage(subject, headers[HEADER_MSG_ID], event.body, headers)


class EventIds:
    """KV ``event-ids``. Bus errors propagate (the caller spools); a missing bucket (topology not
    applied) is logged and treated as "nothing known", so JetStream's window still dedups.

    :meth:`first` runs on every webhook: where the bucket takes direct gets (``stockwire topology apply``
    declares it so), it asks with one request of its own (:func:`libs.bus.direct_get_last`), which costs
    the process less CPU than ``KeyValue.get``'s layers; the answers are read as ``KeyValue.get`` reads
    them."""

    def __init__(self, nc: Client, js: JetStreamContext, timeout: float = API_TIMEOUT_S) -> None:
        self.nc = nc
        self.js = js
        self.timeout = timeout
        self._kv: KeyValue | None = None
        self._direct = False
        self._atomic: bool | None = None
        self._warned = False

    async def _bucket(self) -> KeyValue | None:
        if self._kv is None:
            try:
                kv = await self.js.key_value(KV_EVENT_IDS)
                self._direct = bool((await self.js.stream_info(_STREAM)).config.allow_direct)
                self._kv = kv
            except js_errors.BucketNotFoundError:
                if not self._warned:
                    self._warned = True
                    log.warning(
                        "kv bucket %s is missing (run `stockwire topology apply`): an id reused with another "
                        "body after the dedup window goes unseen",
                        KV_EVENT_IDS,
                    )
                return None
        return self._kv

    async def first(self, msg_id: str) -> FirstBody | None:
        """The body this id was first made durable with, or None if unknown."""
        kv = await self._bucket()
        if kv is None:
            return None
        key = id_key(msg_id)
        if not self._direct:
            try:
                entry = await kv.get(key)
            except (js_errors.KeyNotFoundError, js_errors.KeyDeletedError):
                return None
            return _decode(entry.value)
        subject = kv_subject(KV_EVENT_IDS, key)
        reply = await direct_get_last(self.nc, _STREAM, subject, timeout=self.timeout)
        if reply is None:
            return None
        headers = reply.headers or {}
        # KeyValue.get's reading: another key's message, or a delete or purge marker, is no entry.
        if headers[HEADER_DIRECT_GET_SUBJECT] != subject or headers.get(HEADER_KV_OPERATION) in KV_REMOVED:
            return None
        return _decode(reply.data or None)

    async def remember(self, msg_id: str, first: FirstBody) -> FirstBody | None:
        """Record ``first`` unless the id is known; returns what was known before (None: recorded)."""
        kv = await self._bucket()
        if kv is None:
            return None
        key = id_key(msg_id)
        try:
            await kv.create(key, msgspec.json.encode(first))
        except js_errors.KeyWrongLastSequenceError:
            entry = await kv.get(key)
            return _decode(entry.value)
        return None

    async def remember_all(self, records: Sequence[tuple[str, FirstBody]]) -> bool:
        """Record every (msg_id, first), none of them known yet, in one atomic batch of creates: True when
        all are recorded. False when the batch was not used or not stored whole (too few records for a
        batch to pay, see :func:`libs.bus.atomic_pays`; the bucket does not take atomic batches or is
        missing; an id was known already; the bus failed): nothing of it was
        then recorded, or its outcome is unknown, and :meth:`remember` is the way, id by id."""
        if not atomic_pays(len(records)) or await self._bucket() is None:
            return False
        if self._atomic is None:
            self._atomic = await stream_allows_atomic(self.js, _STREAM, f"kv {KV_EVENT_IDS}")
        if not self._atomic:
            return False
        create = {HEADER_EXPECTED_LAST_SUBJECT_SEQ: "0"}  # what KeyValue.create sends: the key holds nothing
        messages = [
            (kv_subject(KV_EVENT_IDS, id_key(msg_id)), msgspec.json.encode(first), create) for msg_id, first in records
        ]
        try:
            await (await publish_atomic(self.nc, messages, timeout_s=self.timeout))
        except (AtomicBatchRefused, nats.errors.Error, OSError, TimeoutError) as exc:
            log.debug("kv %s: %d records not stored as a batch (%s)", KV_EVENT_IDS, len(records), exc)
            return False
        return True


def _decode(value: bytes | None) -> FirstBody | None:
    try:
        return decode_first_body(value or b"")
    except msgspec.DecodeError:
        log.warning("kv %s holds an unreadable entry; ignoring it", KV_EVENT_IDS)
        return None
