"""What the console reads from JetStream itself: COMMERCE events (direct gets, bounded), the durable
consumers' lag, and how many dead letters DEADLETTER holds."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from libs.contracts import HEADER_EVENT_ID, HEADER_EVENT_TYPE, HEADER_MSG_ID, HEADER_RECEIVED_AT, HEADER_SOURCE
from libs.deadletters import MAX_SEQ
from libs.subjects import inventory_subject
from libs.topology import COMMERCE, DEADLETTER, INVENTORY

__all__ = [
    "ConsumerLag",
    "EmittedMessage",
    "EventFilter",
    "StoredEvent",
    "consumer_lag",
    "could_be_stored",
    "deadletter_count",
    "emitted",
    "read_event",
    "search",
]

_SECRET_WORDS = ("secret", "token", "password", "signature", "authorization", "api_key", "apikey", "hmac")
_HIDDEN = "••• (hidden)"


@dataclass(frozen=True)
class StoredEvent:
    seq: int
    subject: str
    headers: dict[str, str]
    body: bytes

    @property
    def source(self) -> str:
        return self.headers.get(HEADER_SOURCE) or (self.subject.split(".")[1] if self.subject.count(".") > 1 else "")

    @property
    def event_type(self) -> str:
        return self.headers.get(HEADER_EVENT_TYPE, "")

    @property
    def event_id(self) -> str:
        return self.headers.get(HEADER_EVENT_ID, "")

    @property
    def msg_id(self) -> str:
        return self.headers.get(HEADER_MSG_ID, "")

    @property
    def received_at(self) -> str:
        return self.headers.get(HEADER_RECEIVED_AT) or self.headers.get("Nats-Time-Stamp", "")

    def shown_headers(self) -> dict[str, str]:
        return {k: (_HIDDEN if _is_secret(k) else v) for k, v in sorted(self.headers.items())}

    def pretty_body(self) -> str:
        """The body as indented JSON with every secret-looking field hidden; not JSON: the text as it is."""
        try:
            document = json.loads(self.body)
        except ValueError:
            return self.body.decode("utf-8", errors="replace")
        return json.dumps(redact(document), indent=2, ensure_ascii=False)


def _is_secret(key: str) -> bool:
    lowered = key.lower()
    return any(word in lowered for word in _SECRET_WORDS)


def redact(value: Any) -> Any:
    """``value`` with the value of every key that names a secret replaced (the key stays)."""
    if isinstance(value, Mapping):
        return {k: (_HIDDEN if _is_secret(str(k)) else redact(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def _as_event(seq: int, msg: Any) -> StoredEvent:
    headers = {str(k): str(v) for k, v in (msg.headers or {}).items()}
    return StoredEvent(int(msg.seq or seq), str(msg.subject or ""), headers, bytes(msg.data or b""))


def could_be_stored(seq: int) -> bool:
    """Whether a stream could hold sequence ``seq``: 1 to :data:`libs.deadletters.MAX_SEQ` (2^63 - 1), the
    bound every API of Stockwire puts on a stream sequence (JetStream's are unsigned 64-bit; no stream comes
    near). JetStream answers a direct get of 0 (which asks for no sequence), of a negative one or of one
    past 64 bits with an error (408 "Empty Request", a bad request), not with "not found"."""
    return 1 <= seq <= MAX_SEQ


async def read_event(js: JetStreamContext, seq: int) -> StoredEvent | None:
    """The COMMERCE event at ``seq``; ``None`` when there is none (a sequence no stream could hold is not
    asked for)."""
    if not could_be_stored(seq):
        return None
    try:
        msg = await js.get_msg(COMMERCE, seq, direct=True)
    except NotFoundError:
        return None
    return _as_event(seq, msg)


@dataclass(frozen=True)
class EventFilter:
    source: str | None = None
    event_type: str | None = None
    text: str | None = None
    """Found in the body (an order number, a SKU)."""
    since: dt.datetime | None = None
    until: dt.datetime | None = None

    def subject(self) -> str:
        return f"commerce.{self.source}.>" if self.source else ">"

    def matches(self, event: StoredEvent) -> bool:
        if self.event_type and event.event_type != self.event_type:
            return False
        return not self.text or self.text.encode() in event.body

    def admits(self, event: StoredEvent) -> bool:
        """:meth:`matches`, its source and its time too: stored at or after ``since`` and before ``until``
        (an event without a stored time passes the time bounds). For events found another way than the
        scan (an order's, by their sequences)."""
        if (self.source and event.source != self.source) or not self.matches(event):
            return False
        stored = _stored_at(event)
        if stored is None:
            return True
        return (self.since is None or stored >= self.since) and (self.until is None or stored < self.until)


def _stored_at(event: StoredEvent) -> dt.datetime | None:
    text = event.headers.get("Nats-Time-Stamp") or event.headers.get(HEADER_RECEIVED_AT)
    if not text:
        return None
    try:
        # Nats-Time-Stamp carries nanoseconds; Python reads microseconds.
        head, dot, rest = text.partition(".")
        if dot:
            digits = "".join(ch for ch in rest if ch.isdigit())
            zone = rest[len(digits) :]
            text = f"{head}.{digits[:6]}{'+00:00' if zone in ('Z', '') else zone}"
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


async def _first_at_or_after(js: JetStreamContext, first: int, last: int, when: dt.datetime) -> int:
    """The first sequence stored at or after ``when`` (a binary search over direct gets)."""
    low, high = first, last + 1
    while low < high:
        middle = (low + high) // 2
        try:
            msg = await js.get_msg(COMMERCE, middle, subject=">", next=True, direct=True)
        except NotFoundError:
            high = middle
            continue
        event = _as_event(middle, msg)
        stored = _stored_at(event)
        if stored is not None and stored < when:
            low = event.seq + 1
        else:
            high = middle
    return low


async def search(
    js: JetStreamContext, wanted: EventFilter, *, limit: int = 50, scan: int = 5000
) -> tuple[list[StoredEvent], int]:
    """The newest ``limit`` COMMERCE events that match, reading at most ``scan`` messages (of the source's
    subjects only) from the start of the time range, or from ``scan`` before the end; and how many were read."""
    try:
        info = await js.stream_info(COMMERCE)
    except NotFoundError:
        return [], 0
    first, last = int(info.state.first_seq), int(info.state.last_seq)
    if last < first or info.state.messages == 0:
        return [], 0
    if wanted.since is not None:
        start = await _first_at_or_after(js, first, last, wanted.since)
    else:
        start = max(first, last - scan + 1)
    found: list[StoredEvent] = []
    scanned, seq = 0, start
    while seq <= last and scanned < scan:
        try:
            msg = await js.get_msg(COMMERCE, seq, subject=wanted.subject(), next=True, direct=True)
        except NotFoundError:
            break
        event = _as_event(seq, msg)
        scanned += 1
        if wanted.until is not None:
            stored = _stored_at(event)
            if stored is not None and stored >= wanted.until:
                break
        if wanted.matches(event):
            found.append(event)
            if wanted.since is not None and len(found) >= limit:
                break
        seq = event.seq + 1
    return list(reversed(found[-limit:])), scanned


@dataclass(frozen=True)
class ConsumerLag:
    stream: str
    durable: str
    pending: int
    ack_pending: int
    redelivered: int


async def consumer_lag(js: JetStreamContext) -> list[ConsumerLag]:
    lags: list[ConsumerLag] = []
    for stream in (COMMERCE, INVENTORY):
        try:
            infos = await js.consumers_info(stream)
        except NotFoundError:
            continue
        for info in infos:
            lags.append(
                ConsumerLag(
                    stream,
                    str(info.name),
                    int(info.num_pending or 0),
                    int(info.num_ack_pending or 0),
                    int(info.num_redelivered or 0),
                )
            )
    return sorted(lags, key=lambda lag: (lag.stream, lag.durable))


async def deadletter_count(js: JetStreamContext) -> int | None:
    try:
        info = await js.stream_info(DEADLETTER)
    except NotFoundError:
        return None
    return int(info.state.messages)


@dataclass(frozen=True)
class EmittedMessage:
    seq: int
    subject: str
    body: dict[str, Any]


async def emitted(js: JetStreamContext, kind: str, sku: str, version: int) -> EmittedMessage | None:
    """The INVENTORY message ``inventory.<kind>.<sku>`` of the SKU's ledger ``version``: a binary search over
    sequences with direct gets by subject (a subject's messages carry rising versions)."""
    subject = inventory_subject(kind, sku)
    try:
        info = await js.stream_info(INVENTORY)
    except NotFoundError:
        return None
    low, high = int(info.state.first_seq), int(info.state.last_seq) + 1
    found: EmittedMessage | None = None
    while low < high:
        middle = (low + high) // 2
        try:
            msg = await js.get_msg(INVENTORY, middle, subject=subject, next=True, direct=True)
        except NotFoundError:
            high = middle
            continue
        try:
            body = json.loads(msg.data or b"{}")
        except ValueError:
            return None
        at = int(msg.seq or middle)
        if int(body.get("version", 0)) < version:
            low = at + 1
        else:
            if int(body.get("version", 0)) == version:
                found = EmittedMessage(at, str(msg.subject or subject), body)
            high = middle
    return found
