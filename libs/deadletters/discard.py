"""Discarding dead letters: each recorded in DEADLETTER, then deleted from it.

The record is a message on ``deadletter.discarded.<consumer>`` (:func:`libs.subjects.deadletter_discarded_subject`)
with the dead letter's stored headers (its original subject, stream, sequence, why it was dead-lettered) and
``Stockwire-Discarded-Seq``, ``-Discarded-Subject``, ``-Discard-Reason``, ``-Discarded-By``, ``-Discarded-At``
and ``Stockwire-Body-Sha256``; no body. It is published (and its PubAck awaited) before the dead letter is
deleted, so a discard that fails half-way leaves the dead letter in place, and a second try stores the record
once (``Nats-Msg-Id: discard:<seq>``). Records are kept as long as DEADLETTER keeps anything
(``deadletter_max_age_days``); they are never listed as dead letters.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import nats.errors
from nats.js import JetStreamContext
from nats.js import errors as js_errors

from libs.contracts import (
    HEADER_BODY_SHA256,
    HEADER_DISCARD_REASON,
    HEADER_DISCARDED_AT,
    HEADER_DISCARDED_BY,
    HEADER_DISCARDED_SEQ,
    HEADER_DISCARDED_SUBJECT,
    HEADER_MSG_ID,
    JETSTREAM_HEADER_PREFIX,
    discard_msg_id,
    utc_now_iso,
)
from libs.subjects import deadletter_discarded_subject, is_publish_subject
from libs.topology import DEADLETTER

from .reading import MAX_SEQ, DeadLetterNotFound, check_range, show_deadletter, unavailable
from .records import DeadLetterMessage

__all__ = ["MAX_DISCARD", "MAX_DISCARD_REASON", "DiscardReport", "check_discard_reason", "discard_deadletters"]

MAX_DISCARD = 500
"""Most dead letters one discard call handles."""
MAX_DISCARD_REASON = 500
"""Longest reason a discard takes (characters)."""
_UNKNOWN_CONSUMER = "unknown"


def check_discard_reason(reason: str) -> str:
    """``reason`` stripped, or ``ValueError``: 1 to :data:`MAX_DISCARD_REASON` printable characters."""
    stripped = reason.strip()
    if not 1 <= len(stripped) <= MAX_DISCARD_REASON:
        raise ValueError(f"reason must be 1 to {MAX_DISCARD_REASON} characters")
    if not stripped.isprintable():
        raise ValueError("reason must be printable characters (no control characters or line breaks)")
    return stripped


@dataclass(frozen=True, slots=True)
class DiscardReport:
    """The DEADLETTER sequences discarded (recorded, then deleted) and those holding no dead letter."""

    discarded: list[int] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"discarded": [...], "missing": [...]}``."""
        return {"discarded": list(self.discarded), "missing": list(self.missing)}


def discard_record(message: DeadLetterMessage, *, reason: str, by: str, at: str) -> tuple[str, dict[str, str]]:
    """The subject and headers of the record of discarding ``message``."""
    record = message.record
    headers = {k: v for k, v in message.headers.items() if not k.startswith(JETSTREAM_HEADER_PREFIX)}
    headers.update(
        {
            HEADER_DISCARDED_SEQ: str(record.seq),
            HEADER_DISCARDED_SUBJECT: record.subject,
            HEADER_DISCARD_REASON: reason,
            HEADER_DISCARDED_BY: by,
            HEADER_DISCARDED_AT: at,
            HEADER_BODY_SHA256: hashlib.sha256(message.body).hexdigest(),
            HEADER_MSG_ID: discard_msg_id(record.seq),
        }
    )
    consumer = record.consumer if record.consumer and is_publish_subject(record.consumer) else None
    if consumer is None or "." in consumer:
        consumer = _UNKNOWN_CONSUMER
    return deadletter_discarded_subject(consumer), headers


async def discard_deadletters(js: JetStreamContext, seqs: Sequence[int], *, reason: str, by: str) -> DiscardReport:
    """Discard the dead letters at DEADLETTER sequences ``seqs`` (1 to :data:`MAX_DISCARD` of them, each
    >= 1; a repeated one once), in the order given: each is recorded (see the module) and then deleted. A
    sequence with no dead letter (never stored, discarded already, a discard record) is ``missing``.

    Raises ``ValueError`` for bad arguments (``reason``: :func:`check_discard_reason`),
    :class:`DeadLettersUnavailable` when DEADLETTER cannot be read or written; what was discarded before
    that stays discarded, and the rest is left as it was.
    """
    reason = check_discard_reason(reason)
    unique = list(dict.fromkeys(seqs))
    check_range("number of sequences", len(unique), 1, MAX_DISCARD)
    for seq in unique:
        check_range("seq", seq, 1, MAX_SEQ)
    if not by or not by.isprintable():
        raise ValueError("by must be a printable name")
    report = DiscardReport()
    for seq in unique:
        try:
            message = await show_deadletter(js, seq)
        except DeadLetterNotFound:
            report.missing.append(seq)
            continue
        subject, headers = discard_record(message, reason=reason, by=by, at=utc_now_iso())
        try:
            await js.publish(subject, b"", headers=headers, stream=DEADLETTER)
        except (nats.errors.Error, TimeoutError) as exc:
            raise unavailable(exc) from exc
        try:
            deleted = await js.delete_msg(DEADLETTER, seq)
        except js_errors.APIError:
            deleted = False  # deleted by another discard meanwhile
        except (nats.errors.Error, TimeoutError) as exc:
            raise unavailable(exc) from exc
        (report.discarded if deleted else report.missing).append(seq)
    return report
