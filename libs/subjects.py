"""Subject names and the reversible encoding of free text (SKUs, ids) into NATS subject tokens.

NATS tokens cannot hold ``.``, ``*``, ``>`` or white space, and a SKU may hold anything. Every byte
outside a conservative safe set is written as ``~XX`` (upper-case hex of the UTF-8 byte), and ``~``
itself is escaped, so decoding is exact and two different SKUs never share a token.
"""

from __future__ import annotations

import re

__all__ = [
    "COMMERCE_SUBJECT",
    "DEADLETTER_DISCARDED_SUBJECT",
    "DEADLETTER_SUBJECT",
    "EVENT_TYPE_PATTERN",
    "INVENTORY_SUBJECT",
    "SOURCE_PATTERN",
    "check_subject_filter",
    "commerce_subject",
    "deadletter_discarded_subject",
    "deadletter_subject",
    "decode_token",
    "encode_token",
    "event_type_levels",
    "inventory_kind_filter",
    "inventory_subject",
    "is_publish_subject",
    "is_safe_event_type",
    "subject_matches",
]

_WHITESPACE = re.compile(r"\s")
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_ESCAPE = "~"
_ESCAPED = re.compile(r"~([0-9A-F]{2})")

SOURCE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
EVENT_TYPE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}(\.[a-z0-9][a-z0-9_-]{0,63}){0,7}$")


def encode_token(text: str) -> str:
    """Encode any non-empty text as one NATS subject token, reversibly."""
    if not text:
        raise ValueError("cannot encode an empty string as a subject token")
    raw = text.encode("utf-8")
    if all(b in _SAFE for b in raw):
        return text
    return "".join(chr(b) if b in _SAFE else f"{_ESCAPE}{b:02X}" for b in raw)


def decode_token(token: str) -> str:
    """Invert :func:`encode_token`."""
    if _ESCAPE not in token:
        return token
    out = bytearray()
    i = 0
    while i < len(token):
        match = _ESCAPED.match(token, i)
        if match:
            out.append(int(match.group(1), 16))
            i = match.end()
        elif token[i] == _ESCAPE:
            raise ValueError(f"malformed escape in subject token {token!r} at {i}")
        else:
            out.extend(token[i].encode("utf-8"))
            i += 1
    return out.decode("utf-8")


def is_safe_event_type(event_type: object) -> bool:
    """Event types become subject levels (``order.created``): lower-case dotted tokens only."""
    return isinstance(event_type, str) and EVENT_TYPE_PATTERN.fullmatch(event_type) is not None


def event_type_levels(event_type: object, separator: str = ".") -> str | None:
    """The subject levels of a producer's event type whose levels ``separator`` separates: the levels
    joined by ``.`` (``orders/create`` with ``/`` -> ``orders.create``), or None unless that passes
    :func:`is_safe_event_type`.

    With another separator than ``.``, a type holding a ``.`` is refused, so the levels map back to the
    producer's spelling (``.`` -> ``separator``) and two types never share a subject. The producer's
    spelling travels in ``Stockwire-Event-Type``.
    """
    if not isinstance(event_type, str) or (separator != "." and "." in event_type):
        return None
    levels = event_type.replace(separator, ".")
    return levels if is_safe_event_type(levels) else None


# The subject of each stream's messages, with its parameters in braces: the builders below fill them,
# and the AsyncAPI document (libs.asyncapi) publishes them as channel addresses.
COMMERCE_SUBJECT = "commerce.{source}.{event_type}"
INVENTORY_SUBJECT = "inventory.{kind}.{sku_token}"
DEADLETTER_SUBJECT = "deadletter.{consumer}.{original_subject}"
DEADLETTER_DISCARDED_SUBJECT = "deadletter.discarded.{consumer}"
"""The record of a discarded dead letter, kept in DEADLETTER; ``discarded`` is no consumer's name."""


def commerce_subject(source: str, event_type: str) -> str:
    """``commerce.<source>.<event_type>``: both already safe (see the patterns above; ``event_type`` as
    :func:`event_type_levels` gives it)."""
    return COMMERCE_SUBJECT.format(source=source, event_type=event_type)


def inventory_subject(kind: str, sku: str) -> str:
    """``inventory.<kind>.<sku-token>``, the SKU encoded by :func:`encode_token`."""
    return INVENTORY_SUBJECT.format(kind=kind, sku_token=encode_token(sku))


def inventory_kind_filter(kind: str) -> str:
    """``inventory.<kind>.>``: every INVENTORY message of one kind, whatever its SKU."""
    return INVENTORY_SUBJECT.format(kind=kind, sku_token=">")


def deadletter_subject(consumer: str, original_subject: str) -> str:
    """``deadletter.<consumer>.<original subject>``: the original subject keeps all its tokens."""
    return DEADLETTER_SUBJECT.format(consumer=consumer, original_subject=original_subject)


def deadletter_discarded_subject(consumer: str) -> str:
    """``deadletter.discarded.<consumer>``: where the record of a discarded dead letter of ``consumer`` goes."""
    return DEADLETTER_DISCARDED_SUBJECT.format(consumer=consumer)


def is_publish_subject(subject: str) -> bool:
    """Whether a message may be published to ``subject``: non-empty dot-separated tokens, no white space,
    no wildcard token (``*``, ``>``)."""
    if not subject or _WHITESPACE.search(subject):
        return False
    return all(token and token not in ("*", ">") for token in subject.split("."))


def check_subject_filter(pattern: str) -> str:
    """``pattern`` if it is a NATS subject filter: non-empty tokens without white space, ``*`` and ``>``
    only as whole tokens, ``>`` only last. Raises ``ValueError`` naming what is wrong."""
    if not pattern or _WHITESPACE.search(pattern):
        raise ValueError(f"subject filter {pattern!r}: it must be non-empty and hold no white space")
    tokens = pattern.split(".")
    for i, token in enumerate(tokens):
        if not token:
            raise ValueError(f"subject filter {pattern!r}: empty token")
        if token not in ("*", ">") and ("*" in token or ">" in token):
            raise ValueError(f"subject filter {pattern!r}: '*' and '>' are whole tokens only")
        if token == ">" and i != len(tokens) - 1:
            raise ValueError(f"subject filter {pattern!r}: '>' must be the last token")
    return pattern


def subject_matches(pattern: str, subject: str) -> bool:
    """Whether ``subject`` matches the NATS subject filter ``pattern`` (``*``: one token, ``>``: one or
    more tokens at the end). ``pattern`` is expected to pass :func:`check_subject_filter`."""
    wanted, have = pattern.split("."), subject.split(".")
    for i, token in enumerate(wanted):
        if token == ">":
            return len(have) > i
        if i >= len(have) or (token != "*" and token != have[i]):
            return False
    return len(have) == len(wanted)
