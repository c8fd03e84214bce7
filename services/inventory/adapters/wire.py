"""COMMERCE messages read into domain events, through the profile of the source they came from.

The bus carries the raw webhook body (design §3); type, id and source come from the headers ingress
sets. :func:`read_event` picks the source's profile (``[sources.<name>] profile``, see
``libs/profiles``), maps the body to a canonical event and returns a
:class:`~..domain.events.CommerceEvent`, or raises :class:`MalformedEvent` ``malformed: <field>: <why>``.

This is the parse boundary: whatever goes wrong while reading an event becomes that one
:class:`MalformedEvent`, so the event is dead-lettered at once (and can be replayed once the
profile is fixed) and its neighbours in the batch are not held up.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from libs.contracts import (
    HEADER_EVENT_ID,
    HEADER_EVENT_TYPE,
    HEADER_MSG_ID,
    HEADER_ORIGINAL_MSG_ID,
    HEADER_REPLAY_OF,
    HEADER_SOURCE,
    commerce_msg_id,
)
from libs.profiles import MappingError, SourceProfiles
from libs.profiles.canonical import MAX_KEY_LENGTH, MAX_QTY, Unmapped

from ..domain.events import CommerceEvent, RawMessage

__all__ = [
    "MAX_EVENT_TYPE_LENGTH",
    "MAX_ID_LENGTH",
    "MAX_MSG_ID_LENGTH",
    "MAX_QTY",
    "MAX_SUBJECT_LENGTH",
    "Envelope",
    "MalformedEvent",
    "parse_event",
    "read_event",
    "validate_id",
    "validate_sku",
]

MAX_ID_LENGTH = MAX_KEY_LENGTH
# What the inbox keeps of a message (its column sizes): ingress stays well inside them, but COMMERCE
# takes whatever a publisher with credentials sends.
MAX_MSG_ID_LENGTH = 600
MAX_EVENT_TYPE_LENGTH = 128
MAX_SUBJECT_LENGTH = 512
_NO_PROFILES = SourceProfiles({})


class MalformedEvent(ValueError):
    """The event can never be applied as it is (not JSON, a field missing, of the wrong type or out of range).

    ``field`` names what is wrong (``data.order_items[2].sku``; ``body`` for the document as a whole)
    and ``reason`` says why. ``str()`` is ``'<field>' <reason>``, or, raised by :func:`read_event`
    (``decided``), the dead-letter reason ``malformed: <field>: <reason>``.
    """

    def __init__(self, reason: str, field: str = "", *, decided: bool = False) -> None:
        plain = f"'{field}' {reason}" if field else reason
        super().__init__(f"malformed: {field or 'body'}: {reason}" if decided else plain)
        self.field = field
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Envelope(RawMessage):
    """One message of COMMERCE as the consumer received it (or as a test builds it)."""

    @property
    def msg_id(self) -> str:
        """The inbox key: ``Nats-Msg-Id`` (``<source>:<id>``), else built from the other headers; for a
        message replayed from DEADLETTER, the original message's key.

        A key longer than the inbox keeps (or holding NUL, which PostgreSQL text refuses) is replaced
        by its digest, ``sha256:<hex>``: the same message still maps to the same key, so a redelivery
        stays a duplicate.
        """
        key = self._key()
        if len(key) <= MAX_MSG_ID_LENGTH and "\x00" not in key:
            return key
        return "sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()

    @property
    def replay(self) -> bool:
        return bool(self.headers.get(HEADER_REPLAY_OF))

    @property
    def source(self) -> str:
        declared = self.headers.get(HEADER_SOURCE)
        if declared:
            return declared
        parts = self.subject.split(".", 2)  # commerce.<source>.<event_type...>
        return parts[1] if len(parts) == 3 else ""

    def _key(self) -> str:
        source, event_id = self.headers.get(HEADER_SOURCE), self.headers.get(HEADER_EVENT_ID)
        if self.replay:
            original = self.headers.get(HEADER_ORIGINAL_MSG_ID)
            if original:
                return original
            if source and event_id:
                return commerce_msg_id(source, event_id)
        msg_id = self.headers.get(HEADER_MSG_ID)
        if msg_id:
            return msg_id
        if source and event_id:
            return commerce_msg_id(source, event_id)
        return f"{self.subject}#{self.stream_seq}"

    @property
    def event_type(self) -> str:
        declared = self.headers.get(HEADER_EVENT_TYPE)
        if declared:
            return declared
        parts = self.subject.split(".", 2)
        return parts[2] if len(parts) == 3 else ""


def validate_id(value: object, name: str) -> str:
    """``value`` as an identifier: 1 to :data:`MAX_ID_LENGTH` printable characters (an integer is
    read as its decimal text). Raises :class:`MalformedEvent` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise MalformedEvent("must be a string", name)
    if isinstance(value, int) and not -(10**MAX_ID_LENGTH) < value < 10**MAX_ID_LENGTH:
        raise MalformedEvent(f"must be 1 to {MAX_ID_LENGTH} printable characters", name)
    text = str(value)
    if not text or len(text) > MAX_ID_LENGTH or not text.isprintable():
        raise MalformedEvent(f"must be 1 to {MAX_ID_LENGTH} printable characters", name)
    return text


def validate_sku(value: object, name: str = "sku") -> str:
    """``value`` as a SKU: a string of 1 to :data:`MAX_ID_LENGTH` printable characters, never a number.
    Raises :class:`MalformedEvent` naming ``name``."""
    if not isinstance(value, str):
        raise MalformedEvent("must be a string", name)
    if not value or len(value) > MAX_ID_LENGTH or not value.isprintable():
        raise MalformedEvent(f"must be 1 to {MAX_ID_LENGTH} printable characters", name)
    return value


def read_event(envelope: Envelope, profiles: SourceProfiles) -> CommerceEvent:
    """Read one COMMERCE message with the profile of its source (``Stockwire-Source``).

    Raises :class:`MalformedEvent` (``str()``: ``malformed: <field>: <why>``) when it can never be
    applied, and nothing else, whatever the body holds.
    """
    try:
        return _read(envelope, profiles)
    except MalformedEvent as exc:
        raise MalformedEvent(exc.reason, exc.field or "body", decided=True) from None
    except MappingError as exc:
        raise MalformedEvent(_printable(exc.detail), _printable(exc.field) or "body", decided=True) from None
    except Exception as exc:
        # A failure no check foresaw is still this event's alone.
        raise MalformedEvent(f"cannot be read ({_failure(exc)})", "body", decided=True) from None


def parse_event(envelope: Envelope) -> CommerceEvent:
    """:func:`read_event` with no source configured: every source read as the canonical dialect."""
    return read_event(envelope, _NO_PROFILES)


def _read(envelope: Envelope, profiles: SourceProfiles) -> CommerceEvent:
    event_type = envelope.event_type
    msg_id = envelope.msg_id
    profile = profiles.for_source(envelope.source)
    if profile.kind_of(event_type) == "unmapped":
        return CommerceEvent(
            msg_id, event_type, Unmapped(event_type=event_type), envelope.stream_seq, 0.0, envelope, envelope.replay
        )
    if len(envelope.subject) > MAX_SUBJECT_LENGTH:
        # A parked event is kept with its subject; one that could not be kept can never wait its turn.
        raise MalformedEvent(f"longer than {MAX_SUBJECT_LENGTH} characters", "subject")
    mapped = profile.map_body(
        envelope.body, event_type=event_type, event_id=envelope.headers.get(HEADER_EVENT_ID) or msg_id
    )
    return CommerceEvent(
        msg_id,
        event_type,
        mapped.event,
        envelope.stream_seq,
        mapped.occurred_at or 0.0,
        envelope,
        envelope.replay,
        profiles.orders_of(envelope.source),
    )


def _printable(text: str) -> str:
    # The message may echo the input: clipped, and printable only (PostgreSQL text refuses NUL).
    return "".join(c if c.isprintable() else "?" for c in text[:200])


def _failure(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:
        text = ""
    text = _printable(text[:80])
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
