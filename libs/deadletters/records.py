"""A dead letter as listed and shown, and the filters that select dead letters: pure, no I/O."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from libs.contracts import (
    HEADER_CONSUMER,
    HEADER_DELIVERY_COUNT,
    HEADER_ERROR,
    HEADER_EVENT_ID,
    HEADER_EVENT_TYPE,
    HEADER_ORIGINAL_SEQ,
    HEADER_ORIGINAL_STREAM,
    HEADER_ORIGINAL_SUBJECT,
    HEADER_REPLAY_OF,
    HEADER_SOURCE,
    deadletter_original_msg_id,
)
from libs.subjects import DEADLETTER_SUBJECT, check_subject_filter, is_publish_subject, subject_matches

__all__ = [
    "DEADLETTER_ROOT",
    "MAX_REASON_FILTER",
    "DeadLetter",
    "DeadLetterFilter",
    "DeadLetterMessage",
    "parse_record",
]

MAX_REASON_FILTER = 1000
"""Longest reason substring worth asking for: a reason is cut to 1,000 characters when it is written."""
_MAX_CONSUMER_CHARS = 256
_MAX_SUBJECT_FILTER_CHARS = 1024

DEADLETTER_ROOT = DEADLETTER_SUBJECT.split(".", 1)[0]
"""The first token of every DEADLETTER subject (``deadletter.<consumer>.<original subject>``)."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead letter as listed: where it sits in DEADLETTER, who gave up on it and why, and where the
    message came from. Every field read from a header is None when the header is absent (or, for numbers,
    not a decimal); ``original_subject`` and ``consumer`` fall back to the tokens of the DEADLETTER subject
    (``deadletter.<consumer>.<original subject>``)."""

    seq: int
    """Its sequence in DEADLETTER."""
    time: dt.datetime
    """When DEADLETTER stored it (UTC)."""
    subject: str
    consumer: str | None
    reason: str | None
    original_subject: str | None
    original_stream: str | None
    original_seq: int | None
    delivery_count: int | None
    original_msg_id: str | None
    """``Stockwire-Original-Msg-Id``, or ``<source>:<event id>`` on a dead letter of an earlier release."""
    replay_of: int | None
    """Set when the message that failed was itself a replay: the dead letter it was replayed from."""
    event_type: str | None
    source: str | None
    event_id: str | None
    body_size: int
    """The body's length in bytes."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the fields above, ``time`` as ISO 8601 with microseconds and offset."""
        return {
            "seq": self.seq,
            "time": self.time.isoformat(timespec="microseconds"),
            "subject": self.subject,
            "consumer": self.consumer,
            "reason": self.reason,
            "original_subject": self.original_subject,
            "original_stream": self.original_stream,
            "original_seq": self.original_seq,
            "delivery_count": self.delivery_count,
            "original_msg_id": self.original_msg_id,
            "replay_of": self.replay_of,
            "event_type": self.event_type,
            "source": self.source,
            "event_id": self.event_id,
            "body_size": self.body_size,
        }


@dataclass(frozen=True, slots=True)
class DeadLetterMessage:
    """A dead letter in full: its record, every header it was stored with (in stored order), and its body."""

    record: DeadLetter
    headers: dict[str, str]
    body: bytes

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the record's fields, ``headers``, ``body`` (the body as text when it is UTF-8, else
        None) and ``body_base64`` (the exact bytes, standard base64)."""
        try:
            text: str | None = self.body.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        return {
            **self.record.as_dict(),
            "headers": dict(self.headers),
            "body": text,
            "body_base64": base64.b64encode(self.body).decode("ascii"),
        }


def _decimal(value: str | None) -> int | None:
    if value is None or not value.isascii() or not value.isdigit():
        return None
    return int(value)


def parse_record(seq: int, time: dt.datetime, subject: str, headers: Mapping[str, str], body_size: int) -> DeadLetter:
    """The :class:`DeadLetter` of the message stored at ``seq`` in DEADLETTER at ``time`` (aware; a naive
    one is taken as UTC) on ``subject``, with its stored ``headers``. Never raises on odd headers: what
    cannot be read is None."""
    tokens = subject.split(".", 2)
    from_subject = len(tokens) == 3 and tokens[0] == DEADLETTER_ROOT
    return DeadLetter(
        seq=seq,
        time=time if time.tzinfo else time.replace(tzinfo=dt.UTC),
        subject=subject,
        consumer=headers.get(HEADER_CONSUMER) or (tokens[1] if from_subject else None),
        reason=headers.get(HEADER_ERROR),
        original_subject=headers.get(HEADER_ORIGINAL_SUBJECT) or (tokens[2] if from_subject else None),
        original_stream=headers.get(HEADER_ORIGINAL_STREAM) or None,
        original_seq=_decimal(headers.get(HEADER_ORIGINAL_SEQ)),
        delivery_count=_decimal(headers.get(HEADER_DELIVERY_COUNT)),
        original_msg_id=deadletter_original_msg_id(headers),
        replay_of=_decimal(headers.get(HEADER_REPLAY_OF)),
        event_type=headers.get(HEADER_EVENT_TYPE),
        source=headers.get(HEADER_SOURCE),
        event_id=headers.get(HEADER_EVENT_ID),
        body_size=body_size,
    )


# -- filters ---------------------------------------------------------------------------------------------


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.UTC)


@dataclass(frozen=True, slots=True)
class DeadLetterFilter:
    """Which dead letters to list or replay; every field is optional and all given ones must hold.

    - ``consumer``: the consumer that gave up (exact; one subject token).
    - ``subject``: the original subject: a NATS filter when it holds a ``*`` or ``>`` token
      (``commerce.*.order.>``), else a prefix of whole tokens (``commerce.shop`` takes ``commerce.shop``
      and everything under it, not ``commerce.shopify``).
    - ``reason``: a substring of the reason, compared case-insensitively (at most 1,000 characters).
    - ``since`` (inclusive) and ``until`` (exclusive): DEADLETTER's timestamp of the dead letter; a naive
      datetime is taken as UTC.

    Raises ``ValueError`` naming the field when a value can never match (a malformed subject filter,
    ``since`` not before ``until``…).
    """

    consumer: str | None = None
    subject: str | None = None
    reason: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    _folded_reason: str | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        consumer = self.consumer
        if consumer is not None and (
            len(consumer) > _MAX_CONSUMER_CHARS or "." in consumer or not is_publish_subject(consumer)
        ):
            raise ValueError(
                f"consumer {consumer[:100]!r}: a consumer name is one subject token of at most "
                f"{_MAX_CONSUMER_CHARS} characters (no '.', '*', '>' or white space)"
            )
        if self.subject is not None:
            if len(self.subject) > _MAX_SUBJECT_FILTER_CHARS:
                raise ValueError(f"subject: at most {_MAX_SUBJECT_FILTER_CHARS} characters")
            check_subject_filter(self.subject)
        if self.reason is not None:
            if not self.reason or len(self.reason) > MAX_REASON_FILTER:
                raise ValueError(f"reason: 1 to {MAX_REASON_FILTER} characters")
            object.__setattr__(self, "_folded_reason", self.reason.casefold())
        object.__setattr__(self, "since", _utc(self.since))
        object.__setattr__(self, "until", _utc(self.until))
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError("since must be before until")

    @property
    def wildcard(self) -> bool:
        """Whether ``subject`` is a NATS filter (holds a ``*`` or ``>`` token) rather than a prefix."""
        return self.subject is not None and any(t in ("*", ">") for t in self.subject.split("."))

    def scan_subject(self) -> str:
        """The narrowest DEADLETTER subject filter that holds every dead letter this filter may take (the
        server skips the rest): ``deadletter.<consumer or *>.<…>``."""
        consumer = self.consumer or "*"
        if self.subject is None:
            return f"{DEADLETTER_ROOT}.{consumer}.>"
        if self.wildcard:
            return f"{DEADLETTER_ROOT}.{consumer}.{self.subject}"
        # A prefix P takes P itself and P.>: both are "P's tokens but the last, then one or more".
        head = self.subject.rsplit(".", 1)[0] + "." if "." in self.subject else ""
        return f"{DEADLETTER_ROOT}.{consumer}.{head}>"

    def matches(self, record: DeadLetter) -> bool:
        """Whether ``record`` passes every given field."""
        if self.consumer is not None and record.consumer != self.consumer:
            return False
        if self.subject is not None:
            original = record.original_subject
            if original is None:
                return False
            if self.wildcard:
                if not subject_matches(self.subject, original):
                    return False
            elif not (original == self.subject or original.startswith(self.subject + ".")):
                return False
        if self._folded_reason is not None and self._folded_reason not in (record.reason or "").casefold():
            return False
        if self.since is not None and record.time < self.since:
            return False
        return not (self.until is not None and record.time >= self.until)
