"""The pure part of ingress: decide whether a request is an authentic, well-formed webhook.

No I/O here: :func:`accept_webhook` takes what the HTTP layer read and returns an
:class:`InboundWebhook` or raises :class:`WebhookRejected` with the status of design §3.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import msgspec

from libs.config import SourceSettings
from libs.contracts import (
    HEADER_EVENT_ID,
    HEADER_EVENT_TYPE,
    HEADER_MSG_ID,
    HEADER_RECEIVED_AT,
    HEADER_SOURCE,
    commerce_msg_id,
)
from libs.http import is_json_media_type
from libs.schemes import MAX_ID_LENGTH, SCHEMES, WebhookScheme
from libs.signing import SignatureError
from libs.subjects import commerce_subject

__all__ = [
    "HEADER_LIMITS",
    "MAX_NESTING",
    "InboundWebhook",
    "WebhookRejected",
    "accept_webhook",
    "check_content_type",
    "check_header_block",
    "check_headers",
    "check_size",
    "is_ping",
]

# Webhook documents are a few levels deep (event, data, lines, line). The bound is far above that and
# far below the depth at which a decoder recurses out of stack (msgspec raises RecursionError near
# 1,000), so every consumer of COMMERCE can decode what ingress accepted.
MAX_NESTING = 32
# Every header ingress reads, with the longest value it will look at: the request's own, then each
# scheme's (libs.schemes: signatures, ids, topics, timestamps).
HEADER_LIMITS: dict[str, int] = {
    "content-length": 19,
    "content-type": 256,
    **{spec.name: spec.max_length for scheme in SCHEMES.values() for spec in scheme.headers},
}
# The hex digits of the body's SHA-256 appended to an id that may stand for several events (WooCommerce's).
_DIGEST_SUFFIX = 16


class WebhookRejected(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


@dataclass(frozen=True, slots=True)
class InboundWebhook:
    source: str
    event_id: str
    event_type: str
    """As the producer spells it (Shopify: ``orders/create``); ``Stockwire-Event-Type`` carries it."""
    body: bytes
    received_at: dt.datetime
    levels: str | None = None
    """The event type as subject levels (``orders.create``), where they differ from ``event_type``."""
    trace: Mapping[str, str] | None = None
    """Trace context headers (``traceparent``…) to send it on with; None while tracing is off."""

    @property
    def msg_id(self) -> str:
        return commerce_msg_id(self.source, self.event_id)

    @property
    def subject(self) -> str:
        return commerce_subject(self.source, self.levels or self.event_type)

    def headers(self) -> dict[str, str]:
        headers = {
            HEADER_MSG_ID: self.msg_id,
            HEADER_SOURCE: self.source,
            HEADER_EVENT_TYPE: self.event_type,
            HEADER_EVENT_ID: self.event_id,
            HEADER_RECEIVED_AT: self.received_at.isoformat(timespec="microseconds"),
        }
        if self.trace:
            headers.update(self.trace)
        return headers


# The whole header block, whatever ingress reads of it: the HTTP parser keeps every header in memory.
MAX_HEADER_COUNT = 64
MAX_HEADER_BLOCK_BYTES = 16 * 1024


def check_header_block(headers: Iterable[tuple[bytes, bytes]]) -> None:
    """Refuse (431) a request with more than :data:`MAX_HEADER_COUNT` headers or more than
    :data:`MAX_HEADER_BLOCK_BYTES` of names and values in all (``headers``: the ASGI scope's pairs)."""
    raw = list(headers)
    if len(raw) > MAX_HEADER_COUNT:
        raise WebhookRejected(431, "header_too_large", f"{len(raw)} headers, over the limit of {MAX_HEADER_COUNT}")
    size = sum(len(name) + len(value) for name, value in raw)
    if size > MAX_HEADER_BLOCK_BYTES:
        raise WebhookRejected(
            431, "header_too_large", f"headers of {size} bytes in all, over the limit of {MAX_HEADER_BLOCK_BYTES}"
        )


def check_headers(headers: Mapping[str, str]) -> None:
    """Refuse (431) any header ingress reads whose value is longer than :data:`HEADER_LIMITS` allows."""
    for name, limit in HEADER_LIMITS.items():
        value = headers.get(name)
        if value is not None and len(value) > limit:
            raise WebhookRejected(
                431, "header_too_large", f"header {name} is {len(value)} characters, over the limit of {limit}"
            )


def check_size(declared_length: str | None, limit: int) -> None:
    if declared_length is None:
        return
    # int() would also take ' 12', '1_000', non-ASCII digits and numbers of any length.
    text = declared_length.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > HEADER_LIMITS["content-length"]:
        raise WebhookRejected(400, "bad_content_length", "Content-Length is not a number of at most 19 digits")
    length = int(text)
    if length > limit:
        raise WebhookRejected(413, "body_too_large", f"body of {length} bytes is over the limit of {limit}")


def check_content_type(content_type: str | None) -> None:
    if not is_json_media_type(content_type):
        raise WebhookRejected(
            415, "unsupported_media_type", f"content type must be application/json, got {content_type or 'none'!r}"
        )


def is_ping(source: SourceSettings, headers: Mapping[str, str], body: bytes) -> bool:
    """Whether the request is the source's platform testing the URL (WooCommerce's ``webhook_id=<id>``
    on creation): to be answered 200 and kept nowhere, for unsigned it proves nothing."""
    return SCHEMES[source.scheme].is_ping(headers, body)


def _verify(source: SourceSettings, scheme: WebhookScheme, headers: Mapping[str, str], body: bytes, now: float) -> None:
    try:
        scheme.signature.verify(source.secrets, headers, body, tolerance_s=source.tolerance_s, now=now)
    except SignatureError as exc:
        raise WebhookRejected(401, "invalid_signature", str(exc)) from None


def _decode(body: bytes) -> object:
    """The JSON document, refused (400) when malformed or nested deeper than :data:`MAX_NESTING`."""
    try:
        document = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise WebhookRejected(400, "malformed_json", f"body is not valid JSON: {exc}") from None
    except RecursionError:
        raise WebhookRejected(400, "nesting_too_deep", f"JSON nests deeper than {MAX_NESTING} levels") from None
    # Counting brackets runs at C speed and bounds the depth from above, so the usual document
    # skips the walk; strings holding brackets only send a document to the exact check.
    if body.count(b"[") + body.count(b"{") > MAX_NESTING and _depth(document) > MAX_NESTING:
        raise WebhookRejected(400, "nesting_too_deep", f"JSON nests deeper than {MAX_NESTING} levels")
    return document


def _depth(document: object) -> int:
    """Nesting depth of a decoded JSON value (a scalar is 0), without recursion."""
    deepest = 0
    stack: list[tuple[object, int]] = [(document, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Iterable[object] = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        depth += 1
        if depth > MAX_NESTING:
            return depth
        deepest = max(deepest, depth)
        stack.extend((child, depth) for child in children)
    return deepest


def _event_id(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value)
    if not text or len(text) > MAX_ID_LENGTH or not text.isprintable():
        return None
    return text


def accept_webhook(
    source_name: str,
    source: SourceSettings,
    headers: Mapping[str, str],
    body: bytes,
    *,
    max_body_bytes: int,
    now: dt.datetime | None = None,
) -> InboundWebhook:
    """Authenticate first (nothing unauthenticated is parsed), then read the id and type where the
    source's scheme puts them (:data:`libs.schemes.SCHEMES`)."""
    received_at = now or dt.datetime.now(dt.UTC)
    if len(body) > max_body_bytes:
        raise WebhookRejected(413, "body_too_large", f"body of {len(body)} bytes is over the limit of {max_body_bytes}")
    check_headers(headers)
    check_content_type(headers.get("content-type"))
    scheme = SCHEMES[source.scheme]
    _verify(source, scheme, headers, body, received_at.timestamp())
    document = _decode(body)
    if not isinstance(document, dict):
        raise WebhookRejected(400, "malformed_json", "body must be a JSON object")
    event_id = _event_id(scheme.event_id.read(headers, document))
    if event_id is None:
        raise WebhookRejected(
            422,
            "missing_id",
            f"{scheme.event_id.describe()} must be a non-empty printable string of at most {MAX_ID_LENGTH} characters",
        )
    if not scheme.id_per_event:
        event_id = f"{event_id}.{hashlib.sha256(body).hexdigest()[:_DIGEST_SUFFIX]}"
    raw_type = scheme.event_type.read(headers, document)
    if raw_type is None:
        raise WebhookRejected(422, "missing_event_type", f"{scheme.event_type.describe()} is required")
    levels = scheme.levels(raw_type)
    if levels is None:
        sep = scheme.type_separator
        raise WebhookRejected(
            422,
            "invalid_event_type",
            f"{scheme.event_type.describe()} must be at most 8 lower-case tokens of [a-z0-9_-] separated by "
            f"'{sep}', each at most 64 characters, e.g. 'order{sep}created'",
        )
    event_type = str(raw_type)
    return InboundWebhook(
        source_name, event_id, event_type, body, received_at, levels if levels != event_type else None
    )
