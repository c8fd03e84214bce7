"""Replaying dead letters: each republished to its original subject, once per dead letter.

A replay publishes the dead letter's body to its original subject with the original message's own
headers plus ``Stockwire-Original-Msg-Id`` and ``Stockwire-Replay-Of``, under the replay id of
:func:`libs.contracts.replay_msg_id` (:func:`libs.contracts.replay_headers`), and awaits the PubAck: a
second replay of the same dead letter within the original stream's duplicate window is answered
``duplicate`` and not stored again. Applying a replayed message once, keyed by its original id, is the
consuming service's part.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import nats.errors
from nats.js import JetStreamContext
from nats.js import errors as js_errors

from libs.contracts import (
    CONFLICT_HEADERS,
    HEADER_EVENT_ID,
    HEADER_MSG_ID,
    HEADER_ORIGINAL_MSG_ID,
    HEADER_ORIGINAL_STREAM,
    HEADER_ORIGINAL_SUBJECT,
    HEADER_SOURCE,
    replay_headers,
)
from libs.subjects import is_publish_subject, subject_matches
from libs.topology import DEADLETTER

from .reading import MAX_LIMIT, MAX_SEQ, DeadLetterNotFound, Scan, check_range, show_deadletter, unavailable
from .records import DEADLETTER_ROOT, DeadLetterFilter, DeadLetterMessage

__all__ = [
    "MAX_REPLAY",
    "ReplayOutcome",
    "ReplayPlan",
    "ReplayReport",
    "ReplayResult",
    "replay_deadletters",
    "replay_matching",
    "replay_plan",
]

MAX_REPLAY = MAX_LIMIT
"""Most dead letters one replay call handles."""


class ReplayOutcome(enum.StrEnum):
    """What became of one dead letter in a replay."""

    REPLAYED = "replayed"
    """Stored in its original stream (``stream_seq``)."""
    DUPLICATE = "duplicate"
    """Its replay id was already there (replayed before, within the duplicate window): not stored again."""
    WOULD_REPLAY = "would_replay"
    """A dry run: it would be published as shown."""
    SKIPPED = "skipped"
    """Not published, and why (``detail``): replaying it can never work as it stands."""
    FAILED = "failed"
    """The publish failed (``detail``); it may or may not be stored: replaying again is safe."""


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """One dead letter's replay: its DEADLETTER ``seq``, the outcome, why (skipped, failed), and where it
    went or would go (subject, stream, the replay's ``Nats-Msg-Id``, and its sequence in that stream)."""

    seq: int
    outcome: ReplayOutcome
    detail: str = ""
    subject: str | None = None
    stream: str | None = None
    msg_id: str | None = None
    stream_seq: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the fields above, ``outcome`` as its value."""
        return {
            "seq": self.seq,
            "outcome": self.outcome.value,
            "detail": self.detail,
            "subject": self.subject,
            "stream": self.stream,
            "msg_id": self.msg_id,
            "stream_seq": self.stream_seq,
        }


@dataclass(frozen=True, slots=True)
class ReplayReport:
    """A replay call's results in order, with the scan's ``scanned`` and ``next_seq`` (a filtered replay;
    0 and None for a list of sequences) and whether it stopped at a failure (``stopped``)."""

    results: list[ReplayResult]
    scanned: int = 0
    next_seq: int | None = None
    stopped: bool = False

    def counts(self) -> dict[str, int]:
        """How many of each outcome, every outcome named (``{"replayed": 2, "duplicate": 0, …}``)."""
        counts = {outcome.value: 0 for outcome in ReplayOutcome}
        for result in self.results:
            counts[result.outcome.value] += 1
        return counts

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"results": [...], "summary": counts, "scanned", "next_seq", "stopped"}``."""
        return {
            "results": [r.as_dict() for r in self.results],
            "summary": self.counts(),
            "scanned": self.scanned,
            "next_seq": self.next_seq,
            "stopped": self.stopped,
        }


@dataclass(frozen=True, slots=True)
class ReplayPlan:
    """How a dead letter is republished: to ``subject`` (which ``stream`` must take) with ``headers``."""

    subject: str
    stream: str
    headers: dict[str, str]
    msg_id: str


def replay_plan(message: DeadLetterMessage) -> ReplayPlan | str:
    """The :class:`ReplayPlan` of ``message``, or why it cannot be replayed (a sentence): conflict evidence
    (an id reused with another body, kept for audit), no or a malformed original subject, a subject of
    DEADLETTER itself, no original stream, no original message id to key it by."""
    record = message.record
    if CONFLICT_HEADERS["event_msg_id"] in message.headers:
        return "evidence of an event id reused with another body: kept for audit, never replayed"
    subject = record.original_subject
    if not subject:
        return f"no original subject ({HEADER_ORIGINAL_SUBJECT})"
    if not is_publish_subject(subject):
        return f"original subject {subject!r} is not a subject a message can be published to"
    if subject.split(".", 1)[0] == DEADLETTER_ROOT or record.original_stream == DEADLETTER:
        return f"original subject {subject!r} is {DEADLETTER}'s own"
    if not record.original_stream:
        return f"original stream unknown ({HEADER_ORIGINAL_STREAM} missing)"
    if not record.original_msg_id:
        return (
            f"no original message id to key it by (neither {HEADER_ORIGINAL_MSG_ID} nor {HEADER_SOURCE} "
            f"and {HEADER_EVENT_ID})"
        )
    headers = replay_headers(message.headers, deadletter_seq=record.seq, original_msg_id=record.original_msg_id)
    return ReplayPlan(subject, record.original_stream, headers, headers[HEADER_MSG_ID])


def _wire_size(headers: Mapping[str, str], body: bytes) -> int:
    """Bytes of a message with headers as NATS counts them against ``max_payload``: ``NATS/1.0\\r\\n``, one
    ``name: value\\r\\n`` line per header, a blank line, the body."""
    lines = sum(len(k.encode()) + len(v.encode()) + 4 for k, v in headers.items())
    return len(b"NATS/1.0\r\n") + lines + 2 + len(body)


class _Replayer:
    def __init__(self, js: JetStreamContext, *, max_payload: int, dry_run: bool) -> None:
        self.js = js
        self.max_payload = max_payload
        self.dry_run = dry_run
        self._subjects: dict[str, list[str] | None] = {}

    async def _stream_subjects(self, stream: str) -> list[str] | None:
        if stream not in self._subjects:
            try:
                info = await self.js.stream_info(stream)
                self._subjects[stream] = list(info.config.subjects or [])
            except js_errors.NotFoundError:
                self._subjects[stream] = None
            except (nats.errors.Error, TimeoutError) as exc:
                raise unavailable(exc) from exc
        return self._subjects[stream]

    async def replay(self, message: DeadLetterMessage) -> ReplayResult:
        seq = message.record.seq
        plan = replay_plan(message)
        if isinstance(plan, str):
            return ReplayResult(seq, ReplayOutcome.SKIPPED, plan, subject=message.record.original_subject)

        def result(outcome: ReplayOutcome, detail: str = "", stream_seq: int | None = None) -> ReplayResult:
            assert isinstance(plan, ReplayPlan)
            return ReplayResult(seq, outcome, detail, plan.subject, plan.stream, plan.msg_id, stream_seq)

        subjects = await self._stream_subjects(plan.stream)
        if subjects is None:
            return result(ReplayOutcome.SKIPPED, f"original stream {plan.stream} does not exist")
        # Checked here rather than with Nats-Expected-Stream, which JetStream would store with the message.
        if not any(subject_matches(pattern, plan.subject) for pattern in subjects):
            return result(ReplayOutcome.SKIPPED, f"stream {plan.stream} no longer takes {plan.subject}")
        size = _wire_size(plan.headers, message.body)
        if size > self.max_payload:
            detail = f"{size} bytes with its headers, over the server's max_payload of {self.max_payload}"
            return result(ReplayOutcome.SKIPPED, detail)
        if self.dry_run:
            return result(ReplayOutcome.WOULD_REPLAY)
        try:
            ack = await self.js.publish(plan.subject, message.body, headers=dict(plan.headers))
        except js_errors.NoStreamResponseError:
            return result(ReplayOutcome.SKIPPED, f"no stream takes {plan.subject}")
        except (nats.errors.Error, TimeoutError) as exc:
            return result(ReplayOutcome.FAILED, f"{type(exc).__name__}: {exc}".rstrip(": "))
        return result(ReplayOutcome.DUPLICATE if ack.duplicate else ReplayOutcome.REPLAYED, stream_seq=ack.seq)


async def replay_deadletters(
    js: JetStreamContext, seqs: Sequence[int], *, max_payload: int, dry_run: bool = False
) -> ReplayReport:
    """Replay the dead letters at DEADLETTER sequences ``seqs`` (1 to :data:`MAX_REPLAY` of them, each
    >= 1; a repeated one is replayed once), in the order given. ``max_payload`` is the connection's
    ``nc.max_payload`` in bytes (a replay over it is skipped, never sent). With ``dry_run`` nothing is
    published: each one is reported ``would_replay`` or ``skipped``.

    A sequence with no dead letter is ``skipped``. The first ``failed`` publish stops the call
    (``stopped``): the connection is likely gone, and the replay id makes running it again safe.
    Raises ``ValueError`` for bad arguments, :class:`DeadLettersUnavailable` when DEADLETTER cannot be read.
    """
    unique = list(dict.fromkeys(seqs))
    check_range("number of sequences", len(unique), 1, MAX_REPLAY)
    for seq in unique:
        check_range("seq", seq, 1, MAX_SEQ)
    replayer = _Replayer(js, max_payload=max_payload, dry_run=dry_run)
    results: list[ReplayResult] = []
    for seq in unique:
        try:
            message = await show_deadletter(js, seq)
        except DeadLetterNotFound as exc:
            results.append(ReplayResult(seq, ReplayOutcome.SKIPPED, str(exc)))
            continue
        result = await replayer.replay(message)
        results.append(result)
        if result.outcome is ReplayOutcome.FAILED:
            return ReplayReport(results, stopped=True)
    return ReplayReport(results)


async def replay_matching(
    js: JetStreamContext,
    filters: DeadLetterFilter | None = None,
    *,
    max_payload: int,
    start_seq: int = 1,
    limit: int = 100,
    max_scan: int = 10_000,
    dry_run: bool = False,
) -> ReplayReport:
    """Replay the dead letters :func:`list_deadletters` would list with the same arguments (at most
    ``limit``, 1 to :data:`MAX_REPLAY`), oldest first; continue with ``start_seq=report.next_seq``.
    Outcomes, ``max_payload``, ``dry_run``, stopping and errors as in :func:`replay_deadletters`."""
    check_range("limit", limit, 1, MAX_REPLAY)
    scan = Scan(js, filters or DeadLetterFilter(), start_seq=start_seq, max_scan=max_scan)
    replayer = _Replayer(js, max_payload=max_payload, dry_run=dry_run)
    results: list[ReplayResult] = []
    async with contextlib.aclosing(scan.matching()) as messages:
        async for message in messages:
            result = await replayer.replay(message)
            results.append(result)
            if result.outcome is ReplayOutcome.FAILED:
                return ReplayReport(results, scan.scanned, message.record.seq, stopped=True)
            if len(results) >= limit:
                break
    return ReplayReport(results, scan.scanned, scan.next_seq)
