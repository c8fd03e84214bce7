"""Reading DEADLETTER: a bounded scan with filters, and one dead letter by its sequence.

JetStream's direct get (``$JS.API.DIRECT.GET.DEADLETTER``, with ``next_by_subj`` to scan): one request
per message, nothing created on the server (no consumer left behind by an interrupted scan), answered by
any replica (DEADLETTER is declared with ``allow_direct``), so a replica that lags may miss the newest
dead letters for a moment. nats-py's other form, ``STREAM.MSG.GET``, reads headers with the e-mail
parser, which turns a non-ASCII value (a reason naming the SKU ``Ä``) into an ``email.header.Header``;
the direct form decodes them as every other message's.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import nats.errors
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js import errors as js_errors

from libs.contracts import DIRECT_GET_HEADERS
from libs.subjects import DEADLETTER_DISCARDED_SUBJECT
from libs.topology import DEADLETTER

from .records import DeadLetter, DeadLetterFilter, DeadLetterMessage, parse_record

__all__ = [
    "MAX_LIMIT",
    "MAX_SCAN",
    "MAX_SEQ",
    "DeadLetterError",
    "DeadLetterNotFound",
    "DeadLetterStreamMissing",
    "DeadLettersUnavailable",
    "Page",
    "Scan",
    "check_range",
    "is_discard_record",
    "list_deadletters",
    "show_deadletter",
    "unavailable",
]

MAX_LIMIT = 1000
"""Most records one :func:`list_deadletters` call returns, and most dead letters one replay call handles."""
MAX_SCAN = 100_000
"""Most DEADLETTER messages one call reads (one direct get each, about 0.2 ms on loopback)."""
MAX_SEQ = 2**63 - 1
"""The largest stream sequence (JetStream's are unsigned 64-bit; what a BIGINT holds is plenty)."""
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_DISCARDED_PREFIX = DEADLETTER_DISCARDED_SUBJECT.format(consumer="")
"""``deadletter.discarded.``: the records of discarded dead letters, which are no dead letters."""


def is_discard_record(subject: str) -> bool:
    """Whether a DEADLETTER message on ``subject`` is the record of a discard (:mod:`.discard`)."""
    return subject.startswith(_DISCARDED_PREFIX)


class DeadLetterError(Exception):
    """Base of what this package raises besides ``ValueError`` (bad arguments)."""


class DeadLetterNotFound(DeadLetterError):
    """No dead letter at that DEADLETTER sequence (never stored, discarded, deleted, aged out, or the record
    of a discard)."""


class DeadLettersUnavailable(DeadLetterError):
    """DEADLETTER cannot be read: NATS does not answer in time, or the stream does not exist."""


class DeadLetterStreamMissing(DeadLettersUnavailable):
    """The DEADLETTER stream does not exist (the topology was never applied to this server)."""


@dataclass(frozen=True, slots=True)
class Page:
    """What one :func:`list_deadletters` call found.

    ``scanned``: DEADLETTER messages read (within the scan subject); ``next_seq``: where to start the next
    call to go on (None: the scan reached what was DEADLETTER's last message when the call began,
    ``last_seq``)."""

    records: list[DeadLetter]
    scanned: int
    next_seq: int | None
    last_seq: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"deadletters": [...], "scanned", "next_seq", "last_seq"}``."""
        return {
            "deadletters": [r.as_dict() for r in self.records],
            "scanned": self.scanned,
            "next_seq": self.next_seq,
            "last_seq": self.last_seq,
        }


def check_range(name: str, value: int, low: int, high: int) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``low <= value <= high`` (a bool is no number here)."""
    if isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}")


def unavailable(exc: BaseException) -> DeadLettersUnavailable:
    """The :class:`DeadLettersUnavailable` saying what NATS answered (``exc``)."""
    return DeadLettersUnavailable(f"{DEADLETTER} cannot be read: {type(exc).__name__}: {exc}")


async def _stream_bounds(js: JetStreamContext) -> tuple[int, int]:
    """DEADLETTER's first and last sequence now."""
    try:
        info = await js.stream_info(DEADLETTER)
    except js_errors.NotFoundError:
        raise DeadLetterStreamMissing(f"stream {DEADLETTER} does not exist (run `stockwire topology apply`)") from None
    except (nats.errors.Error, TimeoutError) as exc:
        raise unavailable(exc) from exc
    return info.state.first_seq or 1, info.state.last_seq or 0


def _message(raw: js_api.RawStreamMsg) -> DeadLetterMessage:
    headers = {k: v for k, v in (raw.headers or {}).items() if k not in DIRECT_GET_HEADERS}
    body = raw.data or b""
    record = parse_record(raw.seq or 0, raw.time or _EPOCH, raw.subject or "", headers, len(body))
    return DeadLetterMessage(record, headers, body)


async def _direct_get(js: JetStreamContext, seq: int, scan_subject: str | None) -> js_api.RawStreamMsg | None:
    """The message at ``seq`` (or, with ``scan_subject``, the first one at or after it on that subject);
    None when there is none."""
    try:
        if scan_subject is None:
            return await js.get_msg(DEADLETTER, seq, direct=True)
        return await js.get_msg(DEADLETTER, seq, subject=scan_subject, next=True, direct=True)
    except js_errors.NotFoundError:
        return None
    except nats.errors.NoRespondersError:
        await _stream_bounds(js)  # says so when the stream is missing
        raise DeadLettersUnavailable(f"stream {DEADLETTER} answers no direct get (allow_direct is off)") from None
    except (nats.errors.Error, TimeoutError) as exc:
        raise unavailable(exc) from exc


class Scan:
    """One bounded pass over DEADLETTER, from ``start_seq`` to the last sequence the stream had when it
    began, reading at most ``max_scan`` messages of the filter's scan subject; :meth:`matching` yields
    those ``filters`` takes. Arguments are checked as :func:`list_deadletters` documents (``ValueError``)."""

    def __init__(self, js: JetStreamContext, filters: DeadLetterFilter, *, start_seq: int, max_scan: int) -> None:
        check_range("start_seq", start_seq, 1, MAX_SEQ)
        check_range("max_scan", max_scan, 1, MAX_SCAN)
        self.js = js
        self.filters = filters
        self.seq = start_seq
        self.max_scan = max_scan
        self.scanned = 0
        """Messages read so far."""
        self.last_seq = 0
        """DEADLETTER's last sequence when the pass began."""

    @property
    def next_seq(self) -> int | None:
        """Where a next pass goes on; None once this one reached :attr:`last_seq`."""
        return self.seq if self.seq <= self.last_seq else None

    async def matching(self) -> AsyncGenerator[DeadLetterMessage, None]:
        """The matching dead letters, oldest first. Raises :class:`DeadLettersUnavailable`."""
        first, self.last_seq = await _stream_bounds(self.js)
        # Dead letters stored after the pass began are left to the next call: pages stay stable.
        self.seq = max(self.seq, first)
        subject = self.filters.scan_subject()
        while self.seq <= self.last_seq and self.scanned < self.max_scan:
            raw = await _direct_get(self.js, self.seq, subject)
            if raw is None or raw.seq is None or raw.seq > self.last_seq:
                self.seq = self.last_seq + 1
                return
            self.scanned += 1
            self.seq = raw.seq + 1
            if is_discard_record(raw.subject or ""):
                continue
            message = _message(raw)
            if self.filters.matches(message.record):
                yield message


async def list_deadletters(
    js: JetStreamContext,
    filters: DeadLetterFilter | None = None,
    *,
    start_seq: int = 1,
    limit: int = 100,
    max_scan: int = 10_000,
) -> Page:
    """Dead letters matching ``filters``, oldest first, from DEADLETTER sequence ``start_seq``: at most
    ``limit`` (1 to :data:`MAX_LIMIT`) records, reading at most ``max_scan`` (1 to :data:`MAX_SCAN`)
    messages. Continue with ``start_seq=page.next_seq`` while it is not None.

    Raises ``ValueError`` for an argument out of range, :class:`DeadLettersUnavailable` when DEADLETTER is
    missing or NATS does not answer.
    """
    check_range("limit", limit, 1, MAX_LIMIT)
    scan = Scan(js, filters or DeadLetterFilter(), start_seq=start_seq, max_scan=max_scan)
    records: list[DeadLetter] = []
    async with contextlib.aclosing(scan.matching()) as messages:
        async for message in messages:
            records.append(message.record)
            if len(records) >= limit:
                break
    return Page(records, scan.scanned, scan.next_seq, scan.last_seq)


async def show_deadletter(js: JetStreamContext, seq: int) -> DeadLetterMessage:
    """The dead letter at DEADLETTER sequence ``seq`` (>= 1): record, stored headers and body.

    Raises ``ValueError`` for a sequence out of range, :class:`DeadLetterNotFound` when DEADLETTER holds
    nothing there, :class:`DeadLettersUnavailable` when it cannot be read.
    """
    check_range("seq", seq, 1, MAX_SEQ)
    raw = await _direct_get(js, seq, None)
    if raw is None or is_discard_record(raw.subject or ""):
        raise DeadLetterNotFound(f"no dead letter at {DEADLETTER} sequence {seq}")
    return _message(raw)
